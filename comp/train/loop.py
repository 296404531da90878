"""The training loop of one fold: epochs of optimisation and validation, and last.pt.

``train_step`` is the one optimisation step that ``comp fit`` and ``comp bench`` both run,
``train_batch`` one batch of the epoch loop around it, and ``train_fold`` drives epochs,
validation (:mod:`~comp.train.validate`), last.pt (:mod:`~comp.train.checkpoints`) and
resumption. Everything else a fold does (best.pt and the top k, the weights' EMA, SWA, early
stopping, TensorBoard, the batch mosaic, trackers, the epoch line) is a hook
(:mod:`~comp.train.hooks`), built by :func:`~comp.train.fold_hooks.fold_hooks`. The parts it
trains with come from :mod:`~comp.train.parts`. Everything comes in as arguments and goes out
into the fold's own folder, so folds can run in sequence, in parallel processes, or under DDP.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from comp.console import progress as progress_bar
from comp.data.mixing import Mix, mixed_loss
from comp.errors import CompError
from comp.model import train_mode
from comp.model.losses import hard_labels
from comp.model.runtime import Runtime
from comp.recipe import Recipe
from comp.run.folder import FoldDir
from comp.train import distributed
from comp.train.checkpoints import load_last, save_last
from comp.train.hooks import EpochEnd, FoldHooks
from comp.train.parts import FoldParts, FoldSplit, build_parts, seed_everything
from comp.train.state import FoldRun, StopFlag, TrainState
from comp.train.validate import NonFiniteLoss, Validation, validate

__all__ = ["FoldResult", "FoldRun", "Interrupted", "StopFlag", "TrainState", "fold_parts", "train_batch",
           "train_fold", "train_step"]

logger = logging.getLogger(__name__)

# Sees a training batch as the model gets it: (images, targets, how it was mixed).
Peek = Callable[[torch.Tensor, torch.Tensor, "Mix | None"], None]


class Interrupted(CompError):
    """Ctrl-C or SIGTERM: the current step finished and last.pt was written."""

    exit_code = 130


@dataclass(frozen=True)
class FoldResult:
    """What a finished fold hands back: its validation predictions by the weights that
    ``comp predict`` uses (``[predict] checkpoints``), so OOF scores what gets submitted."""

    fold: int
    best_epoch: int
    best_score: float
    valid_index: np.ndarray  # rows of the table validated in this fold
    valid_probs: np.ndarray  # (n_valid, num_classes) from the weights [predict] checkpoints names
    checkpoints: str = "best"  # which weights valid_probs come from
    stopped_early: int = 0  # the epoch [train] patience ended the fold at; 0: it trained every epoch


def train_step(parts: FoldParts, images: torch.Tensor, targets: torch.Tensor, runtime: Runtime,
               *, update: bool, mix: Mix | None = None,
               peek: Peek | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward one batch; with ``update``, step the optimiser (after
    ``accum_steps`` batches have accumulated). Returns the (detached) loss and the number of rows
    predicted right (:func:`count_correct`), both still on the device.

    ``mix``: the batch was mixed (:meth:`comp.data.pipeline.InputPipeline.mix`), so the loss is blended.
    ``peek``: called with the model's very input and the targets first (train_batch.jpg).
    """
    images = runtime.to_device(images)
    targets = targets.to(runtime.device, non_blocking=True)
    if peek is not None:
        peek(images, targets, mix)
    with runtime.autocast():
        outputs = parts.step_model(images).float()
        loss = mixed_loss(parts.loss_fn, outputs, targets, mix)
    parts.scaler.scale(loss / parts.accum_steps).backward()
    if update:
        if parts.grad_clip > 0:
            parts.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.optimizer.zero_grad(set_to_none=True)
    return loss.detach(), count_correct(outputs.detach(), targets, mix,
                                        multilabel=getattr(parts.loss_fn, "multilabel", False))


def count_correct(outputs: torch.Tensor, targets: torch.Tensor, mix: Mix | None = None, *,
                  multilabel: bool = False) -> torch.Tensor:
    """Rows whose prediction (the argmax; a regression head's rounded grade) is their target; in
    a mixed batch, the target that dominates the blend (weight >= 0.5). ``multilabel``: rows
    whose every label is right at 0.5 (exact match)."""
    if mix is not None and mix.lam < 0.5:
        targets = targets[mix.perm]
    if multilabel:
        return ((outputs > 0) == (targets >= 0.5)).all(dim=1).sum()
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        pred = outputs.reshape(len(outputs)).round().clamp(min=0)
    else:
        pred = outputs.argmax(dim=1)
    return (pred.long() == hard_labels(targets)).sum()


def train_batch(run: FoldRun, state: TrainState, images: torch.Tensor, targets: torch.Tensor, *,
                total_steps: int, hooks: FoldHooks | None = None) -> bool:
    """One batch of the epoch loop: the step, the loss read back and checked on every rank, the
    running loss, the schedule stepped on updates, then the hooks' :meth:`~comp.train.hooks.Hook.after_step`.
    True when the fold must stop after it.

    ``total_steps`` is the number of batches in the epoch: its last batch always updates.
    """
    parts, runtime = run.parts, run.runtime
    step = state.step + 1
    update = step % parts.accum_steps == 0 or step == total_steps
    # The loader's uint8 batch -> the model's input, augmented and mixed with draws seeded by
    # (seed, fold, epoch, step, rank), so a resume draws the same.
    images = parts.pipeline.train_batch(images, state.epoch, step, runtime.rank)
    images, mix = parts.pipeline.mix(images, state.epoch, step, runtime.rank)
    peek = None if hooks is None else (lambda x, y, m: hooks.before_step(run, state, x, y, m))
    loss, correct = train_step(parts, images, targets, runtime, update=update, mix=mix, peek=peek)
    value, right = torch.stack([loss.detach().float(), correct.float()]).tolist()  # one device-to-host copy
    # Every rank must stop at the same step, so NaN and stop requests are voted on.
    bad, stopping = distributed.all_sum([float(not math.isfinite(value)),
                                         float(run.stop.requested and update)], runtime)
    if bad:
        shown = value if not math.isfinite(value) else "non-finite on another rank"
        raise NonFiniteLoss(f"the loss became {shown} at epoch {state.epoch + 1}, step {step}; "
                            f"the fold stopped and its last good checkpoint is kept "
                            f"(try a lower [optim] lr or [train] grad_clip)")
    state.step = step
    state.loss_sum += value * len(images)
    state.loss_count += len(images)
    state.correct += int(right)
    if update:
        state.updates += 1
        parts.scheduler.step_update(state.updates)
    if hooks is not None:
        hooks.after_step(run, state, value, update)
    return bool(stopping)


def fold_parts(recipe: Recipe, split: FoldSplit, runtime: Runtime, *, init: Path | None = None) -> FoldParts:
    """A fold's parts, built as the fold trains them: torch seeded by the recipe's seed plus the
    fold first. ``init`` is a checkpoint of another run to start from (``[model] init_from``)."""
    seed = recipe.seed + split.fold
    seed_everything(seed, recipe.train.deterministic)
    return build_parts(recipe, split, runtime, init=init)


def train_fold(run: FoldRun, split: FoldSplit, folder: FoldDir, hooks: FoldHooks, *, resume: bool = False,
               on_saved: Callable[[], None] = lambda: None) -> FoldResult:
    """Train one fold with the parts :func:`fold_parts` built and the hooks
    :func:`~comp.train.fold_hooks.fold_hooks` built; writes last.pt after every epoch (then
    ``on_saved`` runs, on the writing rank: a staged run is promoted) and history.csv. The OOF
    rows are those of the checkpoint ``[predict] checkpoints`` names, as the hooks named them.
    """
    parts, runtime, epochs = run.parts, run.runtime, run.recipe.train.epochs
    state = TrainState()
    if runtime.is_main:
        folder.create()
    distributed.barrier(runtime)
    if resume and folder.last.is_file():
        load_last(folder, parts, state, hooks)
        logger.info(f"fold {split.fold}: stopped early at epoch {state.stopped}; nothing left to train"
                    if state.stopped else f"fold {split.fold}: resuming at epoch {state.epoch + 1}, step {state.step}")

    def saved() -> None:
        if runtime.is_main:
            save_last(folder, parts, state, hooks, list(split.classes.labels))
            on_saved()

    try:
        hooks.start(run, state)
        while state.epoch < epochs and not state.stopped:
            t0, desc = time.perf_counter(), f"fold {split.fold} epoch {state.epoch + 1}/{epochs}"
            _train_epoch(run, state, hooks, saved, desc=desc)
            row = _train_row(run, state)
            validation = validate(parts, runtime, run.recipe.model.head, run.task, model=hooks.validates(),
                                  where=f"fold {split.fold}, epoch {state.epoch + 1}", desc=f"{desc} validation")
            row.update(validation.row(), seconds=round(time.perf_counter() - t0, 2))
            _end_epoch(run, state, hooks, validation, row)
            saved()
            if runtime.is_main:
                folder.write_history(state.history)
            hooks.epoch_saved(run, state, row)
        named = hooks.fold_end(run, state)  # weights validated once the fold has ended (SWA's, the raw ones)
    except torch.OutOfMemoryError:
        raise CompError(
            f"CUDA out of memory at batch_size {parts.batch_size}: set [train] batch_size lower "
            f"(e.g. {max(1, parts.batch_size // 2)}) with effective_batch_size = "
            f"{parts.batch_size * parts.accum_steps} to keep the images per update, or "
            f'batch_size = "auto"; {folder.last} holds the last finished epoch') from None
    finally:
        hooks.close()
    which = run.recipe.predict.checkpoints
    oof = named.get(which) or named.get("best")  # no SWA mean, no validation: the best epoch's, or none
    probs = oof() if oof is not None else np.zeros((0, split.num_classes))
    distributed.barrier(runtime)
    best, validated = hooks.checkpoints.best, parts.valid_loader is not None
    return FoldResult(fold=split.fold, best_epoch=best[1] if best and validated else epochs,
                      best_score=best[0] if best and validated else math.nan, valid_index=np.asarray(split.valid_index),
                      valid_probs=probs, checkpoints=which, stopped_early=state.stopped)


def _train_epoch(run: FoldRun, state: TrainState, hooks: FoldHooks, save_last: Callable[[], None], *,
                 desc: str) -> None:
    """Run the rest of the current epoch from ``state.step``, updating ``state`` as it goes.

    Progress is counted in images (a bar in a terminal, lines elsewhere: :func:`comp.console.progress`)."""
    parts = run.parts
    train_mode(parts.model, run.recipe.model)
    parts.sampler.set_epoch(state.epoch, start=state.step * parts.batch_size)
    total_steps = state.step + len(parts.train_loader)
    done = state.step * parts.batch_size
    images_left = min(len(parts.train_loader) * parts.batch_size, len(parts.sampler))
    parts.optimizer.zero_grad(set_to_none=True)
    # A loader's iterator draws its workers' base seed from torch's global RNG; giving the draw
    # back keeps that RNG for the steps alone (drop path, dropout), so a resume mid-epoch, which
    # opens one iterator more, draws them exactly as an uninterrupted run.
    rng = torch.get_rng_state()
    batches = iter(parts.train_loader)
    torch.set_rng_state(rng)
    with progress_bar(total=done + images_left, desc=desc) as bar:
        bar.update(done)
        for images, targets in batches:
            stopping = train_batch(run, state, images, targets, total_steps=total_steps, hooks=hooks)
            bar.set_postfix_str(f"loss {state.loss_sum / state.loss_count:.4f}, "
                                f"acc {state.correct / state.loss_count:.3f}", refresh=False)
            bar.update(len(images))
            # Stop only between whole updates, so a resume never splits an accumulated gradient.
            if stopping:
                run.stop.reason = run.stop.reason or "stop requested by another rank"
                save_last()
                raise Interrupted(f"{run.stop.reason}: stopped at epoch {state.epoch + 1}, step {state.step}; "
                                  f"saved last.pt")


def _train_row(run: FoldRun, state: TrainState) -> dict[str, float]:
    """The epoch's history row so far: its number, the training loss and accuracy over all ranks
    (of the batches as trained, augmented and mixed), the LR."""
    loss_sum, loss_count, correct = distributed.all_sum(
        [state.loss_sum, float(state.loss_count), float(state.correct)], run.runtime)
    return {"epoch": state.epoch + 1, "train_loss": loss_sum / max(loss_count, 1),
            "train_accuracy": correct / max(loss_count, 1), "lr": run.parts.optimizer.param_groups[0]["lr"]}


def _end_epoch(run: FoldRun, state: TrainState, hooks: FoldHooks, validation: Validation, row: dict) -> None:
    """Record the epoch, step the schedule, hand the epoch to the hooks (which may end the fold)."""
    parts, epoch = run.parts, state.epoch + 1
    score = validation.score(run.task.monitor)
    state.history.append(row)
    parts.scheduler.step_epoch(epoch, None if math.isnan(score) else score)
    validated = hooks.validates()
    hooks.epoch_end(run, state, EpochEnd(epoch, row, validation.probs, score, parts.valid_loader is not None,
                                         parts.model if validated is None else validated))
    state.epoch, state.step, state.loss_sum, state.loss_count, state.correct = epoch, 0, 0.0, 0, 0
