"""Two classes, one of them positive: the positive class's metrics (sensitivity, precision, F1,
ROC/PR AUC) and a probability threshold on it tuned on out-of-fold rows
(``[predict] decision = "threshold"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from comp.decisions import apply_binary_threshold, fit_binary_threshold, nested_binary_predictions
from comp.kinds.base import Decision, DecisionRule, Kind, Mismatch, a_kind
from comp.metrics import BINARY_METRICS, PROB_METRICS, Task, summarise


class BinaryThreshold(DecisionRule):
    """The positive class when its probability is at or above a threshold tuned for a metric."""

    name = "threshold"
    label = "threshold"
    fitted = True
    needs = ("needs a threshold tuned on out-of-fold predictions (run `comp fit` with validation rows), "
             "or name one: --decision-from RUN (a run with validation rows), --threshold P")
    damaged = "holds no binary threshold ({error}); re-run `comp fit` to tune it"

    def invalid(self, decision: Decision) -> str:
        return "" if np.isfinite(decision.threshold) else f"the threshold must be a number, got {decision.threshold}"

    @staticmethod
    def tuned_for(task: Task, metric: str = "") -> str:
        """``metric`` when the decision moves it, else the task's decision metric."""
        return metric if metric and metric not in PROB_METRICS else task.decision_metric

    def fit(self, probs: np.ndarray, y: np.ndarray, task: Task, metric: str = "") -> Decision:
        pos = task.positive
        return Decision(self.name, threshold=fit_binary_threshold(probs[:, pos], y == pos, self.tuned_for(task, metric)),
                        positive=pos)

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return apply_binary_threshold(probs, decision.positive, decision.threshold)

    def nested(self, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, task: Task,
               metric: str = "") -> np.ndarray | None:
        pos = task.positive
        nested = nested_binary_predictions(probs[:, pos], y == pos, folds, self.tuned_for(task, metric))
        return None if nested is None else np.where(nested, pos, 1 - pos)

    def figure(self, task: Task):
        metric = task.decision_metric
        return metric, lambda y, probs, pred: summarise(task, y, probs, y_pred=pred)[metric]

    def to_json(self, decision: Decision, labels: Sequence[str], metric: str = "") -> dict[str, Any]:
        saved: dict[str, Any] = {"threshold": float(decision.threshold), "positive": str(labels[decision.positive])}
        if metric:  # a blend's threshold records none
            saved["metric"] = metric
        return saved

    def from_json(self, saved: dict[str, Any], labels: Sequence[str]) -> Decision:
        threshold, positive = float(saved["threshold"]), str(saved["positive"])
        if positive not in labels:
            raise Mismatch(f"its positive class {positive!r} is not one of the run's classes {list(labels)}")
        return Decision(self.name, threshold=threshold, positive=list(labels).index(positive))

    def owns(self, saved: dict[str, Any]) -> bool:
        return saved.get("threshold") is not None

    def describe(self, decision: Decision, names: Sequence[str]) -> str:
        name = names[decision.positive]
        return f"{name} when P({name}) >= {decision.threshold:.3f}"

    def values(self, decision: Decision, names: Sequence[str]) -> str:
        return f"P({names[decision.positive]}) >= {decision.threshold:.3f}"

    def fitted_for(self, task: Task) -> str:
        return task.decision_metric

    def fitted_values(self, decision: Decision) -> list[float]:
        return [decision.threshold]

    def misuse(self, what: str, kind: Kind) -> str:
        others = "".join(f' or "{r.name}"' for r in kind.rules)
        return f'{what} = "{self.name}" is for binary tasks and this is {a_kind(kind.name)} task (use "argmax"{others})'

    def report(self, probs, y, folds, task, decision, labels):
        metric = task.decision_metric
        decided = self.decided(probs, y, folds, task, decision)
        figures = {f"{metric}_threshold": summarise(task, y, probs, y_pred=decided.in_sample)[metric]}
        if decided.nested is not None:
            figures[f"{metric}_threshold_nested"] = summarise(task, y, probs, y_pred=decided.nested)[metric]
            figures["accuracy_threshold_nested"] = float(np.mean(decided.nested == y))
        pos = labels[decision.positive]
        note = (f"Threshold tuned on the OOF for {metric}: {pos} when P({pos}) "
                f">= {decision.threshold:.3f}. {metric}_threshold scores it on the rows it was tuned on (optimistic); "
                "the *_nested columns cut each fold with a threshold tuned on the other folds.")
        return figures, note


class Binary(Kind):
    name = "binary"
    metrics = BINARY_METRICS
    default_monitor = "roc_auc"
    rules = (BinaryThreshold(),)
    has_positive = True

    def check_classes(self, labels: Sequence[str]) -> str:
        if len(labels) != 2:
            return f'[data] task = "binary" needs two classes; the data has {len(labels)}: {list(labels)[:10]}'
        return super().check_classes(labels)

    def describe(self, task: Task, labels: Sequence[str]) -> str:
        label = str(labels[task.positive])
        name = task.names[task.positive] if task.names else label
        return (f"task {task.kind} ({task.num_classes} classes, positive class {name!r}"
                + (f" (label {label!r})" if name != label else "") + ")")


BINARY = Binary()
