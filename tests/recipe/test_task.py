"""Tasks (binary, multiclass, ordinal): their metrics against scikit-learn, the task's defaults and
decisions, class values by name, the recipe reference, and the leukemia lab's layout end to end."""

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from comp import kinds, metrics
from comp.decisions import binary_threshold_curve, fit_binary_threshold, nested_binary_predictions
from comp.errors import CompError
from comp.recipe import RecipeError, recipe_from_dict, recipe_to_toml
from comp.recipe.task import by_class, class_weight_values, resolve_task

ROOT = Path(__file__).resolve().parents[2]


def _recipe(**sections):
    return recipe_from_dict({"name": "x", **sections})


# --------------------------------------------------------------------------- metrics by task


def test_binary_metrics_by_hand_and_against_sklearn():
    # 8 rows, positive class 1: TP 3 (rows 3,4,5), FN 1 (row 6), FP 1 (row 1), TN 3.
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.7, 0.2, 0.9, 0.8, 0.6, 0.3, 0.4])
    probs = np.column_stack([1 - p1, p1])
    task = kinds.make_task("binary", 2)
    assert task.kind == "binary" and task.positive == 1 and task.monitor == "roc_auc"
    s = metrics.summarise(task, y, probs)
    assert list(s) == list(metrics.BINARY_METRICS)
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["sensitivity"] == pytest.approx(3 / 4) and s["specificity"] == pytest.approx(3 / 4)
    assert s["precision"] == pytest.approx(3 / 4) and s["f1"] == pytest.approx(3 / 4)
    assert s["balanced_accuracy"] == pytest.approx(3 / 4)
    pred = (p1 >= 0.5).astype(int)
    assert s["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert s["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    # By hand: of the 16 (positive, negative) pairs, 0.6 < 0.7, 0.3 < 0.7 and 0.3 < 0.4 are misordered.
    assert s["roc_auc"] == pytest.approx(13 / 16)
    assert s["pr_auc"] == pytest.approx(skm.average_precision_score(y, p1))
    # The other class as the positive one: sensitivity and specificity swap, AUC is of its probability.
    neg = metrics.summarise(kinds.make_task("binary", 2, positive=0), y, probs)
    assert neg["sensitivity"] == s["specificity"] and neg["specificity"] == s["sensitivity"]
    assert neg["roc_auc"] == pytest.approx(skm.roc_auc_score(y == 0, probs[:, 0]))
    assert neg["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label=0))
    assert neg["pr_auc"] == pytest.approx(skm.average_precision_score(y == 0, probs[:, 0]))


def test_multiclass_metrics_against_sklearn_and_top_k_by_class_count():
    rng = np.random.default_rng(3)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 1])
    probs = rng.dirichlet(np.ones(4), size=len(y))
    task = kinds.make_task("multiclass", 4)
    assert task.kind == "multiclass" and task.monitor == "accuracy"
    s = metrics.summarise(task, y, probs)
    assert "qwk" not in s and "mae" not in s and "top3_accuracy" not in s  # top3 needs 5 classes
    pred = probs.argmax(1)
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert s["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert s["ovr_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert s["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=2))
    # Hand-checked top-2: rows whose class has one of the two largest probabilities.
    top2 = np.argsort(-probs, axis=1)[:, :2]
    assert s["top2_accuracy"] == pytest.approx(np.mean([y[i] in top2[i] for i in range(len(y))]))
    assert kinds.metric_names("multiclass", 3)[-1] == "top2_accuracy"
    assert "top3_accuracy" in kinds.metric_names("multiclass", 10)
    assert "top2_accuracy" not in kinds.metric_names("multiclass", 2)


def test_ordinal_metrics_add_qwk_and_mae_in_grades():
    y = np.array([0, 1, 2, 2, 4, 3])
    pred = np.array([0, 2, 2, 1, 2, 3])
    probs = np.eye(5)[pred] * 0.6 + 0.08
    task = kinds.make_task("ordinal", 5)
    assert task.monitor == "qwk" and task.mode == "max"
    s = metrics.summarise(task, y, probs)
    assert list(s) == list(metrics.MULTICLASS_METRICS) + ["qwk", "mae"]
    assert s["mae"] == pytest.approx((0 + 1 + 0 + 1 + 2 + 0) / 6)
    assert s["qwk"] == pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(5)))
    # A decision other than argmax (ordinal cuts) changes the decision metrics, not the AUC.
    t = metrics.summarise(task, y, probs, y_pred=y)
    assert t["qwk"] == 1.0 and t["mae"] == 0.0 and t["ovr_auc"] == s["ovr_auc"]
    assert metrics.MONITOR_MODES["mae"] == "min" and metrics.MONITOR_MODES["val_loss"] == "min"


def test_degenerate_sets_give_nan_not_a_crash():
    task = kinds.make_task("binary", 2)
    one_class = metrics.summarise(task, np.zeros(4, dtype=int), np.full((4, 2), 0.5))
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["pr_auc"])
    assert math.isnan(one_class["sensitivity"]) and one_class["specificity"] == 1.0
    empty = metrics.summarise(kinds.make_task("ordinal", 3), np.zeros(0, dtype=int), np.zeros((0, 3)))
    assert all(math.isnan(v) for v in empty.values())
    labels_only = metrics.summarise(task, np.array([0, 1]), None, y_pred=np.array([0, 1]))
    assert "roc_auc" not in labels_only and labels_only["accuracy"] == 1.0


def test_task_defaults():
    assert kinds.make_task("binary", 2, metric="weighted_f1").monitor == "weighted_f1"
    assert kinds.make_task("ordinal", 5, monitor="val_loss").mode == "min"
    # [data] task = "auto" is resolved from the recipe, in one place (resolve_task).
    assert resolve_task(_recipe(), ["a", "b"]).kind == "binary"
    assert resolve_task(_recipe(), [str(i) for i in range(10)]).kind == "multiclass"  # numbers: no order
    # The threshold is tuned for the leaderboard metric, else the monitor, else balanced accuracy.
    assert kinds.make_task("binary", 2, metric="weighted_f1").decision_metric == "weighted_f1"
    assert kinds.make_task("binary", 2, monitor="f1").decision_metric == "f1"
    assert kinds.make_task("binary", 2).decision_metric == "balanced_accuracy"  # roc_auc: no cut


def test_binary_counts_equal_sklearn_at_every_threshold():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.35
    scores = np.round(np.clip(0.3 * y + 0.7 * rng.random(60), 0, 1), 2)  # ties on purpose
    for name, sk in [("accuracy", skm.accuracy_score), ("balanced_accuracy", skm.balanced_accuracy_score),
                     ("sensitivity", lambda a, b: skm.recall_score(a, b)),
                     ("specificity", lambda a, b: skm.recall_score(a, b, pos_label=0)),
                     ("precision", lambda a, b: skm.precision_score(a, b, zero_division=0)),
                     ("f1", lambda a, b: skm.f1_score(a, b, zero_division=0)),
                     ("weighted_f1", lambda a, b: skm.f1_score(a, b, average="weighted", zero_division=0))]:
        cuts, values = binary_threshold_curve(scores, y, name)
        assert len(cuts) == len(np.unique(scores)) + 1
        for cut, value in zip(cuts[::5], values[::5]):
            assert value == pytest.approx(sk(y.astype(int), (scores >= cut).astype(int))), (name, cut)
        best = fit_binary_threshold(scores, y, name)
        assert sk(y.astype(int), (scores >= best).astype(int)) == pytest.approx(values.max())


def test_threshold_tuning_by_hand_and_nested():
    # Positives score 0.3-0.45, negatives 0.05-0.25: argmax (0.5) calls everything negative, the
    # tuned cut separates them, at the middle of the gap nearest 0.5.
    scores = np.array([0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert fit_binary_threshold(scores, y, "f1") == pytest.approx(0.275)
    # Nested, folds alternating: fold 1's rows are cut at 0.25 (tuned on fold 0's gap 0.2-0.3), so its
    # negative at 0.25 turns positive; fold 0's rows are cut at 0.3 (fold 1's gap 0.25-0.35).
    nested = nested_binary_predictions(scores, y, np.array([0, 1] * 4), "f1")
    assert nested.tolist() == [False, False, False, True, True, True, True, True]
    assert nested_binary_predictions(scores, y, np.zeros(8), "f1") is None  # one fold: nothing held out


# --------------------------------------------------------------------------- the recipe's task


def test_resolve_task_positive_class_and_errors():
    task = resolve_task(_recipe(), ["ALL", "hem"])
    assert task.kind == "binary" and task.positive == 1  # the second class in class order
    task = resolve_task(_recipe(data={"positive": "ALL"}, submission={"metric": "weighted_f1"}), ["ALL", "hem"])
    assert task.positive == 0 and task.monitor == "weighted_f1" and task.metric == "weighted_f1"
    with pytest.raises(CompError, match=r"\[data\] positive 'all' is not a class; the classes are \['ALL', 'hem'\]"):
        resolve_task(_recipe(data={"positive": "all"}), ["ALL", "hem"])
    with pytest.raises(CompError, match=r"\[train\] monitor 'qwk' is not computed for a multiclass task.*allowed: auto, val_loss, "
                       r"accuracy.*declare \[data\] task = \"ordinal\""):
        resolve_task(_recipe(train={"monitor": "qwk"}), [str(i) for i in range(10)])
    with pytest.raises(CompError, match=r'\[data\] task = "binary" needs two classes'):
        resolve_task(_recipe(data={"task": "binary"}), ["a", "b", "c"])
    with pytest.raises(CompError, match=r'"ordinal_thresholds" is for ordinal tasks'):
        resolve_task(_recipe(predict={"decision": "ordinal_thresholds"}), ["a", "b", "c"])
    with pytest.raises(CompError, match=r'"threshold" is for binary tasks'):
        resolve_task(_recipe(predict={"decision": "threshold"}), ["a", "b", "c"])
    assert resolve_task(_recipe(data={"task": "ordinal"}), ["0", "1", "2"]).monitor == "qwk"


def test_continuous_looking_labels_are_never_a_multiclass_task():
    """Issue 35, item 11: numbers as labels, most held by one or two images (a Pawpularity-like
    score), stop "auto" and a declared "multiclass" with a message naming task = "regression";
    [data] numeric_classes = true keeps a declared multiclass task (class ids)."""
    from comp.recipe.task import looks_continuous

    scores = [f"{v:.2f}" for v in np.linspace(1, 100, 40)]
    ones = [1] * 30 + [2] * 5 + [7] * 5
    assert looks_continuous(scores, ones)
    assert not looks_continuous([str(i) for i in range(40)], [30] * 40)  # numbered classes, many images each
    assert not looks_continuous([f"w_{i}" for i in range(40)], ones)  # names, not numbers
    assert not looks_continuous(scores[:10], ones[:10])  # too few labels to tell
    assert not looks_continuous(scores, [1] * 20 + [3] * 20)  # half, not most
    for data in ({}, {"task": "multiclass"}):
        with pytest.raises(RecipeError, match=r'look like a continuous target.*\[data\] task = "regression".*'
                                              r'\[data\] numeric_classes = true'):
            resolve_task(_recipe(data=data), scores, ones)
    task = resolve_task(_recipe(data={"task": "multiclass", "numeric_classes": True}), scores, ones)
    assert task.kind == "multiclass" and task.num_classes == 40
    with pytest.raises(RecipeError, match="continuous"):  # auto never resolves them to multiclass
        resolve_task(_recipe(data={"numeric_classes": True}), scores, ones)
    assert resolve_task(_recipe(), scores).kind == "multiclass"  # without counts (a run's record): as before


def test_class_names_with_a_control_character_are_refused():
    """Issue 35, item 10: a newline in a class name would break the class table over two lines."""
    from comp.recipe.task import class_names

    for name in ("hem\nALL", "hem\tx", "a\x00"):
        with pytest.raises(RecipeError, match=r"\[data\] class_names\.1 = .* control character"):
            class_names(_recipe(data={"class_names": {"1": name}}), ["0", "1"])
    assert class_names(_recipe(data={"class_names": {"1": "ALL blast \u00e9"}}), ["0", "1"])[0] == ["0", "ALL blast \u00e9"]


@pytest.mark.parametrize("raw, message", [
    ({"data": {"task": "multiclass"}, "train": {"monitor": "qwk"}}, "[train] monitor 'qwk' is not computed for a multiclass task"),
    ({"data": {"task": "binary"}, "predict": {"decision": "ordinal_thresholds"}}, '"ordinal_thresholds" is for ordinal tasks'),
    ({"data": {"task": "ordinal"}, "predict": {"decision": "threshold"}}, '"threshold" is for binary tasks'),
    ({"data": {"task": "ordinal", "positive": "a"}}, "[data] positive is for binary tasks"),
    ({"train": {"monitor": "kappa"}}, "[train] monitor must be one of 'auto', 'val_loss', 'accuracy'"),
    ({"submission": {"metric": "auc"}}, "[submission] metric must be one of"),
    ({"loss": {"class_weights": {"ALL": -1.0}}}, "[loss] class_weights.ALL must be a positive number"),
    ({"loss": {"class_weights": {"ALL": "x"}}}, "[loss] class_weights must be"),
])
def test_declared_tasks_are_checked_when_the_recipe_loads(raw, message):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "x", **raw}, "r.toml")
    assert message in str(err.value)


def test_class_weights_by_name_land_on_the_right_class_index():
    recipe = _recipe(loss={"class_weights": {"hem": 1.0, "ALL": 1.2}})
    assert recipe.loss.class_weights == {"hem": 1.0, "ALL": 1.2}
    assert recipe_from_dict(tomllib.loads(recipe_to_toml(recipe))) == recipe  # round-trips as a table
    assert 'class_weights = { "hem" = 1.0, "ALL" = 1.2 }' in recipe_to_toml(recipe)
    assert class_weight_values([10, 20], recipe.loss.class_weights, ["ALL", "hem"]) == [1.2, 1.0]
    assert class_weight_values([10, 20], recipe.loss.class_weights, ["hem", "ALL"]) == [1.0, 1.2]

    from comp.model.losses import build_loss

    loss = build_loss(recipe.loss, [10, 20], ["ALL", "hem"])
    assert loss.weight.tolist() == pytest.approx([1.2, 1.0])
    with pytest.raises(CompError, match=r"class_weights names 'hen', which is not a class; the classes are \['ALL', 'hem'\]"):
        class_weight_values([1, 1], {"ALL": 1.0, "hen": 2.0}, ["ALL", "hem"])
    with pytest.raises(CompError, match=r"class_weights gives no value for class 'hem'"):
        class_weight_values([1, 1], {"ALL": 1.0}, ["ALL", "hem"])
    assert by_class([1, 2], ["a", "b"], "x") == [1, 2]
    with pytest.raises(CompError, match=r"x has 3 values but there are 2 classes \['a', 'b'\]"):
        by_class([1, 2, 3], ["a", "b"], "x")


# --------------------------------------------------------------------------- the recipe reference


def test_readme_reference_table_is_the_generated_one():
    from comp.recipe.reference import reference_table

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- recipe reference: comp recipe --defaults --markdown -->", "<!-- end of recipe reference -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    assert table == reference_table(), "README's recipe reference is stale: paste `comp recipe --defaults --markdown`"


def test_defaults_recipe_is_complete_and_loads(tmp_path):
    from typer.testing import CliRunner

    from comp.cli import app
    from comp.recipe import Recipe, load_recipe

    result = CliRunner().invoke(app, ["recipe", "--defaults"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "defaults.toml"
    path.write_text(result.output)
    assert load_recipe(path) == Recipe(name="defaults")
    lines = [l for l in result.output.splitlines() if " = " in l]
    assert all(" # " in l for l in lines)  # every field has its comment
    assert any(l.startswith('task = "auto"') for l in lines) and any(l.startswith('init_from = ""') for l in lines)


# --------------------------------------------------------------------------- through the command line


def comp(*args):
    from typer.testing import CliRunner

    from comp.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def _ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_a_nominal_multiclass_run_shows_no_qwk_and_fits_no_thresholds(tmp_path, competition):
    """The demo recipe (ten unordered digits) on the tiny three-class competition: monitored by
    accuracy, reported without QWK, and no ordinal thresholds fitted or accepted."""
    runs = tmp_path / "runs"
    out = _ok(comp("fit", ROOT / "recipes/demo_digits.toml", "--runs", runs, "--set", f"data.root={competition}",
                   "--set", "train.epochs=1", "--set", "train.workers=0", "--set", "train.batch_size=8",
                   "--set", "augment.size=16", "--set", "schedule.warmup_epochs=0"))
    assert "task multiclass (3 classes), monitor accuracy" in out
    assert "qwk" not in out and "thresholds" not in out and "top2" in out
    run = runs / "demo_digits"
    assert not (run / "thresholds.json").exists()
    report = _ok(comp("cv-report", "--runs", runs))
    assert "qwk" not in report and "balanced_accuracy" in report
    result = comp("predict", "--runs", runs, "--decision", "ordinal_thresholds", "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and '"ordinal_thresholds" is for ordinal tasks' in result.output
    result = comp("fit", ROOT / "recipes/demo_digits.toml", "--runs", runs, "--overwrite",
                  "--set", f"data.root={competition}", "--set", "train.monitor=qwk")
    assert result.exit_code == 2 and "[train] monitor 'qwk' is not computed for a multiclass task" in result.output


def _binary(competition: Path) -> Path:
    """The tiny competition with only its cat and dog rows: a binary task."""
    import pandas as pd

    for name in ("train.csv", "solution.csv"):
        frame = pd.read_csv(competition / name, dtype=str)
        frame[frame.label != "eel"].to_csv(competition / name, index=False)
    keep = set(pd.read_csv(competition / "solution.csv", dtype=str).id)
    for name in ("test.csv", "sample_submission.csv"):
        frame = pd.read_csv(competition / name, dtype=str)
        frame[frame.id.isin(keep)].to_csv(competition / name, index=False)
    return competition


def test_a_binary_run_tunes_reports_nested_and_applies_a_threshold(tmp_path, competition, recipe_file):
    import json

    import pandas as pd

    _binary(competition)
    runs = tmp_path / "runs"
    out = _ok(comp("fit", recipe_file, "--runs", runs, "--set", "cv.scheme=kfold", "--set", "cv.folds=3",
                   "--set", "train.epochs=1", "--set", "train.monitor=auto", "--set", "submission.metric=f1",
                   "--set", "data.positive=cat"))
    assert "task binary (2 classes, positive class 'cat'), monitor f1, leaderboard metric f1" in out
    assert "sens" in out and "roc_auc" in out and "qwk" not in out
    run = runs / "tiny"
    saved = json.loads((run / "thresholds.json").read_text())
    assert saved["positive"] == "cat" and saved["metric"] == "f1" and 0.0 <= saved["threshold"] <= 1.0 + 1e-5
    assert "OOF f1: argmax" in out and "threshold" in out and "fitted on the other folds" in out

    history = pd.read_csv(run / "fold0/history.csv")
    assert {"sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc"} <= set(history.columns)
    report = json.loads(_ok(comp("cv-report", "--runs", runs)) and (run / "report.json").read_text())
    assert {"f1_threshold", "f1_threshold_nested", "accuracy_threshold_nested"} <= set(report["overall"])
    assert report["thresholds"] == [pytest.approx(saved["threshold"])]

    sub_path = tmp_path / "thr.csv"
    _ok(comp("predict", "--runs", runs, "--decision", "threshold", "--proba", "--out", sub_path))
    sub = pd.read_csv(sub_path, dtype={"id": str, "label": str})
    expected = ["cat" if p >= saved["threshold"] else "dog" for p in sub.prob_cat]
    assert list(sub.label) == expected  # the tuned cut, not argmax
    scores = _ok(comp("score", sub_path, "--solution", competition / "solution.csv", "--run", "tiny",
                      "--runs", runs))
    assert scores.split()[0] == "f1" and "specificity" in scores and "roc_auc" in scores


def _write_cnmc(root: Path, seed: int = 0) -> Path:
    """A C-NMC 2019-shaped folder: train.csv, valid.csv and test.csv with columns Path,label
    (labels ALL / hem), BMP cell images in nested folders, no sample_submission.csv."""
    import cv2
    import pandas as pd

    rng = np.random.default_rng(seed)
    colour = {"ALL": (200, 60, 160), "hem": (90, 160, 220)}
    for split, n in (("train", 24), ("valid", 10), ("test", 8)):
        rows = []
        for i in range(n):
            label = "ALL" if i % 3 else "hem"  # two ALL to one hem, as in C-NMC
            folder = root / split / f"fold_{i % 2}" / label.lower()
            folder.mkdir(parents=True, exist_ok=True)
            image = np.clip(np.array(colour[label]) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            path = folder / f"UID_{split}_{i}_{label.lower()}.bmp"
            cv2.imwrite(str(path), image)
            rows.append({"Path": str(path.relative_to(root)), "label": label})
        pd.DataFrame(rows).to_csv(root / f"{split}.csv", index=False)
    return root


def test_the_leukemia_lab_end_to_end(tmp_path):
    """recipes/cnmc_r18.toml → recipes/cnmc_r18_all.toml (init_from) → predict → score, on a
    synthetic C-NMC folder, exactly as README's leukemia section runs them."""
    import pandas as pd

    data = _write_cnmc(tmp_path / "cnmc")
    runs = tmp_path / "runs"
    tiny = ["--runs", runs, "--set", f"data.root={data}", "--set", "train.epochs=1", "--set", "augment.size=32",
            "--set", "train.workers=0", "--set", "train.batch_size=8"]
    check = _ok(comp("check", ROOT / "recipes/cnmc_r18.toml", "--set", f"data.root={data}"))
    lines = [line.split() for line in check.splitlines()]
    # The recipe is written for the course's 0/1 labels; on ALL/hem its names are the labels.
    assert ["0", "ALL", "22", "64.7%", "1"] in lines and ["1", "hem", "12", "35.3%", "1.2"] in lines
    assert "note: the labels are already the class names (ALL, hem)" in check
    assert "task binary (2 classes, positive class 'ALL'), monitor weighted_f1, leaderboard metric weighted_f1" in check
    assert "no sample_submission.csv: the submission has test.csv's 'Path' column and 'label'" in check

    out = _ok(comp("fit", ROOT / "recipes/cnmc_r18.toml", *tiny))
    assert "predefined with folds [0]" in out and "wf1" in out
    oof = pd.read_csv(runs / "cnmc_r18/oof.csv", dtype=str)
    assert sorted(oof.id) == sorted(pd.read_csv(data / "valid.csv", dtype=str).Path)  # the path is the id

    out = _ok(comp("fit", ROOT / "recipes/cnmc_r18_all.toml", *tiny))
    assert f"fold 0: starting from {runs / 'cnmc_r18' / 'fold0' / 'best.pt'} (cnmc_r18's fold 0)" in out
    assert "34 training rows" in out  # train + valid

    sub_path = tmp_path / "submissions" / "resnet18_output.csv"
    out = _ok(comp("predict", "--runs", runs, "--run", "cnmc_r18_all", "--tta", "--out", sub_path))
    assert "no sample_submission.csv: the submission has test.csv's 'Path' column and 'label', in test.csv's order" in out
    sub = pd.read_csv(sub_path, dtype=str)
    test = pd.read_csv(data / "test.csv", dtype=str)
    assert list(sub.columns) == ["Path", "label"] and list(sub.Path) == list(test.Path)
    assert set(sub.label) <= {"ALL", "hem"}
    scores = _ok(comp("score", sub_path, "--solution", data / "test.csv", "--run", "cnmc_r18_all", "--runs", runs))
    assert scores.split()[0] == "weighted_f1" and "sensitivity" in scores


def test_init_from_needs_the_same_classes(tmp_path):
    from comp.run.folder import RunDir, RunInfo

    data = _write_cnmc(tmp_path / "cnmc")
    other = RunDir(tmp_path / "other")
    other.path.mkdir()
    other.write_info(RunInfo(name="other", recipe_file="x.toml", overrides=[], classes=["cat", "dog"],
                             scheme="holdout", folds=[0]))
    result = comp("fit", ROOT / "recipes/cnmc_r18_all.toml", "--runs", tmp_path / "runs", "--set", f"data.root={data}",
                  "--set", f"model.init_from={other.path}")
    assert result.exit_code == 2
    assert "was trained on classes ['cat', 'dog'], this run has ['ALL', 'hem']; the class lists must match" in result.output
    assert not (tmp_path / "runs" / "cnmc_r18_all").exists()  # checked before anything is written
    result = comp("fit", ROOT / "recipes/cnmc_r18_all.toml", "--runs", tmp_path / "runs", "--set", f"data.root={data}")
    assert result.exit_code == 2 and "[model] init_from 'cnmc_r18': no run of that name" in result.output


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.drop(columns=["label"]), "missing label column in sample_submission.csv"),
    (lambda s: s.assign(id=["zz" + i for i in s.id]), "ids of sample_submission.csv not in test.csv"),
])
def test_a_bad_sample_submission_stops_before_inference(tmp_path, competition, recipe_file, damage, message):
    import pandas as pd

    runs = tmp_path / "runs"
    _ok(comp("fit", recipe_file, "--runs", runs, "--set", "train.epochs=1"))
    sample = pd.read_csv(competition / "sample_submission.csv", dtype=str)
    damage(sample).to_csv(competition / "sample_submission.csv", index=False)
    (runs / "tiny/fold0/best.pt").write_bytes(b"not a checkpoint")  # loading any model would fail differently
    result = comp("predict", "--runs", runs, "--out", tmp_path / "sub.csv")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "checkpoint" not in result.output and not (tmp_path / "sub.csv").exists()
    result = comp("check", recipe_file)
    assert result.exit_code == 2 and message in result.output
