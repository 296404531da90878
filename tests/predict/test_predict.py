import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from comp.data.table import ClassMap
from comp.errors import CompError
from comp.model.inference import combine_views, forward_views, outputs_to_probs
from comp.model.runtime import Runtime
from comp.predict.predict import Prediction, ensemble
from comp.predict.submission import build_submission, write_submission
from comp.predict.tta import view_fn
from comp.recipe import recipe_from_dict

ALL_VIEWS = ["identity", "hflip", "vflip", "hvflip", "rot90", "rot180", "rot270"]


class D4Invariant(nn.Module):
    """Sums the input over the 8 symmetries of the square, so every view gives the same output."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        sym = sum(torch.rot90(v, k, (-2, -1)) for v in (x, x.flip(-1)) for k in range(4))
        return self.head((sym * torch.linspace(0, 1, x.shape[-1])).mean(dim=(-2, -1)))


def test_views_are_the_named_transforms():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(view_fn("hflip")(x)[0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert torch.equal(view_fn("vflip")(x)[0, 0, :, 0], torch.tensor([12.0, 8.0, 4.0, 0.0]))
    assert torch.equal(view_fn("rot180")(x), x.flip(-2, -1))
    assert torch.equal(view_fn("rot90")(view_fn("rot270")(x)), x)
    assert view_fn("scale1.5")(x).shape == (1, 1, 6, 6)
    with pytest.raises(CompError, match="unknown TTA view 'flip'"):
        view_fn("flip")


def test_invariant_model_gives_identical_outputs_under_every_view():
    torch.manual_seed(0)
    images = torch.randn(6, 3, 8, 8)
    loader = DataLoader(TensorDataset(images, torch.arange(6)), batch_size=4)
    outputs, labels = forward_views(D4Invariant(), loader, Runtime(torch.device("cpu")), [view_fn(v) for v in ALL_VIEWS],
                                    prepare=torch.as_tensor)
    assert outputs.shape == (7, 6, 4) and list(labels) == list(range(6))
    for v in range(1, 7):
        np.testing.assert_allclose(outputs[v], outputs[0], rtol=1e-5, atol=1e-5)
    # A model that is not invariant does see the views differ.
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 4))
    outputs, _ = forward_views(plain, loader, Runtime(torch.device("cpu")), [view_fn("identity"), view_fn("hflip")],
                               prepare=torch.as_tensor)
    assert not np.allclose(outputs[0], outputs[1])


def test_stacked_and_separate_views_give_the_same_outputs_in_the_asked_order():
    torch.manual_seed(1)
    images = torch.randn(5, 3, 8, 8)
    loader = DataLoader(TensorDataset(images, torch.arange(5)), batch_size=2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    views = [view_fn(v) for v in ("rot90", "identity", "scale1.5", "hflip")]  # scale1.5: its own shape
    cpu = Runtime(torch.device("cpu"))
    stacked, _ = forward_views(model, loader, cpu, views, stack=True, prepare=cpu.to_device)
    separate, _ = forward_views(model, loader, cpu, views, stack=False, prepare=cpu.to_device)
    np.testing.assert_allclose(stacked, separate, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        by_hand = model(torch.rot90(images, 1, (-2, -1))).numpy()
    np.testing.assert_allclose(stacked[0], by_hand, rtol=1e-5, atol=1e-6)


def test_view_means():
    p = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])
    np.testing.assert_allclose(combine_views(p), [[0.7, 0.3]])
    g = np.sqrt([0.45, 0.05])
    np.testing.assert_allclose(combine_views(p, "geometric"), [g / g.sum()])


def test_regression_scores_become_probabilities_with_that_expected_grade():
    probs = outputs_to_probs(np.array([[1.25], [-3.0], [9.0]]), "regression", 5)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(probs @ np.arange(5), [1.25, 0.0, 4.0])


def test_ensemble_is_the_weighted_mean():
    classes = ClassMap(("a", "b", "c"))
    ids = np.array(["x", "y"])
    p1 = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    p2 = np.array([[0.1, 0.8, 0.1], [0.5, 0.4, 0.1]])
    out = ensemble([Prediction(ids, p1, classes), Prediction(ids, p2, classes)], [0.4, 0.6])
    np.testing.assert_allclose(out.probs, 0.4 * p1 + 0.6 * p2)
    with pytest.raises(CompError, match="one non-negative --weight per run"):
        ensemble([Prediction(ids, p1, classes), Prediction(ids, p2, classes)], [1.0])
    with pytest.raises(CompError, match="disagree on the classes"):
        ensemble([Prediction(ids, p1, classes), Prediction(ids, p2, ClassMap(("a", "b", "d")))], [1, 1])


def _sample_recipe(tmp_path):
    pd.DataFrame({"img": ["c", "a", "b"], "grade": [0, 0, 0]}).to_csv(tmp_path / "sample_submission.csv", index=False)
    return recipe_from_dict({"name": "t", "data": {"root": str(tmp_path)}})


def test_submission_follows_the_sample(tmp_path):
    recipe = _sample_recipe(tmp_path)
    classes = ClassMap(("0", "1", "2"))
    probs = np.eye(3)
    frame = build_submission(recipe, np.array(["a", "b", "c"]), np.array(["0", "1", "2"]), classes, probs)
    assert list(frame.columns) == ["img", "grade", "prob_0", "prob_1", "prob_2"]
    assert list(frame.img) == ["c", "a", "b"] and list(frame.grade) == ["2", "0", "1"]
    assert list(frame.prob_2) == [1.0, 0.0, 0.0]


def test_wrong_ids_or_labels_are_rejected(tmp_path):
    recipe = _sample_recipe(tmp_path)
    classes = ClassMap(("0", "1"))
    with pytest.raises(CompError, match=r"1 missing \['c'\], 1 extra \['z'\]"):
        build_submission(recipe, np.array(["a", "b", "z"]), np.array(["0", "1", "0"]), classes)
    with pytest.raises(CompError, match=r"outside the class set.*'7'"):
        build_submission(recipe, np.array(["a", "b", "c"]), np.array(["0", "7", "0"]), classes)


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "sub.csv"
    frame = pd.DataFrame({"id": ["a", "b"], "label": ["0", "1"]})

    def explode(self, path, **kwargs):
        with open(path, "w") as f:
            f.write("id,label\na,")  # half a file, then the disk "fills"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(CompError, match=r"disk full while writing .*sub\.csv \(No space left on device\)"):
        write_submission(frame, out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    out.write_text("old submission\n")
    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(CompError):
        write_submission(frame, out)
    assert out.read_text() == "old submission\n"  # the previous file survives
