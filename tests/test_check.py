"""Bad data is refused up front: one message, exit code 2, no run folder."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app

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


def _break_column(root):
    pd.read_csv(root / "train.csv", dtype=str).rename(columns={"label": "grade"}).to_csv(root / "train.csv", index=False)
    return [], "missing column 'label'"


@pytest.mark.parametrize("breaker", [_break_corrupt_jpeg, _break_missing_file, _break_label,
                                     _break_duplicate, _break_column])
def test_bad_data_is_refused_before_any_run_folder(tmp_path, competition, recipe_file, breaker):
    sets, message = breaker(competition)
    result = runner.invoke(app, ["check", str(recipe_file), *sets])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["fit", str(recipe_file), "--runs", str(runs), *sets])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not runs.exists()


def test_all_problems_are_reported_together(competition, recipe_file):
    _break_missing_file(competition)
    _break_duplicate(competition)
    (competition / "test" / "te002.png").write_bytes(b"not an image")
    result = runner.invoke(app, ["check", str(recipe_file)])
    assert result.exit_code == 2
    for part in ("1 duplicate ids: tr006", "1 missing image files: tr003", "1 undecodable images: te002"):
        assert part in result.output, result.output


def test_clean_data_summary(competition, recipe_file):
    train = pd.read_csv(competition / "train.csv", dtype=str)
    train[train.label != "eel"].iloc[:20].pipe(lambda f: pd.concat([f, train[train.label == "eel"][:5]])).to_csv(
        competition / "train.csv", index=False)
    result = runner.invoke(app, ["check", str(recipe_file)])
    assert result.exit_code == 0, result.output
    assert "classes found: ['cat', 'dog', 'eel']" in result.output
    assert "imbalance ratio (largest / smallest class): 2.00" in result.output  # 10 cat, 10 dog, 5 eel
    assert "height min/median/max 16/16/16" in result.output and "channels [3]" in result.output


def test_skip_bad_drops_unreadable_images(tmp_path, competition, recipe_file):
    _break_missing_file(competition)
    result = runner.invoke(app, ["check", str(recipe_file), "--skip-bad"])
    assert result.exit_code == 0 and "warning: skipping 1 unreadable images" in result.output
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["fit", str(recipe_file), "--runs", str(runs), "--skip-bad", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(runs / "tiny" / "folds.csv", dtype=str)
    assert "tr003" not in set(folds.id) and len(folds) == 35
