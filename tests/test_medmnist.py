import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.errors import CompError
from comp.medmnist import import_medmnist


def _npz(path, colour=True, sizes=(12, 4, 6), classes=3):
    rng = np.random.default_rng(0)
    shape = (28, 28, 3) if colour else (28, 28)
    arrays = {}
    for key, n in zip(("train", "val", "test"), sizes):
        arrays[f"{key}_images"] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        arrays[f"{key}_labels"] = (np.arange(n) % classes).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("colour", [True, False])
def test_import_writes_a_competition(tmp_path, colour):
    arrays = _npz(tmp_path / "m.npz", colour)
    summary = import_medmnist(tmp_path / "m.npz", tmp_path / "comp")
    root = tmp_path / "comp"
    assert summary.counts == {"train": 12, "valid": 4, "test": 6}
    train = pd.read_csv(root / "train.csv", dtype=str)
    assert list(train.columns) == ["id", "label", "split"] and len(train) == 16
    assert list(train.split) == ["train"] * 12 + ["valid"] * 4
    assert list(train.label[:4]) == ["0", "1", "2", "0"]
    assert len(list((root / "train").glob("*.png"))) == 16 and len(list((root / "test").glob("*.png"))) == 6
    solution = pd.read_csv(root / "solution.csv", dtype=str)
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert list(solution.id) == list(sample.id) == list(pd.read_csv(root / "test.csv", dtype=str).id)
    assert list(solution.label) == [str(v) for v in arrays["test_labels"].ravel()]
    back = cv2.imread(str(root / "train" / "val_00001.png"), cv2.IMREAD_UNCHANGED)
    expected = arrays["val_images"][1]
    assert np.array_equal(back[:, :, ::-1] if colour else back, expected)


def test_import_errors(tmp_path):
    with pytest.raises(CompError, match="file not found"):
        import_medmnist(tmp_path / "none.npz", tmp_path / "x")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(CompError, match="cannot read .*bad.npz"):
        import_medmnist(tmp_path / "bad.npz", tmp_path / "x")
    np.savez(tmp_path / "partial.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(CompError, match="missing array train_labels"):
        import_medmnist(tmp_path / "partial.npz", tmp_path / "x")
    _npz(tmp_path / "ok.npz")
    import_medmnist(tmp_path / "ok.npz", tmp_path / "x")
    with pytest.raises(CompError, match="exists and is not empty"):
        import_medmnist(tmp_path / "ok.npz", tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "ok.npz", "partial.npz", "x"]


def test_cli_import(tmp_path):
    _npz(tmp_path / "m.npz")
    result = CliRunner().invoke(app, ["import", "medmnist", str(tmp_path / "m.npz"), str(tmp_path / "c")])
    assert result.exit_code == 0 and "12 train, 4 valid, 6 test" in result.output
