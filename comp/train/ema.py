"""Model EMA: an exponential moving average of a fold's weights and BatchNorm buffers, updated after
every optimiser step (``[train] ema_decay``; 0 = off).

It is timm's :class:`~timm.utils.ModelEmaV3` rather than :class:`torch.optim.swa_utils.AveragedModel`
with ``get_ema_multi_avg_fn`` because ModelEmaV3 has the decay's warm-up built in (the decay at
update ``t`` is ``min(ema_decay, 1 - (1 + t) ** -0.75)``, so the average is not dragged towards the
random initialisation for the first thousands of steps, which a small competition may never get
past), it averages every floating entry of the state dict (BatchNorm running statistics with the
weights; the integer ``num_batches_tracked`` is copied), and the step is the caller's: a resume
needs only the average's state dict and the loop's update count, both in last.pt. AveragedModel's
EMA has a fixed decay, so a warm-up would be a hand-written ``multi_avg_fn``.

Under DDP and torch.compile it averages the unwrapped module, whose parameters every rank holds
equal after each step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import nn

from comp.kinds import activation_of
from comp.run.checkpoint import save_checkpoint, unwrap
from comp.run.folder import FoldDir
from comp.train.hooks import Hook, OofProbs
from comp.train.state import FoldRun, TrainState
from comp.train.validate import valid_probs

WARMUP_POWER = 0.75  # timm's advice for runs of under ~100k steps: 0.999 after 10k updates, 0.99 after 460


class ModelEma:
    """The EMA of one fold's model, on the model's device, in eval mode (:attr:`module` validates
    and is saved as best.pt, epochNNN.pt and ema.pt)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.ema = ModelEmaV3(unwrap(model), decay=decay, use_warmup=True, warmup_power=WARMUP_POWER)

    @property
    def module(self) -> nn.Module:
        """The averaged model."""
        return self.ema.module

    def update(self, model: nn.Module, step: int) -> None:
        """Fold the model's current weights and buffers in, after optimiser step ``step`` (from 1)."""
        self.ema.update(unwrap(model), step=step)

    def decay(self, step: int) -> float:
        """The decay the update after optimiser step ``step`` uses (the warmed-up one)."""
        return self.ema.get_decay(step)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.ema.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.module.load_state_dict(state)


class EmaHook(Hook):
    """``[train] ema_decay``: the EMA, updated after every optimiser step, is what every epoch
    validates (so the monitor, best.pt, the top-k and their OOF rows are the EMA's); ema.pt is the
    EMA as the fold ended. last.pt keeps the weights as trained, and the EMA under "ema"."""

    name = "ema"

    def __init__(self, model: nn.Module, decay: float, folder: FoldDir, classes: list[str], *,
                 write: bool, num_classes: int) -> None:
        self.ema = ModelEma(model, decay)
        self.decay, self.folder, self.classes, self.write = decay, folder, list(classes), write
        self.num_classes = num_classes

    def validates(self) -> nn.Module:
        return self.ema.module

    def after_step(self, run: FoldRun, state: TrainState, loss: float, updated: bool) -> None:
        if updated:
            self.ema.update(run.parts.model, state.updates)

    def fold_end(self, run: FoldRun, state: TrainState, earlier: Mapping[str, OofProbs]) -> dict[str, OofProbs]:
        """ema.pt; OOF: "ema" is the last epoch's validation (of the EMA), "last" the weights as
        trained validated once more (last.pt holds them)."""
        if self.write:
            last_score = state.history[-1][run.task.monitor] if state.history else math.nan
            save_checkpoint(self.folder.ema, model=self.ema.module, epoch=state.epoch, score=last_score,
                            classes=self.classes, ema_decay=self.decay)
        named: dict[str, OofProbs] = {}
        if "last" in earlier:
            named["ema"] = earlier["last"]
        if run.parts.valid_loader is not None:
            parts, fold = run.parts, self.folder.fold
            named["last"] = lambda: valid_probs(unwrap(parts.model), parts, run.runtime, activation_of(run.task, run.recipe.model.head),
                                                self.num_classes, where=f"fold {fold}, the last weights")
        return named

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)
