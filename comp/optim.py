"""The optimiser named by the ``[optim]`` section of a recipe."""

from __future__ import annotations

import math
from typing import Any

import torch

from comp.errors import CompError
from comp.recipe import OptimConfig


def build_optimizer(cfg: OptimConfig, param_groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """An SGD, Adam or AdamW optimiser over ``param_groups``.

    Groups are dicts as torch takes them (``{"params": [...], "lr": ..., "weight_decay": ...}``,
    extra keys such as ``name`` are kept); a group's own ``lr``/``weight_decay`` win over
    ``cfg.lr``/``cfg.weight_decay``, which fill in where a group has none. ``cfg.lr`` is also
    the optimiser's default LR, which the scheduler takes as the reference for ``min_lr``.
    """
    groups = [dict(g) if isinstance(g, dict) else g for g in param_groups]
    if not groups:
        raise CompError("[optim] there are no parameters to optimise")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise CompError(f"[optim] lr must be positive, got {cfg.lr}")
    if not cfg.weight_decay >= 0:
        raise CompError(f"[optim] weight_decay must be non-negative, got {cfg.weight_decay}")
    if cfg.name == "sgd":
        if not cfg.momentum >= 0:
            raise CompError(f"[optim] momentum must be non-negative, got {cfg.momentum}")
        if cfg.nesterov and cfg.momentum == 0:
            raise CompError("[optim] nesterov = true needs momentum > 0")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name in ("adam", "adamw"):
        betas = tuple(float(b) for b in cfg.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise CompError(f"[optim] betas must be two numbers in [0, 1), got {list(cfg.betas)}")
        cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        return cls(groups, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    raise CompError(f'[optim] name must be "sgd", "adam" or "adamw", got {cfg.name!r}')
