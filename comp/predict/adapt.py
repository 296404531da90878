"""Test-time BatchNorm adaptation (``comp predict --adapt-bn``, ``[predict] adapt_bn``).

Li et al. 2016 ("Revisiting batch normalization for practical domain adaptation") and Schneider
et al. 2020: a model meets a shifted test set (another scanner, another clinic) with the
BatchNorm statistics of its training images; re-estimating them on the test images themselves,
with no labels and no other weight changed, recovers much of what the shift costs.

Each checkpoint is copied, its BatchNorm running means and variances reset and re-estimated as
the plain average over every test batch (``momentum = None``: a cumulative average, so the
order of the batches does not matter), in evaluation mode otherwise (dropout off). The copies
predict; the checkpoints, and every file of the run, are never touched.

The statistics come from the identity view alone: comp's TTA views are flips, quarter turns and
a zoom, which move pixels but leave the per-channel statistics of the images (what the shift
changes) nearly as they are, so adding them would cost one more pass per view for the same
estimate; the adapted model then predicts every view.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from comp.data.pipeline import input_pipeline
from comp.errors import CompError
from comp.model.runtime import Runtime
from comp.recipe import Recipe

logger = logging.getLogger(__name__)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers (1d/2d/3d, synchronised, timm's BatchNormAct2d) that keep statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def check_batchnorm(model: nn.Module, what: str) -> None:
    """Refuse a model without BatchNorm statistics: there is nothing to re-estimate."""
    if not batchnorm_layers(model):
        raise CompError(f"--adapt-bn: {what} has no BatchNorm layer (its normalisation keeps no running "
                        f"statistics: LayerNorm, GroupNorm, ...), so there is nothing to re-estimate on the test "
                        f"images; predict without --adapt-bn ([predict] adapt_bn = false)")


def reset_for_estimation(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers estimate fresh statistics from the batches it sees."""
    model = copy.deepcopy(model).eval()
    for layer in batchnorm_layers(model):
        layer.reset_running_stats()
        layer.momentum = None  # the cumulative average of every batch
        layer.train()
    return model


def adapt_models(models: Sequence[Sequence[nn.Module]], recipes: Sequence[Recipe], loader: DataLoader,
                 spec_of: Sequence[int], runtime: Runtime, names: Sequence[str] = ()) -> list[list[nn.Module]]:
    """Adapted copies of each run's models (``models[r]``, read at ``spec_of[r]`` of each batch of
    ``loader``, normalised by ``recipes[r]``), from one pass over the loader's images."""
    for r, per_run in enumerate(models):
        for model in per_run:
            check_batchnorm(model, f"run {names[r] if r < len(names) else r}'s model")
    copies = [[reset_for_estimation(m) for m in per_run] for per_run in models]
    preps = [input_pipeline(recipe, runtime).eval_prep for recipe in recipes]
    seen = 0
    with torch.no_grad():
        for batch, targets in loader:
            batch = batch if isinstance(batch, tuple) else (batch,)
            if len(targets) < 2 and seen:
                continue  # one image has no batch variance; the others' estimate stands
            seen += len(targets)
            for r, per_run in enumerate(copies):
                x = preps[r](preps[r].to_device(batch[spec_of[r]]))
                for model in per_run:
                    model(x)  # float32: statistics are sums over many pixels
    if seen < 2:
        raise CompError(f"--adapt-bn needs at least 2 images to estimate statistics on, got {seen}")
    for per_run in copies:
        for model in per_run:
            model.eval()
    logger.info(f"adapt_bn: BatchNorm statistics of {sum(map(len, copies))} checkpoint(s) re-estimated on {seen} "
                f"images (identity view; the run's checkpoints are not changed)")
    return copies


def adapt_runs(runs: Sequence, adapt: bool | Sequence[bool], loader: DataLoader, spec_of: Sequence[int],
               runtime: Runtime) -> None:
    """Replace the models of each run (:class:`comp.predict.predict.RunModels`) that adapts
    (``adapt``, per run or for all, or its own ``[predict] adapt_bn``) by adapted copies."""
    flags = [adapt] * len(runs) if isinstance(adapt, bool) else list(adapt)
    chosen = [r for r, (run, flag) in enumerate(zip(runs, flags)) if flag or run.recipe.predict.adapt_bn]
    if not chosen:
        return
    copies = adapt_models([runs[r].models for r in chosen], [runs[r].recipe for r in chosen], loader,
                          [spec_of[r] for r in chosen], runtime, [runs[r].run_dir.name for r in chosen])
    for r, models in zip(chosen, copies):
        runs[r].models = models


__all__ = ["adapt_models", "adapt_runs", "batchnorm_layers", "check_batchnorm", "reset_for_estimation"]
