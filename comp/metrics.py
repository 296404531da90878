"""Classification metrics as pure functions of label arrays and probability matrices, by task.

Labels are class indices ``0 … num_classes-1``; ``probs`` is an ``(n, num_classes)`` matrix.
Metrics of an empty set are NaN, and so is a metric a degenerate set leaves undefined (ROC AUC
with one class present). Inputs of the wrong shape or with labels outside the class range raise
``ValueError`` (a programming error, not a user one).

A :class:`Task` says which metrics a competition is scored by (what each kind of task is scored
by is its kind's: :mod:`comp.kinds`). :func:`summarise` computes exactly the task's metrics, with
scikit-learn where it has them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

# The metrics of each task kind, in the order they are shown (the kinds say which apply: the top-k
# accuracies from 3 and 5 classes, :mod:`comp.kinds.multiclass`).
BINARY_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1",
                  "weighted_f1", "roc_auc", "pr_auc")
MULTICLASS_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "ovr_auc",
                      "top2_accuracy", "top3_accuracy")
ORDINAL_METRICS = MULTICLASS_METRICS + ("qwk", "mae")
REGRESSION_METRICS = ("rmse", "mae", "r2", "pearson", "spearman")  # :func:`regression_scores`
MULTILABEL_METRICS = ("mean_auc", "f1_macro", "f1_micro", "f1_samples", "fbeta", "map", "exact_match",
                      "log_loss")  # :func:`multilabel_scores`
METRIC_NAMES = tuple(dict.fromkeys(BINARY_METRICS + ORDINAL_METRICS + REGRESSION_METRICS + MULTILABEL_METRICS))

# Metrics of the probabilities alone: a decision rule (argmax, thresholds) does not change them.
PROB_METRICS = frozenset({"roc_auc", "pr_auc", "ovr_auc", "top2_accuracy", "top3_accuracy", "mean_auc", "map",
                          "log_loss"})

# How each monitorable quantity improves: checkpoint selection and early stopping read this.
MONITOR_MODES = {**{name: "max" for name in METRIC_NAMES}, "mae": "min", "rmse": "min", "log_loss": "min", "val_loss": "min"}

@dataclass(frozen=True)
class Task:
    """What a competition is: its kind, classes, metrics and the metric that picks checkpoints.

    Resolved once the classes are known (:func:`comp.recipe.task.resolve_task`) and passed
    explicitly to whatever computes or chooses by metrics.

    ``positive`` is the index of the positive class of a binary task (sensitivity, precision,
    F1, ROC/PR AUC and the tuned threshold are about it); ``metric`` the competition's
    leaderboard metric ("" when the recipe names none); ``monitor``/``mode`` the validation
    quantity that picks the best epoch and whether it improves upwards; ``names`` the classes'
    display names in class order (``[data] class_names``; the labels themselves without it).
    """

    kind: str
    num_classes: int
    metric_names: tuple[str, ...]
    monitor: str
    mode: str
    positive: int = 1
    metric: str = ""
    names: tuple[str, ...] = ()  # the classes' display names in class order ([data] class_names)
    beta: float = 2.0  # the beta of fbeta ([submission] beta; multilabel tasks)
    scale: tuple[float, ...] = ()  # regression with [loss] name = "bce": the training range (low, high) of the target

    def name(self, index: int) -> str:
        """Class ``index``'s display name (its index as text when the task has no names)."""
        return self.names[index] if index < len(self.names) else str(index)

    @property
    def decision_metric(self) -> str:
        """The metric a binary threshold is tuned for: the leaderboard metric, else the monitor,
        whichever depends on the decision; else balanced accuracy (Youden's J)."""
        for name in (self.metric, self.monitor):
            if name in self.metric_names and name not in PROB_METRICS:
                return name
        return "balanced_accuracy"

    @property
    def headline(self) -> str:
        """The metric shown first: the leaderboard's, else the monitor (else accuracy)."""
        if self.metric:
            return self.metric
        return self.monitor if self.monitor in self.metric_names else "accuracy"


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


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray,
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
    f1, support, predicted = per_class_f1(y_true, y_pred, num_classes)
    seen = (support > 0) | (predicted > 0)
    return float(f1[seen].mean()) if seen.any() else math.nan


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """F1 per class weighted by the class's true support (as sklearn's ``weighted``)."""
    f1, support, _ = per_class_f1(y_true, y_pred, num_classes)
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


def summarise(task: Task, y_true: np.ndarray, probs: np.ndarray | None = None,
              y_pred: np.ndarray | None = None) -> dict[str, float]:
    """The task's metrics (``task.metric_names``, in order) of predictions against the truth.

    ``y_pred`` defaults to the argmax of ``probs``; without ``probs`` (a labels-only
    submission) the probability metrics (ROC/PR AUC, top-k) are left out.
    """
    if probs is None and y_pred is None:
        raise ValueError("summarise needs probs or y_pred")
    n = task.num_classes
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != n:
            raise ValueError(f"probs must be (rows, {n}), got shape {probs.shape}")
        y_pred = probs.argmax(axis=1) if y_pred is None else y_pred
    y_true, y_pred = _pair(y_true, y_pred, n)
    if probs is not None and len(probs) != len(y_true):
        raise ValueError(f"y_true has {len(y_true)} rows but probs has {len(probs)}")
    out = {}
    for name in task.metric_names:
        if name in PROB_METRICS and probs is None:
            continue
        out[name] = math.nan if len(y_true) == 0 else float(_METRICS[name](task, y_true, y_pred, probs))
    return out


def _sk():
    from sklearn import metrics as skm

    return skm


def _quiet(fn, *args, **kwargs):
    """A scikit-learn metric with its warnings about absent classes silenced (the value stands)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (sklearn's ``balanced_accuracy_score``)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(_quiet(_sk().balanced_accuracy_score, y_true, y_pred)) if len(y_true) else math.nan


def positive_recall(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> float:
    """Recall of class ``positive`` (sensitivity; specificity with the negative class); NaN when
    the class is absent from ``y_true``."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(_sk().recall_score(y_true == positive, y_pred == positive, zero_division=np.nan))


def positive_precision(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> float:
    """Precision of class ``positive``; 0 when it is never predicted (sklearn's zero_division=0)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(_sk().precision_score(y_true == positive, y_pred == positive, zero_division=0))


def positive_f1(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> float:
    """F1 of class ``positive``; 0 when it is neither present nor predicted."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(_sk().f1_score(y_true == positive, y_pred == positive, zero_division=0))


def roc_auc(y_true: np.ndarray, scores: np.ndarray, positive: int) -> float:
    """ROC AUC of ``scores`` for class ``positive`` against the rest; NaN with one class present."""
    y = _labels(y_true, "y_true") == positive
    if y.all() or not y.any():
        return math.nan
    return float(_sk().roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def pr_auc(y_true: np.ndarray, scores: np.ndarray, positive: int) -> float:
    """Average precision (PR AUC) of ``scores`` for class ``positive``; NaN without positives."""
    y = _labels(y_true, "y_true") == positive
    if not y.any():
        return math.nan
    return float(_sk().average_precision_score(y, np.asarray(scores, dtype=np.float64)))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` most probable (sklearn's
    ``top_k_accuracy_score`` over all the classes)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = _labels(y_true, "y_true", probs.shape[1])
    if not len(y_true):
        return math.nan
    return float(_quiet(_sk().top_k_accuracy_score, y_true, probs, k=k, labels=np.arange(probs.shape[1])))


def mean_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean |predicted grade - true grade| (sklearn's ``mean_absolute_error``)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(_sk().mean_absolute_error(y_true, y_pred)) if len(y_true) else math.nan


def binary_from_counts(name: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                       tn: np.ndarray) -> np.ndarray:
    """A decision metric of a binary task from confusion counts (arrays: one value per candidate
    threshold), equal to :func:`summarise`'s with both classes present; used to tune thresholds.
    Undefined ratios are 0 (as sklearn's zero_division=0)."""
    tp, fp, fn, tn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn, tn))

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)

    n = tp + fp + fn + tn
    if name == "accuracy":
        return ratio(tp + tn, n)
    if name == "sensitivity":
        return ratio(tp, tp + fn)
    if name == "specificity":
        return ratio(tn, tn + fp)
    if name == "balanced_accuracy":
        return (ratio(tp, tp + fn) + ratio(tn, tn + fp)) / 2
    if name == "precision":
        return ratio(tp, tp + fp)
    if name == "f1":
        return ratio(2 * tp, 2 * tp + fp + fn)
    if name == "weighted_f1":
        f1_pos, f1_neg = ratio(2 * tp, 2 * tp + fp + fn), ratio(2 * tn, 2 * tn + fn + fp)
        return ratio(f1_pos * (tp + fn) + f1_neg * (tn + fp), n)
    raise ValueError(f"{name!r} is not a decision metric of a binary task")


def _probs_of(probs: np.ndarray, task: Task) -> np.ndarray:
    return probs[:, task.positive]


_METRICS = {
    "accuracy": lambda t, y, p, pr: accuracy(y, p),
    "balanced_accuracy": lambda t, y, p, pr: balanced_accuracy(y, p),
    "sensitivity": lambda t, y, p, pr: positive_recall(y, p, t.positive),
    "specificity": lambda t, y, p, pr: positive_recall(y, p, 1 - t.positive),
    "precision": lambda t, y, p, pr: positive_precision(y, p, t.positive),
    "f1": lambda t, y, p, pr: positive_f1(y, p, t.positive),
    "macro_f1": lambda t, y, p, pr: macro_f1(y, p, t.num_classes),
    "weighted_f1": lambda t, y, p, pr: weighted_f1(y, p, t.num_classes),
    "roc_auc": lambda t, y, p, pr: roc_auc(y, _probs_of(pr, t), t.positive),
    "pr_auc": lambda t, y, p, pr: pr_auc(y, _probs_of(pr, t), t.positive),
    "ovr_auc": lambda t, y, p, pr: ovr_auc(y, pr),
    "top2_accuracy": lambda t, y, p, pr: top_k_accuracy(y, pr, 2),
    "top3_accuracy": lambda t, y, p, pr: top_k_accuracy(y, pr, 3),
    "qwk": lambda t, y, p, pr: quadratic_weighted_kappa(y, p, t.num_classes),
    "mae": lambda t, y, p, pr: mean_absolute_error(y, p),
}


# --------------------------------------------------------------------------- multi-label and continuous targets
#
# A multi-label competition scores an ``(n, L)`` 0/1 label matrix against ``(n, L)`` probabilities
# (one sigmoid per label) and the 0/1 decisions made from them; a regression one scores values.

LOG_LOSS_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before the log (as Keras does)


def _label_matrix(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, labels), got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 values")
    return y.astype(np.int8)


def _multilabel_inputs(y_true: np.ndarray, probs: np.ndarray | None,
                       pred: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    y_true = _label_matrix(y_true, "y_true")
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != y_true.shape:
            raise ValueError(f"probs has shape {probs.shape} but y_true has {y_true.shape}")
    if pred is not None:
        pred = _label_matrix(pred, "pred")
        if pred.shape != y_true.shape:
            raise ValueError(f"pred has shape {pred.shape} but y_true has {y_true.shape}")
    return y_true, probs, pred


def fbeta_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float = 1.0,
                      zero_division: float = 1.0) -> np.ndarray:
    """F-beta ``(1+β²)·tp / ((1+β²)·tp + β²·fn + fp)`` elementwise, ``zero_division`` where
    nothing is true or predicted (sklearn's ``fbeta_score`` from the same counts)."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    b2 = float(beta) ** 2
    denom = (1 + b2) * tp + b2 * fn + fp
    out = np.full(np.broadcast(tp, fp, fn).shape, float(zero_division))
    return np.divide((1 + b2) * tp, denom, out=out, where=denom > 0)


def multilabel_scores(y_true: np.ndarray, probs: np.ndarray, pred: np.ndarray,
                      beta: float = 2.0) -> dict[str, float]:
    """The multi-label metrics of ``probs`` and the 0/1 decisions ``pred`` (both ``(n, L)``).

    - ``mean_auc``: ROC AUC of each label's column, averaged over the labels with both classes
      present (Plant Pathology, RANZCR); NaN when no label has both.
    - ``f1_macro``: F1 per label, averaged over the labels true or predicted somewhere (a label
      absent from both is left out, as :func:`macro_f1` does: sklearn's ``zero_division=nan``).
    - ``f1_micro``: F1 of the pooled counts.
    - ``f1_samples``/``fbeta``: F1 / F-beta (``beta``; Planet's F2) of each row, averaged over the
      rows. A row with no true and no predicted tag scores 1 (``zero_division=1``: it is right);
      one with tags on one side only scores 0.
    - ``map``: average precision of each label, averaged over the labels with a positive row.
    - ``exact_match``: share of rows whose whole label set is right (subset accuracy).
    - ``log_loss``: mean binary cross-entropy over all cells, ``probs`` clipped to
      ``[1e-7, 1 - 1e-7]``.

    Every value is NaN on an empty set.
    """
    names = ("mean_auc", "f1_macro", "f1_micro", "f1_samples", "fbeta", "map", "exact_match", "log_loss")
    y_true, probs, pred = _multilabel_inputs(y_true, probs, pred)
    if len(y_true) == 0 or y_true.shape[1] == 0:
        return dict.fromkeys(names, math.nan)
    skm = _sk()
    both = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    positive = [j for j in range(y_true.shape[1]) if y_true[:, j].any()]
    p = np.clip(probs, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    macro = _quiet(skm.f1_score, y_true, pred, average="macro", zero_division=np.nan)
    out = {
        "mean_auc": float(np.mean([skm.roc_auc_score(y_true[:, j], probs[:, j]) for j in both]))
        if both else math.nan,
        "f1_macro": float(macro),
        "f1_micro": float(skm.f1_score(y_true, pred, average="micro", zero_division=1.0)),
        "f1_samples": float(skm.f1_score(y_true, pred, average="samples", zero_division=1.0)),
        "fbeta": float(skm.fbeta_score(y_true, pred, beta=beta, average="samples", zero_division=1.0)),
        "map": float(np.mean([skm.average_precision_score(y_true[:, j], probs[:, j]) for j in positive]))
        if positive else math.nan,
        "exact_match": float((y_true == pred).all(axis=1).mean()),
        "log_loss": float(-(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean()),
    }
    return out


def per_label_table(y_true: np.ndarray, probs: np.ndarray, pred: np.ndarray) -> list[dict]:
    """One row per label (in column order): ``label`` (its index), ``support`` (true rows),
    ``predicted`` (predicted rows), ``auc`` (NaN unless both classes are present), ``ap``
    (average precision; NaN without a positive), ``precision``, ``recall`` and ``f1`` (0 where
    undefined, NaN for F1 when the label is neither true nor predicted)."""
    y_true, probs, pred = _multilabel_inputs(y_true, probs, pred)
    skm = _sk()
    rows = []
    for j in range(y_true.shape[1]):
        y, p, d = y_true[:, j], probs[:, j], pred[:, j]
        support, predicted = int(y.sum()), int(d.sum())
        tp = int((y & d).sum())
        rows.append({
            "label": j,
            "support": support,
            "predicted": predicted,
            "auc": float(skm.roc_auc_score(y, p)) if 0 < support < len(y) else math.nan,
            "ap": float(skm.average_precision_score(y, p)) if support else math.nan,
            "precision": tp / predicted if predicted else 0.0,
            "recall": tp / support if support else 0.0,
            "f1": float(fbeta_from_counts(tp, predicted - tp, support - tp, 1.0, math.nan)),
        })
    return rows


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² (sklearn's ``r2_score``: 1.0 for a perfect fit of a constant target, else 0.0
    there), Pearson's and Spearman's correlation (NaN when either side is constant) of predicted
    values against true ones; NaN on an empty set. Non-finite values raise ``ValueError``."""
    names = ("rmse", "mae", "r2", "pearson", "spearman")
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("regression_scores needs finite values")
    if len(y_true) == 0:
        return dict.fromkeys(names, math.nan)
    from scipy import stats

    error = y_pred - y_true
    constant = len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    return {
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(_sk().r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan,
        "pearson": math.nan if constant else float(stats.pearsonr(y_true, y_pred)[0]),
        "spearman": math.nan if constant else float(stats.spearmanr(y_true, y_pred)[0]),
    }
