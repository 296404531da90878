"""Rows that only train (issue 26, item 3): ``[data] extra_csv``, hard or soft labels.

Pseudo-labels and external data join every fold's training and nothing else: never validated,
never in oof.csv or a metric. Soft rows (``prob_<class>`` columns, as ``comp predict --proba``
writes them) train with cross-entropy on probabilities, and a one-hot soft row is a hard label.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from comp.cli import app
from comp.data.check import check_data
from comp.data.extra import load_extra_table
from comp.model.losses import build_loss, target_matrix
from comp.model.runtime import resolve_runtime
from comp.recipe import LossConfig, load_recipe
from comp.train.fit import plan_run
from comp.train.loop import fold_parts
from comp.data.mixing import Mix, mixed_loss

runner = CliRunner()
CLASSES = ["cat", "dog", "eel"]


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _solution_rows(root, name="extra.csv", **columns) -> None:
    """The test rows with their true labels as extra rows (plus any columns given)."""
    frame = pd.read_csv(root / "solution.csv", dtype=str)
    frame.assign(**columns).to_csv(root / name, index=False)


def _one_hot(labels) -> dict[str, list[str]]:
    return {f"prob_{c}": ["1.0" if v == c else "0.0" for v in labels] for c in CLASSES}


# --------------------------------------------------------------------------- the loop, end to end


def test_pseudo_labels_train_in_every_fold_and_are_never_scored(tmp_path, competition, recipe_file):
    runs = tmp_path / "runs"
    code, out = _run("fit", recipe_file, "--runs", runs, "--set", "train.epochs=1", "--set", "name=first",
                     "--set", "augment.size=16", "--no-report")
    assert code == 0, out
    code, out = _run("predict", "--run", "first", "--runs", runs, "--proba", "--out", competition / "pseudo.csv")
    assert code == 0, out
    pseudo = pd.read_csv(competition / "pseudo.csv", dtype=str)
    assert [c for c in pseudo.columns if c.startswith("prob_")] == [f"prob_{c}" for c in CLASSES]

    sets = ["--set", "data.extra_csv=pseudo.csv", "--set", "data.extra_image_dir=test",
            "--set", 'cv.scheme="kfold"', "--set", "cv.folds=2", "--set", "train.epochs=1", "--set", "name=second",
            "--set", "augment.size=16"]
    code, out = _run("check", recipe_file, "--runs", runs, *sets)
    assert code == 0, out
    assert "extra rows (train only, in every fold; never validated or scored): 9 from pseudo.csv" in out
    assert "soft labels (prob_ columns)" in out and "repeat train ids" not in out
    code, out = _run("fit", recipe_file, "--runs", runs, "--no-report", *sets)
    assert code == 0, out

    run = runs / "second"
    train_ids = pd.read_csv(competition / "train.csv", dtype=str)["id"]
    test_ids = set(pseudo["id"])
    oof = pd.read_csv(run / "oof.csv", dtype=str)
    assert sorted(oof["id"]) == sorted(train_ids)  # every train row once, no extra row
    assert not test_ids & set(pd.read_csv(run / "folds.csv", dtype=str)["id"])
    log = (run / "fit.log").read_text()
    per_fold = re.findall(r"fold (\d): trains on (\d+) rows \+ (\d+) extra rows, validates (\d+)", log)
    assert [f for f, *_ in per_fold] == ["0", "1"]
    assert all(int(t) + int(v) == 36 and int(e) == 9 for _, t, e, v in per_fold)
    assert sum(int(v) for *_, v in per_fold) == 36

    # Each fold's training dataset, as fit builds it: the fold's train rows, then every extra row.
    recipe = load_recipe(recipe_file, [s for s in sets if s != "--set"])
    report = check_data(recipe, test=False)
    plan = plan_run(recipe, report.readable_train_table(), report.classes, runs, task=report.task,
                    extra=report.readable_extra_table())
    runtime = resolve_runtime(recipe.train, "cpu")
    for fold in plan.plan:
        split = plan.split(recipe, fold)
        dataset = fold_parts(recipe, split, runtime).train_loader.dataset
        ids = list(dataset.table.ids)
        assert len(dataset) == len(split.train_index) + 9
        assert ids[:len(split.train_index)] == list(plan.table.ids[split.train_index])
        assert ids[len(split.train_index):] == list(pseudo["id"])
        assert not set(ids) & set(plan.table.ids[split.valid_index])
        targets = dataset.table.targets
        assert targets.shape == (len(ids), 3)
        np.testing.assert_allclose(targets[-9:], pseudo[[f"prob_{c}" for c in CLASSES]].to_numpy(float),
                                   rtol=1e-5)
        assert dataset[len(ids) - 1][1].dtype == torch.float32


# --------------------------------------------------------------------------- one-hot soft = hard


@pytest.mark.parametrize("name", ["ce", "focal", "sord"])
def test_one_hot_soft_targets_give_the_hard_loss(name):
    torch.manual_seed(0)
    logits, y = torch.randn(7, 3), torch.tensor([0, 1, 2, 2, 1, 0, 2])
    cfg = LossConfig(name=name, class_weights=[2.0, 0.5, 1.0], label_smoothing=0.1)
    loss = build_loss(cfg, [1, 1, 1])
    hard, soft = loss(logits, y), loss(logits, F.one_hot(y, 3).float())
    assert torch.equal(hard, soft)
    if name == "ce":  # and hard labels keep torch's weighted, smoothed cross-entropy
        want = F.cross_entropy(logits, y, weight=torch.tensor([2.0, 0.5, 1.0]), label_smoothing=0.1)
        assert hard.item() == pytest.approx(want.item(), rel=1e-6)


def test_soft_ce_by_formula_and_mixing_blends_the_target_vectors():
    torch.manual_seed(1)
    logits = torch.randn(5, 3)
    q = torch.softmax(torch.randn(5, 3), 1)
    w = torch.tensor([2.0, 0.5, 1.0])
    loss = build_loss(LossConfig(name="ce", class_weights=w.tolist(), label_smoothing=0.2), [1, 1, 1])
    log_p = torch.log_softmax(logits, 1)
    smoothed = 0.8 * q + 0.2 / 3
    want = -(smoothed * w * log_p).sum() / (q @ w).sum()
    assert loss(logits, q).item() == pytest.approx(want.item(), rel=1e-6)
    # torch's soft cross-entropy has the same terms (it divides by N instead of the weight mass).
    assert want.item() * (q @ w).sum().item() / 5 == pytest.approx(
        F.cross_entropy(logits, q, weight=w, label_smoothing=0.2).item(), rel=1e-5)
    # Mixup/cutmix blend the loss; for soft rows that is the loss of the blended target vectors.
    mix = Mix(torch.tensor([3, 0, 4, 1, 2]), 0.3)
    blended = 0.3 * q + 0.7 * q[mix.perm]
    assert mixed_loss(loss, logits, q, mix).item() == pytest.approx(loss(logits, blended).item(), rel=1e-6)
    assert torch.equal(target_matrix(torch.tensor([2, 0]), 3, torch.float32), torch.tensor([[0., 0, 1], [1, 0, 0]]))


def test_one_hot_extra_rows_train_the_same_weights_as_hard_ones(tmp_path, competition, recipe_file):
    labels = pd.read_csv(competition / "solution.csv", dtype=str)["label"]
    _solution_rows(competition, "hard.csv")
    _solution_rows(competition, "soft.csv", label="", **_one_hot(labels))  # the label column is ignored
    runs = tmp_path / "runs"
    common = ["--runs", runs, "--no-report", "--set", "train.epochs=1", "--set", "train.deterministic=true",
              "--set", "augment.size=16",
              "--set", "data.extra_image_dir=test", "--set", 'loss.class_weights="balanced"',
              "--set", "loss.label_smoothing=0.1", "--set", "augment.mixup=0.4"]
    weights = []
    for kind in ("hard", "soft"):
        code, out = _run("fit", recipe_file, *common, "--set", f"name={kind}", "--set", f"data.extra_csv={kind}.csv")
        assert code == 0, out
        weights.append(torch.load(runs / kind / "fold0" / "best.pt", weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    hard_oof = pd.read_csv(runs / "hard" / "oof.csv")
    pd.testing.assert_frame_equal(hard_oof, pd.read_csv(runs / "soft" / "oof.csv"))


# --------------------------------------------------------------------------- comp check


def test_check_warns_when_extra_rows_repeat_train_ids(competition, recipe_file):
    train = pd.read_csv(competition / "train.csv", dtype=str)
    train.iloc[[4, 2]].to_csv(competition / "extra.csv", index=False)
    code, out = _run("check", recipe_file, "--set", "data.extra_csv=extra.csv")
    assert code == 0, out
    assert re.search(r"warning: 2 extra rows \(extra\.csv\) repeat train ids: tr002, tr004; .*leaks into validation",
                     out), out
    assert "extra rows (train only, in every fold; never validated or scored): 2 from extra.csv" in out


@pytest.mark.parametrize("columns, named", [
    ({"label": ["cat", "fox", "dog", "cat", "emu", "eel", "cat", "dog", "eel"]},
     r"2 labels in \[data\] extra_csv extra\.csv outside the class set \['cat', 'dog', 'eel'\]: emu, fox"),
    ({"prob_cat": ["0.5"] * 9, "prob_dog": ["0.5"] * 9},
     r"prob_ columns in \[data\] extra_csv extra\.csv that do not match the classes .*: missing prob_eel"),
    ({"prob_cat": ["0.5"] * 9, "prob_dog": ["0.2"] * 9, "prob_eel": ["0.3"] * 9, "prob_fox": ["0"] * 9},
     r"not a class: prob_fox"),
    ({"prob_cat": ["0.5"] * 8 + ["x"], "prob_dog": ["0.2"] * 9, "prob_eel": ["0.3"] * 9},
     r"1 rows of \[data\] extra_csv extra\.csv whose prob_ values are not numbers >= 0 .*: te008"),
])
def test_bad_extra_labels_are_exit_2_naming_them(tmp_path, competition, recipe_file, columns, named):
    _solution_rows(competition, **columns)
    runs = tmp_path / "runs"
    for command in ("check", "fit"):
        code, out = _run(command, recipe_file, "--runs", runs, "--set", "data.extra_csv=extra.csv",
                         "--set", "data.extra_image_dir=test")
        assert code == 2 and re.search(named, out) and "Traceback" not in out, out
    assert not runs.exists()


def test_soft_rows_for_a_regression_head_are_refused(competition, recipe_file):
    labels = pd.read_csv(competition / "solution.csv", dtype=str)["label"]
    _solution_rows(competition, **_one_hot(labels))
    code, out = _run("check", recipe_file, "--set", "data.extra_csv=extra.csv", "--set", "data.extra_image_dir=test",
                     "--set", 'data.task="ordinal"', "--set", 'model.head="regression"', "--set", 'loss.name="mse"')
    assert code == 2 and "a regression head" in out and "prob_ columns" in out, out


def test_confident_rows_are_kept_and_probabilities_normalised(competition, recipe_file):
    _solution_rows(competition, label="", prob_cat=["2", "1", "0.2"] * 3, prob_dog=["2", "0", "0.45"] * 3,
                   prob_eel=["0", "1", "0.35"] * 3)
    recipe = load_recipe(recipe_file, ["data.extra_csv=extra.csv", "data.extra_image_dir=test",
                                       "data.extra_min_prob=0.5"])
    from comp.data.table import ClassMap
    extra = load_extra_table(recipe, ClassMap(tuple(CLASSES)))
    assert list(extra.ids) == ["te000", "te001", "te003", "te004", "te006", "te007"]  # not those at most 0.45
    np.testing.assert_allclose(extra.targets[:2], [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    assert list(extra.labels[:2]) == [0, 0]
    assert str(extra.paths[0]).endswith("test/te000.png")


def test_an_unreadable_extra_image_is_refused_or_skipped(competition, recipe_file):
    _solution_rows(competition)
    shutil.copytree(competition / "test", competition / "external")  # external data in a folder of its own
    (competition / "external" / "te004.png").unlink()
    sets = ["--set", "data.extra_csv=extra.csv", "--set", "data.extra_image_dir=external"]
    code, out = _run("check", recipe_file, *sets)
    assert code == 2 and "1 missing image files: te004" in out and "--skip-bad drops unreadable images" in out, out
    recipe = load_recipe(recipe_file, [s for s in sets if s != "--set"])
    report = check_data(recipe, test=False, skip_bad=True)
    assert len(report.extra_table) == 9 and "te004" not in list(report.readable_extra_table().ids)
    assert len(report.readable_extra_table()) == 8 and report.extra_line.startswith(
        "extra rows (train only, in every fold; never validated or scored): 8 from extra.csv")
