"""Hyper-parameter search (``comp tune``) on Optuna: a space that mirrors the recipe's tables
(:mod:`~comp.tune.space`), a study whose trials are ordinary runs under ``runs/<study>/``
(:mod:`~comp.tune.study`, :mod:`~comp.tune.folder`), scored on their OOF rows
(:mod:`~comp.tune.objective`), in any Optuna storage (:mod:`~comp.tune.storage`), and its report
(:mod:`~comp.tune.report`)."""
