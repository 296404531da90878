"""Stochastic weight averaging: the mean of the last epochs' weights
(:class:`torch.optim.swa_utils.AveragedModel`), BatchNorm statistics recomputed at the end."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from comp.data.augment import build_transform
from comp.data.dataset import ImageDataset, make_loader
from comp.model.runtime import Runtime
from comp.recipe import Recipe
from comp.train.checkpoint import unwrap
from comp.train.parts import FoldParts


class SwaAverage:
    """The running mean of a model's weights, kept on the CPU; resumable through ``state_dict``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = unwrap(model)
        self.averaged: AveragedModel | None = None

    @property
    def count(self) -> int:
        """How many epochs' weights are in the mean."""
        return 0 if self.averaged is None else int(self.averaged.n_averaged)

    def update(self) -> None:
        """Add the model's current weights to the mean."""
        if self.averaged is None:
            self.averaged = AveragedModel(self.model, device="cpu")
        self.averaged.update_parameters(self.model)

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self.averaged = None
            return
        self.averaged = AveragedModel(self.model, device="cpu")
        self.averaged.load_state_dict(state)

    def final_model(self, parts: FoldParts, runtime: Runtime, recipe: Recipe) -> nn.Module:
        """The averaged weights on the device, BatchNorm statistics recomputed on the training
        images (without augmentation)."""
        model = copy.deepcopy(self.averaged.module).to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        train_ds = parts.train_loader.dataset
        plain = ImageDataset(train_ds.table, build_transform(recipe.augment, train=False), train_ds.preprocess,
                             raw=train_ds.raw)
        loader = make_loader(plain, parts.batch_size, train_cfg=recipe.train, device=runtime.device)
        with runtime.autocast():
            update_bn(((parts.eval_prep(x),) for x, _ in loader), model, device=runtime.device)
        return model
