"""Nominal classes: argmax decides; accuracy is the default monitor."""

from __future__ import annotations

from comp.kinds.base import Kind
from comp.metrics import MULTICLASS_METRICS

_TOP_K = {"top2_accuracy": (2, 3), "top3_accuracy": (3, 5)}  # name: (k, fewest classes)


def with_top_k(names: tuple[str, ...], num_classes: int) -> tuple[str, ...]:
    """The top-k accuracies only where they mean something: top2 from 3 classes, top3 from 5."""
    return tuple(n for n in names if n not in _TOP_K or num_classes >= _TOP_K[n][1])


class Multiclass(Kind):
    name = "multiclass"
    metrics = MULTICLASS_METRICS
    default_monitor = "accuracy"
    unordered_numbers = True

    def metric_names(self, num_classes: int) -> tuple[str, ...]:
        return with_top_k(self.metrics, num_classes)

    def monitor_hint(self, monitor: str) -> str:
        if monitor in ("qwk", "mae"):
            return '; qwk and mae are for grades: declare [data] task = "ordinal" if the classes are ordered'
        return ""


MULTICLASS = Multiclass()
