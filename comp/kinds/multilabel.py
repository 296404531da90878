"""Any number of labels per image (``[data] task = "multilabel"``): Planet's tag lists, HPA's class
numbers, Plant Pathology's and RANZCR's one 0/1 column per label.

The run's "classes" are the labels; its ``(rows, labels)`` matrix holds one sigmoid probability
per label (they do not sum to 1), so TTA, checkpoint, fold and run ensembles and blends average
each label's probability as they average a class's. The truth is an ``(n, L)`` 0/1 matrix. A
label is predicted where its probability reaches its threshold: 0.5 without fitted values, one
threshold for all labels (``[predict] decision = "threshold"``) or one per label
(``"label_thresholds"``), both fitted on the out-of-fold rows when a run merges, for the
leaderboard metric when it depends on the decision (F-beta, F1), else macro F1.

In the run's own CSVs (oof.csv, a fold's predictions) a row's labels are one cell: the labels'
names joined by a space, or by ``|`` when a name holds a space (RANZCR's "ETT - Abnormal"). The
submission writes them as the competition does (:mod:`comp.predict.submission`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from comp.decisions import (MULTILABEL_DECISION_METRICS, apply_label_thresholds, fit_global_threshold,
                            fit_label_thresholds, nested_label_predictions)
from comp.kinds.base import Decision, DecisionRule, Kind, Mismatch
from comp.metrics import LOG_LOSS_EPS, MULTILABEL_METRICS, PROB_METRICS, Task, multilabel_scores

FALLBACK_METRIC = "f1_macro"  # what thresholds are fitted for when neither metric nor monitor depends on them


def tuned_for(task: Task, metric: str = "") -> str:
    """The metric multi-label thresholds are fitted for: ``metric`` (a blend's), the leaderboard
    metric or the monitor when it depends on the decision, else macro F1."""
    for name in (metric, task.metric, task.monitor):
        if name in MULTILABEL_DECISION_METRICS:
            return name
    return FALLBACK_METRIC


def separator(classes: Sequence[str]) -> str:
    """How the run's CSVs join a row's labels: a space, or ``|`` when a label's name holds a space."""
    return "|" if any(any(ch.isspace() for ch in str(c)) for c in classes) else " "


def join_labels(Y: np.ndarray, classes: Sequence[str], sep: str | None = None) -> np.ndarray:
    """Each row's labels as one cell, in label order ("" for a row with none)."""
    sep = separator(classes) if sep is None else sep
    names = [str(c) for c in classes]
    return np.asarray([sep.join(names[j] for j in np.flatnonzero(row)) for row in np.asarray(Y)], dtype=object)


def split_labels(cells: Sequence, classes: Sequence[str]) -> np.ndarray:
    """The ``(n, L)`` int8 matrix of cells written by :func:`join_labels`; a name that is not a
    label is a ValueError naming it."""
    sep = separator(classes)
    index = {str(c): j for j, c in enumerate(classes)}
    Y = np.zeros((len(cells), len(classes)), dtype=np.int8)
    for i, cell in enumerate(cells):
        if cell is None or (isinstance(cell, float) and math.isnan(cell)):
            continue
        for tag in (str(cell).split() if sep == " " else str(cell).split(sep)):
            tag = tag.strip()
            if not tag:
                continue
            if tag not in index:
                raise ValueError(f"label {tag!r} is not one of {list(index)[:10]}")
            Y[i, index[tag]] = 1
    return Y


def _scored(task: Task, metric: str):
    return lambda y, probs, pred: MULTILABEL.summarise(task, y, probs, pred)[metric]


class Half(DecisionRule):
    """Each label where its probability is at least 0.5 (``[predict] decision = "argmax"``)."""

    name = "half"
    label = "0.5"

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return apply_label_thresholds(probs, 0.5, decision.at_least_one)

    def figure(self, task: Task):
        metric = tuned_for(task)
        return metric, _scored(task, metric)

    def describe(self, decision: Decision, names: Sequence[str]) -> str:
        return "each label at P >= 0.5" + (", at least one per row" if decision.at_least_one else "")


class LabelThresholds(DecisionRule):
    """One threshold per label, fitted on the OOF rows (the merge fits it and the global one)."""

    name = "label_thresholds"
    label = "label thresholds"
    fitted = True
    needs = "needs thresholds fitted on out-of-fold predictions (run `comp fit` with validation rows)"
    damaged = "holds no label thresholds ({error}); re-run `comp fit` to fit them"
    per_label = True

    def invalid(self, decision: Decision) -> str:
        values = np.asarray(decision.cuts, dtype=np.float64)
        return "" if values.size and np.isfinite(values).all() else f"thresholds must be numbers, got {values.tolist()}"

    def fit(self, probs: np.ndarray, y: np.ndarray, task: Task, metric: str = "") -> Decision:
        metric = tuned_for(task, metric)
        return Decision(self.name, cuts=fit_label_thresholds(probs, y, metric, task.beta),
                        threshold=fit_global_threshold(probs, y, metric, task.beta))

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return apply_label_thresholds(probs, decision.cuts, decision.at_least_one)

    def nested(self, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, task: Task,
               metric: str = "", at_least_one: bool = False) -> np.ndarray | None:
        return nested_label_predictions(probs, y, folds, tuned_for(task, metric), task.beta,
                                        per_label=self.per_label, at_least_one=at_least_one)

    def decided(self, probs, y, folds, task, decision):
        from comp.kinds.base import Decided

        plain = Decision(HALF.name, at_least_one=decision.at_least_one)
        return Decided(HALF.apply(plain, probs), self.apply(decision, probs),
                       self.nested(probs, y, folds, task, at_least_one=decision.at_least_one))

    def figure(self, task: Task):
        metric = tuned_for(task)
        return metric, _scored(task, metric)

    def to_json(self, decision: Decision, labels: Sequence[str], metric: str = "") -> dict[str, Any]:
        saved: dict[str, Any] = {"label_thresholds": {str(c): float(t) for c, t in zip(labels, decision.cuts)},
                                 "global_threshold": float(decision.threshold)}
        if metric:
            saved["metric"] = metric
        return saved

    def from_json(self, saved: dict[str, Any], labels: Sequence[str]) -> Decision:
        table = saved["label_thresholds"]
        if not isinstance(table, dict):
            raise TypeError("label_thresholds is not a table")
        if sorted(table) != sorted(str(c) for c in labels):
            raise Mismatch(f"its labels {sorted(table)[:10]} are not the run's labels {list(labels)[:10]}")
        return Decision(self.name, cuts=np.asarray([float(table[str(c)]) for c in labels]),
                        threshold=float(saved["global_threshold"]))

    def owns(self, saved: dict[str, Any]) -> bool:
        return "label_thresholds" in saved

    def describe(self, decision: Decision, names: Sequence[str]) -> str:
        return f"{self.label} ({self.values(decision, names)})" + (
            ", at least one per row" if decision.at_least_one else "")

    def values(self, decision: Decision, names: Sequence[str]) -> str:
        shown = ", ".join(f"{n} {t:.2f}" for n, t in list(zip(names, decision.cuts))[:8])
        return shown + (f", ... ({len(names)} labels)" if len(names) > 8 else "")

    def fitted_values(self, decision: Decision) -> list[float]:
        return [float(t) for t in decision.cuts]

    def fitted_for(self, task: Task) -> str:
        return tuned_for(task)

    def report(self, probs, y, folds, task, decision, labels):
        metric = tuned_for(task)
        decided = self.decided(probs, y, folds, task, decision)
        score = _scored(task, metric)
        key = self.name if self.per_label else "threshold"
        figures = {f"{metric}_{key}": score(y, probs, decided.in_sample)}
        if decided.nested is not None:
            figures[f"{metric}_{key}_nested"] = score(y, probs, decided.nested)
        note = (f"{self.label.capitalize()} fitted on the OOF rows for {metric}: {metric}_{key} scores them on the rows "
                f"they were fitted on (optimistic), *_nested decides each fold by thresholds fitted on the other folds.")
        return figures, note


class GlobalThreshold(LabelThresholds):
    """One threshold for every label (``[predict] decision = "threshold"`` of a multilabel task),
    fitted with the label thresholds and kept beside them in thresholds.json."""

    name = "global_threshold"
    label = "one threshold"
    damaged = "holds no multi-label threshold ({error}); re-run `comp fit` to fit it"
    per_label = False

    def invalid(self, decision: Decision) -> str:
        return "" if np.isfinite(decision.threshold) else f"the threshold must be a number, got {decision.threshold}"

    def fit(self, probs: np.ndarray, y: np.ndarray, task: Task, metric: str = "") -> Decision:
        t = fit_global_threshold(probs, y, tuned_for(task, metric), task.beta)
        return Decision(self.name, cuts=np.full(np.asarray(probs).shape[1], t), threshold=t)

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return apply_label_thresholds(probs, decision.threshold, decision.at_least_one)

    def from_json(self, saved: dict[str, Any], labels: Sequence[str]) -> Decision:
        t = float(saved["global_threshold"])
        return Decision(self.name, cuts=np.full(len(labels), t), threshold=t)

    def owns(self, saved: dict[str, Any]) -> bool:
        return "global_threshold" in saved and "label_thresholds" not in saved

    def values(self, decision: Decision, names: Sequence[str]) -> str:
        return f"P >= {decision.threshold:.3f} for every label"

    def fitted_values(self, decision: Decision) -> list[float]:
        return [float(decision.threshold)]

    def misuse(self, what: str, kind: Kind) -> str:
        return f'{what} = "threshold" is for binary and multilabel tasks and this is a {kind.name} task'


HALF, LABEL_THRESHOLDS, GLOBAL_THRESHOLD = Half(), LabelThresholds(), GlobalThreshold()


class Multilabel(Kind):
    name = "multilabel"
    metrics = MULTILABEL_METRICS
    default_monitor = "mean_auc"
    rules = (LABEL_THRESHOLDS, GLOBAL_THRESHOLD)
    plain_rule = HALF
    default_loss = "bce"
    label_sets = True

    def activation(self, head: str, task: Task | None = None) -> str:
        return "sigmoid"

    def check_classes(self, labels: Sequence[str]) -> str:
        if not labels:
            return "a multilabel task needs at least one label; the training rows have none"
        return ""

    def describe(self, task: Task, labels: Sequence[str]) -> str:
        return f"task multilabel ({task.num_classes} labels)"

    def rule_for(self, decision: str, clip: bool) -> str:
        return {"argmax": HALF.name, "threshold": GLOBAL_THRESHOLD.name}.get(decision, decision)

    def class_counts(self, labels: np.ndarray, targets: np.ndarray | None, num_classes: int) -> np.ndarray:
        return (np.asarray(targets) >= 0.5).sum(axis=0).astype(np.int64)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """Every label must be sure: the least sure label's ``max(p, 1 - p)``."""
        probs = np.asarray(probs, dtype=np.float64)
        return np.maximum(probs, 1 - probs).min(axis=1)

    def decided_counts(self, probs: np.ndarray) -> np.ndarray:
        return (np.asarray(probs) >= 0.5).sum(axis=0)

    def strata(self, labels: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
        return (np.asarray(targets) >= 0.5).astype(np.int8)

    def summarise(self, task: Task, y: np.ndarray, probs: np.ndarray | None = None,
                  pred: np.ndarray | None = None) -> dict[str, float]:
        if pred is None:
            pred = apply_label_thresholds(probs, 0.5)
        scores = multilabel_scores(y, probs if probs is not None else pred, pred, beta=task.beta)
        return {name: scores[name] for name in task.metric_names if probs is not None or name not in PROB_METRICS}

    def truth(self, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        from comp.errors import CompError

        try:
            return split_labels(list(labels), classes)
        except ValueError as err:
            raise CompError(f"labels outside the run's labels: {err}") from None

    def row_labels(self, labels: np.ndarray, targets: np.ndarray | None, classes: Sequence[str]) -> np.ndarray:
        return join_labels(np.asarray(targets) >= 0.5, classes)

    def as_labels(self, pred: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        return join_labels(pred, classes)

    def mistakes(self, y: np.ndarray, probs: np.ndarray, limit: int) -> np.ndarray:
        """The rows with the largest loss summed over their labels (binary cross-entropy)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        y = np.asarray(y, dtype=np.float64)
        loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)
        return np.argsort(-loss, kind="stable")[:limit]


MULTILABEL = Multilabel()
