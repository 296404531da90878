"""A trial's objective: the leaderboard metric (else the monitor) on the OOF rows, a fitted
decision scored nested, in the metric's direction."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp.evaluate.report import run_report
from comp.recipe import load_recipe
from comp.recipe.task import resolve_task
from comp.run.folder import RunDir, RunInfo, task_record
from comp.run.oof import merge_oof
from comp.tune.objective import direction, objective_metric, trial_figure
from tests.conftest import write_recipe


def test_the_metric_and_its_direction_come_from_the_recipe(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path / "tiny.toml", tmp_path / "data"))
    assert objective_metric(recipe) == "accuracy" and direction("accuracy") == "maximize"
    sub = dataclasses.replace(recipe, submission=dataclasses.replace(recipe.submission, metric="qwk"))
    assert objective_metric(sub) == "qwk"
    auto = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, monitor="val_loss"))
    assert objective_metric(auto) is None and direction(None) == "maximize"  # the kind's default: accuracy, QWK, AUC
    assert direction("mae") == "minimize"


def fake_run(tmp_path: Path, decision: str) -> Path:
    """A merged ordinal run of three grades over three folds, without training."""
    rng = np.random.default_rng(0)
    classes = ["0", "1", "2"]
    recipe = load_recipe(write_recipe(tmp_path / "o.toml", tmp_path / "data"),
                         [f"predict.decision={decision}", "data.task=ordinal", "train.monitor=qwk"])
    run = RunDir(tmp_path / "runs" / "o")
    run.path.mkdir(parents=True)
    task = resolve_task(recipe, classes)
    run.write_info(RunInfo(name="o", recipe_file="o.toml", overrides=[], classes=classes, scheme="kfold",
                           folds=[0, 1, 2], task=task_record(task, decision)))
    run.write_recipe(recipe)
    n = 60
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n) * 0.5 + np.eye(3)[y] * 0.5
    folds = np.arange(n) % 3
    ids = np.array([f"r{i}" for i in range(n)])
    for k in range(3):
        rows = folds == k
        run.fold(k).create()
        run.fold(k).write_predictions(ids[rows], np.array(classes)[y[rows]], probs[rows], classes)
        run.fold(k).write_result(best_epoch=1, best_score=0.5, checkpoints="best")
    merge_oof(run)
    return run.path


@pytest.mark.parametrize("decision, column, how", [
    ("ordinal_thresholds", "qwk_thresholds_nested", "ordinal thresholds fitted on the other folds"),
    ("argmax", "qwk", "argmax"),
])
def test_a_fitted_decision_is_scored_nested(tmp_path, decision, column, how):
    run = fake_run(tmp_path, decision)
    figure = trial_figure(run)
    assert (figure.metric, figure.how) == ("qwk", how)
    assert figure.value == pytest.approx(run_report(run).overall[column], abs=1e-12)
    assert pd.read_csv(Path(run) / "oof.csv").shape[0] == 60
