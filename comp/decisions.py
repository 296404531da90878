"""Decisions beyond argmax, as pure maths on probabilities: fitting and applying ordinal cut
points (QWK-maximising, on the expected grade) and a binary task's probability threshold (tuned
for a metric), a multi-label task's thresholds (one for all labels or one per label, fitted for
F-beta/F1), and each fold decided by values fitted on the other folds.

Ordinal cut points are how the 2015 and 2019 retinopathy competitions were won: predict a grade
(the expected grade under the class probabilities), then fit the cut points between grades on
out-of-fold predictions. The file a run keeps them in is :mod:`comp.run.thresholds`; how a
prediction decides is :mod:`comp.predict.decision`.
"""

from __future__ import annotations

import numpy as np

from comp.metrics import binary_from_counts, fbeta_from_counts, quadratic_weighted_kappa


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """Σ_k k·p_k for each row of an ``(n, num_classes)`` probability matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def apply_thresholds(scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Class k for ``cuts[k-1] <= score < cuts[k]`` (``np.digitize``; a score on a cut goes up)."""
    cuts = np.asarray(cuts, dtype=np.float64)
    return np.digitize(np.asarray(scores, dtype=np.float64), cuts).astype(np.int64)


def apply_binary_threshold(probs: np.ndarray, positive: int, threshold: float) -> np.ndarray:
    """Class ``positive`` where its probability is at or above ``threshold``, else the other class."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive).astype(np.int64)


# --------------------------------------------------------------------------- ordinal cut points


def _best_cut(scores: np.ndarray, y: np.ndarray, cuts: np.ndarray, i: int, num_classes: int,
              weights: np.ndarray) -> tuple[float, float]:
    """Exact line search for cut ``i`` between its neighbours: (best cut, its QWK).

    Moving cut i only moves rows with scores between cuts i-1 and i+1 between predicted classes
    i and i+1, and QWK's numerator and denominator are linear in those moves, so every
    distinct position (midway between neighbouring scores) is scored at once.
    """
    lo = cuts[i - 1] if i > 0 else -np.inf
    hi = cuts[i + 1] if i + 1 < len(cuts) else np.inf
    pred = apply_thresholds(scores, cuts)
    inside = (scores >= lo) & (scores < hi)
    values, codes = np.unique(scores[inside], return_inverse=True)
    if len(values) == 0:
        return float(cuts[i]), -np.inf
    # Rows per (distinct score, true class) inside the window; cumulative = those below the cut.
    per_value = np.zeros((len(values), num_classes))
    np.add.at(per_value, (codes, y[inside]), 1.0)
    below = np.vstack([np.zeros(num_classes), np.cumsum(per_value, axis=0)])  # (m+1, C)
    total_inside = below[-1]
    base = np.zeros((num_classes, num_classes))
    np.add.at(base, (y[~inside], pred[~inside]), 1.0)
    n = len(scores)
    true_totals = np.bincount(y, minlength=num_classes).astype(np.float64)
    # Σ W·O: fixed part + rows below the cut in column i, the rest in column i+1.
    numerator = ((weights * base).sum() + below @ weights[:, i] + (total_inside - below) @ weights[:, i + 1])
    # Σ W·E = rᵀ W c / n, with the column totals c depending on how many rows sit below the cut.
    rw = true_totals @ weights
    cols = np.tile(base.sum(axis=0), (len(below), 1))
    cols[:, i] += below.sum(axis=1)
    cols[:, i + 1] += total_inside.sum() - below.sum(axis=1)
    denominator = cols @ rw / n
    with np.errstate(divide="ignore", invalid="ignore"):
        qwk = np.where(denominator > 0, 1.0 - numerator / denominator, np.where(numerator == 0, 1.0, 0.0))
    # Candidate cuts: just above lo, midway between neighbouring scores, just below hi.
    first = values[0] - 1.0 if np.isinf(lo) else (lo + values[0]) / 2
    last = values[-1] + 1.0 if np.isinf(hi) else (values[-1] + hi) / 2
    candidates = np.concatenate([[first], (values[:-1] + values[1:]) / 2, [last]])
    valid = (candidates > lo) & (candidates < hi)
    if not valid.any():
        return float(cuts[i]), -np.inf
    qwk = np.where(valid, qwk, -np.inf)
    best = int(np.argmax(qwk))
    return float(candidates[best]), float(qwk[best])


def fit_thresholds(scores: np.ndarray, y_true: np.ndarray, num_classes: int,
                   max_rounds: int = 20) -> np.ndarray:
    """``num_classes - 1`` increasing cut points maximising QWK of ``apply_thresholds(scores, cuts)``.

    Coordinate ascent from the midpoints 0.5, 1.5, …: each round moves every cut in turn to its
    best position between its neighbours (an exact search over all distinct positions, placed
    midway between neighbouring scores), keeping a move only when QWK strictly improves; it
    stops when a round changes nothing. So the result is never worse than the starting cuts on
    the data it was fitted on. Rows with a non-finite score are ignored; with no usable rows
    the starting cuts are returned.
    """
    cuts = np.arange(max(num_classes - 1, 0), dtype=np.float64) + 0.5
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    if len(scores) != len(y):
        raise ValueError(f"scores has {len(scores)} rows but y_true has {len(y)}")
    keep = np.isfinite(scores)
    scores, y = scores[keep], y[keep]
    if num_classes < 2 or len(y) == 0:
        return cuts
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"y_true has values outside 0..{num_classes - 1}")
    grades = np.arange(num_classes, dtype=np.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    start = cuts.copy()
    best = quadratic_weighted_kappa(y, apply_thresholds(scores, cuts), num_classes)
    for _ in range(max_rounds):
        improved = False
        for i in range(len(cuts)):
            cut, qwk = _best_cut(scores, y, cuts, i, num_classes, weights)
            if qwk > best + 1e-12:
                cuts[i], best, improved = cut, qwk, True
        if not improved:
            break
    # Guard against any floating-point disagreement with the reference metric.
    fitted = quadratic_weighted_kappa(y, apply_thresholds(scores, cuts), num_classes)
    initial = quadratic_weighted_kappa(y, apply_thresholds(scores, start), num_classes)
    return cuts if fitted >= initial else start


def nested_threshold_predictions(scores: np.ndarray, y_true: np.ndarray, folds: np.ndarray,
                                 num_classes: int) -> np.ndarray | None:
    """Each fold's rows cut by thresholds fitted on the other folds' rows only.

    QWK of these predictions is an honest estimate of what fitted thresholds do on unseen
    data; QWK with thresholds fitted on all rows and scored on the same rows is optimistic.
    None with a single fold (a holdout): there are no other rows to fit the cuts on.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    folds = np.asarray(folds).reshape(-1)
    if len(np.unique(folds)) < 2:
        return None
    out = np.empty(len(y), dtype=np.int64)
    for fold in np.unique(folds):
        held = folds == fold
        cuts = fit_thresholds(scores[~held], y[~held], num_classes)
        out[held] = apply_thresholds(scores[held], cuts)
    return out


# --------------------------------------------------------------------------- binary threshold


def binary_threshold_curve(scores: np.ndarray, y_positive: np.ndarray,
                           metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidate thresholds, ``metric`` at each): every distinct way of cutting the scores.

    A row is predicted positive when its score is at or above the threshold; candidates lie
    midway between neighbouring distinct scores, plus one below all and one above all. The
    confusion counts of all candidates come from one sort, so this is O(n log n).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(y_positive, dtype=bool).reshape(-1)
    if len(scores) != len(y):
        raise ValueError(f"scores has {len(scores)} rows but y_positive has {len(y)}")
    keep = np.isfinite(scores)
    scores, y = scores[keep], y[keep]
    values = np.unique(scores)  # ascending
    if len(values) == 0:
        return np.array([0.5]), np.array([np.nan])
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    # Rows at or above candidate j: those whose score index (in values) is >= j.
    idx = np.searchsorted(values, scores)
    pos_at = np.bincount(idx, weights=y.astype(np.float64), minlength=len(values))
    all_at = np.bincount(idx, minlength=len(values)).astype(np.float64)
    pos_above = np.concatenate([np.cumsum(pos_at[::-1])[::-1], [0.0]])
    all_above = np.concatenate([np.cumsum(all_at[::-1])[::-1], [0.0]])
    tp, predicted = pos_above, all_above
    fp = predicted - tp
    fn = y.sum() - tp
    tn = len(y) - tp - fp - fn
    return candidates, binary_from_counts(metric, tp, fp, fn, tn)


def fit_binary_threshold(scores: np.ndarray, y_positive: np.ndarray, metric: str) -> float:
    """The probability threshold on the positive class that maximises ``metric`` on these rows.

    Of equally good thresholds the one nearest 0.5 (argmax's cut) is taken, so a flat optimum
    moves the decision no further than it must; with no usable rows, 0.5.
    """
    candidates, values = binary_threshold_curve(scores, y_positive, metric)
    if not np.isfinite(values).any():
        return 0.5
    best = np.nanmax(values)
    tied = candidates[values >= best - 1e-12]
    return float(tied[np.argmin(np.abs(tied - 0.5))])


def nested_binary_predictions(scores: np.ndarray, y_positive: np.ndarray, folds: np.ndarray,
                              metric: str) -> np.ndarray | None:
    """Each fold's rows cut (True: positive) by a threshold tuned on the other folds only; None
    with a single fold, which has no other rows to tune on."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(y_positive, dtype=bool).reshape(-1)
    folds = np.asarray(folds).reshape(-1)
    if len(np.unique(folds)) < 2:
        return None
    out = np.zeros(len(y), dtype=bool)
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = scores[held] >= fit_binary_threshold(scores[~held], y[~held], metric)
    return out


# --------------------------------------------------------------------------- multi-label thresholds
#
# A label is predicted where its probability is at or above its threshold. The thresholds are
# fitted on out-of-fold rows for one of the decision metrics below (those of
# comp.metrics.multilabel_scores that depend on the decisions), over at most
# MAX_CANDIDATES candidate thresholds per label, so fitting is O(labels · candidates · rows).

MULTILABEL_DECISION_METRICS = ("fbeta", "f1_samples", "f1_macro", "f1_micro")
MAX_CANDIDATES = 100


def _multilabel(probs: np.ndarray, y: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric not in MULTILABEL_DECISION_METRICS:
        raise ValueError(f"{metric!r} is not a multi-label decision metric "
                         f"(one of {', '.join(MULTILABEL_DECISION_METRICS)})")
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y).astype(bool)
    if probs.ndim != 2 or probs.shape != y.shape:
        raise ValueError(f"probs {probs.shape} and y {y.shape} must be the same (rows, labels) shape")
    return probs, y


def _candidates(values: np.ndarray) -> np.ndarray:
    """Candidate thresholds for ``values``: midway between neighbouring distinct values (between
    quantiles when there are more than MAX_CANDIDATES), one below all, one above all, and 0.5."""
    values = np.unique(values[np.isfinite(values)])
    if len(values) == 0:
        return np.array([0.5])
    if len(values) > MAX_CANDIDATES:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, MAX_CANDIDATES - 2)))
    lo, hi = values[0], values[-1]
    below = lo / 2 if 0.0 < lo <= 1.0 else lo - 1e-6  # every row predicted
    above = (hi + 1.0) / 2 if 0.0 <= hi < 1.0 else hi + 1e-6  # no row predicted
    return np.unique(np.concatenate([[below], (values[:-1] + values[1:]) / 2, [above, 0.5]]))


def _nearest_half(candidates: np.ndarray, values: np.ndarray) -> float:
    """Of the candidates with the best value, the one nearest 0.5 (0.5 itself when none is finite)."""
    if not np.isfinite(values).any():
        return 0.5
    tied = candidates[values >= np.nanmax(values) - 1e-12]
    return float(tied[np.argmin(np.abs(tied - 0.5))])


def _counts_score(metric: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    """``metric`` from per-row (fbeta, f1_samples: rows on axis 0) or per-label (f1_macro: labels on
    axis 0) or pooled (f1_micro) counts; trailing axes are candidates. Equals
    :func:`comp.metrics.multilabel_scores`' value of the same decisions."""
    if metric in ("fbeta", "f1_samples"):
        return fbeta_from_counts(tp, fp, fn, beta if metric == "fbeta" else 1.0, 1.0).mean(axis=0)
    if metric == "f1_micro":
        return fbeta_from_counts(tp, fp, fn, 1.0, 1.0)
    f1 = fbeta_from_counts(tp, fp, fn, 1.0, np.nan)  # f1_macro: a label nowhere is left out
    seen = np.isfinite(f1)
    return np.where(seen.any(axis=0), np.where(seen, f1, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1), np.nan)


def _score(metric: str, y: np.ndarray, pred: np.ndarray, beta: float) -> float:
    """``metric`` of 0/1 decisions ``pred`` against ``y`` (both boolean ``(n, L)``)."""
    axis = 0 if metric == "f1_macro" else 1
    tp, fp, fn = ((pred & y).sum(axis=axis), (pred & ~y).sum(axis=axis), (~pred & y).sum(axis=axis))
    if metric == "f1_micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    return float(_counts_score(metric, tp, fp, fn, beta))


def _grouped_counts(probs: np.ndarray, y: np.ndarray, candidates: np.ndarray,
                    by_label: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) of the decisions ``probs >= c`` for every candidate ``c``, per row (or per
    label): ``(groups, K)`` arrays from one pass over the cells (each cell is predicted for the
    candidates at or below it)."""
    if by_label:
        probs, y = probs.T, y.T
    groups, k = len(probs), len(candidates)
    below = np.searchsorted(candidates, probs, side="right")  # how many candidates predict the cell
    # Bins laid out (k + 1, groups), so the cumulative sums run over contiguous rows.
    flat = (below * groups + np.arange(groups)[:, None]).ravel()
    pos = np.bincount(flat, weights=y.ravel().astype(np.float64), minlength=(k + 1) * groups).reshape(k + 1, groups)
    every = np.bincount(flat, minlength=(k + 1) * groups).reshape(k + 1, groups)
    # Cells predicted by candidate m: those with below > m, i.e. all but the first m + 1 bins.
    tp = (pos.sum(axis=0) - np.cumsum(pos, axis=0)[:k]).T
    predicted = (every.sum(axis=0) - np.cumsum(every, axis=0)[:k]).T
    return tp, predicted - tp, y.sum(axis=1)[:, None] - tp


class _Column:
    """One label's probabilities sorted once, with its candidate thresholds and, for each, where
    the rows at or above it start in the sorted order."""

    def __init__(self, values: np.ndarray):
        self.order = np.argsort(values, kind="stable")
        self.candidates = _candidates(values)
        self.start = np.searchsorted(values[self.order], self.candidates, side="left")

    def above(self, weights: np.ndarray) -> np.ndarray:
        """For each candidate, the sum of ``weights`` (rows on axis 0) over the rows at or above it."""
        suffix = np.cumsum(weights[self.order][::-1], axis=0)[::-1]
        suffix = np.concatenate([suffix, np.zeros((1,) + weights.shape[1:])])
        return suffix[self.start]


def fit_global_threshold(probs: np.ndarray, y: np.ndarray, metric: str, beta: float = 2.0) -> float:
    """One threshold for every label maximising ``metric`` (one of
    :data:`MULTILABEL_DECISION_METRICS`; ``beta`` for ``fbeta``) on these rows.

    Candidates lie between the pooled probabilities' distinct values (or quantiles), plus 0.5,
    so 0.5 is replaced only by a strictly better threshold; of equally good ones the one
    nearest 0.5 is taken. With no rows, 0.5.
    """
    probs, y = _multilabel(probs, y, metric)
    if probs.size == 0:
        return 0.5
    candidates = _candidates(probs.ravel())
    tp, fp, fn = _grouped_counts(probs, y, candidates, by_label=metric == "f1_macro")
    if metric == "f1_micro":
        tp, fp, fn = tp.sum(axis=0), fp.sum(axis=0), fn.sum(axis=0)
    return _nearest_half(candidates, _counts_score(metric, tp, fp, fn, beta))


def fit_label_thresholds(probs: np.ndarray, y: np.ndarray, metric: str, beta: float = 2.0,
                         max_rounds: int = 10) -> np.ndarray:
    """One threshold per label ``(L,)`` maximising ``metric`` on these rows, starting from
    :func:`fit_global_threshold`'s.

    ``f1_macro`` is a mean of per-label scores, so each label is searched on its own (a label
    without positives is then predicted nowhere). The row-wise (``fbeta``, ``f1_samples``) and
    pooled (``f1_micro``) metrics couple the labels: coordinate ascent moves each label's
    threshold in turn to its best candidate given the others, keeping a move only when the
    metric strictly improves, until a round changes nothing. Either way the result is never
    worse on these rows than the global threshold. Of equally good moves the threshold nearest
    0.5 is taken. Each move is scored for all candidates from one sort of the label's column:
    a row's score takes one of two values, with the label predicted or not.
    """
    probs, y = _multilabel(probs, y, metric)
    n, num_labels = probs.shape
    start = fit_global_threshold(probs, y, metric, beta)
    thresholds = np.full(num_labels, start)
    if n == 0 or num_labels == 0:
        return thresholds
    pred = probs >= thresholds
    tp, fp, fn = (pred & y).sum(axis=1), (pred & ~y).sum(axis=1), (~pred & y).sum(axis=1)  # per row
    b = beta if metric == "fbeta" else 1.0
    columns = [_Column(probs[:, j]) for j in range(num_labels)]
    for _ in range(1 if metric == "f1_macro" else max_rounds):
        improved = False
        for j in range(num_labels):
            yj, old, col = y[:, j], pred[:, j], probs[:, j]
            btp, bfp, bfn = tp - (old & yj), fp - (old & ~yj), fn - (~old & yj)  # the row without label j
            column = columns[j]
            candidates = column.candidates
            if metric in ("fbeta", "f1_samples"):
                on = fbeta_from_counts(btp + yj, bfp + ~yj, bfn, b, 1.0)
                off = fbeta_from_counts(btp, bfp, bfn + yj, b, 1.0)
                values = (off.sum() + column.above(on - off)) / n
                current = float(np.where(old, on, off).mean())
            else:
                # f1_macro: label j alone (predicting nothing of a label without positives is right);
                # f1_micro: the pooled counts of the other labels plus label j's.
                base = np.zeros(3) if metric == "f1_macro" else np.array([btp.sum(), bfp.sum(), bfn.sum()])
                pos, every = column.above(np.stack([yj, np.ones(n)], axis=1).astype(np.float64)).T
                values = fbeta_from_counts(base[0] + pos, base[1] + every - pos, base[2] + yj.sum() - pos, 1.0, 1.0)
                current = float(fbeta_from_counts(base[0] + (old & yj).sum(), base[1] + (old & ~yj).sum(),
                                                  base[2] + (~old & yj).sum(), 1.0, 1.0))
            if not values.max() > current + 1e-12:
                continue
            thresholds[j] = _nearest_half(candidates, values)
            pred[:, j] = new = col >= thresholds[j]
            tp, fp, fn = btp + (new & yj), bfp + (new & ~yj), bfn + (~new & yj)
            improved = True
        if not improved:
            break
    # Guard against any floating-point disagreement between the running sums and the metric.
    if _score(metric, y, probs >= thresholds, beta) < _score(metric, y, probs >= start, beta):
        return np.full(num_labels, start)
    return thresholds


def apply_label_thresholds(probs: np.ndarray, thresholds: np.ndarray | float,
                           at_least_one: bool = False) -> np.ndarray:
    """``(n, L)`` int8 decisions: 1 where a label's probability is at or above its threshold (one
    per label, or one for all). ``at_least_one``: a row with no label predicted gets its most
    probable label (Planet's every image has a tag)."""
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs >= np.asarray(thresholds, dtype=np.float64)
    if at_least_one and probs.shape[1]:
        empty = np.flatnonzero(~pred.any(axis=1))
        pred[empty, probs[empty].argmax(axis=1)] = True
    return pred.astype(np.int8)


def nested_label_predictions(probs: np.ndarray, y: np.ndarray, folds: np.ndarray, metric: str,
                             beta: float = 2.0, per_label: bool = True,
                             at_least_one: bool = False) -> np.ndarray | None:
    """Each fold's rows decided (``(n, L)`` int8) by thresholds fitted on the other folds only:
    per label (:func:`fit_label_thresholds`) or one for all (:func:`fit_global_threshold`),
    then applied with ``at_least_one``. The metric of these decisions is an honest estimate of
    what fitted thresholds do on unseen rows. None with a single fold."""
    probs, y = _multilabel(probs, y, metric)
    folds = np.asarray(folds).reshape(-1)
    if len(np.unique(folds)) < 2:
        return None
    fit = fit_label_thresholds if per_label else fit_global_threshold
    out = np.zeros(probs.shape, dtype=np.int8)
    for fold in np.unique(folds):
        held = folds == fold
        out[held] = apply_label_thresholds(probs[held], fit(probs[~held], y[~held], metric, beta), at_least_one)
    return out


# Model outputs to probabilities: numpy alone, so a predictor without torch (ONNX Runtime) shares them.


def outputs_to_probs(outputs: np.ndarray, head: str, num_classes: int) -> np.ndarray:
    """Class probabilities from raw outputs (last axis).

    Classification: softmax. Sigmoid (a multilabel task): each output's own probability.
    Identity (a regression task): the values as they are. Regression (one graded score): the score, clipped to the grade
    range, is split between its two neighbouring grades, so the expected grade under these
    probabilities is the score itself and ordinal thresholds apply unchanged.
    """
    if head == "identity":  # values (a regression task): the outputs themselves
        return np.asarray(outputs, dtype=np.float64)
    if head.startswith("scaled "):  # values trained as a [0, 1] share of the training range (bce)
        lo, hi = (float(v) for v in head.split()[1:])
        return lo + (hi - lo) * 0.5 * (1.0 + np.tanh(0.5 * np.asarray(outputs, dtype=np.float64)))
    if head == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(outputs, dtype=np.float64)))  # no overflow in exp
    if head == "classification":
        z = outputs - outputs.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    score = np.clip(outputs[..., 0], 0, num_classes - 1)
    low = np.floor(score).astype(int)
    high = np.minimum(low + 1, num_classes - 1)
    frac = score - low
    probs = np.zeros(score.shape + (num_classes,), dtype=np.float64)
    np.put_along_axis(probs, low[..., None], (1 - frac)[..., None], axis=-1)
    np.put_along_axis(probs, high[..., None], (np.take_along_axis(probs, high[..., None], -1)[..., 0]
                                               + frac)[..., None], axis=-1)
    return probs


def combine_views(probs: np.ndarray, mean: str = "arithmetic") -> np.ndarray:
    """Average probabilities over the leading (view or model) axis; geometric renormalises."""
    if mean == "geometric":
        logp = np.log(np.clip(probs, 1e-12, 1.0)).mean(axis=0)
        p = np.exp(logp)
        return p / p.sum(axis=-1, keepdims=True)
    return probs.mean(axis=0)
