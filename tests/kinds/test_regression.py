"""Continuous targets ([data] task = "regression"): the kind's pieces, then a tiny competition
through check, fit, cv-report, predict --tta, score and blend."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from comp.data.table import load_train_table
from comp.errors import CompError
from comp.kinds import make_task, rule_of
from comp.kinds.regression import REGRESSION
from comp.recipe import RecipeError, recipe_from_dict
from tests.conftest import run_comp, write_regression_competition


def test_the_clip_rule_and_the_metrics():
    task, clip = make_task("regression", 1), rule_of("clip")
    assert (task.monitor, task.mode) == ("rmse", "min")
    y = np.array([1.0, 2.0, 3.0, 10.0])
    probs = np.array([[0.0], [2.5], [4.0], [12.0]])
    fitted = clip.fit(probs, y, task)
    assert clip.apply(fitted, probs).tolist() == [1.0, 2.5, 4.0, 10.0]
    assert clip.to_json(fitted, ["score"]) == {"range": [1.0, 10.0]}
    assert clip.from_json({"range": [1.0, 10.0]}, ["score"]).cuts.tolist() == [1.0, 10.0]
    # Nested: each fold clipped to the other folds' range.
    assert clip.nested(probs, y, np.array([0, 0, 1, 1]), task).tolist() == [3.0, 3.0, 2.0, 2.0]
    scores = REGRESSION.summarise(task, y, probs)
    assert list(scores) == ["rmse", "mae", "r2", "pearson", "spearman"]
    assert scores["mae"] == pytest.approx(np.mean([1.0, 0.5, 1.0, 2.0]))


@pytest.mark.parametrize("section, message", [
    ({"loss": {"name": "ce"}}, "classification loss"),
    ({"loss": {"name": "mse", "class_weights": "balanced"}}, "class_weights"),
    ({"loss": {"name": "mse"}, "model": {"head": "regression"}}, "[model] head"),
    ({"loss": {"name": "mse"}, "train": {"monitor": "accuracy"}}, "not computed for a regression task"),
    ({"loss": {"name": "mse"}, "predict": {"decision": "threshold"}}, "is for binary tasks"),
])
def test_a_regression_recipe_refuses_what_is_for_classes(section, message):
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        recipe_from_dict({"name": "r", "data": {"task": "regression"}, **section})


def test_huber_is_for_regression_tasks():
    with pytest.raises(RecipeError, match="huber"):
        recipe_from_dict({"name": "r", "loss": {"name": "huber"}})


def test_a_label_that_is_not_a_number_names_the_row_and_value(tmp_path):
    root = write_regression_competition(tmp_path / "c", n_train=6, n_test=2)
    frame = pd.read_csv(root / "train.csv", dtype=str)
    frame.loc[2, "score"] = "abc"
    frame.to_csv(root / "train.csv", index=False)
    recipe = recipe_from_dict({"name": "r", "data": {"root": str(root), "label_col": "score", "task": "regression"},
                               "loss": {"name": "mse"}})
    with pytest.raises(CompError, match="row 'tr002' has 'abc'"):
        load_train_table(recipe)


def test_regression_end_to_end(tmp_path):
    root = write_regression_competition(tmp_path / "c", n_train=24, n_test=6)
    recipe = tmp_path / "reg.toml"
    recipe.write_text(textwrap.dedent(f"""\
        name = "reg"
        seed = 1
        [data]
        root = "{root}"
        label_col = "score"
        task = "regression"
        [model]
        name = "test_resnet"
        [augment]
        size = 32
        [loss]
        name = "huber"
        [optim]
        lr = 0.01
        [train]
        epochs = 1
        batch_size = 8
        workers = 0
        [cv]
        scheme = "kfold"
        folds = 2
        bins = 4
        """))
    runs = tmp_path / "runs"
    code, out, err = run_comp(["check", recipe], tmp_path)
    assert code == 0, err
    assert "target 'score': 24 values" in out + err and "task regression" in out + err
    for name, extra in (("reg", []), ("reg2", ["--set", "name=reg2", "--set", "optim.lr=0.003", "--set", "loss.name=bce"])):
        code, out, err = run_comp(["fit", recipe, "--runs", runs, *extra], tmp_path)
        assert code == 0, err
    run = runs / "reg"
    history = pd.read_csv(run / "fold0/history.csv")
    assert {"rmse", "mae", "r2", "pearson", "spearman"} <= set(history.columns)
    lo, hi = json.loads((run / "thresholds.json").read_text())["range"]
    train = pd.read_csv(root / "train.csv")
    assert (lo, hi) == (train.score.min(), train.score.max())  # kfold: every row is out of fold once
    oof = pd.read_csv(run / "oof.csv")
    assert sorted(oof.label) == sorted(train.score)
    # The predicted values are the model's outputs (a lost "identity" activation once made them all 1.0).
    values = oof[[c for c in oof.columns if c.startswith("prob_")][0]]
    assert values.nunique() > len(oof) // 2 and not values.eq(1.0).all()
    # bce: trained on the target scaled to [0, 1] by the training range, recorded in run.json.
    assert json.loads((runs / "reg2" / "run.json").read_text())["task"]["scale"] == [train.score.min(), train.score.max()]
    scaled = pd.read_csv(runs / "reg2" / "oof.csv")["prob_score"]
    assert scaled.between(train.score.min(), train.score.max()).all() and scaled.nunique() > len(scaled) // 2
    for picture in ("values.png", "residuals.png", "oof_mistakes.jpg", "report.md"):
        assert (run / picture).is_file(), picture
    assert "Residuals by range" in (run / "report.md").read_text()
    # Folds stratified on the target's quantile bins: each fold validates every quarter of the range.
    folds = pd.read_csv(run / "folds.csv").merge(train, on="id")
    quarter = pd.qcut(folds.score, 4, labels=False)
    assert (pd.crosstab(folds.fold, quarter) > 0).all().all()

    sub = tmp_path / "sub.csv"
    code, out, err = run_comp(["predict", "--runs", runs, "--run", "reg", "--tta", "--out", sub], tmp_path)
    assert code == 0, err
    written = pd.read_csv(sub)
    assert list(written.columns) == ["id", "score"]
    assert list(written.id) == list(pd.read_csv(root / "sample_submission.csv").id)
    assert written.score.between(lo, hi).all()
    code, out, err = run_comp(["score", "--runs", runs, "--run", "reg", sub, "--solution", root / "solution.csv"],
                              tmp_path)
    assert code == 0, err
    assert out.splitlines()[0].startswith("rmse")

    code, out, err = run_comp(["blend", "--runs", runs, "--run", "reg", "--run", "reg2", "--name", "b"], tmp_path)
    assert code == 0, err
    assert "rmse value" in out + err and "blend nested" in out + err
    blended = tmp_path / "blend.csv"
    code, out, err = run_comp(["predict", "--runs", runs, "--blend", "b", "--out", blended], tmp_path)
    assert code == 0, err
    assert pd.read_csv(blended).score.between(lo, hi).all()

    bundle = tmp_path / "bundle"
    code, out, err = run_comp(["export", "--runs", runs, "--run", "reg", "--run", "reg2", "--out", bundle], tmp_path)
    assert code == 0, err
    assert "decision clip" in out + err
    from_bundle = tmp_path / "bundle.csv"
    code, out, err = run_comp(["predict", "--bundle", bundle, "--data", root, "--out", from_bundle], tmp_path)
    assert code == 0, err
    assert pd.read_csv(from_bundle).score.between(lo, hi).all()
