"""Fold assignment as pure functions.

The convention: an int array ``folds`` with one entry per training row; ``folds[i] = k`` means
row i is validated in fold k (and trained on in every other fold); ``-1`` means it is only
ever trained on.
"""

from __future__ import annotations

import numpy as np

from comp.errors import CompError

VALID_NAMES = {"valid", "val", "validation", "dev", "holdout"}
TRAIN_NAMES = {"train", "training", ""}


def kfold_folds(labels: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Stratified k-fold; group-aware (StratifiedGroupKFold) when ``groups`` is given.

    Classes with fewer rows than folds are spread over as many folds as they have rows, which
    sklearn allows with a warning that is silenced here.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(labels)
    n_units = len(np.unique(groups)) if groups is not None else len(labels)
    if n_units < n_folds:
        what = "groups" if groups is not None else "rows"
        raise CompError(f"[cv] folds = {n_folds} but there are only {n_units} {what}")
    folds = np.full(len(labels), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        if groups is None:
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            parts = splitter.split(np.zeros(len(labels)), labels)
        else:
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            parts = splitter.split(np.zeros(len(labels)), labels, groups)
        for k, (_, valid) in enumerate(parts):
            folds[valid] = k
    return folds


def holdout_folds(labels: np.ndarray, valid_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> np.ndarray:
    """One stratified validation fold (0) of about ``valid_fraction`` of the rows; -1 elsewhere.

    With ``groups``, whole groups go to one side (grouped shuffle split, stratified as nearly as
    the groups allow).
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    labels = np.asarray(labels)
    folds = np.full(len(labels), -1, dtype=np.int64)
    if groups is not None:
        # Stratify on groups by taking each group's first label, then move whole groups.
        uniq, first = np.unique(groups, return_index=True)
        group_folds = holdout_folds(labels[first], valid_fraction, seed)
        valid_groups = set(uniq[group_folds == 0])
        folds[np.isin(groups, list(valid_groups))] = 0
        return folds
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    n_valid = max(1, int(round(valid_fraction * len(labels))))
    if counts.min() >= 2 and n_valid >= len(counts) and len(labels) - n_valid >= len(counts):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
        _, valid = next(splitter.split(np.zeros(len(labels)), labels))
    else:  # a class with a single row cannot be on both sides: fall back to a plain shuffle
        valid = np.random.default_rng(seed).permutation(len(labels))[:n_valid]
    folds[valid] = 0
    return folds


def predefined_folds(split_values: np.ndarray) -> np.ndarray:
    """Folds from a split column: "train"/"valid" names, or integer fold numbers."""
    folds = np.empty(len(split_values), dtype=np.int64)
    for i, value in enumerate(split_values):
        text = str(value).strip().lower()
        if text in TRAIN_NAMES:
            folds[i] = -1
        elif text in VALID_NAMES:
            folds[i] = 0
        else:
            try:
                folds[i] = int(float(text))
            except ValueError:
                raise CompError(f"split value {str(value)!r} is neither train/valid nor a fold number") from None
    if not (folds >= 0).any():
        raise CompError("the split column marks no validation rows")
    return folds


def full_folds(n: int) -> np.ndarray:
    """No validation: every row is trained on."""
    return np.full(n, -1, dtype=np.int64)


def fold_ids(folds: np.ndarray) -> list[int]:
    """The distinct validation folds, sorted."""
    return sorted(int(k) for k in np.unique(folds) if k >= 0)
