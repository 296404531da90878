"""The pruning callback a trial's fit calls after each epoch (comp.tune.study.Pruning)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from comp.tune.study import Pruning


class Trial:
    """What Pruning uses of an Optuna trial: report and should_prune (prunes below ``floor``)."""

    def __init__(self, floor: float = -1.0) -> None:
        self.reports: list[tuple[int, float]] = []
        self.floor = floor

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.reports[-1][1] < self.floor


def rows(fold: int, values: list[float]) -> list[tuple[int, dict]]:
    return [(fold, {"epoch": e + 1, "accuracy": v, "val_loss": 1.0}) for e, v in enumerate(values)]


def test_by_epoch_only_the_first_fold_reports():
    trial = Trial()
    prune = Pruning(trial, Path("unused"), metric="accuracy")
    for fold, row in rows(0, [0.5, 0.7]) + rows(1, [0.6, 0.9]):
        prune(fold, row)
    assert trial.reports == [(1, 0.5), (2, 0.7)]


def test_by_fold_each_finished_fold_reports_its_best_epoch():
    trial = Trial()
    prune = Pruning(trial, Path("unused"), metric="accuracy", by_fold=True)
    for fold, row in rows(0, [0.5, 0.8, 0.7]) + rows(1, [0.6, 0.65]) + rows(2, [0.9]):
        prune(fold, row)
    assert trial.reports == [(0, 0.8), (1, 0.65)]  # the last fold ends with the fit, unreported


def test_a_trailing_trial_is_pruned_at_that_epoch():
    trial = Trial(floor=0.6)
    prune = Pruning(trial, Path("unused"), metric="accuracy")
    prune(0, {"epoch": 1, "accuracy": 0.7})
    with pytest.raises(optuna.TrialPruned, match="fold 0 epoch 2: accuracy 0.5000"):
        prune(0, {"epoch": 2, "accuracy": 0.5})


def test_one_fold_is_never_pruned_at_its_last_epoch():
    trial = Trial(floor=0.6)
    prune = Pruning(trial, Path("unused"), metric="accuracy", last=2)
    prune(0, {"epoch": 2, "accuracy": 0.5})  # reported, for the other trials' median, not pruned
    assert trial.reports == [(2, 0.5)]
