"""Mixup and CutMix: training batches blended in pairs, the loss blended with the same weight.

A mixed batch is ``lam * x + (1 - lam) * x[perm]`` (mixup) or ``x`` with a box pasted from
``x[perm]`` (cutmix, ``lam`` = the share of the image left unpasted); the loss is
``lam * loss(out, y) + (1 - lam) * loss(out, y[perm])``. Blending the loss, not one-hot
targets, works with every comp loss: class weights, label smoothing, focal, regression. Targets
may be class indices ``(N,)`` or soft rows ``(N, K)`` (``[data] extra_csv``), permuted alike; for
the classification losses the blended loss is the loss of the blended target vectors
``lam * q + (1 - lam) * q[perm]`` (:mod:`comp.model.losses`: linear in ``q``, normalised by the batch).

The draws come from a generator seeded by (seed, epoch, step, rank), so a resumed fold mixes
exactly as an uninterrupted one. The input pipeline (:meth:`comp.data.pipeline.InputPipeline.mix`)
applies it to prepared training batches; the training step blends the loss (:func:`mixed_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from comp.recipe import AugmentConfig


@dataclass(frozen=True)
class Mix:
    """How a batch was mixed: with ``targets[perm]`` at weight ``1 - lam``."""

    perm: torch.Tensor
    lam: float


def mixing_on(cfg: AugmentConfig) -> bool:
    """Whether the recipe mixes any batch (ranges are checked when the recipe loads)."""
    return cfg.mix_p > 0 and (cfg.mixup > 0 or cfg.cutmix > 0)


def mix_rng(seed: int, epoch: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator for one batch's mixing draws."""
    return np.random.default_rng([seed, epoch, step, rank, 0x6D6978])


def mix_batch(images: torch.Tensor, cfg: AugmentConfig,
              rng: np.random.Generator) -> tuple[torch.Tensor, Mix | None]:
    """The batch mixed as ``cfg`` says (a new tensor), or the batch itself and None."""
    n = images.shape[0]
    if n < 2 or not mixing_on(cfg) or rng.random() >= cfg.mix_p:
        return images, None
    use_cutmix = cfg.cutmix > 0 and (cfg.mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cfg.cutmix, cfg.cutmix) if use_cutmix else rng.beta(cfg.mixup, cfg.mixup))
    perm = torch.from_numpy(rng.permutation(n)).to(images.device)
    if not use_cutmix:
        return images * lam + images[perm] * (1.0 - lam), Mix(perm, lam)
    h, w = images.shape[-2:]
    y0, y1, x0, x1 = cut_box(h, w, lam, rng)
    mixed = images.clone()
    mixed[..., y0:y1, x0:x1] = images[perm][..., y0:y1, x0:x1]
    # The box is clipped at the border, so the weight is the area actually kept.
    return mixed, Mix(perm, 1.0 - (y1 - y0) * (x1 - x0) / (h * w))


def cut_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a box of about ``1 - lam`` of the image, centred uniformly, clipped."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def mixed_loss(loss_fn: torch.nn.Module, outputs: torch.Tensor, targets: torch.Tensor,
               mix: Mix | None) -> torch.Tensor:
    """``loss_fn`` on the targets, blended with the partners' targets when the batch was mixed."""
    if mix is None:
        return loss_fn(outputs, targets)
    return mix.lam * loss_fn(outputs, targets) + (1.0 - mix.lam) * loss_fn(outputs, targets[mix.perm])
