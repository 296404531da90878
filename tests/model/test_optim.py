"""Optimiser types, hyperparameters and per-group settings."""

from __future__ import annotations

import pytest
import torch

from comp.model.optim import build_optimizer
from comp.recipe import OptimConfig, RecipeError, recipe_from_dict


def _groups() -> list[dict]:
    head = torch.nn.Parameter(torch.ones(3))
    backbone = torch.nn.Parameter(torch.ones(3))
    bias = torch.nn.Parameter(torch.ones(1))
    return [{"name": "head", "params": [head], "lr": 0.01, "weight_decay": 0.05},
            {"name": "backbone", "params": [backbone], "lr": 0.001},
            {"name": "backbone_no_decay", "params": [bias], "weight_decay": 0.0}]


def test_sgd_nesterov():
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.1, momentum=0.8, nesterov=True,
                                      weight_decay=1e-3), _groups())
    assert type(opt) is torch.optim.SGD
    head, backbone, bias = opt.param_groups
    assert all(g["momentum"] == 0.8 and g["nesterov"] is True for g in opt.param_groups)
    assert (head["lr"], head["weight_decay"]) == (0.01, 0.05)
    assert (backbone["lr"], backbone["weight_decay"]) == (0.001, 1e-3)  # cfg fills the gap
    assert (bias["lr"], bias["weight_decay"]) == (0.1, 0.0)
    assert [g["name"] for g in opt.param_groups] == ["head", "backbone", "backbone_no_decay"]
    assert opt.defaults["lr"] == 0.1


def test_sgd_plain_momentum():
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=False), _groups())
    assert opt.param_groups[0]["nesterov"] is False and opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_family(name, cls):
    opt = build_optimizer(OptimConfig(name=name, lr=3e-4, betas=[0.8, 0.99], weight_decay=0.02),
                          _groups())
    assert type(opt) is cls
    assert all(g["betas"] == (0.8, 0.99) for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.02, 0.0]
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.001, 3e-4]


def test_adamw_decays_weights_decoupled():
    p = torch.nn.Parameter(torch.ones(1))
    opt = build_optimizer(OptimConfig(name="adamw", lr=0.1, weight_decay=0.5), [{"params": [p]}])
    p.grad = torch.zeros(1)
    opt.step()
    # Zero gradient: only the decoupled decay moves the weight, by lr * wd * w.
    assert p.item() == pytest.approx(1.0 - 0.1 * 0.5)


def test_callers_groups_are_not_mutated():
    groups = _groups()
    build_optimizer(OptimConfig(name="adamw"), groups)
    assert "lr" not in groups[2] and "betas" not in groups[0]


@pytest.mark.parametrize("optim, match", [
    ({"name": "sgd", "momentum": 0.0, "nesterov": True}, r"\[optim\] nesterov"),
    ({"name": "adam", "betas": [0.9, 1.5]}, r"\[optim\] betas"),
    ({"weight_decay": -0.1}, r"\[optim\] weight_decay"),
    ({"lr": float("inf")}, r"\[optim\] lr"),
])
def test_bad_optimiser_settings_are_refused_when_the_recipe_loads(optim, match):
    with pytest.raises(RecipeError, match=match):
        recipe_from_dict({"name": "x", "optim": optim})
