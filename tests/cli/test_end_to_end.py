"""fit → predict → score → cv-report through the real CLI, on the tiny competition."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.run.checkpoint import load_checkpoint
from tests.conftest import write_competition, write_recipe

pytestmark = pytest.mark.xdist_group("test_end_to_end")  # one worker makes the module's fixtures (conftest)

runner = CliRunner()


def comp(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
    return result


@pytest.fixture(scope="module")
def fitted_once(tmp_path_factory):
    """One 3-epoch holdout fit for the module: (its recipe, its run folder)."""
    base = tmp_path_factory.mktemp("fitted")
    recipe = write_recipe(base / "tiny.toml", write_competition(base / "comp"))
    runs = base / "runs"
    result = comp("fit", recipe, "--runs", runs, "--set", "train.epochs=3")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return recipe, runs / "tiny"


@pytest.fixture
def fitted(tmp_path, fitted_once):
    """The module's fitted run, copied to runs/tiny under this test's folder (tests write into it)."""
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(fitted_once[1], run)
    return run


@pytest.fixture
def fitted_competition(fitted_once):
    """The competition the fitted run was trained on (the module's; tests only read it)."""
    return fitted_once[1].parent.parent / "comp"


def test_fit_writes_a_complete_run(fitted):
    for name in ("run.json", "recipe.toml", "folds.csv", "oof.csv", "fold0/best.pt", "fold0/last.pt",
                 "fold0/history.csv"):
        assert (fitted / name).is_file(), name
    info = json.loads((fitted / "run.json").read_text())
    assert info["status"] == "complete" and info["classes"] == ["cat", "dog", "eel"]
    assert info["overrides"] == ["train.epochs=3"]
    assert "epochs = 3" in (fitted / "recipe.toml").read_text()  # the override is recorded
    history = pd.read_csv(fitted / "fold0/history.csv")
    assert list(history.epoch) == [1, 2, 3]
    # Three unordered classes: a multiclass task's metrics, no QWK (the class indices are no grades).
    assert {"train_loss", "val_loss", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "ovr_auc",
            "top2_accuracy"} <= set(history.columns)
    assert "qwk" not in history.columns and "mae" not in history.columns
    assert not (fitted / "thresholds.json").exists()  # argmax decides a multiclass task: nothing fitted
    best = load_checkpoint(fitted / "fold0/best.pt")
    assert best["epoch"] == int(history.epoch[history.accuracy.idxmax()])
    assert best["score"] == pytest.approx(history.accuracy.max())
    # Holdout: 20% of 36 rows validated, each once, with probabilities that sum to one.
    oof = pd.read_csv(fitted / "oof.csv", dtype=str)
    folds = pd.read_csv(fitted / "folds.csv", dtype=str)
    assert sorted(oof.id) == sorted(folds.id[folds.fold == "0"]) and len(oof) in (7, 8)
    probs = oof[["prob_cat", "prob_dog", "prob_eel"]].astype(float).to_numpy()
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_predict_score_and_report(fitted, tmp_path, fitted_competition):
    out = tmp_path / "subs" / "tiny.csv"
    result = comp("predict", "--runs", fitted.parent, "--tta", "--out", out)  # latest run
    assert result.exit_code == 0, result.output + repr(result.exception)
    sub = pd.read_csv(out, dtype=str)
    sample = pd.read_csv(fitted_competition / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns) and list(sub.id) == list(sample.id)
    assert set(sub.label) <= {"cat", "dog", "eel"}

    # An empty --runs: scored with no run's task, whatever runs/ the working directory holds.
    result = comp("score", out, "--solution", fitted_competition / "solution.csv", "--runs", tmp_path / "no_runs")
    assert result.exit_code == 0, result.output
    scores = dict(line.split() for line in result.output.strip().splitlines())
    assert float(scores["rows"]) == 9 and 0.0 <= float(scores["accuracy"]) <= 1.0

    result = comp("cv-report", "--runs", fitted.parent)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "accuracy" in result.output
    counts = pd.read_csv(fitted / "confusion.csv", index_col=0)
    oof = pd.read_csv(fitted / "oof.csv", dtype=str)
    assert counts.to_numpy().sum() == len(oof)
    assert list(counts.columns) == ["cat", "dog", "eel"]
    normalised = pd.read_csv(fitted / "confusion_normalised.csv", index_col=0).to_numpy()
    assert np.allclose(normalised.sum(1)[counts.to_numpy().sum(1) > 0], 1.0)
    assert (fitted / "confusion.png").stat().st_size > 1000 and (fitted / "curves.png").is_file()
    report = json.loads((fitted / "report.json").read_text())
    assert report["overall"]["accuracy"] == pytest.approx((oof.label == oof.pred).mean())
    # A multiclass task has no fitted decision to report.
    assert "qwk" not in report["overall"] and "qwk_thresholds" not in report["overall"]
    assert report["thresholds"] is None


def test_existing_run_is_not_overwritten(fitted, fitted_once):
    before = (fitted / "fold0/best.pt").read_bytes()
    result = comp("fit", fitted_once[0], "--runs", fitted.parent)
    assert result.exit_code == 2 and "already exists" in result.output
    assert (fitted / "fold0/best.pt").read_bytes() == before


def test_score_rejects_mismatched_ids(tmp_path, competition):
    sub = tmp_path / "sub.csv"
    pd.DataFrame({"id": ["te000", "zzz"], "label": ["cat", "dog"]}).to_csv(sub, index=False)
    result = comp("score", sub, "--solution", competition / "solution.csv", "--runs", tmp_path / "runs")
    assert result.exit_code == 2 and "does not match the ids" in result.output and "zzz" in result.output


def test_predict_without_runs_is_a_clear_error(tmp_path):
    result = comp("predict", "--runs", tmp_path / "none", "--out", tmp_path / "x.csv")
    assert result.exit_code == 2 and "no runs under" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_a_lab_recipe_runs_on_other_data_through_set(tmp_path, competition):
    """r18_pretrained's own demo line (hand-built ResNet, Ben Graham preprocessing, multistep
    LR, k-fold), pointed at the tiny competition; OOF covers every training row exactly once."""
    runs = tmp_path / "runs"
    sets = ["data.root=" + str(competition), "data.id_col=id", "data.label_col=label", "data.classes=[]",
            "data.ext=.png", "augment.size=32", "model.pretrained=false", "train.epochs=1",
            "train.workers=0", "train.batch_size=8", "cv.folds=2"]
    args = ["fit", "recipes/r18_pretrained.toml", "--runs", runs]
    for s in sets:
        args += ["--set", s]
    result = comp(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    oof = pd.read_csv(runs / "r18_pretrained" / "oof.csv", dtype=str)
    train = pd.read_csv(competition / "train.csv", dtype=str)
    assert sorted(oof.id) == sorted(train.id) and set(oof.fold) == {"0", "1"}


def test_kfold_regression_thresholds_and_two_run_report(tmp_path, fitted, fitted_competition):
    """A 3-fold regression-head run decided by OOF-fitted thresholds, reported beside the
    holdout classification run."""
    runs = fitted.parent
    result = comp("fit", _recipe_copy(tmp_path, fitted, "reg"), "--runs", runs,
                  "--set", "cv.scheme=kfold", "--set", "cv.folds=3", "--set", "model.head=regression",
                  "--set", "loss.name=smooth_l1", "--set", "predict.decision=ordinal_thresholds",
                  "--set", "data.classes=[\"cat\", \"dog\", \"eel\"]", "--set", "train.monitor=qwk",
                  "--set", "data.task=ordinal")
    assert result.exit_code == 0, result.output + repr(result.exception)
    reg = runs / "reg"
    oof = pd.read_csv(reg / "oof.csv", dtype=str)
    assert sorted(oof.id) == sorted(pd.read_csv(fitted_competition / "train.csv", dtype=str).id)
    assert sorted(oof.fold.unique()) == ["0", "1", "2"]
    cuts = json.loads((reg / "thresholds.json").read_text())["cuts"]
    assert len(cuts) == 2 and cuts[0] < cuts[1]

    out = tmp_path / "reg.csv"
    result = comp("predict", "--runs", runs, "--run", "reg", "--out", out, "--proba")
    assert result.exit_code == 0, result.output + repr(result.exception)
    sub = pd.read_csv(out, dtype={"id": str, "label": str})
    grade = sub[["prob_cat", "prob_dog", "prob_eel"]].to_numpy() @ np.arange(3)
    expected = np.array(["cat", "dog", "eel"])[np.digitize(grade, cuts)]
    assert list(sub.label) == list(expected)  # labels follow the fitted cut points
    argmax_out = tmp_path / "reg_argmax.csv"
    result = comp("predict", "--runs", runs, "--run", "reg", "--out", argmax_out, "--proba",
                  "--decision", "argmax")
    assert result.exit_code == 0, result.output + repr(result.exception)
    sub_argmax = pd.read_csv(argmax_out, dtype={"id": str, "label": str})
    probs = sub_argmax[["prob_cat", "prob_dog", "prob_eel"]].to_numpy()
    assert list(sub_argmax.label) == list(np.array(["cat", "dog", "eel"])[probs.argmax(1)])
    result = comp("predict", "--runs", runs, "--run", "reg", "--out", argmax_out, "--decision", "vote")
    assert result.exit_code == 2 and "--decision must be argmax, ordinal_thresholds, threshold or label_thresholds" in result.output
    result = comp("predict", "--runs", runs, "--run", "reg", "--out", argmax_out, "--decision", "threshold")
    assert result.exit_code == 2 and '--decision = "threshold" is for binary tasks and this is an ordinal' in result.output
    result = comp("score", out, "--solution", fitted_competition / "solution.csv", "--task", "ordinal", "--runs", runs)
    assert "ovr_auc" in result.output and "qwk" in result.output  # probability columns give the AUC too
    assert result.output.split()[0] == "qwk"  # an ordinal task's headline

    result = comp("cv-report", "--runs", runs, "--run", "tiny", "--run", "reg")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "runs side by side" in result.output
    for k in range(3):
        cm = pd.read_csv(reg / f"confusion_fold{k}.csv", index_col=0).to_numpy()
        assert cm.sum() == (oof.fold == str(k)).sum()
    report = json.loads((reg / "report.json").read_text())
    assert set(report["per_fold"]) == {"0", "1", "2"} and report["thresholds"] == pytest.approx(cuts)
    assert {"qwk_thresholds", "qwk_thresholds_nested", "accuracy_thresholds_nested"} <= set(report["overall"])
    assert (runs / "comparison.md").is_file()
    assert sorted(p.name for p in runs.glob("compare_*.png")) == ["compare_tiny_vs_reg.png",
                                                                  "compare_tiny_vs_reg_confusion.png"]


def _recipe_copy(tmp_path, run_dir, name):
    path = tmp_path / f"{name}.toml"
    path.write_text((run_dir / "recipe.toml").read_text().replace('name = "tiny"', f'name = "{name}"'))
    return path


def test_top_k_and_swa_checkpoints_ensemble(tmp_path, recipe_file, competition):
    runs = tmp_path / "runs"
    result = comp("fit", recipe_file, "--runs", runs, "--set", "train.epochs=4", "--set", "train.keep_top_k=2",
                  "--set", "train.swa_epochs=2", "--set", "train.monitor=val_loss")
    assert result.exit_code == 0, result.output + repr(result.exception)
    fold = runs / "tiny" / "fold0"
    kept = sorted(p.name for p in fold.glob("epoch*.pt"))
    history = pd.read_csv(fold / "history.csv")
    best_two = sorted(f"epoch{e:03d}.pt" for e in history.nsmallest(2, "val_loss").epoch)
    assert kept == best_two  # the two lowest validation losses, the others deleted
    assert load_checkpoint(fold / "swa.pt")["swa_epochs"] == 2
    for which, n in (("top_k", 2), ("swa", 1), ("last", 1)):
        out = tmp_path / f"{which}.csv"
        result = comp("predict", "--runs", runs, "--checkpoints", which, "--out", out)
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert f"{n} checkpoint(s)" in result.output and out.is_file()
    result = comp("predict", "--runs", runs, "--checkpoints", "worst", "--out", tmp_path / "x.csv")
    assert result.exit_code == 2 and "--checkpoints must be" in result.output


def test_predefined_valid_csv_and_full_schemes(tmp_path, recipe_file, competition):
    """The train.csv + valid.csv layout: "predefined" validates on valid.csv; "full" trains on
    both with no validation and still predicts."""
    train = pd.read_csv(competition / "train.csv", dtype=str)
    train[:27].to_csv(competition / "train.csv", index=False)
    train[27:].to_csv(competition / "valid.csv", index=False)
    runs = tmp_path / "runs"
    common = ["--runs", runs, "--set", "data.valid_csv=valid.csv", "--set", "train.epochs=1"]
    result = comp("fit", recipe_file, *common, "--set", "cv.scheme=predefined")
    assert result.exit_code == 0, result.output + repr(result.exception)
    oof = pd.read_csv(runs / "tiny" / "oof.csv", dtype=str)
    assert sorted(oof.id) == sorted(train.id[27:])

    result = comp("fit", recipe_file, *common, "--set", "cv.scheme=full", "--overwrite")
    assert result.exit_code == 0, result.output + repr(result.exception)
    folds = pd.read_csv(runs / "tiny" / "folds.csv", dtype=str)
    assert len(folds) == 36 and set(folds.fold) == {"-1"}  # every row of both files trains
    assert not (runs / "tiny" / "oof.csv").exists()
    assert load_checkpoint(runs / "tiny" / "fold0" / "best.pt")["epoch"] == 1
    result = comp("predict", "--runs", runs, "--out", tmp_path / "full.csv")
    assert result.exit_code == 0, result.output + repr(result.exception)
    result = comp("cv-report", "--runs", runs)  # no validation: the curves, and what cannot be shown
    assert result.exit_code == 0 and "no out-of-fold rows" in result.output, result.output
    assert (runs / "tiny" / "curves.png").is_file()


@pytest.mark.parametrize("which", ["top_k", "swa", "last"])
def test_oof_comes_from_the_weights_predict_uses(tmp_path, recipe_file, which):
    """OOF scores what gets submitted: the validation rows predicted by exactly the checkpoints
    (and their mean) that `comp predict` ensembles for [predict] checkpoints."""
    from comp.predict.predict import predict_run
    from comp.recipe import load_recipe
    from comp.model.runtime import resolve_runtime
    from comp.data.table import load_train_table

    runs = tmp_path / "runs"
    result = comp("fit", recipe_file, "--runs", runs, "--set", "train.epochs=4", "--set", "train.keep_top_k=2",
                  "--set", "train.swa_epochs=2", "--set", f"predict.checkpoints={which}")
    assert result.exit_code == 0, result.output + repr(result.exception)
    run = runs / "tiny"
    assert json.loads((run / "fold0" / "result.json").read_text())["oof_checkpoints"] == which
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str, "label": str})
    recipe = load_recipe(run / "recipe.toml")
    table, _ = load_train_table(recipe)
    row = {id_: i for i, id_ in enumerate(table.ids)}
    valid = table.subset(np.array([row[i] for i in oof.id]))
    pred = predict_run(run, resolve_runtime(recipe.train, "cpu"), tta=False, table=valid)
    probs = oof[[c for c in oof.columns if c.startswith("prob_")]].to_numpy()
    assert np.allclose(probs, pred.probs, atol=1e-5)
    # ...and not what the best epoch alone predicts (the choice matters).
    best = predict_run(run, resolve_runtime(recipe.train, "cpu"), tta=False, table=valid,
                       checkpoints="best")
    assert not np.allclose(probs, best.probs, atol=1e-5)


def test_swa_checkpoints_need_swa_epochs(recipe_file, tmp_path):
    result = comp("fit", recipe_file, "--runs", tmp_path / "runs", "--set", "predict.checkpoints=swa")
    assert result.exit_code == 2 and '[predict] checkpoints = "swa" needs [train] swa_epochs > 0' in result.output
