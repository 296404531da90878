"""Multi-label tasks ([data] task = "multilabel"): the kind's pieces, then tiny competitions in
both layouts (a column of tags; one 0/1 column per label) through check, fit, cv-report,
predict --tta, score, blend and an offline bundle, and the bad input the issue names."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from comp.data import splits
from comp.decisions import fit_label_thresholds, outputs_to_probs
from comp.kinds import kind_of, make_task, rule_of
from comp.kinds.multilabel import MULTILABEL, join_labels, split_labels, tuned_for
from comp.metrics import multilabel_scores
from comp.model.losses import build_loss
from comp.recipe import LossConfig
from tests.conftest import run_comp, write_multilabel_competition

NAMES = ["red", "green", "blue"]


def test_labels_round_trip_through_the_runs_csv_cells():
    Y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    cells = join_labels(Y, NAMES)
    assert cells.tolist() == ["red blue", "", "green"]
    assert split_labels(cells, NAMES).tolist() == Y.tolist()
    spaced = ["ETT - Abnormal", "NGT - Normal"]  # RANZCR's names hold spaces: joined by "|"
    assert join_labels(np.array([[1, 1]]), spaced).tolist() == ["ETT - Abnormal|NGT - Normal"]
    assert split_labels(["ETT - Abnormal|NGT - Normal"], spaced).tolist() == [[1, 1]]
    with pytest.raises(ValueError, match="'purple'"):
        split_labels(["purple"], NAMES)


def test_the_rules_fit_apply_and_round_trip_thresholds_json():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(60, 3))
    probs = np.clip(0.35 * y + rng.uniform(0, 0.6, size=y.shape), 0, 1)  # positives higher, below 0.5 often
    task = make_task("multilabel", 3, metric="fbeta", class_names=tuple(NAMES), beta=2.0)
    assert tuned_for(task) == "fbeta" and tuned_for(make_task("multilabel", 3, metric="mean_auc")) == "f1_macro"
    rule = kind_of(task).merge_rule
    fitted = rule.fit(probs, y, task)
    assert fitted.cuts.tolist() == fit_label_thresholds(probs, y, "fbeta", 2.0).tolist()
    score = lambda pred: multilabel_scores(y, probs, pred, beta=2.0)["fbeta"]  # noqa: E731
    half = rule_of(MULTILABEL.rule_for("argmax", True))
    assert half.apply(half_decision := _decision("half"), probs).tolist() == (probs >= 0.5).astype(int).tolist()
    assert score(rule.apply(fitted, probs)) > score(half.apply(half_decision, probs))
    saved = rule.to_json(fitted, NAMES, "fbeta")
    assert set(saved) == {"label_thresholds", "global_threshold", "metric"}
    back = rule.from_json(json.loads(json.dumps(saved)), NAMES)
    assert back.cuts.tolist() == pytest.approx(fitted.cuts.tolist())
    glob = rule_of(MULTILABEL.rule_for("threshold", True))
    assert glob.name == "global_threshold"
    one = glob.from_json(saved, NAMES)
    assert one.threshold == pytest.approx(fitted.threshold)
    assert glob.apply(one, probs).tolist() == (probs >= fitted.threshold).astype(int).tolist()
    # Nested: each fold decided by thresholds fitted on the other folds only.
    folds = np.arange(60) % 3
    decided = rule.decided(probs, y, folds, task, fitted)
    expected = np.zeros_like(y)
    for k in range(3):
        cuts = fit_label_thresholds(probs[folds != k], y[folds != k], "fbeta", 2.0)
        expected[folds == k] = probs[folds == k] >= cuts
    assert decided.nested.tolist() == expected.tolist()
    # at_least_one: a row with nothing above its threshold gets its most probable label.
    some = _decision("label_thresholds", cuts=np.array([0.9, 0.9, 0.9]), at_least_one=True)
    assert rule.apply(some, np.array([[0.2, 0.7, 0.1]])).tolist() == [[0, 1, 0]]


def _decision(rule, **kw):
    from comp.kinds import Decision

    return Decision(rule, **kw)


def test_sigmoid_and_identity_activations():
    out = np.array([[0.0, 2.0, -800.0]])
    assert outputs_to_probs(out, "sigmoid", 3)[0].tolist() == pytest.approx([0.5, 1 / (1 + np.exp(-2.0)), 0.0])
    assert outputs_to_probs(np.array([[3.5], [-1.0]]), "identity", 1).tolist() == [[3.5], [-1.0]]


def test_bce_pos_weight_and_asl():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-0.2, 0.1], [1.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    counts, rows = [1, 3], 4  # positives per label
    bce = build_loss(LossConfig(name="bce", pos_weight="balanced"), counts, NAMES[:2], rows=rows)
    assert bce.pos_weight.tolist() == pytest.approx([3.0, 1 / 3])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets,
                                                                     pos_weight=torch.tensor([3.0, 1 / 3]))
    assert float(bce(logits, targets)) == pytest.approx(float(expected))
    sqrt = build_loss(LossConfig(name="bce", pos_weight="sqrt"), counts, NAMES[:2], rows=rows)
    assert sqrt.pos_weight.tolist() == pytest.approx([3 ** 0.5, (1 / 3) ** 0.5])
    table = build_loss(LossConfig(name="bce", pos_weight={"green": 2.0}), counts, NAMES[:2], rows=rows)
    assert table.pos_weight.tolist() == [1.0, 2.0]
    smooth = build_loss(LossConfig(name="bce", label_smoothing=0.2), counts, NAMES[:2], rows=rows)
    assert float(smooth(logits, targets)) == pytest.approx(float(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, targets * 0.8 + 0.1)))
    asl = build_loss(LossConfig(name="asl"), counts, NAMES[:2], rows=rows)
    right, wrong = targets * 8 - 4, 4 - targets * 8
    assert 0 <= float(asl(right, targets)) < float(asl(wrong, targets))
    from comp.errors import CompError

    with pytest.raises(CompError, match="'purple'"):
        build_loss(LossConfig(name="bce", pos_weight={"purple": 2.0}), counts, NAMES[:2], rows=rows)


def test_label_matrices_are_stratified_iteratively():
    Y = np.array([[(i * 5 + 1) % 8 >> j & 1 for j in range(3)] for i in range(48)])
    folds = splits.kfold_folds(Y, 3, seed=0)
    assert folds.tolist() == splits.multilabel_folds(Y, 3, seed=0).tolist()
    for j in range(3):  # every label spread evenly over the folds
        per_fold = [Y[folds == k, j].sum() for k in range(3)]
        assert max(per_fold) - min(per_fold) <= 2  # (iterative stratification: within a couple of rows)
    hold = splits.holdout_folds(Y, 0.25, seed=0)
    assert set(hold.tolist()) == {-1, 0} and abs((hold == 0).sum() - 12) <= 1


def test_multilabel_end_to_end_with_tags(tmp_path):
    root = write_multilabel_competition(tmp_path / "c", n_train=36, n_test=8)
    recipe = _recipe(tmp_path, root, 'label_col = "tags"', metric="fbeta")
    runs = tmp_path / "runs"
    code, out, err = run_comp(["check", recipe], tmp_path)
    assert code == 0, err
    assert "task multilabel (3 labels)" in out + err
    assert "red    18 rows (50.0%)" in out + err and "rows without a label: 5 rows (13.9%)" in out + err
    for name, extra in (("ml", []), ("ml2", ["--set", "name=ml2", "--set", "loss.name=asl",
                                             "--set", "augment.mixup=0.4"])):
        code, out, err = run_comp(["fit", recipe, "--runs", runs, *extra], tmp_path)
        assert code == 0, err
    run = runs / "ml"
    assert "train_acc" in (run / "fold0/history.csv").read_text().splitlines()[0]
    saved = json.loads((run / "thresholds.json").read_text())
    assert sorted(saved["label_thresholds"]) == sorted(NAMES) and saved["metric"] == "fbeta"
    oof = pd.read_csv(run / "oof.csv", keep_default_na=False)
    train = pd.read_csv(root / "train.csv", keep_default_na=False)
    # Each row's tags as a set (the run writes them in label order).
    assert {i: set(t.split()) for i, t in zip(oof.id, oof.label)} == {i: set(t.split()) for i, t in zip(train.id, train.tags)}
    assert [c for c in oof.columns if c.startswith("prob_")] == ["prob_blue", "prob_green", "prob_red"]  # natural order
    folds = pd.read_csv(run / "folds.csv").merge(train, on="id")
    for tag in NAMES:  # multilabel stratified: each fold validates rows of every label
        assert folds[folds.tags.str.contains(tag)].groupby("fold").size().min() >= 8
    for picture in ("roc.png", "pr.png", "cooccurrence.png", "oof_mistakes.jpg", "val_predictions.jpg", "cam.jpg"):
        assert (run / picture).is_file(), picture
    report = (run / "report.md").read_text()
    assert "## Per label" in report and "fbeta_label_thresholds_nested" in report
    assert not (run / "confusion.png").exists()

    sub = tmp_path / "sub.csv"
    code, out, err = run_comp(["predict", "--runs", runs, "--run", "ml", "--tta", "--out", sub], tmp_path)
    assert code == 0, err
    written = pd.read_csv(sub, keep_default_na=False)
    assert list(written.columns) == ["id", "tags"]
    assert list(written.id) == list(pd.read_csv(root / "sample_submission.csv").id)
    assert all(set(t.split()) <= set(NAMES) for t in written.tags)
    probs = pd.read_csv(run / "oof.csv")[["prob_red", "prob_green", "prob_blue"]].to_numpy()
    assert probs.min() >= 0 and probs.max() <= 1 and not np.allclose(probs.sum(axis=1), 1)  # sigmoids
    fixed = tmp_path / "fixed.csv"  # --threshold P: every label at that probability
    code, out, err = run_comp(["predict", "--runs", runs, "--run", "ml", "--threshold", "0.0", "--out", fixed], tmp_path)
    assert code == 0, err
    assert set(pd.read_csv(fixed).tags) == {"blue green red"}
    code, out, err = run_comp(["score", "--runs", runs, "--run", "ml", sub, "--solution", root / "solution.csv"],
                              tmp_path)
    assert code == 0, err
    first = out.splitlines()[0].split()
    assert first[0] == "fbeta" and 0 <= float(first[1]) <= 1

    code, out, err = run_comp(["blend", "--runs", runs, "--run", "ml", "--run", "ml2", "--name", "b"], tmp_path)
    assert code == 0, err
    blended = tmp_path / "blend.csv"
    code, out, err = run_comp(["predict", "--runs", runs, "--blend", "b", "--out", blended], tmp_path)
    assert code == 0, err
    assert list(pd.read_csv(blended).id) == list(written.id)

    # comp tune's objective: the leaderboard metric at thresholds fitted on the other folds.
    from comp.tune.objective import trial_figure

    figure = trial_figure(run)
    assert (figure.metric, figure.how) == ("fbeta", "label thresholds fitted on the other folds")
    assert figure.value == pytest.approx(json.loads((run / "report.json").read_text())["overall"]
                                         ["fbeta_label_thresholds_nested"])

    # One soft pseudo-label round: prob_<label> rows kept where every label is sure enough.
    code, out, err = run_comp(["fit", recipe, "--runs", runs, "--set", "name=ml_pseudo", "--pseudo-from", "ml",
                               "--min-prob", "0.5", "--no-report"], tmp_path)
    assert code == 0, err
    pseudo = pd.read_csv(runs / "ml_pseudo" / "pseudo_labels.csv", keep_default_na=False)
    record = json.loads((runs / "ml_pseudo" / "pseudo.json").read_text())
    assert record["kept_rows"] == len(pseudo) == 8 and sorted(record["per_class"]) == sorted(NAMES)
    assert record["per_class"] == {n: int((pseudo[f"prob_{n}"] >= 0.5).sum()) for n in NAMES}

    bundle = tmp_path / "bundle"
    code, out, err = run_comp(["export", "--runs", runs, "--run", "ml", "--out", bundle], tmp_path)
    assert code == 0, err
    from_bundle = tmp_path / "bundle.csv"
    code, out, err = run_comp(["predict", "--bundle", bundle, "--data", root, "--out", from_bundle], tmp_path)
    assert code == 0, err
    plain = tmp_path / "plain.csv"
    code, out, err = run_comp(["predict", "--runs", runs, "--run", "ml", "--out", plain], tmp_path)
    assert code == 0, err
    assert pd.read_csv(from_bundle, keep_default_na=False).equals(pd.read_csv(plain, keep_default_na=False))


def test_one_column_per_label_writes_probabilities(tmp_path):
    root = write_multilabel_competition(tmp_path / "c", n_train=24, n_test=6, columns=True)
    recipe = _recipe(tmp_path, root, f"label_cols = {json.dumps(NAMES)}", metric="mean_auc")
    runs = tmp_path / "runs"
    code, out, err = run_comp(["fit", recipe, "--runs", runs, "--no-report"], tmp_path)
    assert code == 0, err
    sub = tmp_path / "sub.csv"
    code, out, err = run_comp(["predict", "--runs", runs, "--out", sub], tmp_path)
    assert code == 0, err
    written = pd.read_csv(sub)
    assert list(written.columns) == ["id", *NAMES]
    assert written[NAMES].to_numpy().min() > 0 and not written[NAMES].isin([0, 1]).all().all()
    code, out, err = run_comp(["score", "--runs", runs, sub, "--solution", root / "solution.csv"], tmp_path)
    assert code == 0, err
    assert out.splitlines()[1].split()[0] == "mean_auc", out  # (after the line naming the latest run)


@pytest.mark.parametrize("layout, change, message", [
    ("tags", lambda root: _edit(root / "sample_submission.csv", "tags", "purple"), "'purple'"),
    ("columns", lambda root: _edit(root / "train.csv", "green", "yes"), "'yes', not 0 or 1"),
    ("tags", lambda root: _edit(root / "train.csv", "tags", "red red"), "appears more than once"),
])
def test_bad_multilabel_input_is_one_message(tmp_path, layout, change, message):
    root = write_multilabel_competition(tmp_path / "c", n_train=12, n_test=3, columns=layout == "columns")
    change(root)
    labels = 'label_col = "tags"' if layout == "tags" else f"label_cols = {json.dumps(NAMES)}"
    recipe = _recipe(tmp_path, root, labels, metric="fbeta")
    code, out, err = run_comp(["check", recipe], tmp_path)
    assert code == 2, out + err
    assert message in err and "Traceback" not in err


def test_label_cols_and_label_col_together_are_refused(tmp_path):
    root = write_multilabel_competition(tmp_path / "c", n_train=12, n_test=3, columns=True)
    recipe = _recipe(tmp_path, root, f'label_col = "tags"\nlabel_cols = {json.dumps(NAMES)}', metric="fbeta")
    code, out, err = run_comp(["check", recipe], tmp_path)
    assert code == 2 and "label_cols" in err and "both name the labels" in err


def _edit(csv, column, value):
    frame = pd.read_csv(csv, keep_default_na=False, dtype=str)
    frame.loc[0, column] = value
    frame.to_csv(csv, index=False)


def _recipe(tmp_path, root, labels: str, metric: str):
    recipe = tmp_path / "ml.toml"
    recipe.write_text(textwrap.dedent("""\
        name = "ml"
        seed = 1
        [data]
        root = "{root}"
        {labels}
        task = "multilabel"
        [model]
        name = "test_resnet"
        [augment]
        size = 16
        [loss]
        name = "bce"
        pos_weight = "sqrt"
        [optim]
        lr = 0.01
        [train]
        epochs = 1
        batch_size = 8
        workers = 0
        [cv]
        scheme = "kfold"
        folds = 2
        [predict]
        tta = ["identity", "hflip"]
        decision = "label_thresholds"
        [submission]
        metric = "{metric}"
        """).format(root=root, labels=labels, metric=metric))
    return recipe


def test_extra_rows_of_a_multilabel_task(tmp_path):
    from comp.data.extra import load_extra_table, training_rows
    from comp.data.table import ClassMap, ImageTable

    (tmp_path / "soft.csv").write_text("id,prob_red,prob_green,prob_blue\nx,0.95,0.1,0.02\ny,0.6,0.9,0.0\n")
    (tmp_path / "hard.csv").write_text("id,tags\nx,red blue\ny,\n")
    classes = ClassMap(tuple(NAMES))

    def recipe(csv, min_prob=0.0):
        from comp.recipe import recipe_from_dict

        return recipe_from_dict({"name": "r", "data": {"root": str(tmp_path), "task": "multilabel", "label_col": "tags",
                                                       "extra_csv": csv, "extra_min_prob": min_prob},
                                 "loss": {"name": "bce"}}, "test")

    soft = load_extra_table(recipe("soft.csv", 0.85), classes)
    assert soft.ids.tolist() == ["x"]  # y's red (0.6) is not sure enough
    assert soft.targets.tolist() == [pytest.approx([0.95, 0.1, 0.02])]  # not renormalised: one sigmoid per label
    hard = load_extra_table(recipe("hard.csv"), classes)
    assert hard.targets.tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    train = ImageTable(ids=np.array(["t"]), paths=np.array(["t.png"]), labels=np.array([0]),
                       targets=np.array([[0.0, 1.0, 0.0]], dtype=np.float32))
    rows = training_rows(train, np.array([0]), hard)
    assert rows.targets.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
