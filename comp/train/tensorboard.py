"""Optional TensorBoard logging of a fit (``[log] tensorboard = true``, ``pip install comp[tensorboard]``).

Each fold writes to ``runs/<name>/tb/fold<K>`` (:meth:`comp.run.folder.RunDir.tensorboard_dir`):
the loss and learning rate of every step, every history.csv figure of every epoch, the
validation confusion matrix of every epoch and the training-batch mosaic, as images. Only rank 0
writes. ``tensorboard --logdir runs/<name>/tb`` shows the folds side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from comp.errors import CompError
from comp.metrics import confusion_matrix, row_normalise
from comp.recipe import Recipe
from comp.train.hooks import EpochEnd, Hook
from comp.train.state import FoldRun, TrainState

INSTALL = "pip install comp[tensorboard]"


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``; a missing ``tensorboard`` package is one
    clear message (exit 2)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CompError(f"[log] tensorboard = true needs the tensorboard package: {INSTALL} "
                        f"(or set [log] tensorboard = false)") from None
    return SummaryWriter


def require(recipe: Recipe) -> None:
    """Fail before anything is trained when the recipe asks for TensorBoard and it is missing."""
    if recipe.log.tensorboard:
        summary_writer_class()


class FoldBoard:
    """One fold's SummaryWriter, or nothing: every method does nothing when TensorBoard is off
    (or on ranks other than 0)."""

    def __init__(self, writer: Any = None) -> None:
        self.writer = writer

    @classmethod
    def open(cls, recipe: Recipe, log_dir: Path, *, enabled: bool = True) -> FoldBoard:
        if not (recipe.log.tensorboard and enabled):
            return cls()
        return cls(summary_writer_class()(log_dir=str(log_dir)))

    @property
    def on(self) -> bool:
        return self.writer is not None

    def step(self, update: int, loss: float, lr: float) -> None:
        """One optimisation step: its loss and the learning rate."""
        if self.writer is not None:
            self.writer.add_scalar("step/train_loss", loss, update)
            self.writer.add_scalar("step/lr", lr, update)

    def epoch(self, row: dict[str, Any]) -> None:
        """An epoch's history.csv row: each finite figure as ``epoch/<column>``."""
        if self.writer is None:
            return
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", float(value), epoch)
        self.writer.flush()

    def confusion(self, cm: np.ndarray, labels: Sequence[str], epoch: int) -> None:
        """The validation confusion matrix (row-normalised) as an image."""
        if self.writer is not None:
            self.writer.add_image("valid/confusion", confusion_rgb(cm, labels), epoch, dataformats="HWC")

    def image(self, tag: str, rgb: np.ndarray, step: int = 0) -> None:
        """An RGB uint8 image (a mosaic)."""
        if self.writer is not None:
            self.writer.add_image(tag, rgb, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def confusion_rgb(cm: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """A row-normalised confusion matrix drawn as an RGB uint8 array (true on y, predicted on x)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    norm = row_normalise(cm)
    n = len(labels)
    side = min(max(3.5, 0.45 * n + 2.0), 10.0)
    fig = Figure(figsize=(side, side), dpi=80, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=[str(c) for c in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), labels=[str(c) for c in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class BoardHook(Hook):
    """``[log] tensorboard``: each step's loss and LR, each epoch's history row and validation
    confusion matrix, into the fold's event files (rank 0)."""

    def __init__(self, board: FoldBoard, labels: Sequence[str], valid_labels: np.ndarray) -> None:
        self.board, self.labels, self.valid_labels = board, list(labels), valid_labels

    def after_step(self, run: FoldRun, state: TrainState, loss: float, updated: bool) -> None:
        if self.board.on:
            self.board.step(state.updates, loss, run.parts.optimizer.param_groups[0]["lr"])

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> None:
        self.board.epoch(end.row)
        if self.board.on and end.probs is not None:
            cm = confusion_matrix(self.valid_labels, end.probs.argmax(1), len(self.labels))
            self.board.confusion(cm, self.labels, end.epoch)
        return None

    def close(self) -> None:
        self.board.close()
