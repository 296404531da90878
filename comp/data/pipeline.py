"""The input pipeline: one owner for where and how images become model input.

:func:`input_pipeline` resolves, once, from ``[augment]``, ``[train]``, the device and the image
paths, where training augmentation runs (``[augment] on``: in the loader workers by
albumentations, "cpu", or batch-wise on the device, "device") and whether JPEGs are decoded on the
device. The :class:`InputPipeline` it returns gives everything else from that one decision:

* the worker side: the training and evaluation datasets (their albumentations transform, and
  whether JPEG bytes are shipped raw) and their loaders, the training one with its
  :class:`~comp.data.dataset.EpochSampler`;
* the device side: a training batch as the model takes it (decoded, augmented there on the
  "device" path with draws seeded by (seed, fold, epoch, step, rank), normalised, channels_last),
  an evaluation batch (normalised only), and the batch mixing (mixup/CutMix,
  :mod:`comp.data.mixing`) with its own seeded draws.

Every draw is a pure function of (seed, fold, epoch, step, rank), so a resumed fold trains on
exactly the batches an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from comp.data.augment import build_transform
from comp.data.dataset import EpochSampler, ImageDataset, make_loader
from comp.data.images import JPEG_SUFFIXES
from comp.data.mixing import Mix, mix_batch, mix_rng, mixing_on
from comp.data.prepare import BatchPrep
from comp.data.table import ImageTable
from comp.recipe import AugmentConfig, Recipe, TrainConfig, augment_spec


class DeviceSettings(Protocol):
    """What the pipeline needs of the resolved runtime (:class:`comp.model.runtime.Runtime`)."""

    device: torch.device
    channels_last: bool


def resolve_augment_on(on: str, device: torch.device, cfg: AugmentConfig | None = None) -> Literal["cpu", "device"]:
    """``[augment] on`` resolved: "auto" is "device" on CUDA and "cpu" elsewhere, and "cpu" for a
    ``cfg`` whose pipeline or auto_augment the device path cannot run."""
    if on == "auto":
        if cfg is not None and device_refusal(cfg) is not None:
            return "cpu"
        return "device" if torch.device(device).type == "cuda" else "cpu"
    if on not in ("cpu", "device"):
        raise ValueError(f'[augment] on must be "auto", "cpu" or "device", got {on!r}')
    return on  # type: ignore[return-value]


def device_refusal(cfg: AugmentConfig) -> str | None:
    """Why the device path cannot run ``cfg``'s pipeline/auto_augment (naming the transform), or None."""
    if not cfg.pipeline and not cfg.auto_augment:
        return None
    return augment_spec.device_refusal(cfg.pipeline, cfg.auto_augment, cfg.hflip, cfg.vflip, cfg.rot90)


def device_config(cfg: AugmentConfig) -> AugmentConfig:
    """``cfg`` as the device path runs it: the pipeline's flips and quarter turns as their own keys
    (in the device path's fixed order), the pipeline itself emptied."""
    if not cfg.pipeline:
        return cfg
    why = device_refusal(cfg)
    if why is not None:
        raise ValueError(f"the device path cannot run this recipe: {why}")
    return dataclasses.replace(cfg, pipeline=[], **augment_spec.device_keys(cfg.pipeline))


def device_decode(cfg: AugmentConfig, device: torch.device, paths: Sequence[Any]) -> bool:
    """Whether JPEGs are decoded on the device: on CUDA, with no CPU preprocessing, and every image
    a JPEG by its name (the workers still decode, on the CPU, any file whose header needs a
    conversion nvjpeg does not make: CMYK, an EXIF rotation)."""
    return (torch.device(device).type == "cuda" and cfg.preprocess == "none" and len(paths) > 0
            and all(str(p).lower().endswith(JPEG_SUFFIXES) for p in paths))


class InputPipeline:
    """Images to model input for one recipe on one device (see the module); built by
    :func:`input_pipeline`.

    ``augment_on``: where training augmentation runs ("cpu": the workers; "device": batch-wise
    here). ``decode_on_device``: JPEG files are shipped as bytes and decoded on the device.
    ``seed``, ``fold``: the recipe's seed and the fold, which seed augmentation, order and mixing.
    """

    def __init__(self, augment: AugmentConfig, train: TrainConfig, *, device: torch.device,
                 channels_last: bool, augment_on: Literal["cpu", "device"], decode_on_device: bool,
                 seed: int = 0, fold: int = 0) -> None:
        self.cfg, self.train_cfg = augment, train
        self.device = torch.device(device)
        self.augment_on, self.decode_on_device = augment_on, decode_on_device
        self.seed, self.fold = seed, fold
        # Loader batches (uint8) -> model input on the device: training batches (augmented here on
        # the "device" path), and evaluation batches (normalised only).
        self.train_prep = BatchPrep(device_config(augment) if augment_on == "device" else augment,
                                    device=self.device, augment=augment_on == "device",
                                    channels_last=channels_last, seed=(seed, fold))
        self.eval_prep = BatchPrep(augment, device=self.device, channels_last=channels_last)

    @property
    def order_seed(self) -> int:
        """The seed of the training order, the workers' per-item augmentation seeds and mixing."""
        return self.seed + self.fold

    # The worker side.

    def train_transform(self):
        """The workers' transform of training images: random augmentation on the "cpu" path, a
        resize alone on the "device" path (augmented on the device instead)."""
        return build_transform(self.cfg, train=self.augment_on == "cpu")

    def eval_transform(self):
        """The workers' transform of evaluation images (validation, prediction): a resize."""
        return build_transform(self.cfg, train=False)

    def train_dataset(self, table: ImageTable) -> ImageDataset:
        """Training rows as the workers ship them: uint8, augmented on the "cpu" path; JPEG bytes
        on the "device" path when the device decodes."""
        return ImageDataset(table, self.train_transform(), self.cfg.preprocess,
                            raw=self.augment_on == "device" and self.decode_on_device)

    def eval_dataset(self, table: ImageTable) -> ImageDataset:
        """Evaluation rows as the workers ship them: resized uint8, or JPEG bytes the device decodes."""
        return ImageDataset(table, self.eval_transform(), self.cfg.preprocess, raw=self.decode_on_device)

    def train_loader(self, table: ImageTable, batch_size: int, *, weights: np.ndarray | None = None,
                     rank: int = 0, world_size: int = 1) -> DataLoader:
        """The training loader: rows in the order of an :class:`EpochSampler` seeded by
        :attr:`order_seed` (``weights``: drawn with replacement in proportion; ``rank`` of
        ``world_size``: this process's share)."""
        dataset = self.train_dataset(table)
        sampler = EpochSampler(len(dataset), self.order_seed, weights=weights, rank=rank, world_size=world_size)
        return make_loader(dataset, batch_size, train_cfg=self.train_cfg, device=self.device, sampler=sampler)

    def eval_loader(self, table: ImageTable, batch_size: int) -> DataLoader:
        """An evaluation loader: the rows in order, not augmented."""
        return make_loader(self.eval_dataset(table), batch_size, train_cfg=self.train_cfg, device=self.device)

    # The device side.

    def train_batch(self, images: Any, epoch: int, step: int, rank: int = 0) -> torch.Tensor:
        """A training loader batch as the model takes it, for step ``step`` (1-based) of ``epoch``
        (0-based): on the device, augmented there on the "device" path, normalised, channels_last
        where the runtime asks."""
        return self.train_prep(images, self.train_prep.generator(epoch, step, rank))

    def eval_batch(self, images: Any) -> torch.Tensor:
        """An evaluation loader batch as the model takes it (normalised, never augmented)."""
        return self.eval_prep(images)

    @property
    def mixes(self) -> bool:
        """Whether the recipe mixes training batches (mixup/CutMix)."""
        return mixing_on(self.cfg)

    def mix(self, images: torch.Tensor, epoch: int, step: int, rank: int = 0) -> tuple[torch.Tensor, Mix | None]:
        """A prepared training batch mixed as ``[augment]`` says, with draws seeded by
        (:attr:`order_seed`, epoch, step, rank); the batch itself and None when it is not mixed."""
        if not self.mixes:
            return images, None
        return mix_batch(images, self.cfg, mix_rng(self.order_seed, epoch, step, rank))


def input_pipeline(recipe: Recipe, runtime: DeviceSettings, paths: Sequence[Any] = (), *,
                   fold: int = 0) -> InputPipeline:
    """The input pipeline of ``recipe`` on ``runtime``'s device for fold ``fold``: ``[augment] on``
    resolved there, and JPEGs decoded on the device when every one of ``paths`` (the competition's
    images) is a JPEG (:func:`device_decode`; no paths: never)."""
    a_cfg = recipe.augment
    return InputPipeline(a_cfg, recipe.train, device=runtime.device, channels_last=runtime.channels_last,
                         augment_on=resolve_augment_on(a_cfg.on, runtime.device, a_cfg),
                         decode_on_device=device_decode(a_cfg, runtime.device, paths),
                         seed=recipe.seed, fold=fold)


__all__ = ["DeviceSettings", "InputPipeline", "Mix", "device_config", "device_decode", "device_refusal", "input_pipeline", "resolve_augment_on"]
