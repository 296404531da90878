"""What a trial is worth: the leaderboard metric (else the monitor) on the run's out-of-fold rows;
when the recipe decides by a fitted decision (ordinal cut points, a binary threshold), that
decision scored nested: each fold cut by a decision fitted on the other folds only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from comp.metrics import MONITOR_MODES, PROB_METRICS
from comp.recipe import Recipe
from comp.run.folder import RunDir
from comp.kinds import kind_of, rule_of
from comp.run.oof import oof_decisions, read_oof
from comp.run.thresholds import load_fitted


@dataclass(frozen=True)
class Figure:
    """A trial's objective: the metric, its value on the OOF rows and how the rows were decided."""

    metric: str
    value: float
    how: str  # "argmax", or the fitted decision scored nested


def objective_metric(recipe: Recipe) -> str | None:
    """The metric the study optimises, as far as the recipe names it before the classes are known:
    the leaderboard metric, else the monitor; None: the task kind's default (maximised)."""
    if recipe.submission.metric:
        return recipe.submission.metric
    monitor = recipe.train.monitor
    return None if monitor in ("auto", "val_loss") else monitor


def direction(metric: str | None) -> str:
    """Optuna's direction for ``metric``: its mode in :data:`comp.metrics.MONITOR_MODES`."""
    return "minimize" if metric is not None and MONITOR_MODES.get(metric) == "min" else "maximize"


def trial_figure(run_dir: Path) -> Figure:
    """The objective of a merged run (see the module notes)."""
    run = RunDir(Path(run_dir))
    task = run.task()
    oof = read_oof(run.path)
    metric = task.headline
    recipe = run.recipe()
    kind = kind_of(task)  # (a multilabel task's "argmax" is 0.5 per label, a regression task's the value)
    decision = kind.rule_for(recipe.predict.decision, recipe.predict.clip)
    if decision != kind.plain_rule.name and metric not in PROB_METRICS and run.thresholds_path.is_file():
        rule = rule_of(decision)
        decided = oof_decisions(oof, task, load_fitted(run.path, rule, run.classes())) if rule.fitted else None
        if decided is not None and decided.nested is not None:
            value = kind.summarise(task, oof.y_true, oof.probs, decided.nested)[metric]
            return Figure(metric, value, f"{decision.replace('_', ' ')} fitted on the other folds")
    return Figure(metric, kind.summarise(task, oof.y_true, oof.probs)[metric], kind.plain_rule.name)
