"""The learning-rate range test (``comp lr-find``): fold 0's training rows, trained for a few hundred
steps while the learning rate grows exponentially from ``start`` to ``end``; the loss, smoothed, is
recorded, and the test stops once it diverges. The suggestion is the "valley" rule (fastai's
``valley``): the middle of the longest stretch over which the smoothed loss keeps falling.

Reference: Smith, "Cyclical Learning Rates for Training Neural Networks" (2017). Nothing is saved:
no run folder is created or changed; the model, optimiser and loaders are built as ``comp fit``
builds fold 0's (:func:`comp.train.loop.fold_parts`) and thrown away.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comp.data.check import check_data
from comp.errors import CompError
from comp.recipe import Recipe
from comp.train.fit import assign_folds, fold_indices, fold_plan
from comp.train.loop import fold_parts, train_step
from comp.train.parts import FoldSplit

logger = logging.getLogger(__name__)

# The exponential moving average of the loss. fastai and Lightning use 0.98; over a 100-step ramp that
# lags the loss by some 50 steps (3.5 decades of lr from 1e-7 to 10), moving the valley far right.
SMOOTHING = 0.9
DIVERGED = 4.0  # stop once the smoothed loss is this many times its lowest


@dataclass(frozen=True)
class LrFind:
    """The range test's record: the learning rate and (smoothed and raw) loss of every step."""

    lrs: np.ndarray
    losses: np.ndarray  # smoothed, bias-corrected
    raw: np.ndarray
    diverged: bool
    suggestion: float
    suggestion_index: int


def lr_schedule(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` learning rates growing exponentially from ``start`` to ``end``."""
    return start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))


def smooth(losses: list[float] | np.ndarray, beta: float = SMOOTHING) -> np.ndarray:
    """The exponential moving average of ``losses``, corrected for its start at zero."""
    out, avg = [], 0.0
    for i, value in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * float(value)
        out.append(avg / (1 - beta ** i))
    return np.asarray(out)


def valley(losses: np.ndarray) -> int:
    """The index fastai's "valley" rule picks: of the longest decreasing run of losses (longest
    decreasing subsequence), the point about 1/2 of the way in (a third plus a sixth), where the
    loss still falls fast but well before it bottoms out."""
    n = len(losses)
    if n < 2:
        return 0
    lds = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[end] < lds[i]:
            end = i
            start = end - lds[end]
    section = (end - start) / 3
    return min(n - 1, start + int(section) + int(section / 2))


def lr_range_test(recipe: Recipe, *, device: str | None = None, start: float = 1e-7, end: float = 10.0,
                  steps: int = 100) -> LrFind:
    """Train fold 0's parts (as ``comp fit`` builds them) for up to ``steps`` optimiser steps, the
    learning rate of step ``i`` ``start * (end/start)^(i/(steps-1))`` (every parameter group keeps its
    ratio to ``[optim] lr``: a backbone at ``backbone_lr_mult``); stops when the smoothed loss
    passes :data:`DIVERGED` times its lowest or is not finite."""
    from comp.model.runtime import resolve_runtime

    if not (0 < start < end) or not math.isfinite(end):
        raise CompError(f"--start {start} and --end {end}: need 0 < start < end")
    if steps < 5:
        raise CompError(f"--steps {steps}: need at least 5 steps")
    report = check_data(recipe, test=False)
    table, classes, task = report.readable_train_table(), report.classes, report.task
    folds = assign_folds(recipe, table)
    fold = fold_plan(recipe, folds)[0]
    train_index, valid_index = fold_indices(recipe, folds, fold)
    split = FoldSplit(fold, table, classes, train_index, valid_index, task, report.readable_extra_table())
    runtime = resolve_runtime(recipe.train, device)
    parts = fold_parts(recipe, split, runtime)
    if parts.accum_steps > 1:
        logger.info(f"lr-find steps on every batch (accumulation of {parts.accum_steps} ignored)")
    parts.accum_steps = 1
    ratios = [group["lr"] / recipe.optim.lr if recipe.optim.lr > 0 else 1.0 for group in parts.optimizer.param_groups]
    lrs = lr_schedule(start, end, steps)
    parts.model.train()
    raw: list[float] = []
    best, diverged, step, epoch = math.inf, False, 0, 0
    logger.info(f"lr-find: fold {fold}'s {len(split.training_table())} training rows, up to {steps} steps "
                f"from lr {start:g} to {end:g}")
    while step < steps and not diverged:
        parts.sampler.set_epoch(epoch)
        for images, targets in parts.train_loader:
            for ratio, group in zip(ratios, parts.optimizer.param_groups):
                group["lr"] = float(lrs[step]) * ratio
            images = parts.pipeline.train_batch(images, epoch, step + 1)
            images, mix = parts.pipeline.mix(images, epoch, step + 1)
            loss, _ = train_step(parts, images, targets, runtime, update=True, mix=mix)
            raw.append(float(loss))
            value = smooth(raw)[-1]
            step += 1
            if not math.isfinite(value) or value > DIVERGED * best:
                diverged = True
                break
            best = min(best, value)
            if step >= steps:
                break
        epoch += 1
    smoothed = smooth(raw)
    # The steps after the lowest loss are the divergence; the valley is looked for before it, and
    # never in the very first steps, where the smoothing has not settled.
    stop = int(np.nanargmin(np.where(np.isfinite(smoothed), smoothed, np.inf))) + 1
    skip = min(len(raw) // 10, max(stop - 2, 0))
    index = skip + valley(smoothed[skip:stop])
    return LrFind(lrs[:len(raw)], smoothed, np.asarray(raw), diverged, float(lrs[index]), index)


def plot_lr_find(result: LrFind, path: Path, title: str) -> None:
    """The smoothed loss against the learning rate (log scale), the suggestion marked; saved
    atomically (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from comp.atomic import atomic_path

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.raw, color="0.8", lw=0.8, label="loss")
    ax.plot(result.lrs, result.losses, color="C0", lw=1.6, label="smoothed")
    ax.scatter([result.suggestion], [result.losses[result.suggestion_index]], color="C3", zorder=3,
               label=f"valley: lr {result.suggestion:.2g}")
    ax.set_xscale("log")
    finite = result.losses[np.isfinite(result.losses)]
    if len(finite):
        low, first = float(finite.min()), float(finite[0])
        ax.set_ylim(low - 0.1 * abs(first - low) - 1e-3, max(first, low) * 1.5 + 1e-3)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
