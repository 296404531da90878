"""Losses and class weights, each checked against a number worked out by hand or in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comp.errors import CompError
from comp.model.losses import FocalLoss, build_loss, class_weights
from comp.recipe import LossConfig, RecipeError, recipe_from_dict

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 3.0]])
TARGETS = torch.tensor([0, 2, 1, 0])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- class weights


def test_balanced_weights_are_inverse_frequency_with_mean_one():
    w = class_weights([10, 30, 60], "balanced")
    # 1/10 : 1/30 : 1/60 = 6 : 2 : 1, mean 3 -> 2, 2/3, 1/3.
    np.testing.assert_allclose(w.numpy(), [2.0, 2.0 / 3.0, 1.0 / 3.0], rtol=1e-6)
    assert w.dtype == torch.float32
    assert w.mean().item() == pytest.approx(1.0)


def test_sqrt_weights():
    w = class_weights([1, 4, 16], "sqrt")
    # 1 : 1/2 : 1/4 = 4 : 2 : 1, mean 7/3.
    np.testing.assert_allclose(w.numpy(), np.array([4.0, 2.0, 1.0]) * 3.0 / 7.0, rtol=1e-6)


def test_none_and_explicit_weights():
    assert class_weights([5, 5], "none") is None
    w = class_weights([5, 5, 5], [1.0, 2, 0.5])
    np.testing.assert_allclose(w.numpy(), [1.0, 2.0, 0.5])


def test_wrong_length_weight_list_names_both_numbers():
    with pytest.raises(CompError, match=r"\[loss\] class_weights has 2 values but there are 3 classes"):
        class_weights([1, 2, 3], [1.0, 2.0])
    with pytest.raises(CompError, match=r"\[loss\] class_weights has 2 values but there are 3"):
        build_loss(LossConfig(class_weights=[1.0, 2.0]), [1, 2, 3])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_non_positive_weight_is_refused_when_the_recipe_loads(bad):
    with pytest.raises(RecipeError, match=r"r.toml: \[loss\] class_weights\[1\] must be a positive number"):
        recipe_from_dict({"name": "x", "loss": {"class_weights": [1.0, bad]}}, "r.toml")


@pytest.mark.parametrize("mode", ["balanced", "sqrt"])
def test_empty_class_is_an_error(mode):
    with pytest.raises(CompError, match="class 1 has no training samples"):
        class_weights([4, 0, 2], mode)


# --------------------------------------------------------------------------- cross-entropy


def test_ce_matches_numpy_with_weights():
    loss = build_loss(LossConfig(name="ce", class_weights="balanced"), [10, 30, 60])
    assert isinstance(loss, torch.nn.CrossEntropyLoss)
    p = _softmax(LOGITS.numpy().astype(np.float64))
    y = TARGETS.numpy()
    w = np.array([2.0, 2.0 / 3.0, 1.0 / 3.0])
    nll = -np.log(p[np.arange(4), y])
    expected = (w[y] * nll).sum() / w[y].sum()
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)


def test_ce_label_smoothing_matches_numpy():
    loss = build_loss(LossConfig(name="ce", label_smoothing=0.1), [1, 1, 1])
    logp = np.log(_softmax(LOGITS.numpy().astype(np.float64)))
    q = np.full((4, 3), 0.1 / 3)
    q[np.arange(4), TARGETS.numpy()] += 0.9
    expected = -(q * logp).sum(1).mean()
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)


def test_ce_accepts_int32_targets():
    loss = build_loss(LossConfig(name="ce"), [1, 1, 1])
    assert loss(LOGITS, TARGETS.int()).item() == pytest.approx(F.cross_entropy(LOGITS, TARGETS).item())


# --------------------------------------------------------------------------- focal


@pytest.mark.parametrize("weight", [None, torch.tensor([2.0, 0.5, 1.0])])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_focal_gamma_zero_is_cross_entropy(weight, smoothing):
    focal = FocalLoss(0.0, weight=weight, label_smoothing=smoothing)
    ce = F.cross_entropy(LOGITS, TARGETS, weight=weight, label_smoothing=smoothing)
    assert focal(LOGITS, TARGETS).item() == pytest.approx(ce.item(), rel=1e-6)


def test_focal_gamma_two_by_formula():
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    targets = torch.tensor([0, 0])
    # p_t: sigmoid(1) for the first sample, sigmoid(-3) for the second.
    p1, p2 = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(3.0))
    expected = (-(1 - p1) ** 2 * np.log(p1) - (1 - p2) ** 2 * np.log(p2)) / 2
    got = FocalLoss(2.0)(logits, targets).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # A confident correct sample is down-weighted far below its cross-entropy.
    assert got < F.cross_entropy(logits, targets).item()


def test_focal_class_weight_is_alpha_of_the_target():
    logits = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    targets = torch.tensor([0, 1])
    w = torch.tensor([3.0, 1.0])
    p1, p2 = 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(-3.0))
    l1, l2 = -(1 - p1) ** 2 * np.log(p1), -(1 - p2) ** 2 * np.log(p2)
    expected = (3.0 * l1 + 1.0 * l2) / 4.0
    assert FocalLoss(2.0, weight=w)(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_focal_label_smoothing_by_formula():
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    p = _softmax(np.array([[1.0, 0.0, -1.0]]))[0]
    per_class = -(1 - p) ** 2 * np.log(p)
    expected = 0.7 * per_class[0] + 0.3 / 3 * per_class.sum()
    got = FocalLoss(2.0, label_smoothing=0.3)(logits, torch.tensor([0])).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_build_focal_and_backward():
    loss = build_loss(LossConfig(name="focal", gamma=1.5, class_weights="sqrt"), [4, 9, 1])
    assert isinstance(loss, FocalLoss) and loss.gamma == 1.5
    np.testing.assert_allclose(loss.weight.numpy(), class_weights([4, 9, 1], "sqrt").numpy())
    logits = LOGITS.clone().requires_grad_()
    loss(logits, TARGETS).backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_rejects_negative_gamma():
    with pytest.raises(RecipeError, match=r"\[loss\] gamma"):
        recipe_from_dict({"name": "x", "loss": {"name": "focal", "gamma": -1.0}})


# --------------------------------------------------------------------------- regression


def test_mse_on_grades():
    loss = build_loss(LossConfig(name="mse"), [1, 1, 1, 1, 1])
    out = torch.tensor([[0.5], [2.0], [4.0]])
    y = torch.tensor([0, 3, 4])
    # errors 0.5, -1, 0 -> (0.25 + 1 + 0) / 3
    assert loss(out, y).item() == pytest.approx(1.25 / 3)


def test_weighted_mse_weights_each_sample_by_its_grade():
    loss = build_loss(LossConfig(name="mse", class_weights=[1.0, 2.0, 4.0]), [5, 5, 5])
    out = torch.tensor([[1.0], [1.0], [0.0]])
    y = torch.tensor([0, 2, 2])
    # squared errors 1, 1, 4 with weights 1, 4, 4.
    assert loss(out, y).item() == pytest.approx((1 * 1 + 4 * 1 + 4 * 4) / 9)


def test_smooth_l1_on_grades():
    loss = build_loss(LossConfig(name="smooth_l1"), [1, 1, 1])
    out = torch.tensor([[0.5], [3.0]])
    y = torch.tensor([0, 1])
    # |0.5| < 1: 0.5 * 0.25 = 0.125; |2| >= 1: 2 - 0.5 = 1.5.
    assert loss(out, y).item() == pytest.approx((0.125 + 1.5) / 2)


def test_regression_rejects_label_smoothing():
    with pytest.raises(RecipeError, match=r"\[loss\] label_smoothing"):
        recipe_from_dict({"name": "x", "model": {"head": "regression"},
                          "loss": {"name": "mse", "label_smoothing": 0.1}})


def test_weights_follow_the_module_to_a_device_and_dtype():
    loss = build_loss(LossConfig(name="focal", class_weights="balanced"), [1, 3])
    moved = loss.to(torch.float64)
    assert moved.weight.dtype == torch.float64
    assert "weight" in dict(moved.named_buffers())


# ------------------------------------------------------------------ SORD (soft ordinal targets)

def test_sord_targets_by_formula():
    from comp.model.losses import sord_targets
    q = sord_targets(torch.tensor([2]), 5, alpha=1.0)[0].numpy()
    raw = np.exp(-1.0 * (np.arange(5) - 2.0) ** 2)
    np.testing.assert_allclose(q, raw / raw.sum(), rtol=1e-6)
    assert q.argmax() == 2 and q[1] == pytest.approx(q[3])  # peaked at the grade, symmetric


def test_sord_loss_by_formula_with_weights_and_smoothing():
    from comp.model.losses import SordLoss
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 3, 1])
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    got = SordLoss(1.5, weight=w, label_smoothing=0.1)(logits, y)
    grades = np.arange(4)
    q = np.exp(-1.5 * (grades[None, :] - y.numpy()[:, None]) ** 2)
    q = 0.9 * q / q.sum(1, keepdims=True) + 0.1 / 4
    log_p = torch.log_softmax(logits, 1).numpy()
    per = -(q * log_p).sum(1) * w.numpy()[y.numpy()]
    assert got.item() == pytest.approx(per.sum() / w.numpy()[y.numpy()].sum(), rel=1e-5)


def test_sord_with_large_alpha_is_cross_entropy():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5])
    sord = build_loss(LossConfig(name="sord", sord_alpha=50.0, class_weights=[1.0, 2.0, 0.5, 3.0, 1.5]),
                      [1] * 5)(logits, y)
    assert sord.item() == pytest.approx(F.cross_entropy(logits, y, weight=w).item(), rel=1e-5)


def test_sord_rejects_non_positive_alpha():
    with pytest.raises(RecipeError, match="sord_alpha"):
        recipe_from_dict({"name": "x", "loss": {"name": "sord", "sord_alpha": 0.0}})
