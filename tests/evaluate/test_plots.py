import cv2
import numpy as np
import pandas as pd
import pytest

from comp.evaluate.plots import plot_confusion, plot_learning_curves


def _read_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None
    h, w = image.shape[:2]
    assert 200 <= h <= 3000 and 200 <= w <= 3000
    assert image.std() > 5  # something was drawn, not a blank page
    return image


def _no_temp_files(folder):
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or
                  p.suffix == ".tmp") == []


def _history(n=6, seed=0, with_val=True):
    rng = np.random.default_rng(seed)
    epochs = np.arange(n)
    frame = pd.DataFrame({
        "epoch": epochs,
        "train_loss": 1.5 / (epochs + 1) + rng.random(n) * 0.05,
        "val_loss": 1.7 / (epochs + 1) + rng.random(n) * 0.05,
        "qwk": np.linspace(0.2, 0.8, n),
    })
    if not with_val:
        frame["val_loss"] = np.nan
        frame["qwk"] = np.nan
    return frame


@pytest.mark.parametrize("n", [2, 5, 20])
@pytest.mark.parametrize("normalised", [False, True])
def test_confusion(tmp_path, n, normalised):
    rng = np.random.default_rng(n)
    cm = rng.integers(0, 50, (n, n)) + np.eye(n, dtype=int) * 100
    cm[0] = 0  # a class never seen must not break normalisation
    names = [f"class_{i}" for i in range(n)]
    path = tmp_path / "cm.png"
    plot_confusion(cm, names, path, title=f"{n} classes", normalised=normalised)
    image = _read_png(path)
    if n == 20:
        assert image.shape[0] >= 1000  # the figure grows so 400 numbers stay legible
    _no_temp_files(tmp_path)


def test_confusion_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(np.eye(3), ["a", "b"], tmp_path / "cm.png", "t", False)
    assert not (tmp_path / "cm.png").exists()


def test_confusion_overwrites_and_makes_folders(tmp_path):
    path = tmp_path / "deep" / "er" / "cm.png"
    plot_confusion(np.eye(2) * 3, ["a", "b"], path, "first", False)
    first = path.read_bytes()
    plot_confusion(np.array([[1, 2], [3, 4]]), ["a", "b"], path, "second", True)
    assert path.read_bytes() != first
    _read_png(path)
    _no_temp_files(path.parent)


def test_learning_curves(tmp_path):
    histories = {f"fold{i}": _history(seed=i) for i in range(5)}
    path = tmp_path / "curves.png"
    plot_learning_curves(histories, "qwk", path, title="r18")
    image = _read_png(path)
    assert image.shape[1] > image.shape[0]  # two panels side by side
    _no_temp_files(tmp_path)


def test_learning_curves_without_validation(tmp_path):
    histories = {"r18/full": _history(with_val=False), "r18/fold0": _history(seed=3)}
    no_monitor = _history(seed=4).drop(columns=["qwk", "val_loss"])
    histories["r34/full"] = no_monitor
    sparse = _history(seed=5)
    sparse.loc[sparse.epoch % 2 == 1, ["val_loss", "qwk"]] = np.nan
    histories["r50/fold0"] = sparse
    path = tmp_path / "curves.png"
    plot_learning_curves(histories, "qwk", path)
    _read_png(path)
    # Only train losses at all: the metric panel says so instead of failing.
    only_train = tmp_path / "only_train.png"
    plot_learning_curves({"full": _history(with_val=False)}, "qwk", only_train)
    _read_png(only_train)
    _no_temp_files(tmp_path)


def test_learning_curves_many_runs(tmp_path):
    histories = {f"m{m}/fold{f}": _history(seed=m * 10 + f) for m in range(5) for f in range(5)}
    path = tmp_path / "many.png"
    plot_learning_curves(histories, "qwk", path)
    _read_png(path)


def test_other_formats_by_extension(tmp_path):
    path = tmp_path / "curves.svg"
    plot_learning_curves({"r18": _history()}, "val_loss", path)
    assert b"<svg" in path.read_bytes()[:2000]
    _no_temp_files(tmp_path)
