"""Albumentations pipelines built from ``[augment]``: resize, flips, quarter turns, rotation/zoom/shift, brightness/contrast,
the recipe's own albumentations ``pipeline``, timm's ``auto_augment``, random erasing (the CPU path, run in the loader
workers on uint8 images)."""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version at import; offline that only costs time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import random  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from comp.data.device_augment import ERASING_RATIO, ERASING_SCALE, erasing_fill  # noqa: E402
from comp.recipe import AugmentConfig  # noqa: E402
from comp.recipe.augment_spec import auto_augment_fn  # noqa: E402


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
        steps += pipeline_steps(cfg)
        if cfg.auto_augment:
            steps.append(AutoAugment(cfg.auto_augment, size=cfg.size, mean=tuple(cfg.mean)))
        if cfg.erasing > 0:  # last, as timm erases after its other steps
            steps.append(A.Erasing(scale=ERASING_SCALE, ratio=ERASING_RATIO, fill=erasing_fill(cfg),
                                   p=cfg.erasing))
    return A.Compose(steps)


def pipeline_steps(cfg: AugmentConfig) -> list[A.BasicTransform]:
    """``[augment] pipeline`` as albumentations transforms (checked, and a file inlined, at recipe
    load: :mod:`comp.recipe.augment_spec`)."""
    if not isinstance(cfg.pipeline, list):
        raise ValueError("[augment] pipeline is resolved at recipe load; got an unresolved path")
    return [A.from_dict({"transform": dict(step)}) for step in cfg.pipeline]


class AutoAugment(A.ImageOnlyTransform):
    """``[augment] auto_augment`` (timm's RandAugment/AugMix/AutoAugment, torchvision's
    TrivialAugmentWide) as an albumentations step, always applied (the policy draws its own ops).

    Those policies draw from the global ``random``/``numpy``/``torch`` generators; here they draw
    from a seed taken from this step's own generator (which :meth:`A.Compose.set_random_seed`
    seeds per item), with the global state put back afterwards, so an item's augmentation
    depends on its seed alone and a resumed run draws as an uninterrupted one.
    """

    def __init__(self, policy: str, size: int = 224, mean: tuple[float, ...] = (0.485, 0.456, 0.406), p: float = 1.0):
        super().__init__(p=p)
        self.policy, self.size, self.mean = policy, size, mean
        self._fn = auto_augment_fn(policy, size, mean)

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        from PIL import Image

        seed = self.py_random.getrandbits(32)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
                out = self._fn(Image.fromarray(img))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        return np.array(out, dtype=np.uint8)  # PIL's buffer is read-only

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("policy", "size", "mean")


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
