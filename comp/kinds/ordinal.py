"""Grades (ordered classes): QWK and MAE beside the multiclass metrics, and cut points on the
expected grade fitted on out-of-fold rows for QWK (``[predict] decision = "ordinal_thresholds"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from comp.decisions import apply_thresholds, expected_grade, fit_thresholds, nested_threshold_predictions
from comp.kinds.base import Decision, DecisionRule, Kind, a_kind
from comp.kinds.multiclass import with_top_k
from comp.metrics import ORDINAL_METRICS, Task, quadratic_weighted_kappa


class OrdinalThresholds(DecisionRule):
    """Cut points between grades on the expected grade, fitted for QWK."""

    name = "ordinal_thresholds"
    label = "ordinal thresholds"
    fitted = True
    needs = "needs thresholds fitted on out-of-fold predictions (run `comp fit` with validation folds)"

    def invalid(self, decision: Decision) -> str:
        cuts = decision.cuts
        if cuts.ndim != 1 or not np.isfinite(cuts).all() or np.any(np.diff(cuts) <= 0):
            return f"cuts must be a list of increasing numbers, got {cuts.tolist()}"
        return ""

    def fit(self, probs: np.ndarray, y: np.ndarray, task: Task, metric: str = "") -> Decision:
        return Decision(self.name, cuts=fit_thresholds(expected_grade(probs), y, task.num_classes))

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return apply_thresholds(expected_grade(probs), decision.cuts)

    def nested(self, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, task: Task,
               metric: str = "") -> np.ndarray | None:
        return nested_threshold_predictions(expected_grade(probs), y, folds, task.num_classes)

    def figure(self, task: Task):
        n = task.num_classes
        return "QWK", lambda y, probs, pred: quadratic_weighted_kappa(y, pred, n)

    def to_json(self, decision: Decision, labels: Sequence[str], metric: str = "") -> dict[str, Any]:
        return {"cuts": [float(c) for c in decision.cuts]}

    def from_json(self, saved: dict[str, Any], labels: Sequence[str]) -> Decision:
        return Decision(self.name, cuts=np.asarray(saved["cuts"], dtype=np.float64))

    def owns(self, saved: dict[str, Any]) -> bool:
        return bool(saved.get("cuts"))

    def describe(self, decision: Decision, names: Sequence[str]) -> str:
        return "ordinal thresholds " + ", ".join(f"{c:.2f}" for c in decision.cuts)

    def values(self, decision: Decision, names: Sequence[str]) -> str:
        return "cuts " + ", ".join(f"{c:.2f}" for c in decision.cuts)

    def fitted_values(self, decision: Decision) -> list[float]:
        return [float(c) for c in decision.cuts]

    def misuse(self, what: str, kind: Kind) -> str:
        return (f'{what} = "{self.name}" is for ordinal tasks (grades) and this is {a_kind(kind.name)} task; '
                f'declare [data] task = "ordinal" if the classes are ordered')

    def report(self, probs, y, folds, task, decision, labels):
        n = task.num_classes
        decided = self.decided(probs, y, folds, task, decision)
        figures = {"qwk_thresholds": quadratic_weighted_kappa(y, decided.in_sample, n)}
        if decided.nested is not None:  # None for a holdout: nothing to fit the cuts on
            figures["qwk_thresholds_nested"] = quadratic_weighted_kappa(y, decided.nested, n)
            figures["accuracy_thresholds_nested"] = float(np.mean(decided.nested == y))
        note = (f"Ordinal thresholds fitted on the OOF expected grade: "
                f"{', '.join(f'{c:.3f}' for c in decision.cuts)}. "
                "qwk_thresholds scores them on the rows they were fitted on (optimistic); "
                "the *_nested columns cut each fold with thresholds fitted on the other folds.")
        return figures, note


class Ordinal(Kind):
    name = "ordinal"
    metrics = ORDINAL_METRICS
    default_monitor = "qwk"
    rules = (OrdinalThresholds(),)
    graded = True

    def metric_names(self, num_classes: int) -> tuple[str, ...]:
        return with_top_k(self.metrics, num_classes)


ORDINAL = Ordinal()
