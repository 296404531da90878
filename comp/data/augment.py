"""Albumentations pipelines built from ``[augment]``: resize, flips, quarter turns, rotation/zoom/shift, brightness/contrast,
random erasing (the CPU path, run in the loader workers on uint8 images)."""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version at import; offline that only costs time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from comp.data.device_augment import ERASING_RATIO, ERASING_SCALE, erasing_fill  # noqa: E402
from comp.recipe import AugmentConfig  # noqa: E402


def build_transform(cfg: AugmentConfig, train: bool) -> A.Compose:
    """The pipeline for training (random augmentation) or evaluation (deterministic).

    Input is a uint8 HxWx3 RGB array; output the augmented uint8 HxWx3 array, resized to ``size``:
    the loader workers ship uint8, and conversion to float, normalisation by ``mean``/``std``
    and the memory format happen on the device (:class:`comp.data.prepare.BatchPrep`).
    """
    steps: list[A.BasicTransform] = [A.Resize(cfg.size, cfg.size, interpolation=cv2.INTER_AREA)]
    if train:
        if cfg.hflip > 0:
            steps.append(A.HorizontalFlip(p=cfg.hflip))
        if cfg.vflip > 0:
            steps.append(A.VerticalFlip(p=cfg.vflip))
        if cfg.rot90 > 0:
            steps.append(A.RandomRotate90(p=cfg.rot90))
        geometric = _geometric_step(cfg)
        if geometric is not None:
            steps.append(geometric)
        if cfg.brightness_contrast > 0:
            steps.append(A.RandomBrightnessContrast(0.2, 0.2, p=cfg.brightness_contrast))
        if cfg.erasing > 0:  # last, as timm erases after its other steps
            steps.append(A.Erasing(scale=ERASING_SCALE, ratio=ERASING_RATIO, fill=erasing_fill(cfg),
                                   p=cfg.erasing))
    return A.Compose(steps)


def _geometric_step(cfg: AugmentConfig) -> A.BasicTransform | None:
    """Rotation, zoom and shift as one warp, so the image is interpolated once, not per jitter."""
    if cfg.rotate_p <= 0 or (cfg.rotate <= 0 and cfg.scale <= 0 and cfg.shift <= 0):
        return None
    if cfg.scale <= 0 and cfg.shift <= 0:
        # Rotation alone keeps A.Rotate, so recipes written before scale/shift draw the same.
        return A.Rotate(limit=cfg.rotate, border_mode=cv2.BORDER_CONSTANT, fill=0, p=cfg.rotate_p)
    return A.Affine(scale=(1.0 - cfg.scale, 1.0 + cfg.scale),
                    translate_percent=(-cfg.shift, cfg.shift),
                    rotate=(-cfg.rotate, cfg.rotate), keep_ratio=True,
                    border_mode=cv2.BORDER_CONSTANT, fill=0,
                    p=cfg.rotate_p)


def resize_step(transform: A.Compose) -> A.Resize | None:
    """The pipeline's first top-level :class:`A.Resize`, or None: the size images end up at.

    Datasets read it to decode no larger than needed and to find a cache made at that size.
    """
    for step in getattr(transform, "transforms", ()):
        if isinstance(step, A.Resize):
            return step
    return None
