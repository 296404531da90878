"""Training a run's folds (the run folder itself is :mod:`comp.run`): a fold's
parts (:mod:`~comp.train.parts`), the epoch loop (:mod:`~comp.train.loop`) with validation,
checkpoints and SWA, DDP and mixing, and the run over folds (:mod:`~comp.train.fit`)."""
