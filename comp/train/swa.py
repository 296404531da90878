"""Stochastic weight averaging: the mean of the last epochs' weights
(:class:`torch.optim.swa_utils.AveragedModel`), BatchNorm statistics recomputed at the end.

With early stopping (``[train] patience``) the fold's last epoch is not known in advance, so the
mean is of the last ``swa_epochs`` epochs actually trained: the loop offers every epoch, the
last ``window`` epochs' weights are kept (on the CPU, and in last.pt), and they are averaged, in
epoch order as a running mean would have, when the fold ends. The SWA mean is of the weights as
trained, never of the EMA (``[train] ema_decay``)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from comp.model.runtime import Runtime
from comp.kinds import activation_of
from comp.run.checkpoint import save_checkpoint, unwrap
from comp.run.folder import FoldDir
from comp.train.hooks import EpochEnd, Hook, OofProbs
from comp.train.parts import FoldParts
from comp.train.state import FoldRun, TrainState
from comp.train.validate import valid_probs

logger = logging.getLogger(__name__)


class SwaAverage:
    """The running mean of a model's weights, kept on the CPU; resumable through ``state_dict``.

    ``window`` > 0: keep the last ``window`` offered epochs' weights instead, averaged by
    :meth:`final_model` (a fold that may stop early)."""

    def __init__(self, model: nn.Module, window: int = 0) -> None:
        self.model = unwrap(model)
        self.window = window
        self.averaged: AveragedModel | None = None
        self.recent: list[dict[str, torch.Tensor]] = []  # window mode: the last epochs' parameters

    @property
    def count(self) -> int:
        """How many epochs' weights are in the mean."""
        if self.window:
            return len(self.recent)
        return 0 if self.averaged is None else int(self.averaged.n_averaged)

    def update(self) -> None:
        """Add the model's current weights to the mean (window mode: to the kept epochs)."""
        if self.window:
            params = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters()}
            self.recent = (self.recent + [params])[-self.window:]
            return
        if self.averaged is None:
            self.averaged = AveragedModel(self.model, device="cpu")
        self.averaged.update_parameters(self.model)

    def state_dict(self) -> dict[str, Any] | None:
        if self.window:
            return {"recent": self.recent} if self.recent else None
        return None if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.averaged, self.recent = None, []
        if state is None:
            return
        if self.window:
            self.recent = list(state["recent"])
            return
        self.averaged = AveragedModel(self.model, device="cpu")
        self.averaged.load_state_dict(state)

    def _mean(self) -> nn.Module:
        """The averaged module (window mode: the kept epochs averaged in epoch order now)."""
        if not self.window:
            return self.averaged.module
        averaged = AveragedModel(self.model, device="cpu")
        epoch = copy.deepcopy(averaged.module)
        for params in self.recent:
            for name, p in epoch.named_parameters():
                p.data.copy_(params[name])
            averaged.update_parameters(epoch)
        return averaged.module

    def final_model(self, parts: FoldParts, runtime: Runtime) -> nn.Module:
        """The averaged weights on the device, BatchNorm statistics recomputed on the training
        images as evaluation sees them (not augmented)."""
        model = copy.deepcopy(self._mean()).to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        pipeline = parts.pipeline
        loader = pipeline.eval_loader(parts.train_loader.dataset.table, parts.batch_size)
        with runtime.autocast():
            update_bn(((pipeline.eval_batch(x),) for x, _ in loader), model, device=runtime.device)
        return model


class SwaHook(Hook):
    """``[train] swa_epochs``: the mean of the last epochs' weights as trained (with early stopping,
    of the last epochs actually trained: a window kept in last.pt), written as swa.pt when the fold
    ends, BatchNorm recomputed; its OOF rows ("swa") are validated then, when asked for."""

    name = "swa"

    def __init__(self, model: nn.Module, epochs: int, total_epochs: int, folder: FoldDir, classes: list[str], *,
                 window: bool, write: bool, num_classes: int) -> None:
        # With early stopping the last swa_epochs epochs are only known at the stop: keep them all.
        self.swa = SwaAverage(model, window=epochs if window else 0)
        self.epochs, self.total_epochs = epochs, total_epochs
        self.folder, self.classes, self.write, self.num_classes = folder, list(classes), write, num_classes

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> None:
        if self.swa.window or end.epoch > self.total_epochs - self.epochs:
            self.swa.update()
        return None

    def fold_end(self, run: FoldRun, state: TrainState, earlier: Mapping[str, OofProbs]) -> dict[str, OofProbs]:
        if not self.swa.count:
            return {}
        swa_model = self.swa.final_model(run.parts, run.runtime)  # on every rank: all validate it
        if self.write:
            save_checkpoint(self.folder.swa, model=swa_model, epoch=state.epoch, score=float("nan"),
                            classes=self.classes, swa_epochs=self.swa.count)
            logger.info(f"swa.pt: the mean of the last {self.swa.count} epochs' weights, BatchNorm recomputed")
        if run.parts.valid_loader is None:
            return {}
        parts, fold = run.parts, self.folder.fold
        return {"swa": lambda: valid_probs(swa_model, parts, run.runtime, activation_of(run.task, run.recipe.model.head), self.num_classes,
                                           where=f"fold {fold}, the SWA weights")}

    def state_dict(self) -> dict[str, Any] | None:
        return self.swa.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.swa.load_state_dict(state)
