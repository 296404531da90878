"""Where a fold's loop is (:class:`TrainState`: the epoch and step, the running loss, the history,
whether the fold has stopped) and what it trains with (:class:`FoldRun`). Each hook
(:mod:`comp.train.hooks`) keeps its own state beside the loop's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comp.metrics import Task
from comp.model.runtime import Runtime
from comp.recipe import Recipe
from comp.train.parts import FoldParts


@dataclass
class TrainState:
    """The loop's own state: enough, with the hooks' states, to resume mid-epoch exactly."""

    epoch: int = 0  # completed epochs
    step: int = 0  # batches done in the current epoch
    updates: int = 0  # optimiser steps so far
    loss_sum: float = 0.0  # of the current epoch so far
    loss_count: int = 0
    correct: int = 0  # training rows predicted right in the current epoch so far (train_accuracy)
    history: list[dict] = field(default_factory=list)
    stopped: int = 0  # the epoch a hook (early stopping) ended the fold at (0: not stopped): a resume trains no more

    def state_dict(self) -> dict[str, Any]:
        """Plain values only, so last.pt loads with ``weights_only=True``."""
        return {"epoch": self.epoch, "step": self.step, "updates": self.updates, "stopped": self.stopped,
                "loss_sum": self.loss_sum, "loss_count": self.loss_count, "correct": self.correct,
                "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step, self.updates = int(state["epoch"]), int(state["step"]), int(state["updates"])
        self.stopped = int(state["stopped"])
        self.loss_sum, self.loss_count = float(state["loss_sum"]), int(state["loss_count"])
        self.correct = int(state["correct"])
        self.history = list(state["history"])


@dataclass
class StopFlag:
    """Set by a signal handler; the loop checks it after every step."""

    reason: str = ""

    @property
    def requested(self) -> bool:
        return bool(self.reason)


@dataclass(frozen=True)
class FoldRun:
    """What every batch of a fold needs: the recipe, the fold's parts, the runtime, the stop flag,
    and the task (what validation measures, and the monitor)."""

    recipe: Recipe
    parts: FoldParts
    runtime: Runtime
    stop: StopFlag
    task: Task
