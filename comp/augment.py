"""Albumentations pipelines built from ``[augment]``: resize, flips, rotation, normalisation."""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version at import; offline that only costs time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

from comp.recipe import AugmentConfig  # noqa: E402


def build_transform(cfg: AugmentConfig, train: bool) -> A.Compose:
    """The pipeline for training (random augmentation) or evaluation (deterministic).

    Input is a uint8 HxWx3 RGB array; output a float CHW tensor normalised by ``mean``/``std``.
    """
    steps: list[A.BasicTransform] = [A.Resize(cfg.size, cfg.size, interpolation=cv2.INTER_AREA)]
    if train:
        if cfg.hflip > 0:
            steps.append(A.HorizontalFlip(p=cfg.hflip))
        if cfg.vflip > 0:
            steps.append(A.VerticalFlip(p=cfg.vflip))
        if cfg.rotate > 0 and cfg.rotate_p > 0:
            steps.append(A.Rotate(limit=cfg.rotate, border_mode=cv2.BORDER_CONSTANT, fill=0,
                                  p=cfg.rotate_p))
        if cfg.brightness_contrast > 0:
            steps.append(A.RandomBrightnessContrast(0.2, 0.2, p=cfg.brightness_contrast))
    steps += [A.Normalize(mean=tuple(cfg.mean), std=tuple(cfg.std), max_pixel_value=255.0),
              ToTensorV2()]
    return A.Compose(steps)


def resize_step(transform: A.Compose) -> A.Resize | None:
    """The pipeline's first top-level :class:`A.Resize`, or None: the size images end up at.

    Datasets read it to decode no larger than needed and to find a cache made at that size.
    """
    for step in getattr(transform, "transforms", ()):
        if isinstance(step, A.Resize):
            return step
    return None
