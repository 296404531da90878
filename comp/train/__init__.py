"""Training: the runtime (device, AMP, DDP), mixing, checkpoints, run folders, the per-fold
loop (:mod:`~comp.train.loop`) and the run over folds (:mod:`~comp.train.fit`)."""
