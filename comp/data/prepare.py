"""Loader batches to model input on the device: transfer, JPEG decoding, resize, augmentation, normalisation.

The loader workers ship uint8 (:class:`~comp.data.dataset.ImageDataset`): a ``(N, H, W, 3)``
batch when every image has the same shape (the usual case: the workers resized them), else a list
of decoded ``H x W x 3`` images and JPEG files' raw bytes (1-d), which the device decodes itself
(:func:`decode_batch`: nvjpeg on CUDA, batched). :class:`BatchPrep` turns either into float32
``(N, 3, size, size)`` on the device, normalised by the recipe's mean and std, in channels_last
where asked, and augmented batch-wise (:class:`~comp.data.device_augment.DeviceAugment`) when
training augments on the device (``[augment] on = "device"``). Which of these a batch gets is the
input pipeline's decision (:mod:`comp.data.pipeline`).

Shipping uint8 instead of float32 moves a quarter of the bytes through worker IPC, the pin-memory
thread and the host-to-device copy, and leaves the per-pixel arithmetic to the device.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from comp.data.device_augment import DeviceAugment, resize_batch
from comp.recipe import AugmentConfig

_STEP_TAG = 0x617567  # "aug": keeps these draws apart from mixing's (comp.data.mixing.mix_rng)


def step_generator(seed: int, fold: int, epoch: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one training step's augmentation draws, a pure function of
    (seed, fold, epoch, step, rank): a resumed fold draws exactly what an uninterrupted one draws.
    (A CPU generator also gives the same draws whatever device the images are on.)"""
    state = np.random.SeedSequence([seed, fold, epoch, step, rank, _STEP_TAG]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class BatchPrep:
    """A loader batch → float32 ``(N, 3, size, size)`` model input on ``device`` (see the module).

    ``augment``: apply the recipe's random augmentation (the device path's training batches);
    otherwise only ``ToFloat`` + ``A.Normalize`` (validation, prediction, and training on the CPU
    path, whose workers augmented already). ``seed``: (recipe seed, fold) for :meth:`generator`.
    """

    def __init__(self, cfg: AugmentConfig, *, device: torch.device | str, augment: bool = False,
                 channels_last: bool = False, seed: tuple[int, int] = (0, 0)) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.augment = DeviceAugment(cfg, augment, channels_last=channels_last)
        self.seed = seed

    @property
    def random(self) -> bool:
        """Whether batches are augmented here (and so need a generator)."""
        return self.augment.active

    def generator(self, epoch: int, step: int, rank: int = 0) -> torch.Generator | None:
        """The generator of training step ``step`` (1-based) of ``epoch``; None when nothing is random."""
        return step_generator(*self.seed, epoch, step, rank) if self.random else None

    def to_device(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The batch on the device as ``(N, H, W, 3)``: a uint8 batch copied (asynchronously from
        pinned memory), a list decoded and resized there (:func:`decode_batch`)."""
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype not in (torch.uint8, torch.float32):
                raise ValueError(f"expected a uint8 (N, H, W, 3) batch from the loader, got "
                                 f"{images.dtype} {tuple(images.shape)}")
            return images.to(self.device, non_blocking=True)
        return decode_batch(images, self.device, self.cfg.size)

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor],
                 generator: torch.Generator | None = None) -> torch.Tensor:
        return self.augment(self.to_device(images), generator)


def decode_batch(items: Sequence[torch.Tensor], device: torch.device, size: int) -> torch.Tensor:
    """A list of loader items → ``(N, size, size, 3)`` on ``device``.

    1-d items are JPEG files' bytes, decoded together by ``torchvision.io.decode_jpeg`` (nvjpeg,
    batched, on CUDA); 3-d items are ``H x W x 3`` uint8 images the workers decoded. Images not
    at ``size`` are resized on the device, those of one shape together
    (:func:`~comp.data.device_augment.resize_batch`); the batch is then float32 in [0, 255], else uint8.
    """
    if not items:
        raise ValueError("an empty batch")
    device = torch.device(device)
    chw: list[torch.Tensor | None] = [None] * len(items)
    raw = [i for i, t in enumerate(items) if t.ndim == 1]
    if raw:
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():  # torchvision 0.29 points at TorchCodec; decode_jpeg still works
            warnings.simplefilter("ignore")
            decoded = decode_jpeg([items[i] for i in raw], mode=ImageReadMode.RGB, device=device)
        for i, image in zip(raw, decoded):
            chw[i] = image
    for i, t in enumerate(items):
        if chw[i] is None:
            if t.ndim != 3 or t.shape[-1] != 3 or t.dtype != torch.uint8:
                raise ValueError(f"expected uint8 H x W x 3 images or JPEG bytes, got {t.dtype} {tuple(t.shape)}")
            chw[i] = t.to(device, non_blocking=True).permute(2, 0, 1)
    if all(c.shape[-2:] == (size, size) for c in chw):
        return torch.stack(chw).permute(0, 2, 3, 1)
    out = torch.empty((len(chw), 3, size, size), dtype=torch.float32, device=device)
    shapes: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(chw):
        shapes.setdefault(tuple(c.shape[-2:]), []).append(i)
    for rows in shapes.values():
        out[rows] = resize_batch(torch.stack([chw[i] for i in rows]).float(), size)
    return out.permute(0, 2, 3, 1)


__all__ = ["BatchPrep", "decode_batch", "step_generator"]
