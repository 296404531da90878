import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.data import medmnist
from comp.data.medmnist import import_medmnist
from comp.errors import CompError


def _arrays(shape=(28, 28, 3), sizes=(12, 4, 6), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, n in zip(("train", "val", "test"), sizes):
        arrays[f"{key}_images"] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        arrays[f"{key}_labels"] = (np.arange(n) % classes).reshape(-1, 1).astype(np.uint8)
    return arrays


def _npz(path, shape=(28, 28, 3), compressed=False, **changes):
    arrays = {**_arrays(shape), **changes}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("shape", [(28, 28, 3), (28, 28), (28, 28, 1)], ids=["rgb", "gray", "gray1"])
def test_import_writes_a_competition(tmp_path, shape):
    arrays = _npz(tmp_path / "m.npz", shape, compressed=len(shape) == 2)
    root = tmp_path / "comp"
    summary = import_medmnist(tmp_path / "m.npz", root)
    assert summary.counts == {"train": 12, "valid": 4, "test": 6}
    assert summary.class_counts == {"0": 4 + 2, "1": 4 + 1, "2": 4 + 1}
    assert str(summary).startswith("12 train, 4 valid, 6 test images")
    assert sorted(p.name for p in root.iterdir()) == [
        "sample_submission.csv", "solution.csv", "test", "test.csv", "train", "train.csv"]

    train = _read(root / "train.csv")
    assert list(train.columns) == ["id", "label", "split"] and len(train) == 16
    assert list(train.id[:2]) == ["train_00000", "train_00001"] and train.id[12] == "val_00000"
    assert list(train.split) == ["train"] * 12 + ["valid"] * 4
    expected = np.concatenate([arrays["train_labels"].ravel(), arrays["val_labels"].ravel()])
    assert list(train.label) == [str(v) for v in expected]
    assert sorted(p.stem for p in (root / "train").iterdir()) == sorted(train.id)
    assert all(p.suffix == ".png" for p in (root / "train").iterdir())

    test_ids = [f"test_{i:05d}" for i in range(6)]
    assert list(_read(root / "test.csv").columns) == ["id"] and list(_read(root / "test.csv").id) == test_ids
    assert sorted(p.stem for p in (root / "test").iterdir()) == test_ids
    solution, sample = _read(root / "solution.csv"), _read(root / "sample_submission.csv")
    assert list(solution.columns) == list(sample.columns) == ["id", "label"]
    assert list(solution.id) == list(sample.id) == test_ids
    assert list(solution.label) == [str(v) for v in arrays["test_labels"].ravel()]
    assert set(sample.label) == {"0"}  # the most common train+valid class

    # Every image round trips exactly: RGB stored as BGR, grayscale as one channel.
    for key, folder in (("train", "train"), ("val", "train"), ("test", "test")):
        for i, original in enumerate(arrays[f"{key}_images"]):
            back = cv2.imread(str(root / folder / f"{key}_{i:05d}.png"), cv2.IMREAD_UNCHANGED)
            if len(shape) == 3 and shape[-1] == 3:
                assert back.shape == shape and np.array_equal(back[:, :, ::-1], original)
            else:
                assert back.shape == (28, 28) and np.array_equal(back, original.reshape(28, 28))


def test_plain_label_vector_and_other_extension(tmp_path):
    _npz(tmp_path / "m.npz", (8, 8), train_labels=np.array([2] * 10 + [1, 1]), val_labels=np.zeros(4, np.int64))
    summary = import_medmnist(tmp_path / "m.npz", tmp_path / "c", ext="bmp")
    assert summary.class_counts == {"0": 4, "1": 2, "2": 10}
    assert set(_read(tmp_path / "c" / "sample_submission.csv").label) == {"2"}
    assert len(list((tmp_path / "c" / "train").glob("*.bmp"))) == 16


def _tree(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def test_import_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(CompError, match="file not found: .*none.npz"):
        import_medmnist(tmp_path / "none.npz", tmp_path / "x")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(CompError, match="cannot read .*bad.npz"):
        import_medmnist(tmp_path / "bad.npz", tmp_path / "x")
    np.savez(tmp_path / "partial.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(CompError, match="missing array train_labels"):
        import_medmnist(tmp_path / "partial.npz", tmp_path / "x")
    _npz(tmp_path / "multi.npz", train_labels=np.eye(3, dtype=np.uint8)[np.arange(12) % 3])
    with pytest.raises(CompError, match="only single-label tasks are supported"):
        import_medmnist(tmp_path / "multi.npz", tmp_path / "x")
    _npz(tmp_path / "short.npz", val_images=np.zeros((3, 28, 28, 3), np.uint8))
    with pytest.raises(CompError, match="val_images has shape"):
        import_medmnist(tmp_path / "short.npz", tmp_path / "x")
    _npz(tmp_path / "float.npz", test_images=np.zeros((6, 28, 28), np.float32))
    with pytest.raises(CompError, match="uint8"):
        import_medmnist(tmp_path / "float.npz", tmp_path / "x")
    assert _tree(tmp_path) == ["bad.npz", "float.npz", "multi.npz", "partial.npz", "short.npz"]


def test_existing_destination_and_overwrite(tmp_path):
    _npz(tmp_path / "ok.npz")
    import_medmnist(tmp_path / "ok.npz", tmp_path / "x")
    before = _tree(tmp_path / "x")
    with pytest.raises(CompError, match="exists and is not empty"):
        import_medmnist(tmp_path / "ok.npz", tmp_path / "x")
    (tmp_path / "x" / "stale.txt").write_text("old")
    import_medmnist(tmp_path / "ok.npz", tmp_path / "x", overwrite=True)
    assert _tree(tmp_path / "x") == before  # replaced whole, nothing stale left
    (tmp_path / "empty").mkdir()
    import_medmnist(tmp_path / "ok.npz", tmp_path / "empty")  # an empty folder is fine
    assert _tree(tmp_path / "empty") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "ok.npz", "x"]


def test_failure_midway_leaves_no_half_made_folder(tmp_path, monkeypatch):
    _npz(tmp_path / "ok.npz")
    import_medmnist(tmp_path / "ok.npz", tmp_path / "kept")
    before = _tree(tmp_path / "kept")
    calls = []

    def failing_imwrite(path, image):
        calls.append(path)
        return len(calls) < 10  # the 10th image cannot be written

    monkeypatch.setattr(medmnist.cv2, "imwrite", failing_imwrite)
    with pytest.raises(CompError, match="cannot write"):
        import_medmnist(tmp_path / "ok.npz", tmp_path / "new")
    with pytest.raises(CompError, match="cannot write"):
        import_medmnist(tmp_path / "ok.npz", tmp_path / "kept", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "ok.npz"]  # no temp folders
    assert _tree(tmp_path / "kept") == before  # the old folder survives a failed overwrite


def test_cli_import(tmp_path):
    _npz(tmp_path / "m.npz")
    result = CliRunner().invoke(app, ["import", "medmnist", str(tmp_path / "m.npz"), str(tmp_path / "c")])
    assert result.exit_code == 0 and "12 train, 4 valid, 6 test" in result.output
    assert (tmp_path / "c" / "train.csv").is_file()
