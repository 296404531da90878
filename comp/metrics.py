"""Classification metrics as pure functions of label arrays and probability matrices."""

from __future__ import annotations

import math

import numpy as np

MONITOR_MODES = {"accuracy": "max", "macro_f1": "max", "qwk": "max", "auc": "max", "val_loss": "min"}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true classes on rows and predicted classes on columns."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (rows without samples stay 0)."""
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(cm, totals, out=np.zeros(cm.shape, dtype=np.float64), where=totals > 0)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
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


def _f1_per_class(y_true, y_pred, num_classes) -> tuple[np.ndarray, np.ndarray]:
    precision, recall = per_class_precision_recall(y_true, y_pred, num_classes)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    support = np.bincount(np.asarray(y_true, dtype=np.int64), minlength=num_classes)
    return f1, support


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean F1 over classes present in either labels or predictions (as sklearn)."""
    f1, support = _f1_per_class(y_true, y_pred, num_classes)
    present = (support > 0) | (np.bincount(np.asarray(y_pred, dtype=np.int64), minlength=num_classes) > 0)
    return float(f1[present].mean()) if present.any() else math.nan


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """F1 per class weighted by the class's support."""
    f1, support = _f1_per_class(y_true, y_pred, num_classes)
    return float((f1 * support).sum() / support.sum()) if support.sum() else math.nan


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights (the retinopathy competitions' metric).

    When both raters use a single identical class the expected disagreement is zero: kappa is
    1.0 if they agree everywhere, else 0.0.
    """
    if not len(y_true):
        return math.nan
    observed = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    i, j = np.indices((num_classes, num_classes))
    weights = (i - j) ** 2 / max(num_classes - 1, 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    denom = (weights * expected).sum()
    if denom == 0:
        return 1.0 if (weights * observed).sum() == 0 else 0.0
    return float(1.0 - (weights * observed).sum() / denom)


def ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y_true`` (NaN if fewer than 2)."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true, dtype=np.int64)
    present = np.unique(y_true)
    if len(present) < 2:
        return math.nan
    scores = [roc_auc_score(y_true == c, probs[:, c]) for c in present]
    return float(np.mean(scores))


def summarise(y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray | None = None) -> dict[str, float]:
    """accuracy, macro_f1, weighted_f1, qwk and auc of predictions (argmax of ``probs`` by default)."""
    num_classes = probs.shape[1]
    y_pred = probs.argmax(axis=1) if y_pred is None else y_pred
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, num_classes),
        "weighted_f1": weighted_f1(y_true, y_pred, num_classes),
        "qwk": quadratic_weighted_kappa(y_true, y_pred, num_classes),
        "auc": ovr_auc(y_true, probs),
    }
