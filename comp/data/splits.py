"""Fold assignment as pure functions.

The convention: an int array ``folds`` with one entry per training row; ``folds[i] = k`` means
row i is validated in fold k (and trained on in every other fold); ``-1`` means it is only
ever trained on. Every function is deterministic for a given ``seed``.
"""

from __future__ import annotations

import warnings

import numpy as np

from comp.errors import CompError

VALID_NAMES = {"valid", "val", "validation", "dev", "holdout"}
TRAIN_NAMES = {"train", "training", "trn"}


def _check(labels: np.ndarray, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise ValueError(f"groups has shape {groups.shape} but labels has {labels.shape}")
    return labels, groups


def _round_robin(labels: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle within each class, line the classes up and deal rows to folds in turn.

    Each class then has ⌊n_c/k⌋ or ⌈n_c/k⌉ rows in every fold and fold sizes differ by at
    most one — the same allocation StratifiedKFold makes, without its minimum class size.
    """
    _, codes = np.unique(labels, return_inverse=True)
    order = np.lexsort((rng.permutation(len(labels)), codes))  # by class, random within
    folds = np.empty(len(labels), dtype=np.int64)
    folds[order] = rng.permutation(n_folds)[np.arange(len(labels)) % n_folds]
    return folds


def _balanced_groups(groups: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Whole groups, largest first (random among equals), each to the fold with fewest rows."""
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.lexsort((rng.permutation(len(uniq)), -sizes))
    totals = np.zeros(n_folds, dtype=np.int64)
    group_fold = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        k = int(np.argmin(totals))
        group_fold[g] = k
        totals[k] += sizes[g]
    return group_fold[inverse]


def kfold_folds(labels: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Stratified k-fold with shuffling; every row gets a fold ``0 … n_folds-1``.

    Without groups this is sklearn's ``StratifiedKFold(shuffle=True)``: each class has
    ⌊n_c/k⌋ or ⌈n_c/k⌉ rows in every fold, so a class rarer than ``n_folds`` simply appears in
    fewer folds. When every class is rarer than ``n_folds`` (sklearn refuses) the same
    allocation is made by a seeded round-robin deal.

    With ``groups`` it is ``StratifiedGroupKFold(shuffle=True)``: a group never straddles
    folds. Where sklearn cannot stratify (every class rarer than ``n_folds``) or leaves a fold
    empty, whole groups are instead dealt largest first to the fold with the fewest rows.

    A 2-D 0/1 ``labels`` matrix (a multilabel task's) is stratified by :func:`multilabel_folds`.

    Fewer rows (or groups) than folds is a :class:`CompError`.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if np.ndim(labels) == 2:
        return multilabel_folds(labels, n_folds, seed, groups)
    labels, groups = _check(labels, groups)
    if n_folds < 2:
        raise CompError(f"[cv] folds must be at least 2, got {n_folds}")
    n_units = len(np.unique(groups)) if groups is not None else len(labels)
    if n_units < n_folds:
        what = "groups" if groups is not None else "rows"
        raise CompError(f"[cv] folds = {n_folds} but there are only {n_units} {what}")
    rng = np.random.default_rng(seed)
    stratifiable = np.unique(labels, return_counts=True)[1].max() >= n_folds
    if groups is None and not stratifiable:
        return _round_robin(labels, n_folds, rng)
    folds = np.full(len(labels), -1, dtype=np.int64)
    if stratifiable:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
            if groups is None:
                parts = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(labels, labels)
            else:
                splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
                parts = splitter.split(labels, labels, groups)
            for k, (_, valid) in enumerate(parts):
                folds[valid] = k
    if groups is not None and len(np.unique(folds[folds >= 0])) < n_folds:
        folds = _balanced_groups(groups, n_folds, rng)
    return folds


def _stratified_quota(counts: np.ndarray, fraction: float, n_valid: int,
                      rng: np.random.Generator) -> np.ndarray:
    """How many rows of each class to validate: ``fraction`` of each, ``n_valid`` in all.

    Largest-remainder rounding (random among equal remainders), so each class is within one
    row of its exact share. A class keeps at least one training row, even if the total then
    falls short of ``n_valid``; only when no row at all could be validated (every class a
    singleton) is one singleton validated.
    """
    exact = fraction * counts
    floor = np.floor(exact).astype(np.int64)
    cap = np.minimum(floor + 1, np.maximum(counts - 1, 0))
    quota = np.minimum(floor, cap)
    tie = rng.random(len(counts))
    while quota.sum() < n_valid and (quota < cap).any():
        room = np.flatnonzero(quota < cap)
        best = room[np.lexsort((tie[room], -(exact[room] - quota[room])))[0]]
        quota[best] += 1
    if quota.sum() == 0:
        quota[int(np.argmax(tie))] = 1
    return quota


def _holdout_groups(labels: np.ndarray, groups: np.ndarray, valid_fraction: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Whole groups to validation, greedily keeping each class's count near its target.

    Groups are visited largest first (random order among equal sizes); one joins validation
    when that brings the per-class counts closer (L1) to ``valid_fraction`` of each class.
    """
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < 2:
        raise CompError(f"a validation split needs at least 2 groups, got {len(uniq)}")
    _, codes = np.unique(labels, return_inverse=True)
    per_group = np.zeros((len(uniq), codes.max() + 1), dtype=np.float64)
    np.add.at(per_group, (inverse, codes), 1.0)
    target = valid_fraction * per_group.sum(axis=0)
    sizes = per_group.sum(axis=1)
    order = np.lexsort((rng.permutation(len(uniq)), -sizes))
    taken = np.zeros(len(uniq), dtype=bool)
    current = np.zeros_like(target)
    for g in order:
        trial = current + per_group[g]
        if np.abs(trial - target).sum() < np.abs(current - target).sum():
            taken[g], current = True, trial
    if not taken.any():  # groups too big for the fraction: take the one that fits best
        taken[min(order, key=lambda g: np.abs(per_group[g] - target).sum())] = True
    if taken.all():
        taken[order[-1]] = False
    return np.where(taken[inverse], 0, -1).astype(np.int64)


def holdout_folds(labels: np.ndarray, valid_fraction: float, seed: int,
                  groups: np.ndarray | None = None) -> np.ndarray:
    """One stratified validation fold (0) of about ``valid_fraction`` of the rows; -1 elsewhere.

    Without groups ``round(valid_fraction · n)`` rows (at least 1) are validated and each class
    contributes within one row of ``valid_fraction · n_c``. A class keeps at least one training
    row (a singleton class is only trained on), which can leave the total a little short.
    With ``groups`` whole groups go to one side, chosen greedily to keep each class near
    ``valid_fraction`` of its rows; at least one group is validated and one trained on.
    A 2-D 0/1 ``labels`` matrix (a multilabel task's) validates the first of
    ``round(1 / valid_fraction)`` :func:`multilabel_folds`.
    """
    if np.ndim(labels) == 2:
        if not 0.0 < valid_fraction < 1.0:
            raise CompError(f"[cv] valid_fraction must be in (0, 1), got {valid_fraction}")
        folds = multilabel_folds(labels, max(2, round(1.0 / valid_fraction)), seed, groups)
        return np.where(folds == 0, 0, -1).astype(np.int64)
    labels, groups = _check(labels, groups)
    if not 0.0 < valid_fraction < 1.0:
        raise CompError(f"[cv] valid_fraction must be in (0, 1), got {valid_fraction}")
    if len(labels) < 2:
        raise CompError(f"a validation split needs at least 2 rows, got {len(labels)}")
    rng = np.random.default_rng(seed)
    if groups is not None:
        return _holdout_groups(labels, groups, valid_fraction, rng)
    n_valid = int(np.clip(round(valid_fraction * len(labels)), 1, len(labels) - 1))
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = _stratified_quota(counts, valid_fraction, n_valid, rng)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for c in range(len(classes)):
        rows = np.flatnonzero(codes == c)
        folds[rng.permutation(rows)[:quota[c]]] = 0
    return folds


def _fold_number(value: object) -> int | None:
    """The fold a split value names, or None if it names none."""
    text = str(value).strip().lower()
    if text in TRAIN_NAMES:
        return -1
    if text in VALID_NAMES:
        return 0
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= -1 else None  # NaN/inf: not integer


def predefined_folds(split_values: np.ndarray) -> np.ndarray:
    """Folds from a split column: "train" → -1, "valid"/"val" → 0, integer fold numbers as-is.

    Names match case-insensitively (also "training", "validation", "dev", "holdout"); a fold
    number is a whole number ≥ -1 ("2", "2.0"). Any other value (a blank cell included), or a
    column without validation rows, is a :class:`CompError` naming the value.
    """
    values = np.asarray(split_values, dtype=object).reshape(-1)
    folds = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        fold = _fold_number(value)
        if fold is None:
            bad = sum(_fold_number(v) is None for v in values)
            raise CompError(f"split value {str(value)!r} is neither train/valid nor a fold number "
                            f"(0, 1, …; -1 = train only); {bad} of {len(values)} rows have such values")
        folds[i] = fold
    if not (folds >= 0).any():
        raise CompError("the split column marks no validation rows (values like \"valid\" or 0)")
    return folds


def full_folds(n: int) -> np.ndarray:
    """No validation: every row is only trained on."""
    return np.full(n, -1, dtype=np.int64)


def fold_ids(folds: np.ndarray) -> list[int]:
    """The distinct validation folds (≥ 0), sorted."""
    return sorted(int(k) for k in np.unique(folds) if k >= 0)


def multilabel_folds(Y: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Multi-label stratified k-fold: every row gets a fold ``0 … n_folds-1``.

    The iterative stratification of Sechidis et al. (2011), from the ``iterative-stratification``
    package's ``MultilabelStratifiedKFold(shuffle=True)``: each label (rarest first) is spread
    over the folds in proportion, and fold sizes stay within a few rows of each other. A single
    label is stratified with its complement. With ``groups`` the groups are stratified instead,
    each by the labels any of its rows has, and every row of a group lands in its group's fold
    (folds are then balanced in groups, not rows). Fewer rows (or groups) than folds is a
    :class:`CompError`.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (rows, labels), got shape {Y.shape}")
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if len(groups) != len(Y):
            raise ValueError(f"groups has {len(groups)} rows but Y has {len(Y)}")
    if n_folds < 2:
        raise CompError(f"[cv] folds must be at least 2, got {n_folds}")
    inverse = None
    units = Y.astype(bool)
    if groups is not None:
        uniq, inverse = np.unique(groups, return_inverse=True)
        units = np.zeros((len(uniq), Y.shape[1]), dtype=bool)
        np.logical_or.at(units, inverse, Y.astype(bool))
    if len(units) < n_folds:
        what = "groups" if groups is not None else "rows"
        raise CompError(f"[cv] folds = {n_folds} but there are only {len(units)} {what}")
    if units.shape[1] < 2:  # the package wants a multi-label indicator: add the complement
        units = np.column_stack([units, ~units]) if units.shape[1] else np.ones((len(units), 2), dtype=bool)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    unit_folds = np.empty(len(units), dtype=np.int64)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(units)), units)):
        unit_folds[valid] = k
    return unit_folds if inverse is None else unit_folds[inverse]


def quantile_bins(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin codes ``0 … b-1`` (``b <= bins``) of a continuous target by its quantiles, for stratifying
    folds on it (``[cv] bins``): about equal counts per bin, codes increasing with the value.

    Tied values share a bin, so a heavily tied target or one with fewer distinct values than
    ``bins`` simply gets fewer bins (each distinct value at most one). Non-finite values raise
    ``ValueError`` (the label parser refuses them first).
    """
    if bins < 1:
        raise CompError(f"[cv] bins must be at least 1, got {bins}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all():
        raise ValueError("quantile_bins needs finite values")
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    codes = np.searchsorted(edges, values, side="right")
    return np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)
