"""A fold's hooks, built from the recipe in one place (:func:`fold_hooks`), and the small ones
that have no module of their own: early stopping, the batch mosaic and the epoch line."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from comp.console import Countdown
from comp.data.mixing import Mix
from comp.data.mosaic import denormalise, mosaic, write_jpeg
from comp.kinds import kind_of
from comp.metrics import Task
from comp.model.losses import hard_labels
from comp.run.folder import FoldDir
from comp.run.track import Tracker, finite
from comp.train.checkpoints import FoldCheckpoints, TopK
from comp.train.ema import EmaHook
from comp.train.hooks import EpochEnd, FoldHooks, Hook, OofProbs
from comp.train.parts import FoldSplit
from comp.train.state import FoldRun, TrainState
from comp.train.swa import SwaHook
from comp.train.tensorboard import BoardHook, FoldBoard

logger = logging.getLogger(__name__)


def fold_hooks(run: FoldRun, split: FoldSplit, folder: FoldDir, *, clock: Countdown | None = None,
               batch_mosaic: Path | None = None, tracker: Tracker | None = None,
               on_epoch: Callable[[int, dict], None] | None = None) -> FoldHooks:
    """The hooks of one fold, in the order they are called: the checkpoints (best.pt, the top k:
    first, so the others see the best epoch), the weights' EMA, SWA, early stopping (which reads
    the best epoch), TensorBoard, the batch mosaic (into TensorBoard too), the experiment tracker
    (``tracker``, the writing rank's), and the epoch line last (it reports what the others did).
    ``clock``: the whole run's ETA; ``batch_mosaic``: where to draw the fold's first training batch;
    ``on_epoch``: called last with the fold and each epoch's row (comp tune's pruning, which may raise)."""
    recipe, runtime, t_cfg = run.recipe, run.runtime, run.recipe.train
    labels, write = list(split.classes.labels), runtime.is_main
    checkpoints = FoldCheckpoints(folder, labels, TopK(t_cfg.keep_top_k, run.task.mode), write=write,
                                  tta_mean=recipe.predict.tta_mean)
    hooks: list[Hook] = [checkpoints]
    if t_cfg.ema_decay > 0:
        hooks.append(EmaHook(run.parts.model, t_cfg.ema_decay, folder, labels, write=write,
                             num_classes=split.num_classes))
    if t_cfg.swa_epochs:
        hooks.append(SwaHook(run.parts.model, t_cfg.swa_epochs, t_cfg.epochs, folder, labels,
                             window=bool(t_cfg.patience), write=write, num_classes=split.num_classes))
    if t_cfg.patience:
        hooks.append(EarlyStopping(t_cfg.patience, t_cfg.epochs))
    board = FoldBoard.open(recipe, folder.run.tensorboard_dir(split.fold), enabled=write)
    if board.on:
        valid_labels = split.table.labels[np.asarray(split.valid_index, dtype=np.int64)]
        hooks.append(BoardHook(board, labels, valid_labels))
    if batch_mosaic is not None and write:
        hooks.append(BatchMosaic(batch_mosaic, labels, board))
    if tracker is not None and write:
        hooks.append(TrackerHook(tracker, split.fold))
    hooks.append(EpochLine(split.fold, clock))
    if on_epoch is not None and write:
        hooks.append(EpochCallback(split.fold, on_epoch))
    return FoldHooks(hooks, checkpoints)


class EarlyStopping(Hook):
    """``[train] patience``: the fold ends after that many epochs without a better monitor (the
    stop is recorded in last.pt, so a resume of the stopped fold trains no more)."""

    def __init__(self, patience: int, epochs: int) -> None:
        self.patience, self.epochs = patience, epochs

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> str | None:
        best_epoch = end.best[1] if end.best else 0
        waited = end.epoch - best_epoch
        if not end.validated or end.epoch >= self.epochs or waited < self.patience:
            return None
        end.row["stopped_early"] = (f"stopped early at epoch {end.epoch}: {run.task.monitor} has not improved "
                                    f"on epoch {best_epoch}'s for {waited} epoch{'s' if waited != 1 else ''} "
                                    f"([train] patience = {self.patience})")
        return end.row["stopped_early"]


BATCH_TILES = 32  # train_batch.jpg shows at most this many images of the first batch


class BatchMosaic(Hook):
    """train_batch.jpg (and TensorBoard's ``train/batch``): the fold's first batch exactly as the
    model gets it, augmented and mixed, de-normalised with the recipe's mean and std; each tile
    captioned with its label (a mixed tile: both labels and their weights)."""

    def __init__(self, path: Path, labels: list[str], board: FoldBoard) -> None:
        self.path, self.labels, self.board = path, labels, board

    def before_step(self, run: FoldRun, state: TrainState, images: torch.Tensor, targets: torch.Tensor,
                    mix: Mix | None) -> None:
        if state.epoch or state.step:  # only the first batch of a fold trained from its start
            return
        recipe = run.recipe
        shown = images[:BATCH_TILES].detach().float().cpu().numpy()
        pixels = denormalise(shown, recipe.augment.mean, recipe.augment.std)  # the pipeline always normalised them
        # A soft row: its most probable class; a multilabel row: its labels; a regression row: its value.
        t = targets.detach().cpu()
        names = [str(n) or "(none)" for n in kind_of(run.task).row_labels(
            hard_labels(t).numpy(), t.float().numpy() if t.ndim == 2 else None, self.labels)]
        captions = []
        for i in range(len(pixels)):
            caption = names[i]
            if mix is not None:
                caption = f"{caption} {mix.lam:.2f}\n+ {names[int(mix.perm[i])]} {1 - mix.lam:.2f}"
            captions.append(caption)
        canvas, count = mosaic(list(pixels), captions)
        write_jpeg(self.path, canvas)
        self.board.image("train/batch", canvas)
        logger.info(f"{self.path.name}: {count} of the first batch's {len(images)} training images, as the model "
                    f"sees them")


class EpochCallback(Hook):
    """A caller's function of (fold, epoch row) once each epoch is saved, on the writing rank: comp
    tune reports the fold's figure to its pruner, and what the function raises ends the fit."""

    def __init__(self, fold: int, fn: Callable[[int, dict], None]) -> None:
        self.fold, self.fn = fold, fn

    def epoch_saved(self, run: FoldRun, state: TrainState, row: dict) -> None:
        self.fn(self.fold, row)


class EpochLine(Hook):
    """Each epoch's line in the log (every metric in fit.log and pipes, a short one on a terminal)
    with the whole run's ETA (``clock``), and the reason a fold stopped early."""

    def __init__(self, fold: int, clock: Countdown | None = None) -> None:
        self.fold, self.clock = fold, clock

    def start(self, run: FoldRun, state: TrainState) -> None:
        if self.clock is not None:
            self.clock.skip(run.recipe.train.epochs if state.stopped else state.epoch)

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> None:
        epochs, row = run.recipe.train.epochs, end.row
        line = epoch_line(self.fold, row, run.task, end.best)
        short = short_epoch_line(self.fold, row, run.task, end.best, epochs)
        if self.clock is not None:
            self.clock.tick(row["seconds"])
            line, short = line + f"  ({self.clock.describe()})", short + f", run ETA {self.clock.eta()}"
        # A terminal shows the short line; fit.log and pipes the full one.
        logger.info(line, extra={"brief": short})
        if end.stop:
            logger.info(f"fold {self.fold}: {end.stop}")
            if self.clock is not None:
                self.clock.skip(epochs - end.epoch)
        return None


# Short names for the epoch line, so a binary task's nine metrics fit on one line.
_SHORT = {"accuracy": "acc", "balanced_accuracy": "bal_acc", "sensitivity": "sens", "specificity": "spec",
          "precision": "prec", "weighted_f1": "wf1", "macro_f1": "mf1", "top2_accuracy": "top2",
          "top3_accuracy": "top3"}


def epoch_line(fold: int, row: dict, task: Task, best: tuple[float, int] | None) -> str:
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


def short_epoch_line(fold: int, row: dict, task: Task, best: tuple[float, int] | None, epochs: int) -> str:
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


class TrackerHook(Hook):
    """The fold's nested run in the experiment tracker (:mod:`comp.run.track`): each epoch's
    history row (finite numbers, step = epoch); finished when the fold ends, stopped otherwise."""

    def __init__(self, tracker: Tracker, fold: int) -> None:
        self.tracker, self.fold, self.ended = tracker, fold, False

    def start(self, run: FoldRun, state: TrainState) -> None:
        self.tracker.fold_start(self.fold)

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> None:
        self.tracker.epoch(self.fold, end.epoch, finite(end.row))
        return None

    def fold_end(self, run: FoldRun, state: TrainState, earlier: Mapping[str, OofProbs]) -> dict[str, OofProbs]:
        self.tracker.fold_end(self.fold, True)
        self.ended = True
        return {}

    def close(self) -> None:
        if not self.ended:
            self.tracker.fold_end(self.fold, False)
