"""The leukemia lab (C-NMC 2019) as the course hands it out, through the command line: train.csv /
valid.csv with Path,label (integer labels: 0 = hem, the minority, 1 = ALL), test.csv with Path
only, BMP images in nested folders, no sample_submission.csv; and the same folder labelled ALL/hem.
recipes/cnmc_r18.toml and cnmc_r18_all.toml run on both unchanged (README "The leukemia lab")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.xdist_group("test_cnmc_lab")  # one worker makes the module's fixtures (conftest)

ROOT = Path(__file__).resolve().parents[2]
STEP1, STEP2 = ROOT / "recipes/cnmc_r18.toml", ROOT / "recipes/cnmc_r18_all.toml"
# Tiny and quick: 16 px cells, one epoch, no workers (the recipes' own schedule otherwise).
TINY = ["--set", "train.epochs=1", "--set", "augment.size=16", "--set", "train.workers=0",
        "--set", "train.batch_size=8"]


def write_cnmc(root: Path, *, named: bool = False, seed: int = 0) -> Path:
    """A C-NMC-shaped folder: train.csv (24 rows), valid.csv (12), test.csv (9, Path only) with BMP
    cells under <split>/fold_<k>/<all|hem>/; a third of the rows are hem. Labels are the course's
    integers (0 = hem, 1 = ALL), or ALL/hem with ``named``. solution.csv holds the test labels
    (the course's folder has none; ``comp score`` needs them)."""
    import cv2

    rng = np.random.default_rng(seed)
    colour = {"ALL": (200, 60, 160), "hem": (90, 160, 220)}
    label_of = {"hem": "hem" if named else "0", "ALL": "ALL" if named else "1"}
    solution = []
    for split, n in (("train", 24), ("valid", 12), ("test", 9)):
        rows = []
        for i in range(n):
            cell = "hem" if i % 3 == 0 else "ALL"
            folder = root / split / f"fold_{i % 2}" / cell.lower()
            folder.mkdir(parents=True, exist_ok=True)
            image = np.clip(np.array(colour[cell]) + rng.normal(0, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
            path = folder / f"UID_{split}_{i}_{cell.lower()}.bmp"
            cv2.imwrite(str(path), image)
            rel = path.relative_to(root).as_posix()
            rows.append({"Path": rel, "label": label_of[cell]})
        frame = pd.DataFrame(rows)
        if split == "test":
            solution = frame
            frame = frame[["Path"]]
        frame.to_csv(root / f"{split}.csv", index=False)
    solution.to_csv(root / "solution.csv", index=False)
    return root


def comp(*args):
    from typer.testing import CliRunner

    from comp.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def ok(result) -> str:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def error(result, *parts: str) -> str:
    assert result.exit_code == 2, result.output + repr(result.exception)
    for part in parts:
        assert part in result.output, result.output
    return result.output


def table_rows(output: str) -> list[list[str]]:
    """The class table's rows of `comp check`/`comp fit` output: index first."""
    return [line.split() for line in output.splitlines() if line.split()[:1] in (["0"], ["1"])]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return write_cnmc(tmp_path_factory.mktemp("cnmc") / "cnmc")


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> Path:
    return write_cnmc(tmp_path_factory.mktemp("cnmc_named") / "cnmc", named=True)


# --------------------------------------------------------------------------- comp check


def test_check_on_the_course_layout_names_and_weighs_the_classes(course):
    out = ok(comp("check", STEP1, "--set", f"data.root={course}"))
    # index, label, name, images, share, weight: hem (label 0, a third) gets the lab's 1.2.
    assert table_rows(out) == [["0", "0", "hem", "12", "33.3%", "1.2"], ["1", "1", "ALL", "24", "66.7%", "1"]]
    assert "task binary (2 classes, positive class 'ALL' (label '1')), monitor weighted_f1" in out
    assert "no sample_submission.csv: the submission has test.csv's 'Path' column and 'label'" in out


def test_check_on_a_folder_labelled_all_hem_runs_the_same_recipe(named):
    out = ok(comp("check", STEP1, "--set", f"data.root={named}"))
    assert "note: the labels are already the class names (ALL, hem): [data] class_names is not needed" in out
    assert table_rows(out) == [["0", "ALL", "24", "66.7%", "1"], ["1", "hem", "12", "33.3%", "1.2"]]
    assert "task binary (2 classes, positive class 'ALL'), monitor weighted_f1" in out
    # The documented alternative: drop the names.
    out = ok(comp("check", STEP1, "--set", f"data.root={named}", "--set", "data.class_names={}"))
    assert table_rows(out) == [["0", "ALL", "24", "66.7%", "1"], ["1", "hem", "12", "33.3%", "1.2"]]


def test_positive_and_weights_by_label_or_name_and_bare_numbers_in_set(course):
    # A bare number for a text field is the text it was typed as; 1 is the label of ALL.
    out = ok(comp("check", STEP1, "--set", f"data.root={course}", "--set", "data.positive=0",
                  "--set", "loss.class_weights={0=2.0, ALL=1.0}"))
    assert "positive class 'hem' (label '0')" in out
    assert table_rows(out) == [["0", "0", "hem", "12", "33.3%", "2"], ["1", "1", "ALL", "24", "66.7%", "1"]]
    error(comp("check", STEP1, "--set", f"data.root={course}", "--set", "data.positive=blast"),
          "[data] positive 'blast' is not a class; the classes are ['hem' (label '0'), 'ALL' (label '1')]")
    error(comp("check", STEP1, "--set", f"data.root={course}", "--set", "loss.class_weights={0=2.0, hem=1.0}"),
          "[loss] class_weights gives class '0' twice ('0' and 'hem')")
    error(comp("check", STEP1, "--set", f"data.root={course}", "--set", "data.class_names={2=\"blast\"}"),
          "[data] class_names names label '2', which the data does not have; its labels are ['0', '1']")
    error(comp("check", STEP1, "--set", f"data.root={course}", "--set", "data.class_names={0=\"1\"}"),
          "another class's label")


def test_set_type_errors_show_the_quoted_form_and_keys_suggest_their_section(tmp_path, course):
    recipe = tmp_path / "r.toml"
    recipe.write_text(STEP1.read_text().replace('positive = "ALL"', "positive = 1"))
    error(comp("check", recipe, "--set", f"data.root={course}"),
          "[data] positive must be string, got integer 1; quote it: positive = \"1\" (--set 'data.positive=\"1\"')")
    error(comp("check", STEP1, "--set", "epochs=3"), "unknown key epochs (did you mean train.epochs?)")
    error(comp("check", STEP1, "--set", "train.epoch=3"), "unknown key [train] epoch (did you mean epochs?)")
    out = ok(comp("--version"))
    from comp import __version__

    assert out.strip() == f"comp {__version__}"


def test_a_milestone_past_the_last_epoch_is_a_warning(course):
    out = ok(comp("check", STEP1, "--set", f"data.root={course}", "--set", "train.epochs=10"))
    assert ("warning: [schedule] milestones 15 is not inside [train] epochs = 10 (a milestone m lowers the LR "
            "after m epochs): the LR never drops") in out
    out = ok(comp("check", STEP1, "--set", f"data.root={course}"))
    assert "warning: [schedule]" not in out  # 15 of 25 epochs
    from comp.model.scheduler import schedule_warnings
    from comp.recipe import recipe_from_dict

    recipe = recipe_from_dict({"name": "x", "train": {"epochs": 4, "swa_epochs": 4},
                               "schedule": {"name": "step", "step_size": 4, "warmup_epochs": 1}})
    found = schedule_warnings(recipe)
    assert len(found) == 2 and "step_size = 4" in found[0] and "swa_epochs = 4 reaches into the warmup" in found[1]


# --------------------------------------------------------------------------- the two steps


@pytest.fixture(scope="module")
def lab(tmp_path_factory, course):
    """Step 1 (renamed, as a user might) and step 2 fitted on the course's layout."""
    runs = tmp_path_factory.mktemp("runs")
    data = ["--runs", runs, "--set", f"data.root={course}", *TINY]
    step1 = ok(comp("fit", STEP1, *data, "--set", "name=my_r18", "--no-report"))
    # Step 2 as shipped names cnmc_r18: the error names the runs that could be meant.
    wrong = comp("fit", STEP2, *data)
    step2 = ok(comp("fit", STEP2, *data, "--set", "model.init_from=my_r18"))
    return runs, step1, wrong, step2


def test_step1_logs_names_and_tunes_the_threshold_on_valid(lab):
    runs, step1, _, _ = lab
    assert table_rows(step1)[0][:3] == ["0", "0", "hem"]
    saved = json.loads((runs / "my_r18/thresholds.json").read_text())
    assert saved["positive"] == "1" and saved["metric"] == "weighted_f1"  # the label, as written
    assert "threshold" in step1 and "P(ALL) >=" in step1
    oof = pd.read_csv(runs / "my_r18/oof.csv", dtype=str)
    assert set(oof.label) == {"0", "1"} and {"prob_0", "prob_1"} <= set(oof.columns)  # raw labels


def test_step2_after_a_renamed_step1_says_which_runs_fit(lab):
    runs, _, wrong, step2 = lab
    error(wrong, "[model] init_from 'cnmc_r18': no run of that name",
          "runs under", "with these classes: my_r18 (--set model.init_from=my_r18)")
    assert f"fold 0: starting from {runs / 'my_r18' / 'fold0' / 'best.pt'} (my_r18's fold 0)" in step2
    assert "36 training rows" in step2
    saved = json.loads((runs / "cnmc_r18_all/thresholds.json").read_text())
    first = json.loads((runs / "my_r18/thresholds.json").read_text())
    assert saved["from"] == "my_r18" and saved["threshold"] == first["threshold"] and saved["rule"] == "argmax"
    assert (f"decision: ALL when P(ALL) >= {first['threshold']:.3f}, fitted on my_r18's validation rows "
            f"(init_from; this run has none): comp predict --decision threshold uses it") in step2
    assert f"(next: comp predict --run cnmc_r18_all --runs {runs} --out" in step2


def test_step2_submission_keeps_the_course_labels_and_takes_step1s_threshold(lab, course, tmp_path):
    runs, _, _, _ = lab
    first = json.loads((runs / "my_r18/thresholds.json").read_text())["threshold"]
    out_path = tmp_path / "submissions" / "resnet18_output.csv"
    out = ok(comp("predict", "--runs", runs, "--tta", "--decision", "threshold", "--proba", "--out", out_path))
    assert "no --run: the latest run under" in out and "cnmc_r18_all (task binary (2 classes, positive class 'ALL'" in out
    assert f"decision: ALL when P(ALL) >= {first:.3f}, fitted on my_r18's validation rows (init_from)" in out
    sub = pd.read_csv(out_path, dtype=str)
    test = pd.read_csv(course / "test.csv", dtype=str)
    assert list(sub.columns) == ["Path", "label", "prob_0", "prob_1"] and list(sub.Path) == list(test.Path)
    expected = ["1" if float(p) >= first else "0" for p in sub.prob_1]
    assert list(sub.label) == expected  # step 1's cut, on the course's labels
    print("\n".join((out_path.read_text().splitlines())[:4]))

    # --threshold P: the positive class (ALL, label 1) when P(ALL) >= P.
    ok(comp("predict", "--runs", runs, "--run", "cnmc_r18_all", "--threshold", "0.999", "--proba", "--out", out_path))
    sub = pd.read_csv(out_path, dtype=str)
    assert list(sub.label) == ["1" if float(p) >= 0.999 else "0" for p in sub.prob_1]
    # --decision-from RUN: that run's fitted values (and its fitted rule).
    out = ok(comp("predict", "--runs", runs, "--run", "cnmc_r18_all", "--decision-from", "my_r18", "--proba",
                  "--out", out_path))
    assert "fitted on my_r18's rows (--decision-from)" in out
    error(comp("predict", "--runs", runs, "--run", "cnmc_r18_all", "--threshold", "1.5", "--out", out_path),
          "--threshold is a probability in [0, 1]")


def test_score_without_run_takes_the_latest_run_and_its_task(lab, course, tmp_path):
    runs, _, _, _ = lab
    sub_path = tmp_path / "sub.csv"
    ok(comp("predict", "--runs", runs, "--out", sub_path))
    out = ok(comp("score", sub_path, "--solution", course / "solution.csv", "--runs", runs))
    assert "no --run: the latest run under" in out and "cnmc_r18_all" in out
    scores = [line.split() for line in out.splitlines() if len(line.split()) == 2]
    assert scores[0][0] == "weighted_f1" and "sensitivity" in dict(scores)
    # The course's test.csv has no labels: score needs a labelled solution.
    error(comp("score", sub_path, "--solution", course / "test.csv", "--runs", runs), "label")


# --------------------------------------------------------------------------- without training


def _fake_run(runs: Path, name: str, classes: list[str], **sections) -> Path:
    """A run folder with its run.json and recipe only: enough for the task and the decision."""
    from comp.recipe import recipe_from_dict
    from comp.run.folder import RunDir, RunInfo

    run = RunDir(runs / name)
    run.path.mkdir(parents=True)
    run.write_info(RunInfo(name=name, recipe_file=f"{name}.toml", overrides=[], classes=classes,
                           scheme="holdout", folds=[0]))
    run.write_recipe(recipe_from_dict({"name": name, **sections}))
    return run.path


def test_an_inherited_decision_decides_as_the_source_run_unless_told_otherwise(tmp_path):
    from comp.errors import CompError
    from comp.predict.decision import load_decision
    from comp.run.thresholds import inherit_decision, save_binary_threshold
    from comp.run.folder import RunDir

    named = {"data": {"class_names": {"0": "hem", "1": "ALL"}, "positive": "ALL"}}
    source = _fake_run(tmp_path, "step1", ["0", "1"], predict={"decision": "threshold"}, **named)
    full = _fake_run(tmp_path, "step2", ["0", "1"], **named)  # its own recipe says argmax
    save_binary_threshold(source, 0.3, "1", "weighted_f1")
    assert inherit_decision(full, source).inherited_from == "step1"
    recipe = RunDir(full).recipe()
    rule = load_decision(recipe, full)  # the source's rule and value
    assert (rule.rule, rule.threshold, rule.positive) == ("threshold", 0.3, 1)
    assert rule.note == "decision: ALL when P(ALL) >= 0.300, fitted on step1's validation rows (init_from)"
    assert load_decision(recipe, full, "argmax").rule == "argmax"  # told otherwise
    probs = np.array([[0.6, 0.4], [0.8, 0.2]])
    assert rule.apply(probs).tolist() == [1, 0]
    # --decision-from: another run's values; classes must match.
    other = _fake_run(tmp_path, "cats", ["cat", "dog"])
    with pytest.raises(CompError, match=r"--decision-from cats: its classes \['cat', 'dog'\] are not this run's"):
        load_decision(recipe, full, source=other)
    assert load_decision(recipe, full, source=source).threshold == 0.3
    assert load_decision(recipe, full, threshold=0.5).note == "decision: ALL when P(ALL) >= 0.5, by --threshold"
    with pytest.raises(CompError, match="--threshold gives the decision itself"):
        load_decision(recipe, full, "argmax", threshold=0.5)
    # No fitted values to inherit: nothing written, and asking for a threshold names the ways out.
    bare = _fake_run(tmp_path, "bare", ["0", "1"], **named)
    assert inherit_decision(full, bare) is None and not RunDir(full).thresholds_path.exists()
    with pytest.raises(CompError, match="--decision-from RUN .*--threshold P"):
        load_decision(recipe, full, "threshold")


def test_score_without_run_scores_grades_with_the_latest_runs_task(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "grades", ["0", "1", "2", "3", "4"], data={"task": "ordinal"})
    truth = pd.DataFrame({"image": [f"i{k}" for k in range(10)], "level": [str(k % 5) for k in range(10)]})
    truth.to_csv(tmp_path / "solution.csv", index=False)
    truth.assign(level=["0"] * 10).to_csv(tmp_path / "sub.csv", index=False)
    out = ok(comp("score", tmp_path / "sub.csv", "--solution", tmp_path / "solution.csv", "--runs", runs))
    assert f"no --run: the latest run under {runs}/, grades (task ordinal (5 classes), monitor qwk)" in out
    scores = [line.split() for line in out.splitlines() if len(line.split()) == 2]
    assert scores[0] == ["qwk", "0.0000"] and "mae" in dict(scores)
    # --task scores without a run; with a run it is refused rather than ignored.
    out = ok(comp("score", tmp_path / "sub.csv", "--solution", tmp_path / "solution.csv", "--runs", runs,
                  "--task", "multiclass"))
    assert "qwk" not in out and "no --run" not in out
    error(comp("score", tmp_path / "sub.csv", "--solution", tmp_path / "solution.csv", "--runs", runs,
               "--run", "grades", "--task", "binary"), "--task and --positive are for scoring without a run")
    # The latest run of another competition: its classes do not fit, and the message says which run.
    time.sleep(1.1)  # run.json times are to the second: "cells" is the newer run
    _fake_run(runs, "cells", ["ALL", "hem"])
    error(comp("score", tmp_path / "sub.csv", "--solution", tmp_path / "solution.csv", "--runs", runs),
          "labels outside the classes of run cells (the latest run; --run or --task chooses another)")
