"""Learning-rate schedules built from the ``[schedule]`` section of a recipe.

One :class:`Scheduler` drives every schedule through the same two calls from the training loop::

    scheduler = build_scheduler(recipe.schedule, optimizer, epochs, steps_per_epoch, mode="max")
    for epoch in range(epochs):
        for batch in loader:
            ...; optimizer.step(); updates += 1
            scheduler.step_update(updates)          # after every optimiser step
        scheduler.step_epoch(epoch + 1, metric)     # after validation; metric may be None

Both calls recompute every group's LR from scratch as ``base_lr * multiplier``, where
``base_lr`` is the group's LR when the scheduler was built (groups keep their own: the backbone
may run at ``lr * backbone_lr_mult``). Which call moves the LR depends on the schedule:

* per iteration (``step_update``): ``cosine`` (linear warmup, then cosine to ``min_lr`` at the
  end of training) and ``onecycle`` (as ``torch.optim.lr_scheduler.OneCycleLR``, cosine
  annealing; the group's base LR is the peak);
* per epoch (``step_epoch``): ``constant``, ``step`` (times ``gamma`` every ``step_size``
  epochs), ``multistep`` (times ``gamma`` at each milestone epoch) and ``plateau``
  (``ReduceLROnPlateau``: times ``gamma`` after more than ``patience`` epochs without
  improvement of the metric). Their optional ``warmup_epochs`` ramp is per iteration.

``min_lr`` is given in the units of ``[optim] lr`` (the optimiser's default LR) and each group's
floor scales with its base LR, so a backbone at a tenth of the head's LR floors at a tenth of
``min_lr`` and a group at LR 0 stays at 0. It is the end point of ``cosine`` and ``onecycle``
and a floor for ``step``, ``multistep`` and ``plateau``.

Warmup goes linearly from ``base_lr / W`` at the first step to ``base_lr`` at step ``W - 1``,
with ``W = round(warmup_epochs * steps_per_epoch)``, so no optimiser step is spent at LR 0.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch

from comp.errors import CompError
from comp.recipe import Recipe, ScheduleConfig

PER_ITERATION = ("cosine", "onecycle")

# As torch's OneCycleLR defaults: start at peak/25, end at start/1e4 unless min_lr is set.
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4
# As torch's ReduceLROnPlateau defaults: a relative improvement of 1e-4 counts as better.
PLATEAU_THRESHOLD = 1e-4


class Scheduler:
    """Sets each param group's LR to ``base_lr * multiplier`` (see the module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, epochs: int,
                 steps_per_epoch: int, mode: str = "max") -> None:
        self.optimizer = optimizer
        self.name = name = cfg.name  # cfg's values were checked when the recipe was loaded
        self.interval = "iteration" if name in PER_ITERATION else "epoch"
        self.epochs = int(epochs)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = self.epochs * self.steps_per_epoch
        self.warmup_steps = 0
        if cfg.warmup_epochs > 0:
            # At least one step, and still at least one step of the cosine after it.
            self.warmup_steps = min(max(1, round(cfg.warmup_epochs * self.steps_per_epoch)),
                                    self.total_steps - 1)
        # [optim] lr (build_optimizer's default LR, positive as the recipe's check says) is the
        # reference for min_lr.
        self.min_ratio = cfg.min_lr / float(optimizer.defaults["lr"])
        self.step_size = int(cfg.step_size)
        self.milestones = sorted(int(m) for m in cfg.milestones)
        self.gamma = float(cfg.gamma)
        self.pct_start = float(cfg.pct_start)
        self.patience = int(cfg.patience)
        self.mode = mode
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        # Progress and plateau state: everything that state_dict() saves.
        self.updates = 0
        self.epoch = 0
        self.scale = 1.0
        self.best: float | None = None
        self.num_bad = 0
        self._apply()

    # ------------------------------------------------------------------ the training-loop calls

    def step_update(self, num_updates: int) -> None:
        """Call after every optimiser step; ``num_updates`` counts all steps so far (from 1)."""
        self.updates = int(num_updates)
        self._apply()

    def step_epoch(self, epoch: int, metric: float | None = None) -> None:
        """Call after each epoch's validation; ``epoch`` counts completed epochs (from 1).

        ``metric`` is the monitored validation value (better is ``mode``); only ``plateau``
        uses it, and None (no validation) leaves the plateau state alone.
        """
        self.epoch = int(epoch)
        if self.name == "plateau" and metric is not None and math.isfinite(metric):
            self._plateau_update(float(metric))
        self._apply()

    # ------------------------------------------------------------------ closed forms

    def multiplier_at(self, step: int, epoch: int | None = None) -> float:
        """The LR multiplier for optimiser step ``step`` (0-based) during epoch ``epoch``.

        ``epoch`` (completed epochs) defaults to ``step // steps_per_epoch``. ``plateau`` has
        no closed form: its current decay is used.
        """
        if epoch is None:
            epoch = step // self.steps_per_epoch
        if self.name == "onecycle":
            return self._onecycle(step)
        warm = (step + 1) / self.warmup_steps if step < self.warmup_steps else 1.0
        if self.name == "cosine":
            if step < self.warmup_steps:
                return warm
            span = self.total_steps - self.warmup_steps
            p = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
            return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.name == "constant":
            return warm
        if self.name == "step":
            return warm * max(self.gamma ** (epoch // self.step_size), self.min_ratio)
        if self.name == "multistep":
            passed = bisect.bisect_right(self.milestones, epoch)
            return warm * max(self.gamma ** passed, self.min_ratio)
        return warm * self.scale  # plateau

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Plain python values only, so checkpoints load with ``weights_only=True``."""
        return {"name": self.name, "base_lrs": list(self.base_lrs), "updates": self.updates,
                "epoch": self.epoch, "scale": self.scale, "best": self.best,
                "num_bad": self.num_bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore progress and set the optimiser's LRs to where the saved run left them."""
        if state.get("name") != self.name:
            raise CompError(f"cannot resume: the checkpoint's schedule is {state.get('name')!r} "
                            f"but [schedule] name is {self.name!r}")
        base_lrs = [float(v) for v in state["base_lrs"]]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise CompError(f"cannot resume: the checkpoint's schedule has {len(base_lrs)} "
                            f"parameter groups but the model has {len(self.optimizer.param_groups)}")
        self.base_lrs = base_lrs
        self.updates = int(state["updates"])
        self.epoch = int(state["epoch"])
        self.scale = float(state["scale"])
        self.best = None if state["best"] is None else float(state["best"])
        self.num_bad = int(state["num_bad"])
        self._apply()

    # ------------------------------------------------------------------ internals

    def _apply(self) -> None:
        m = self.multiplier_at(self.updates, self.epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * m

    def _onecycle(self, step: int) -> float:
        # torch's OneCycleLR: up from peak/25 until step pct_start*T - 1, down to the end at T - 1.
        start = 1.0 / ONECYCLE_DIV
        end = self.min_ratio if self.min_ratio > 0 else start / ONECYCLE_FINAL_DIV
        up = max(self.pct_start * self.total_steps - 1.0, 0.0)
        if step <= up and up > 0:
            return _cos_anneal(start, 1.0, step / up)
        span = self.total_steps - 1.0 - up
        pct = 1.0 if span <= 0 else min(max((step - up) / span, 0.0), 1.0)
        return _cos_anneal(1.0, end, pct)

    def _plateau_update(self, metric: float) -> None:
        if self._is_better(metric):
            self.best = metric
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.num_bad > self.patience:
            self.scale = max(self.scale * self.gamma, self.min_ratio)
            self.num_bad = 0

    def _is_better(self, metric: float) -> bool:
        if self.best is None:
            return True
        # Relative threshold on |best| so that negative scores (a QWK below 0) behave too.
        margin = PLATEAU_THRESHOLD * abs(self.best)
        if self.mode == "max":
            return metric > self.best + margin
        return metric < self.best - margin


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (1.0 + math.cos(math.pi * pct))


def build_scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int,
                    steps_per_epoch: int, mode: str = "max") -> Scheduler:
    """The schedule named by ``[schedule] name`` over ``epochs * steps_per_epoch`` steps.

    ``steps_per_epoch`` counts optimiser steps (after gradient accumulation); ``mode`` says
    whether a larger (``"max"``) or smaller (``"min"``) validation metric is better.
    """
    return Scheduler(optimizer, cfg, epochs=epochs, steps_per_epoch=steps_per_epoch, mode=mode)


def schedule_warnings(recipe: Recipe) -> list[str]:
    """Settings that do nothing in ``[train] epochs`` epochs (a shorter ``--set train.epochs``
    leaves them behind): milestones or a step size the run never reaches, SWA that would average
    warmup weights. ``comp check`` and ``comp fit`` print them; they are not errors."""
    s, t = recipe.schedule, recipe.train
    epochs, found = t.epochs, []
    if s.name == "multistep":
        late = [m for m in s.milestones if m >= epochs]
        if late:
            never = " never drops" if len(late) == len(s.milestones) else " does not drop there"
            found.append(f"[schedule] milestones {', '.join(map(str, late))} {'is' if len(late) == 1 else 'are'} "
                         f"not inside [train] epochs = {epochs} (a milestone m lowers the LR after m epochs): "
                         f"the LR{never}")
    if s.name == "step" and s.step_size >= epochs:
        found.append(f"[schedule] step_size = {s.step_size} is not inside [train] epochs = {epochs}: the LR never drops")
    if t.swa_epochs and s.warmup_epochs and t.swa_epochs > epochs - s.warmup_epochs:
        found.append(f"[train] swa_epochs = {t.swa_epochs} reaches into the warmup ([schedule] warmup_epochs = "
                     f"{s.warmup_epochs:g} of [train] epochs = {epochs}): swa.pt averages warmup weights")
    return found
