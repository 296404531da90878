"""comp blend: greedy weights on runs' OOF, the nested figure, refusals, predict --blend, cv-report."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.evaluate.blend import BlendFit, cross_fit
from comp.metrics import roc_auc
from comp.predict.decision import Decision
from comp.predict.predict import rank_scores
from comp.recipe import recipe_from_dict
from comp.run.checkpoint import load_checkpoint, save_checkpoint
from comp.run.folder import RunDir, RunInfo, prob_columns, read_blend, write_blend

runner = CliRunner()
CLASSES = ["cat", "dog", "eel"]


def comp(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def write_run(runs, name, probs, y, folds, ids=None, classes=CLASSES, task="auto"):
    """A run folder holding only what comp blend reads: run.json, recipe.toml and oof.csv."""
    run = RunDir.under(runs, name)
    run.path.mkdir(parents=True)
    run.write_info(RunInfo(name, f"{name}.toml", [], list(classes), "kfold", sorted({int(f) for f in folds}),
                           "complete"))
    run.write_recipe(recipe_from_dict({"name": name, "data": {"task": task}, "train": {"monitor": "accuracy"}}))
    ids = [f"r{i:03d}" for i in range(len(y))] if ids is None else ids
    frame = pd.DataFrame({"id": ids, "label": np.asarray(classes)[y], "fold": folds,
                          "pred": np.asarray(classes)[probs.argmax(1)]})
    frame[prob_columns(classes)] = probs
    run.write_oof(frame)
    return run.path


def two_experts_and_noise(n=300, seed=0):
    """Runs a and b, each wrong (confidently, but less than the other is right) on its own third of
    the rows, so their mean is always right; and a run of pure noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    folds = rng.permutation(np.arange(n) % 3)
    wrong = rng.permutation(n)
    experts = []
    for bad in (wrong[: n // 3], wrong[n // 3: 2 * n // 3]):
        p = np.full((n, 3), 0.15)
        p[np.arange(n), y] = 0.7
        p[bad] = 0.2
        p[bad, (y[bad] + 1) % 3] = 0.5
        p[bad, y[bad]] = 0.3
        experts.append(p)
    noise = rng.dirichlet(np.ones(3), size=n)
    return y, folds, experts, noise


def test_noise_gets_weight_zero_and_the_blend_beats_each_run(tmp_path):
    runs = tmp_path / "runs"
    y, folds, (a, b), noise = two_experts_and_noise()
    for name, p in (("noise", noise), ("a", a), ("b", b)):  # noise first: it would win every tie
        write_run(runs, name, p, y, folds)
    result = comp("blend", "--runs", runs, "--run", "noise", "--run", "a", "--run", "b", "--name", "ab")
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = json.loads((runs / ".blends" / "ab.json").read_text())
    weights = dict(zip(saved["runs"], saved["weights"]))
    assert weights["noise"] == 0 and weights["a"] == pytest.approx(0.5) and weights["b"] == pytest.approx(0.5)
    assert saved["metric"] == "accuracy" and saved["mean"] == "probability" and saved["decision"] == {}
    table = saved["figures"]["table"]
    assert table["a OOF"]["accuracy argmax"] == pytest.approx(2 / 3)
    assert table["blend in-sample"]["accuracy argmax"] == 1.0
    assert table["blend nested"]["accuracy argmax"] == 1.0  # a and b fitted on any two folds alike
    for line in ("weights: noise 0.000, a 0.500, b 0.500", "noise OOF", "blend in-sample", "blend nested",
                 "wrote"):
        assert line in result.output
    result = comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--name", "ab")
    assert result.exit_code == 2 and "blend 'ab' exists" in result.output


def test_runs_whose_rows_classes_or_folds_differ_are_refused(tmp_path):
    runs = tmp_path / "runs"
    y, folds, (a, b), _ = two_experts_and_noise(n=60)
    write_run(runs, "a", a, y, folds)
    write_run(runs, "fewer", b[:-2], y[:-2], folds[:-2])
    write_run(runs, "moved", b, y, (folds + 1) % 3)
    write_run(runs, "other", b, y, folds, classes=["cat", "dog", "fox"])
    write_run(runs, "shuffled", b[::-1], y[::-1], folds[::-1], ids=[f"r{i:03d}" for i in range(60)][::-1])
    for other, message in (("fewer", "runs 'a' and 'fewer' have different OOF rows: 60 vs 58 rows, 2 row(s) "
                                     "(r058, r059) only in 'a', 0 row(s) only in 'fewer'"),
                           ("moved", "runs 'a' and 'moved' have different folds: 60 row(s)"),
                           ("other", "have different classes: ['cat', 'dog', 'eel'] vs ['cat', 'dog', 'fox']")):
        result = comp("blend", "--runs", runs, "--run", "a", "--run", other)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (runs / ".blends").exists()  # nothing written
    # The same rows in another order are the same rows: aligned by id.
    result = comp("blend", "--runs", runs, "--run", "a", "--run", "shuffled", "--name", "ok")
    assert result.exit_code == 0, result.output
    assert json.loads((runs / ".blends" / "ok.json").read_text())["figures"]["table"]["blend in-sample"][
        "accuracy argmax"] == 1.0
    for args, message in ((["--run", "a"], "two or more different runs"),
                          (["--run", "a", "--run", "b2", "--metric", "qwk"], "no run named 'b2'"),
                          (["--run", "a", "--run", "shuffled", "--metric", "qwk"], "--metric 'qwk' is not computed"),
                          (["--run", "a", "--run", "shuffled", "--rank"], "--rank averages rank scores"),
                          (["--run", "a", "--run", "shuffled", "--name", "../x"], "not a plain file name")):
        result = comp("blend", "--runs", runs, *args)
        assert result.exit_code == 2 and message in result.output, result.output


def test_nested_fit_never_sees_the_held_out_fold():
    rng = np.random.default_rng(1)
    n, folds = 40, np.repeat([2, 0, 1, 3], 10)
    probs = rng.dirichlet(np.ones(3), size=(2, n))
    seen = []

    def fit(rows):
        seen.append(set(rows.tolist()))
        return BlendFit(np.array([0.25, 0.75]), Decision())

    scores, argmax, decided = cross_fit(probs, folds, fit)
    held_out = [set(np.flatnonzero(folds == k).tolist()) for k in np.unique(folds)]
    assert len(seen) == 4
    for rows, held in zip(seen, held_out):
        assert not rows & held and rows | held == set(range(n))  # every other row, none held out
    np.testing.assert_allclose(scores, 0.25 * probs[0] + 0.75 * probs[1])
    assert cross_fit(probs, np.zeros(n), fit) is None  # one fold: nothing to fit on


def test_rank_mean_keeps_each_columns_auc():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(2), size=(2, 50))
    ranks = rank_scores(probs)
    assert ranks.shape == probs.shape and ranks.max() == 1.0 and ranks.min() > 0
    y = rng.integers(0, 2, 50)
    for r in range(2):
        assert roc_auc(y, ranks[r][:, 1], 1) == pytest.approx(roc_auc(y, probs[r][:, 1], 1))


def test_binary_rank_blend_fits_a_threshold(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(3)
    n = 120
    y, folds = np.arange(n) % 2, np.arange(n) % 3
    signal = [y + rng.normal(0, s, n) for s in (0.6, 0.9)]
    for name, s in zip(("a", "b"), signal):
        p1 = 1 / (1 + np.exp(-4 * (s - 0.5)))
        write_run(runs, name, np.stack([1 - p1, p1], 1), y, folds, classes=["neg", "pos"])
    result = comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--metric", "roc_auc", "--rank")
    assert result.exit_code == 0, result.output
    saved = json.loads((runs / ".blends" / "a-b.json").read_text())
    assert saved["mean"] == "rank" and saved["decision"]["positive"] == "pos"
    assert 0 < saved["decision"]["threshold"] < 1
    assert saved["weights"][0] > 0 and sum(saved["weights"]) == pytest.approx(1)


def test_predict_blend_equals_the_weighted_runs_and_cv_report_shows_it(tmp_path, recipe_file):
    runs = tmp_path / "runs"
    result = comp("fit", recipe_file, "--runs", runs, "--set", "cv.scheme=kfold", "--set", "cv.folds=2",
                  "--set", "train.epochs=1", "--no-report")
    assert result.exit_code == 0, result.output + repr(result.exception)
    # A second run without a second fit: a copy whose weights are moved, so it predicts otherwise.
    twin = RunDir.under(runs, "twin")
    shutil.copytree(runs / "tiny", twin.path)
    info = twin.info()
    info.name = "twin"
    twin.write_info(info)
    torch.manual_seed(0)
    for k in twin.completed_folds():
        state = load_checkpoint(twin.fold(k).best)
        state["model"] = {key: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v
                          for key, v in state["model"].items()}
        save_checkpoint(twin.fold(k).best, **state)
    result = comp("blend", "--runs", runs, "--run", "tiny", "--run", "twin", "--name", "both")
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = read_blend(runs, "both")
    assert saved.runs == ["tiny", "twin"] and sum(saved.weights) == pytest.approx(1)
    saved.weights = [0.3, 0.7]  # the copy's OOF is the original's: weights that use both runs
    write_blend(runs, saved)
    out_blend, out_runs = tmp_path / "blend.csv", tmp_path / "runs.csv"
    result = comp("predict", "--runs", runs, "--blend", "both", "--proba", "--out", out_blend)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "blend both: tiny 0.300, twin 0.700" in result.output
    result = comp("predict", "--runs", runs, "--run", "tiny", "--run", "twin", "--weight", "0.3",
                  "--weight", "0.7", "--proba", "--out", out_runs)
    assert result.exit_code == 0, result.output + repr(result.exception)
    blended, plain = pd.read_csv(out_blend), pd.read_csv(out_runs)
    assert list(blended.columns) == list(plain.columns) and list(blended.label) == list(plain.label)
    np.testing.assert_allclose(blended[prob_columns(CLASSES)], plain[prob_columns(CLASSES)], atol=1e-6)
    result = comp("predict", "--runs", runs, "--run", "tiny", "--proba", "--out", out_runs)
    assert not np.allclose(pd.read_csv(out_runs)[prob_columns(CLASSES)], plain[prob_columns(CLASSES)], atol=1e-3)
    result = comp("predict", "--runs", runs, "--blend", "both", "--run", "tiny", "--out", out_blend)
    assert result.exit_code == 2 and "--blend names its runs and weights" in result.output
    result = comp("predict", "--runs", runs, "--blend", "nope", "--out", out_blend)
    assert result.exit_code == 2 and "no blend named 'nope'" in result.output and "blends: both" in result.output
    result = comp("cv-report", "--runs", runs, "--run", "tiny", "--run", "twin")
    assert result.exit_code == 0, result.output + repr(result.exception)
    shown = result.output.split("blend both for accuracy (probability mean): tiny 0.300, twin 0.700")
    assert len(shown) == 2 and "blend in-sample" in shown[1] and "tiny OOF" in shown[1]


# ------------------------------------------------------------------------------ hostile input (issue 35)


def _two_runs(runs, names=("a", "b")):
    y, folds, (a, b), _ = two_experts_and_noise(n=60)
    for name, p in zip(names, (a, b)):
        write_run(runs, name, p, y, folds)


def _refused(result, *words):
    """Exit 2 with one message naming the thing, no traceback."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    for word in words:
        assert word in result.output, result.output


def test_blend_writes_never_follow_a_link_out_of_runs(tmp_path):
    """Issue 35, item 1: runs/.blends/<name>.json planted as a link to a file outside --runs, and
    a .blends that is itself a link to an outside folder: refused, the outside left alone."""
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    _two_runs(runs)
    outside.mkdir()
    (outside / "precious.txt").write_text("not comp's\n")
    (runs / ".blends").mkdir()
    (runs / ".blends" / "ln.json").symlink_to(outside / "precious.txt")
    _refused(comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--name", "ln", "--overwrite"),
             "ln.json", "outside")
    assert (outside / "precious.txt").read_text() == "not comp's\n"
    other = tmp_path / "runs2"
    _two_runs(other)
    (other / ".blends").symlink_to(outside, target_is_directory=True)
    _refused(comp("blend", "--runs", other, "--run", "a", "--run", "b", "--name", "ab"), ".blends", "outside")
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_a_long_blend_name_is_a_message_and_a_long_default_is_cut(tmp_path):
    """Issue 35, item 2: a 300-character --name (blend, predict --blend, export --blend) once
    runs/.blends exists is one message, not "File name too long"; three runs of 100-character
    names get a default name that fits, and a second try says the blend exists."""
    runs = tmp_path / "runs"
    _two_runs(runs)
    ok = comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--name", "ab")
    assert ok.exit_code == 0, ok.output
    long = "n" * 300
    _refused(comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--name", long), "300 characters")
    _refused(comp("predict", "--runs", runs, "--blend", long, "--out", tmp_path / "s.csv"), "300 characters")
    _refused(comp("export", "--runs", runs, "--blend", long, "--out", tmp_path / "b"), "300 characters")
    names = [c * 100 for c in "xyz"]
    y, folds, (a, b), noise = two_experts_and_noise(n=60)
    for name, p in zip(names, (a, b, noise)):
        write_run(runs, name, p, y, folds)
    args = ["blend", "--runs", runs] + [x for n in names for x in ("--run", n)]
    first = comp(*args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    (made,) = [p.stem for p in (runs / ".blends").glob("x*.json")]
    assert len(made) <= 100 and made.startswith("x" * 50)
    _refused(comp(*args), f"blend '{made}' exists")
    assert not (tmp_path / "b").exists() and not (tmp_path / "s.csv").exists()


def test_blend_overwrite_never_replaces_a_file_comp_did_not_make(tmp_path):
    """Issue 35, item 4: --overwrite over runs/.blends/notes.json, which is no blend: refused."""
    runs = tmp_path / "runs"
    _two_runs(runs)
    (runs / ".blends").mkdir()
    notes = runs / ".blends" / "notes.json"
    notes.write_text('{"todo": "try a bigger model"}\n')
    _refused(comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--name", "notes", "--overwrite"),
             "notes.json", "not a blend")
    assert notes.read_text() == '{"todo": "try a bigger model"}\n'


def test_predict_and_export_refuse_a_blend_whose_run_changed(tmp_path):
    """Issue 35, item 6: a run the blend was fitted on is fitted again (its oof.csv differs):
    predict --blend and export --blend stop, naming the run, before anything loads."""
    runs = tmp_path / "runs"
    _two_runs(runs)
    ok = comp("blend", "--runs", runs, "--run", "a", "--run", "b", "--name", "ab")
    assert ok.exit_code == 0, ok.output
    assert set(read_blend(runs, "ab").fitted_on) == {"a", "b"}
    run = RunDir.under(runs, "b")
    oof = run.read_oof()
    oof[prob_columns(CLASSES)] = oof[prob_columns(CLASSES)].to_numpy()[::-1]  # another fit's predictions
    run.write_oof(oof)
    _refused(comp("predict", "--runs", runs, "--blend", "ab", "--out", tmp_path / "s.csv"), "run 'b' changed",
             "blend 'ab'")
    _refused(comp("export", "--runs", runs, "--blend", "ab", "--out", tmp_path / "bundle"), "run 'b' changed")
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "bundle").exists()
