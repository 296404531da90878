"""Classification metrics as pure functions of label arrays and probability matrices.

Labels are class indices ``0 … num_classes-1``; ``probs`` is an ``(n, num_classes)`` matrix.
Metrics of an empty set are NaN. Inputs of the wrong shape or with labels outside the class
range raise ``ValueError`` (a programming error, not a user one).
"""

from __future__ import annotations

import math

import numpy as np

# How each monitorable quantity improves: checkpoint selection and early stopping read this.
MONITOR_MODES = {"accuracy": "max", "macro_f1": "max", "qwk": "max", "auc": "max", "val_loss": "min"}


def _labels(y: np.ndarray, name: str, num_classes: int | None = None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.array_equal(y, np.round(y)):
            raise ValueError(f"{name} must hold class indices, got non-integer values")
    y = y.astype(np.int64)
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} has values outside 0..{num_classes - 1}: "
                         f"{sorted(set(y[(y < 0) | (y >= num_classes)].tolist()))[:5]}")
    return y


def _pair(y_true: np.ndarray, y_pred: np.ndarray,
          num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels(y_true, "y_true", num_classes), _labels(y_pred, "y_pred", num_classes)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}")
    return y_true, y_pred


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` counts: true class on rows, predicted class on columns."""
    y_true, y_pred = _pair(y_true, y_pred, num_classes)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total, i.e. per-true-class rates (rows without samples stay 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape, dtype=np.float64), where=totals > 0)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows predicted correctly (NaN when empty)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else math.nan


def per_class_precision_recall(y_true: np.ndarray, y_pred: np.ndarray,
                               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall per class; 0 where a class is never predicted / never present."""
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    return precision, recall


def _f1_per_class(y_true: np.ndarray, y_pred: np.ndarray,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F1, true support, predicted count) per class; F1 is 0 where undefined."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    precision, recall = per_class_precision_recall(y_true, y_pred, num_classes)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return f1, cm.sum(axis=1), cm.sum(axis=0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean F1 over the classes seen in labels or predictions (as sklearn's ``macro``).

    A class absent from both is left out rather than counted as F1 = 0.
    """
    f1, support, predicted = _f1_per_class(y_true, y_pred, num_classes)
    seen = (support > 0) | (predicted > 0)
    return float(f1[seen].mean()) if seen.any() else math.nan


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """F1 per class weighted by the class's true support (as sklearn's ``weighted``)."""
    f1, support, _ = _f1_per_class(y_true, y_pred, num_classes)
    total = support.sum()
    return float((f1 * support).sum() / total) if total else math.nan


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights over grades ``0 … num_classes-1``.

    ``1 - Σ W·O / Σ W·E`` with ``W[i, j] = (i - j)²``, ``O`` the confusion matrix and ``E`` the
    outer product of its row and column totals divided by ``n``. The weights use the full grade
    range, as Kaggle's QWK does; this equals sklearn's
    ``cohen_kappa_score(y_true, y_pred, weights="quadratic", labels=range(num_classes))`` (without
    ``labels`` sklearn re-indexes the grades that occur, which differs when a grade is missing).

    Degenerate case: ``Σ W·E = 0`` only when truth and predictions all sit on one and the same
    grade (or ``num_classes == 1``); they then agree perfectly and the result is 1.0 (sklearn
    gives NaN). An empty input gives NaN.
    """
    observed = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    n = observed.sum()
    if n == 0:
        return math.nan
    grades = np.arange(num_classes, dtype=np.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    numerator, denominator = (weights * observed).sum(), (weights * expected).sum()
    if denominator == 0:
        return 1.0 if numerator == 0 else 0.0  # numerator is necessarily 0 here; kept for safety
    return float(1.0 - numerator / denominator)


def ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y_true``.

    Each present class ``c`` scores ``probs[:, c]`` against "not c"; classes absent from
    ``y_true`` are skipped (their AUC is undefined). NaN when fewer than 2 classes are present.
    Equals sklearn's ``roc_auc_score(multi_class="ovr", average="macro")`` when all are present.
    """
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (rows, classes), got shape {probs.shape}")
    y_true = _labels(y_true, "y_true", probs.shape[1])
    if len(y_true) != len(probs):
        raise ValueError(f"y_true has {len(y_true)} rows but probs has {len(probs)}")
    present = np.unique(y_true)
    if len(present) < 2:
        return math.nan
    return float(np.mean([roc_auc_score(y_true == c, probs[:, c]) for c in present]))


def summarise(y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray | None = None) -> dict[str, float]:
    """accuracy, macro_f1, weighted_f1, qwk and auc; ``y_pred`` defaults to the argmax of ``probs``."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be 2-D (rows, classes), got shape {probs.shape}")
    num_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1) if y_pred is None else y_pred
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, num_classes),
        "weighted_f1": weighted_f1(y_true, y_pred, num_classes),
        "qwk": quadratic_weighted_kappa(y_true, y_pred, num_classes),
        "auc": ovr_auc(y_true, probs),
    }
