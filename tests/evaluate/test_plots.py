import cv2
import numpy as np
import pandas as pd
import pytest

from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from comp.evaluate import plots
from comp.evaluate.plots import label_curves, plot_confusion, plot_cooccurrence, plot_label_curves, plot_learning_curves


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


@pytest.fixture
def saved(monkeypatch):
    """The figures saved, by path (the PNG is still written)."""
    figures, save = {}, plots._save

    def keep(fig, path, **kwargs):
        figures[str(path)] = fig
        save(fig, path, **kwargs)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _multilabel(n=40, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < np.linspace(0.6, 0.2, labels)).astype(np.int8)
    probs = 0.3 * y + 0.7 * rng.random((n, labels))  # (overlapping: areas below 1)
    return y, probs


def test_label_curves_equal_sklearn():
    y, probs = _multilabel()
    y[:, 1] = 0  # on no row: no curve
    y[:, 3] = 1  # on every row: none either
    names = ["a", "b", "c", "d"]
    curves = label_curves(y, probs, names)
    assert [c.label for c in curves.rocs] == [c.label for c in curves.prs] == ["a", "c"]
    assert curves.one_class == ("b", "d") and curves.left_out == ()
    for roc, pr, j in zip(curves.rocs, curves.prs, (0, 2)):
        fpr, tpr, _ = roc_curve(y[:, j], probs[:, j])
        precision, recall, _ = precision_recall_curve(y[:, j], probs[:, j])
        np.testing.assert_array_equal(roc.x, fpr)
        np.testing.assert_array_equal(roc.y, tpr)
        np.testing.assert_array_equal(pr.x, recall)
        np.testing.assert_array_equal(pr.y, precision)
        assert roc.area == pytest.approx(roc_auc_score(y[:, j], probs[:, j]))
        assert pr.area == pytest.approx(average_precision_score(y[:, j], probs[:, j]))
        assert roc.prevalence == pr.prevalence == pytest.approx(y[:, j].mean())
    with pytest.raises(ValueError, match="3 names"):
        label_curves(y, probs, names[:3])


def test_label_curves_keep_the_labels_with_most_rows():
    y = np.zeros((20, 5), dtype=np.int8)
    for j, support in enumerate([2, 9, 5, 9, 1]):
        y[:support, j] = 1
    probs = np.linspace(1, 0, 20)[:, None].repeat(5, axis=1)
    curves = label_curves(y, probs, ["v", "w", "x", "y", "z"], most=3)
    assert [c.label for c in curves.rocs] == ["w", "y", "x"]  # most rows first, ties in column order
    assert curves.left_out == ("v", "z") and curves.one_class == ()
    assert all(c.area == 1.0 for c in curves.rocs)


def test_plot_label_curves(tmp_path, saved):
    y, probs = _multilabel(labels=4)
    roc, pr = tmp_path / "roc.png", tmp_path / "pr.png"
    curves = plot_label_curves(y, probs, ["clear", "haze", "primary", "water"], roc, pr, "r18")
    assert len(curves.rocs) == 4
    for path, kind, area, drawn_curves in ((roc, "ROC per label", "AUC", curves.rocs),
                                           (pr, "precision-recall per label", "AP", curves.prs)):
        _read_png(path)
        fig = saved[str(path)]
        assert fig._suptitle.get_text() == f"r18: {kind}"
        (ax,) = fig.axes
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        drawn = [t for t in legend if not t.startswith("chance")]
        assert drawn == [f"{c.label} ({area} {c.area:.3f})" for c in drawn_curves]
        assert all(0.5 < c.area < 1 for c in drawn_curves)
        assert drawn[0].startswith("clear") and drawn[-1].startswith("water")  # most rows first
        assert ax.get_title() == ""  # every label drawn: no note
    _no_temp_files(tmp_path)


def test_plot_label_curves_says_what_is_left_out(tmp_path, saved):
    y, probs = _multilabel(n=60, labels=16, seed=1)
    y[:, 5] = 0
    names = [f"label_{j}" for j in range(16)]
    roc, pr = tmp_path / "roc.png", tmp_path / "pr.png"
    curves = plot_label_curves(y, probs, names, roc, pr)
    assert len(curves.rocs) == 12 and len(curves.left_out) == 3 and curves.one_class == ("label_5",)
    ax = saved[str(roc)].axes[0]
    assert len(ax.get_legend().get_texts()) == 13  # 12 labels and chance
    assert ax.get_title().replace("\n", " ") == ("the 12 labels with the most rows; 3 left out; "
                                                 "no curve (every row or none): label_5")
    assert saved[str(pr)]._suptitle.get_text() == "precision-recall per label"
    _read_png(pr)
    # No label with both outcomes: the figures say so.
    none = plot_label_curves(np.zeros((5, 2)), np.zeros((5, 2)), ["a", "b"], roc, pr)
    assert none.rocs == () and none.one_class == ("a", "b")
    ax = saved[str(roc)].axes[0]
    assert ax.get_legend() is None and "no label with both outcomes" in [t.get_text() for t in ax.texts]
    _read_png(roc)


@pytest.mark.parametrize("n", [4, 20])
def test_plot_cooccurrence(tmp_path, saved, n):
    rng = np.random.default_rng(n)
    Y = (rng.random((50, n)) < 0.3).astype(np.int8)
    names = [f"tag_{j}" for j in range(n)]
    path = tmp_path / "co.png"
    plot_cooccurrence(Y, names, path, "labels of r18")
    image = _read_png(path)
    fig = saved[str(path)]
    ax, bar = fig.axes  # the heat map and its colour bar
    assert ax.get_title() == "labels of r18" and len(ax.patches) == n  # the diagonal outlined
    shown = ax.images[0].get_array()
    np.testing.assert_array_equal(shown, Y.T.astype(int) @ Y.astype(int))
    if n == 4:  # every cell annotated with its count
        texts = [t.get_text() for t in ax.texts]
        assert len(texts) == 16 and texts[0] == str(Y[:, 0].sum()) and texts[1] == str((Y[:, 0] & Y[:, 1]).sum())
    else:
        assert len(ax.texts) == 0 and image.shape[0] >= 1000
    # The scale ends at the largest pair count (the diagonal beyond it).
    off = shown[~np.eye(n, dtype=bool)]
    assert ax.images[0].get_clim() == (0.0, float(off.max()))
    _no_temp_files(tmp_path)


def test_plot_cooccurrence_edges(tmp_path, saved):
    path = tmp_path / "co.png"
    plot_cooccurrence(np.array([[1], [0], [1]]), ["only"], path)
    ax = saved[str(path)].axes[0]
    assert [t.get_text() for t in ax.texts] == ["2"] and ax.get_title() == "labels found together"
    _read_png(path)
    with pytest.raises(ValueError, match="2 names"):
        plot_cooccurrence(np.zeros((3, 3)), ["a", "b"], path)
