"""The training loop of one fold: epochs of optimisation and validation, with checkpoints.

``train_step`` is the one optimisation step that ``comp fit`` and ``comp bench`` both run,
``train_batch`` one batch of the epoch loop around it, and ``train_fold`` drives epochs,
validation (:mod:`~comp.train.validate`), checkpoints (:mod:`~comp.train.checkpoints`), SWA, the
weights' EMA (:mod:`~comp.train.ema`), early stopping and resumption. The parts it trains with
come from :mod:`~comp.train.parts`. Everything comes in as arguments and goes out into the fold's
own folder, so folds can run in sequence, in parallel processes, or under DDP.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from comp.console import Countdown
from comp.console import progress as progress_bar
from comp.data.mixing import Mix, mixed_loss
from comp.data.mosaic import denormalise, mosaic, write_jpeg
from comp.errors import CompError
from comp.kinds import kind_of
from comp.metrics import Task, confusion_matrix
from comp.model import train_mode
from comp.model.inference import combine_views
from comp.model.losses import hard_labels
from comp.model.runtime import Runtime
from comp.recipe import Recipe
from comp.train import distributed
from comp.run.checkpoint import unwrap
from comp.train.checkpoints import FoldCheckpoints, TopK
from comp.train.ema import ModelEma
from comp.train.parts import FoldParts, FoldSplit, build_parts, seed_everything
from comp.run.folder import FoldDir
from comp.train.swa import SwaAverage
from comp.train.tensorboard import FoldBoard
from comp.train.validate import NonFiniteLoss, Validation, valid_probs, validate

logger = logging.getLogger(__name__)

# Sees a training batch as the model gets it: (images, targets, how it was mixed).
Peek = Callable[[torch.Tensor, torch.Tensor, "Mix | None"], None]


class Interrupted(CompError):
    """Ctrl-C or SIGTERM: the current step finished and last.pt was written."""

    exit_code = 130


@dataclass
class StopFlag:
    """Set by a signal handler; the loop checks it after every step."""

    reason: str = ""

    @property
    def requested(self) -> bool:
        return bool(self.reason)


@dataclass
class LoopIO:
    """How training talks to the outside besides its log lines (the module's logger): stop
    requests, what runs after each last.pt (``on_saved``), the run's ETA and the batch mosaic."""

    stop: StopFlag = field(default_factory=StopFlag)
    on_saved: Callable[[], None] = lambda: None  # after each last.pt (a staged run is promoted then)
    clock: Countdown | None = None  # the whole run's ETA (folds x epochs), ticked every epoch
    batch_mosaic: Path | None = None  # where to draw the fold's first training batch (train_batch.jpg)
    # After each epoch (on the writing rank): the fold and its history row; what it raises ends the fit (comp tune prunes).
    on_epoch: Callable[[int, dict], None] | None = None


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


@dataclass
class TrainState:
    """Where a fold is: enough to resume mid-epoch exactly where it stopped."""

    epoch: int = 0  # completed epochs
    step: int = 0  # batches done in the current epoch
    updates: int = 0  # optimiser steps so far
    loss_sum: float = 0.0  # of the current epoch so far
    loss_count: int = 0
    correct: int = 0  # training rows predicted right in the current epoch so far (train_accuracy)
    history: list[dict] = field(default_factory=list)
    kept_probs: dict[int, np.ndarray] = field(default_factory=dict)  # validation probs of the top-k epochs
    last_probs: np.ndarray | None = None  # validation probs of the latest epoch
    stopped: int = 0  # the epoch early stopping ended the fold at (0: not stopped): a resume trains no more

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only, so last.pt loads with ``weights_only=True``."""
        return {"epoch": self.epoch, "step": self.step, "updates": self.updates, "stopped": self.stopped,
                "loss_sum": self.loss_sum, "loss_count": self.loss_count, "correct": self.correct,
                "history": self.history,
                "kept_probs": {str(e): torch.from_numpy(np.asarray(p)) for e, p in self.kept_probs.items()},
                "last_probs": None if self.last_probs is None else torch.from_numpy(np.asarray(self.last_probs))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        last = state.get("last_probs")
        self.epoch, self.step, self.updates = int(state["epoch"]), int(state["step"]), int(state["updates"])
        self.stopped = int(state["stopped"])
        self.loss_sum, self.loss_count = float(state["loss_sum"]), int(state["loss_count"])
        self.correct = int(state["correct"])
        self.history = list(state["history"])
        self.kept_probs = {int(e): p.numpy() for e, p in state["kept_probs"].items()}
        self.last_probs = None if last is None else last.numpy()


@dataclass(frozen=True)
class FoldRun:
    """What every batch of a fold needs: the recipe, the fold's parts, the runtime, the stop flag,
    and the task (what validation measures, and the monitor)."""

    recipe: Recipe
    parts: FoldParts
    runtime: Runtime
    stop: StopFlag
    task: Task
    ema: ModelEma | None = None  # [train] ema_decay: the weights' EMA, updated after every optimiser step


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
    return loss.detach(), count_correct(outputs.detach(), targets, mix)


def count_correct(outputs: torch.Tensor, targets: torch.Tensor, mix: Mix | None = None) -> torch.Tensor:
    """Rows whose prediction (the argmax; a regression head's rounded grade) is their target; in
    a mixed batch, the target that dominates the blend (weight >= 0.5)."""
    if mix is not None and mix.lam < 0.5:
        targets = targets[mix.perm]
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        pred = outputs.reshape(len(outputs)).round().clamp(min=0)
    else:
        pred = outputs.argmax(dim=1)
    return (pred.long() == hard_labels(targets)).sum()


def train_batch(run: FoldRun, state: TrainState, images: torch.Tensor, targets: torch.Tensor, *,
                total_steps: int, peek: Peek | None = None) -> bool:
    """One batch of the epoch loop: the step, the loss read back and checked on every rank, the
    running loss, the schedule stepped on updates. True when the fold must stop after it.

    ``total_steps`` is the number of batches in the epoch: its last batch always updates.
    """
    parts, runtime = run.parts, run.runtime
    step = state.step + 1
    update = step % parts.accum_steps == 0 or step == total_steps
    # The loader's uint8 batch -> the model's input, augmented and mixed with draws seeded by
    # (seed, fold, epoch, step, rank), so a resume draws the same.
    images = parts.pipeline.train_batch(images, state.epoch, step, runtime.rank)
    images, mix = parts.pipeline.mix(images, state.epoch, step, runtime.rank)
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
        if run.ema is not None:
            run.ema.update(parts.model, state.updates)
    return bool(stopping)


def fold_parts(recipe: Recipe, split: FoldSplit, runtime: Runtime, *, init: Path | None = None) -> FoldParts:
    """A fold's parts, built as the fold trains them: torch seeded by the recipe's seed plus the
    fold first. ``init`` is a checkpoint of another run to start from (``[model] init_from``)."""
    seed = recipe.seed + split.fold
    seed_everything(seed, recipe.train.deterministic)
    return build_parts(recipe, split, runtime, init=init)


def train_fold(run: FoldRun, split: FoldSplit, folder: FoldDir, *, resume: bool = False,
               io: LoopIO | None = None) -> FoldResult:
    """Train one fold with the parts :func:`fold_parts` built; writes best.pt, last.pt (and
    swa.pt, ema.pt, epochNNN.pt) and history.csv. The task's monitor (``run.task``) picks the best
    epochs. After every last.pt, ``io.on_saved`` runs (on the writing rank): a staged run is
    promoted then.

    ``[train] ema_decay``: the EMA of the weights is what every epoch validates, so the monitor,
    best.pt, the top-k and the OOF rows are all the EMA's; last.pt keeps the weights as trained
    (and the EMA's, to resume). ``[train] patience``: the fold ends after that many epochs without
    a better monitor, recorded in last.pt, so a resume of the stopped fold trains no more.
    """
    io = io or LoopIO(stop=run.stop)
    t_cfg = run.recipe.train
    if t_cfg.ema_decay > 0 and run.ema is None:
        run = dataclasses.replace(run, ema=ModelEma(run.parts.model, t_cfg.ema_decay))
    recipe, parts, runtime, task, ema = run.recipe, run.parts, run.runtime, run.task, run.ema
    fold = split.fold
    checkpoints = FoldCheckpoints(folder, list(split.classes.labels),
                                  TopK(t_cfg.keep_top_k, task.mode), write=runtime.is_main)
    # With early stopping the last swa_epochs epochs are only known at the stop: keep them all.
    state, swa = TrainState(), SwaAverage(parts.model, window=t_cfg.swa_epochs if t_cfg.patience else 0)
    if runtime.is_main:
        folder.create()
    distributed.barrier(runtime)
    if resume and checkpoints.has_last():
        checkpoints.load_last(parts, state, swa, ema)
        if state.stopped:
            logger.info(f"fold {fold}: stopped early at epoch {state.stopped}; nothing left to train")
        else:
            logger.info(f"fold {fold}: resuming at epoch {state.epoch + 1}, step {state.step}")
        if io.clock is not None:
            io.clock.skip(t_cfg.epochs if state.stopped else state.epoch)
    board = FoldBoard.open(recipe, folder.run.tensorboard_dir(fold), enabled=runtime.is_main)
    labels = list(split.classes.labels)
    valid_labels = split.table.labels[np.asarray(split.valid_index, dtype=np.int64)]

    def save_last() -> None:
        checkpoints.save_last(parts, state, swa, ema)
        if runtime.is_main:
            io.on_saved()

    try:
        while state.epoch < t_cfg.epochs and not state.stopped:
            t0 = time.perf_counter()
            peek = None
            if runtime.is_main and io.batch_mosaic is not None and state.epoch == 0 and state.step == 0:
                peek = functools.partial(_show_batch, recipe, labels, io.batch_mosaic, board)
            _train_epoch(run, state, save_last, desc=f"fold {fold} epoch {state.epoch + 1}/{t_cfg.epochs}",
                         board=board, peek=peek)
            row = _train_row(run, state)
            validation = validate(parts, runtime, recipe.model.head, task,
                                  where=f"fold {fold}, epoch {state.epoch + 1}",
                                  desc=f"fold {fold} epoch {state.epoch + 1}/{t_cfg.epochs} validation",
                                  model=None if ema is None else ema.module)
            row.update(validation.row(), seconds=round(time.perf_counter() - t0, 2))
            _end_epoch(run, state, checkpoints, swa, validation, row)
            save_last()
            if runtime.is_main:
                folder.write_history(state.history)
            board.epoch(row)
            if board.on and validation.probs is not None:
                board.confusion(confusion_matrix(valid_labels, validation.probs.argmax(1), len(labels)), labels,
                                row["epoch"])
            line, short = _epoch_line(fold, row, task, checkpoints.best), _short_epoch_line(
                fold, row, task, checkpoints.best, t_cfg.epochs)
            if io.clock is not None:
                io.clock.tick(row["seconds"])
                line, short = line + f"  ({io.clock.describe()})", short + f", run ETA {io.clock.eta()}"
            # A terminal shows the short line; fit.log and pipes the full one.
            logger.info(line, extra={"brief": short})
            if state.stopped:
                logger.info(f"fold {fold}: {row['stopped_early']}")
                if io.clock is not None:
                    io.clock.skip(t_cfg.epochs - state.epoch)
            if runtime.is_main and io.on_epoch is not None:
                io.on_epoch(fold, row)
    except torch.OutOfMemoryError:
        raise CompError(
            f"CUDA out of memory at batch_size {parts.batch_size}: set [train] batch_size lower "
            f"(e.g. {max(1, parts.batch_size // 2)}) with effective_batch_size = "
            f"{parts.batch_size * parts.accum_steps} to keep the images per update, or "
            f'batch_size = "auto"; {folder.last} holds the last finished epoch') from None
    finally:
        board.close()

    # Weights validated once the fold has ended, for the OOF rows of [predict] checkpoints.
    ended: dict[str, np.ndarray] = {}
    validated = parts.valid_loader is not None
    if t_cfg.swa_epochs and swa.count:
        swa_model = swa.final_model(parts, runtime)  # on every rank: all validate it
        checkpoints.save_swa(swa_model, state.epoch, swa.count)
        if runtime.is_main:
            logger.info(f"swa.pt: the mean of the last {swa.count} epochs' weights, BatchNorm recomputed")
        if validated and recipe.predict.checkpoints == "swa":
            ended["swa"] = valid_probs(swa_model, parts, runtime, kind_of(task).activation(recipe.model.head),
                                       split.num_classes,
                                       where=f"fold {fold}, the SWA weights")
    if ema is not None:
        last_score = state.history[-1][task.monitor] if state.history else math.nan
        checkpoints.save_ema(ema.module, state.epoch, last_score, t_cfg.ema_decay)
        if validated and recipe.predict.checkpoints == "last":  # last.pt holds the weights as trained
            ended["last"] = valid_probs(unwrap(parts.model), parts, runtime, kind_of(task).activation(recipe.model.head),
                                        split.num_classes,
                                        where=f"fold {fold}, the last weights")
    distributed.barrier(runtime)
    best = checkpoints.best
    return FoldResult(
        fold=fold,
        best_epoch=best[1] if best and validated else t_cfg.epochs,
        best_score=best[0] if best and validated else math.nan,
        valid_index=np.asarray(split.valid_index),
        valid_probs=oof_probs(state, checkpoints.top_k, recipe, ended, split.num_classes),
        checkpoints=recipe.predict.checkpoints,
        stopped_early=state.stopped,
    )


def oof_probs(state: TrainState, top_k: TopK, recipe: Recipe, ended: dict[str, np.ndarray],
              num_classes: int) -> np.ndarray:
    """The fold's validation probabilities from the weights ``[predict] checkpoints`` names,
    combined as ``comp predict`` combines them: best epoch, mean of the top-k epochs, last
    epoch, the SWA weights or the final EMA weights. ``ended``: probabilities of weights
    validated after the last epoch (``swa``; ``last`` when the epochs validated the EMA). Empty
    without validation."""
    which = recipe.predict.checkpoints
    if which in ended:
        return ended[which]
    if which in ("last", "ema") and state.last_probs is not None:  # the latest epoch's validation
        return state.last_probs
    kept = [state.kept_probs[e] for _, e in top_k.kept if e in state.kept_probs]
    if which == "top_k" and kept:
        return combine_views(np.stack(kept), recipe.predict.tta_mean)
    if kept:
        return kept[0]
    return np.zeros((0, num_classes))


def _train_epoch(run: FoldRun, state: TrainState, save_last: Callable[[], None], *, desc: str,
                 board: FoldBoard | None = None, peek: Peek | None = None) -> None:
    """Run the rest of the current epoch from ``state.step``, updating ``state`` as it goes.

    Progress is counted in images (a bar in a terminal, lines elsewhere: :func:`comp.console.progress`);
    ``board`` gets every step's loss and LR; ``peek`` sees the epoch's first batch."""
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
            loss_before, count_before = state.loss_sum, state.loss_count
            stopping = train_batch(run, state, images, targets, total_steps=total_steps, peek=peek)
            peek = None
            bar.set_postfix_str(f"loss {state.loss_sum / state.loss_count:.4f}, "
                                f"acc {state.correct / state.loss_count:.3f}", refresh=False)
            bar.update(len(images))
            if board is not None and board.on:
                board.step(state.updates, (state.loss_sum - loss_before) / max(state.loss_count - count_before, 1),
                           parts.optimizer.param_groups[0]["lr"])
            # Stop only between whole updates, so a resume never splits an accumulated gradient.
            if stopping:
                run.stop.reason = run.stop.reason or "stop requested by another rank"
                save_last()
                raise Interrupted(f"{run.stop.reason}: stopped at epoch {state.epoch + 1}, step {state.step}; "
                                  f"saved last.pt")


def _show_batch(recipe: Recipe, labels: list[str], path: Path, board: FoldBoard, images: torch.Tensor,
                targets: torch.Tensor, mix: Mix | None) -> None:
    """train_batch.jpg (and TensorBoard's ``train/batch``): a batch exactly as the model gets it,
    augmented and mixed, de-normalised with the recipe's mean and std; each tile captioned with
    its label (a mixed tile: both labels and their weights)."""
    shown = images[:BATCH_TILES].detach().float().cpu().numpy()
    pixels = denormalise(shown, recipe.augment.mean, recipe.augment.std)  # the pipeline always normalised them
    names = [labels[int(t)] for t in hard_labels(targets).tolist()]  # a soft row: its most probable class
    captions = []
    for i in range(len(pixels)):
        caption = names[i]
        if mix is not None:
            caption = f"{caption} {mix.lam:.2f}\n+ {names[int(mix.perm[i])]} {1 - mix.lam:.2f}"
        captions.append(caption)
    canvas, count = mosaic(list(pixels), captions)
    write_jpeg(path, canvas)
    board.image("train/batch", canvas)
    logger.info(f"{path.name}: {count} of the first batch's {len(images)} training images, as the model sees them")


BATCH_TILES = 32  # train_batch.jpg shows at most this many images of the first batch


def _train_row(run: FoldRun, state: TrainState) -> dict[str, float]:
    """The epoch's history row so far: its number, the training loss and accuracy over all ranks
    (of the batches as trained, augmented and mixed), the LR."""
    loss_sum, loss_count, correct = distributed.all_sum(
        [state.loss_sum, float(state.loss_count), float(state.correct)], run.runtime)
    return {"epoch": state.epoch + 1, "train_loss": loss_sum / max(loss_count, 1),
            "train_accuracy": correct / max(loss_count, 1), "lr": run.parts.optimizer.param_groups[0]["lr"]}


def _end_epoch(run: FoldRun, state: TrainState, checkpoints: FoldCheckpoints, swa: SwaAverage,
               validation: Validation, row: dict) -> None:
    """Record the epoch, step the schedule, keep the best/top-k weights (the EMA's when on), update
    SWA, and stop the fold when the monitor has not improved for ``[train] patience`` epochs."""
    t_cfg, parts = run.recipe.train, run.parts
    epoch = state.epoch + 1
    score = validation.score(run.task.monitor)
    state.history.append(row)
    parts.scheduler.step_epoch(epoch, None if math.isnan(score) else score)
    validated = parts.valid_loader is not None
    kept = checkpoints.record(parts.model if run.ema is None else run.ema.module, epoch, score,
                              validated=validated)
    state.last_probs = validation.probs
    if kept.top_k:
        state.kept_probs[epoch] = validation.probs
    for e in kept.dropped:
        state.kept_probs.pop(e, None)
    if t_cfg.swa_epochs and (swa.window or epoch > t_cfg.epochs - t_cfg.swa_epochs):
        swa.update()
    best_epoch = checkpoints.best[1] if checkpoints.best else 0
    if t_cfg.patience and validated and epoch < t_cfg.epochs and epoch - best_epoch >= t_cfg.patience:
        state.stopped = epoch
        waited = epoch - best_epoch
        row["stopped_early"] = (f"stopped early at epoch {epoch}: {run.task.monitor} has not improved on "
                                f"epoch {best_epoch}'s for {waited} epoch{'s' if waited != 1 else ''} "
                                f"([train] patience = {t_cfg.patience})")
    state.epoch, state.step, state.loss_sum, state.loss_count, state.correct = epoch, 0, 0.0, 0, 0


# Short names for the epoch line, so a binary task's nine metrics fit on one line.
_SHORT = {"accuracy": "acc", "balanced_accuracy": "bal_acc", "sensitivity": "sens", "specificity": "spec",
          "precision": "prec", "weighted_f1": "wf1", "macro_f1": "mf1", "top2_accuracy": "top2",
          "top3_accuracy": "top3"}


def _epoch_line(fold: int, row: dict, task: Task, best: tuple[float, int] | None) -> str:
    """The epoch's losses and every metric of the task (history.csv has the same columns)."""
    parts = [f"fold {fold} epoch {row['epoch']:>3}", f"train_loss {row['train_loss']:.4f}"]
    if "train_accuracy" in row:
        parts.append(f"train_acc {row['train_accuracy']:.4f}")
    if not math.isnan(row["val_loss"]):
        parts.append(f"val_loss {row['val_loss']:.4f}")
        parts += [f"{_SHORT.get(k, k)} {row[k]:.4f}" for k in task.metric_names]
        if best and best[1] == row["epoch"]:
            parts.append(f"* best {task.monitor}")
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


def _short_epoch_line(fold: int, row: dict, task: Task, best: tuple[float, int] | None, epochs: int) -> str:
    """The epoch line for a terminal (with the run's ETA under 80 characters): the losses and the
    monitor, ``*`` at a new best."""
    parts = [f"loss {row['train_loss']:.4f}"]
    if not math.isnan(row["val_loss"]):
        parts.append(f"val {row['val_loss']:.4f}")
        if task.monitor != "val_loss":
            parts.append(f"{_SHORT.get(task.monitor, task.monitor)} {row[task.monitor]:.4f}")
        if best and best[1] == row["epoch"]:
            parts[-1] += " *"
    parts.append(f"{row['seconds']:.0f}s")
    return f"fold {fold} epoch {row['epoch']}/{epochs}: " + ", ".join(parts)
