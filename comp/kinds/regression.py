"""Continuous targets (``[data] task = "regression"``): one numeric label column, one output.

The run's single "class" is the label column itself, so the pipeline's ``(rows, classes)``
matrices hold one column of predicted values: TTA, checkpoint, fold and run ensembles average
values, and a blend's weighted mean is a weighted mean of values. The table's ``targets`` carry
the values the loss trains on; its ``labels`` the quantile bin of each value, which folds are
stratified on (``[cv] bins``). A merge fits the training range on the out-of-fold rows
(thresholds.json), and prediction clips to it unless ``[predict] clip = false``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from comp.kinds.base import Decision, DecisionRule, Kind
from comp.metrics import REGRESSION_METRICS, Task, regression_scores


def values_of(probs: np.ndarray) -> np.ndarray:
    """The predicted values: the one column of a regression run's output matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs[:, 0] if probs.ndim == 2 else probs


def _score(task: Task, metric: str):
    return lambda y, probs, pred: regression_scores(y, pred)[metric]


class Value(DecisionRule):
    """The predicted value as it is."""

    name = "value"
    label = "as predicted"

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return values_of(probs)

    def figure(self, task: Task):
        return task.headline, _score(task, task.headline)


class ClipToRange(DecisionRule):
    """The predicted value clipped to the range of the targets it was fitted on (the training
    range: a value outside it is a sure error)."""

    name = "clip"
    label = "clipped"
    fitted = True
    needs = "needs the training range, recorded when a run with validation rows merges (run `comp fit`)"

    def fit(self, probs: np.ndarray, y: np.ndarray, task: Task, metric: str = "") -> Decision:
        y = np.asarray(y, dtype=np.float64)
        return Decision(self.name, cuts=np.array([y.min(), y.max()]) if len(y) else np.array([-np.inf, np.inf]))

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        lo, hi = decision.cuts
        return np.clip(values_of(probs), lo, hi)

    def invalid(self, decision: Decision) -> str:
        cuts = decision.cuts
        if cuts.shape != (2,) or np.isnan(cuts).any() or cuts[0] > cuts[1]:
            return f"range must be [low, high], got {cuts.tolist()}"
        return ""

    def figure(self, task: Task):
        return task.headline, _score(task, task.headline)

    def to_json(self, decision: Decision, labels: Sequence[str], metric: str = "") -> dict[str, Any]:
        return {"range": [float(c) for c in decision.cuts]}

    def from_json(self, saved: dict[str, Any], labels: Sequence[str]) -> Decision:
        return Decision(self.name, cuts=np.asarray(saved["range"], dtype=np.float64))

    def owns(self, saved: dict[str, Any]) -> bool:
        return "range" in saved

    def describe(self, decision: Decision, names: Sequence[str]) -> str:
        lo, hi = decision.cuts
        return f"values clipped to the training range [{lo:g}, {hi:g}]"

    def values(self, decision: Decision, names: Sequence[str]) -> str:
        lo, hi = decision.cuts
        return f"range [{lo:g}, {hi:g}]"

    def fitted_values(self, decision: Decision) -> list[float]:
        return [float(c) for c in decision.cuts]

    def report(self, probs, y, folds, task, decision, labels):
        metric = task.headline
        decided = self.decided(probs, y, folds, task, decision)
        figures = {f"{metric}_clipped": regression_scores(y, decided.in_sample)[metric]}
        if decided.nested is not None:
            figures[f"{metric}_clipped_nested"] = regression_scores(y, decided.nested)[metric]
        lo, hi = decision.cuts
        note = (f"Predictions clipped to the training range [{lo:g}, {hi:g}]; {metric}_clipped scores the clipped "
                "values, *_nested with each fold clipped to the range of the other folds.")
        return figures, note


VALUE, CLIP = Value(), ClipToRange()


class Regression(Kind):
    name = "regression"
    metrics = REGRESSION_METRICS
    default_monitor = "rmse"
    rules = (CLIP,)
    plain_rule = VALUE
    continuous = True
    default_loss = "mse"

    def check_classes(self, labels: Sequence[str]) -> str:
        return ""

    def activation(self, head: str, task: Task | None = None) -> str:
        """The outputs as they are; a run trained with ``[loss] name = "bce"`` on the target scaled
        to [0, 1] by its training range (``task.scale``): that range times the sigmoid."""
        if task is not None and task.scale:
            lo, hi = task.scale
            return f"scaled {lo!r} {hi!r}"
        return "identity"

    def describe(self, task: Task, labels: Sequence[str]) -> str:
        return f"task regression (target {labels[0]!r})"

    def rule_for(self, decision: str, clip: bool) -> str:
        if decision != "argmax":  # (another kind's rule: refused by name)
            return decision
        return CLIP.name if clip else VALUE.name

    def summarise(self, task: Task, y: np.ndarray, probs: np.ndarray | None = None,
                  pred: np.ndarray | None = None) -> dict[str, float]:
        values = values_of(probs) if pred is None else np.asarray(pred, dtype=np.float64)
        scores = regression_scores(np.asarray(y, dtype=np.float64).reshape(-1), values)
        return {name: scores[name] for name in task.metric_names}

    def truth(self, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        return np.asarray([float(v) for v in labels], dtype=np.float64)

    def row_labels(self, labels: np.ndarray, targets: np.ndarray | None, classes: Sequence[str]) -> np.ndarray:
        return self.as_labels(targets[:, 0], classes)

    def as_labels(self, pred: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        return np.asarray([f"{v:.6g}" for v in np.asarray(pred, dtype=np.float64)], dtype=object)

    def summary(self, values: np.ndarray, column: str) -> str:
        """The training values in one line: count, range, mean and quartiles."""
        if not len(values):
            return f"target {column!r}: no values"
        q1, med, q3 = np.quantile(values, [0.25, 0.5, 0.75])
        return (f"target {column!r}: {len(values)} values, min {values.min():g}, quartiles {q1:g} / {med:g} / "
                f"{q3:g}, max {values.max():g}, mean {values.mean():g} (std {values.std():g})")

    def mistakes(self, y: np.ndarray, probs: np.ndarray, limit: int) -> np.ndarray:
        error = np.abs(values_of(probs) - np.asarray(y, dtype=np.float64))
        return np.argsort(-error, kind="stable")[:limit]


REGRESSION = Regression()

