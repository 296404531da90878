"""The run: one folder under ``--runs`` and everything in it. Its files and their formats
(:mod:`~comp.run.folder`; the checkpoint format :mod:`~comp.run.checkpoint`; thresholds.json
:mod:`~comp.run.thresholds`; oof.csv and its merge :mod:`~comp.run.oof`), its locks
(:mod:`~comp.run.lock`) and its life from open to merge (:mod:`~comp.run.life`). Training
(:mod:`comp.train`) fills a run's folds; everything after training reads the run from here."""
