"""Bad data is refused up front: one message, exit code 2, no run folder."""

import logging
import re

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.data.check import check_data, drop_bad, format_report, probe_image, stored_channels
from comp.data.images import jpeg_frame
from comp.data.table import load_train_table
from comp.errors import CompError
from comp.recipe import load_recipe

runner = CliRunner()


def _break_corrupt_jpeg(root):
    train = pd.read_csv(root / "train.csv", dtype=str)
    train["path"] = "train/" + train["id"] + ".png"
    train.loc[4, "path"] = "train/tr004.jpg"
    (root / "train" / "tr004.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3)
    train.to_csv(root / "train.csv", index=False)
    test = pd.read_csv(root / "test.csv", dtype=str)
    test.assign(path="test/" + test["id"] + ".png").to_csv(root / "test.csv", index=False)
    return ["--set", "data.path_col=path"], "1 undecodable images: tr004"


def _break_missing_file(root):
    (root / "train" / "tr003.png").unlink()
    return [], "1 missing image files: tr003"


def _break_label(root):
    train = pd.read_csv(root / "train.csv", dtype=str)
    train.loc[2, "label"] = "fox"
    train.to_csv(root / "train.csv", index=False)
    return ['--set', 'data.classes=["cat", "dog", "eel"]'], "labels outside the class set ['cat', 'dog', 'eel']: fox"


def _break_duplicate(root):
    train = pd.read_csv(root / "train.csv", dtype=str)
    train.loc[5, "id"] = train.loc[6, "id"]
    train.to_csv(root / "train.csv", index=False)
    return [], "1 duplicate ids: tr006"


def _break_truncated_jpeg(root):
    """A real JPEG cut short, as an interrupted download leaves it, in a .jpg competition."""
    for folder in ("train", "test"):
        for png in (root / folder).glob("*.png"):
            cv2.imwrite(str(png.with_suffix(".jpg")), cv2.imread(str(png)))
    whole = (root / "train" / "tr007.jpg").read_bytes()
    (root / "train" / "tr007.jpg").write_bytes(whole[: len(whole) // 2])
    return ["--set", "data.ext=.jpg"], "1 undecodable images: tr007"


def _break_empty_id(root):
    train = pd.read_csv(root / "train.csv", dtype=str)
    train.loc[3, "id"] = ""
    train.to_csv(root / "train.csv", index=False)
    return [], "1 empty ids: train.csv line 5"


def _break_column(root):
    pd.read_csv(root / "train.csv", dtype=str).rename(columns={"label": "grade"}).to_csv(root / "train.csv", index=False)
    return [], "missing column 'label'"


def _messages(output: str) -> list[str]:
    """The output's lines apart from progress lines ("checking images: 45/45 img (100%), ...")."""
    return [line for line in output.strip().splitlines() if not re.match(r"[\w ]+: \d+/\d+ img \(", line)]


@pytest.mark.parametrize("breaker", [_break_corrupt_jpeg, _break_truncated_jpeg, _break_missing_file,
                                     _break_label, _break_duplicate, _break_empty_id, _break_column])
def test_bad_data_is_refused_before_any_run_folder(tmp_path, competition, recipe_file, breaker):
    sets, message = breaker(competition)
    result = runner.invoke(app, ["check", str(recipe_file), *sets])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and len(_messages(result.output)) == 1
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["fit", str(recipe_file), "--runs", str(runs), *sets])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not runs.exists()


def test_all_problems_are_reported_together(competition, recipe_file):
    _break_missing_file(competition)
    _break_duplicate(competition)
    _break_label(competition)
    (competition / "test" / "te002.png").write_bytes(b"not an image")
    (competition / "train" / "tr010.png").write_bytes(b"")
    result = runner.invoke(app, ["check", str(recipe_file), "--set", 'data.classes=["cat", "dog", "eel"]'])
    assert result.exit_code == 2 and len(_messages(result.output)) == 1
    for part in ("1 duplicate ids: tr006", "labels outside the class set ['cat', 'dog', 'eel']: fox",
                 "1 missing image files: tr003 (", "2 undecodable images: tr010 (", "te002 (",
                 "(--skip-bad drops unreadable images)"):
        assert part in result.output, result.output


def test_a_missing_column_is_reported_with_image_problems(competition, recipe_file):
    """A column missing from one CSV does not hide what is wrong elsewhere."""
    pd.read_csv(competition / "test.csv", dtype=str).rename(columns={"id": "name"}).to_csv(
        competition / "test.csv", index=False)
    _break_missing_file(competition)
    result = runner.invoke(app, ["check", str(recipe_file)])
    assert result.exit_code == 2
    assert "1 missing column 'id': test.csv (columns: name)" in result.output
    assert "1 missing image files: tr003 (" in result.output


def test_a_missing_test_csv_is_reported_with_label_problems(competition, recipe_file):
    (competition / "test.csv").unlink()
    _break_label(competition)
    result = runner.invoke(app, ["check", str(recipe_file), "--set", 'data.classes=["cat", "dog", "eel"]'])
    assert result.exit_code == 2
    assert f"1 missing files: {competition / 'test.csv'}" in result.output
    assert "labels outside the class set ['cat', 'dog', 'eel']: fox" in result.output


def test_clean_data_summary(competition, recipe_file):
    train = pd.read_csv(competition / "train.csv", dtype=str)
    train[train.label != "eel"].iloc[:20].pipe(lambda f: pd.concat([f, train[train.label == "eel"][:5]])).to_csv(
        competition / "train.csv", index=False)
    result = runner.invoke(app, ["check", str(recipe_file)])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert "train rows 25, test rows 9" in result.output
    assert "classes found: ['cat', 'dog', 'eel']" in result.output
    # index, class, images, share, loss weight
    assert ["0", "cat", "10", "40.0%", "1"] in lines and ["1", "dog", "10", "40.0%", "1"] in lines
    assert ["2", "eel", "5", "20.0%", "1"] in lines
    assert "task multiclass (3 classes), monitor accuracy" in result.output
    assert "imbalance ratio (largest / smallest class): 2.00" in result.output
    assert ["height", "16", "16", "16"] in lines and ["width", "16", "16", "16"] in lines
    assert "channels as stored: [3]" in result.output
    declared = runner.invoke(app, ["check", str(recipe_file), "--set", 'data.classes=["eel", "dog", "cat"]'])
    assert declared.exit_code == 0 and "classes: ['eel', 'dog', 'cat']" in declared.output


def test_skip_bad_drops_unreadable_images(tmp_path, competition, recipe_file):
    _break_missing_file(competition)
    result = runner.invoke(app, ["check", str(recipe_file), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "warning: skipping 1 unreadable images: 1 missing image files: tr003 (" in result.output
    assert "unreadable images skipped: 1" in result.output
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["fit", str(recipe_file), "--runs", str(runs), "--skip-bad", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(runs / "tiny" / "folds.csv", dtype=str)
    assert "tr003" not in set(folds.id) and len(folds) == 35


def test_report_and_drop_bad(competition, recipe_file, caplog):
    (competition / "train" / "tr003.png").unlink()  # a cat (row i is class i % 3)
    (competition / "train" / "tr004.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # a dog
    with caplog.at_level(logging.INFO, logger="comp"):
        report = check_data(load_recipe(recipe_file), skip_bad=True, workers=2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "comp.data.check" and r.levelno == logging.WARNING]
    assert [(b.id, b.reason) for b in report.bad] == [("tr003", "missing"), ("tr004", "undecodable")]
    assert report.bad[0].path.endswith("train/tr003.png") and "cannot decode" in report.bad[1].detail
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipping 2 unreadable images")
    assert (report.train_rows, report.test_rows) == (36, 9)
    assert report.class_counts == {"cat": 11, "dog": 11, "eel": 12}  # what a fit trains on
    assert report.imbalance == pytest.approx(12 / 11)
    assert report.task.kind == "multiclass" and report.task.names == ("cat", "dog", "eel")  # resolved once, here
    assert len(report.heights) == 43 and report.channels == {3}
    table, _ = load_train_table(load_recipe(recipe_file))
    kept = drop_bad(table, report)
    assert len(kept) == 34 and not {"tr003", "tr004"} & set(kept.ids)
    assert list(kept.ids[:4]) == ["tr000", "tr001", "tr002", "tr005"] and list(kept.labels[:4]) == [0, 1, 2, 2]
    with pytest.raises(CompError, match="1 missing image files: tr003.*1 undecodable images: tr004"):
        check_data(load_recipe(recipe_file), workers=1)


def test_test_only_check_and_nothing_readable(competition, recipe_file):
    recipe = load_recipe(recipe_file)
    report = check_data(recipe, train=False)
    assert (report.train_rows, report.test_rows, report.class_counts) == (0, 9, {})
    assert report.task is None  # no training set read: no classes, no task
    assert "classes" not in format_report(report)
    for png in (competition / "train").glob("*.png"):
        png.unlink()
    with pytest.raises(CompError, match="training sets with no readable image: train.csv"):
        check_data(recipe, skip_bad=True)


def test_probe_reads_sizes_and_stored_channels(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cases = {"grey.jpg": colour[:, :, 0], "colour.jpg": colour, "grey.png": colour[:, :, 0],
             "rgba.png": np.dstack([colour, colour[:, :, :1]]), "grey16.png": colour[:, :, 0].astype(np.uint16) * 257,
             "colour.bmp": colour}
    for name, pixels in cases.items():
        cv2.imwrite(str(tmp_path / name), pixels)
    expected = {"grey.jpg": 1, "colour.jpg": 3, "grey.png": 1, "rgba.png": 4, "grey16.png": 1, "colour.bmp": 3}
    for name, channels in expected.items():
        assert probe_image(tmp_path / name) == (20, 30, channels), name
    assert stored_channels(tmp_path / "colour.bmp") is None  # not parsed: read by decoding
    # A JPEG whose frame header follows a large APP segment (EXIF, thumbnails) is still found.
    data = (tmp_path / "grey.jpg").read_bytes()
    padded = data[:2] + b"\xff\xe1" + (65000).to_bytes(2, "big") + bytes(64998) + data[2:]
    (tmp_path / "padded.jpg").write_bytes(padded)
    assert stored_channels(tmp_path / "padded.jpg") == 1
    # One header parser serves check (channels) and the dataset (size, for reduced decoding).
    assert jpeg_frame(tmp_path / "padded.jpg") == (20, 30, 1) and jpeg_frame(tmp_path / "colour.jpg") == (20, 30, 3)


def test_a_training_set_of_one_class_fails_the_check(competition, recipe_file):
    train = pd.read_csv(competition / "train.csv", dtype=str)
    train.assign(label="cat").to_csv(competition / "train.csv", index=False)
    with pytest.raises(CompError, match=r"training sets with fewer than two classes \(nothing to classify\): "
                                        r"train.csv: \['cat'\]"):
        check_data(load_recipe(recipe_file))


def test_labels_that_look_continuous_stop_check_and_fit(tmp_path, competition, recipe_file):
    """Issue 35, item 11: a Pawpularity-shaped train.csv (a score like 65.13 per image) is not 36
    classes of one image: comp check and comp fit stop, naming [data] task = "regression"."""
    train = pd.read_csv(competition / "train.csv", dtype=str)
    train.assign(label=[f"{v:.2f}" for v in np.linspace(1.5, 99.25, len(train))]).to_csv(
        competition / "train.csv", index=False)
    result = runner.invoke(app, ["check", str(recipe_file)])
    assert result.exit_code == 2 and len(_messages(result.output)) == 1, result.output
    assert 'task = "auto" found 36 numeric labels' in result.output
    assert '[data] task = "regression"' in result.output
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["fit", str(recipe_file), "--runs", str(runs), "--set", "data.task=multiclass"])
    assert result.exit_code == 2 and '[data] task = "regression"' in result.output, result.output
    assert not runs.exists()


def test_extra_rows_without_labels_name_only_the_users_columns(competition, recipe_file):
    """Issue 35, item 9: [data] extra_csv naming test.csv (no labels): the message lists test.csv's
    columns, not comp's internal _path."""
    recipe = load_recipe(recipe_file, ["data.extra_csv=test.csv", "data.extra_image_dir=test"])
    with pytest.raises(CompError, match=r"neither the label column 'label' nor prob_<class> columns \(columns: id\)") as err:
        check_data(recipe)
    assert "_path" not in str(err.value)
