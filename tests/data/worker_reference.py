"""The reference the uint8 workers and the device path are tested against: the workers'
albumentations transform ending in ``A.Normalize`` + ``ToTensorV2``, a normalised float CHW tensor
per image (what the workers shipped before the device normalised; issue 19)."""

from __future__ import annotations

from comp.data.augment import build_transform
from comp.recipe import AugmentConfig

import albumentations as A  # noqa: E402  (imported after comp, which silences its update check)
from albumentations.pytorch import ToTensorV2  # noqa: E402


def normalising_transform(cfg: AugmentConfig, train: bool) -> A.Compose:
    """``build_transform(cfg, train)`` normalised in the worker, as the workers did before."""
    steps = list(build_transform(cfg, train=train).transforms)
    return A.Compose(steps + [A.Normalize(mean=tuple(cfg.mean), std=tuple(cfg.std), max_pixel_value=255.0),
                              ToTensorV2()])
