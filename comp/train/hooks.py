"""The seam between a fold's loop and its features: the :class:`Hook` interface and
:class:`FoldHooks`, a fold's hooks in their order.

The loop (:func:`comp.train.loop.train_fold`) trains and validates; everything else a fold does
(checkpoints and the top k, the weights' EMA, SWA, early stopping, TensorBoard, the batch
mosaic, trackers, the epoch line) is a hook that owns its state: last.pt holds each hook's
:meth:`Hook.state_dict` under its :attr:`Hook.name`. :func:`comp.train.fold_hooks.fold_hooks`
builds a fold's hooks from the recipe, in an explicit order, the order they are called in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from comp.train.state import FoldRun, TrainState

if TYPE_CHECKING:
    from comp.data.mixing import Mix

# A fold's validation probabilities from one of the checkpoints it leaves, computed only when asked
# (the OOF rows of [predict] checkpoints): SWA's or the raw weights' need one more validation pass.
OofProbs = Callable[[], np.ndarray]


@dataclass
class EpochEnd:
    """An epoch as it ends, as the hooks see it (in their order)."""

    epoch: int  # the epoch just trained (from 1)
    row: dict[str, Any]  # its history.csv row (a hook may add columns: early stopping's reason)
    probs: np.ndarray | None  # the validation probabilities (None without validation rows)
    score: float  # the monitor's value (NaN without validation)
    validated: bool  # the fold has validation rows
    model: nn.Module  # the weights validated: the EMA's when on, else the model as trained
    best: tuple[float, int] | None = None  # (score, epoch) of the best epoch so far: set by the checkpoints hook
    stop: str = ""  # why the fold stops after this epoch, once a hook asked


class Hook:
    """One feature of a fold's loop. Every method does nothing unless overridden; they are called
    on every rank (a hook that writes checks ``run.runtime.is_main`` or was built not to write)."""

    name: str = ""  # its key in last.pt, for a hook with state; "" for one without

    def validates(self) -> nn.Module | None:
        """The weights every epoch validates instead of the model as trained (the EMA)."""
        return None

    def start(self, run: FoldRun, state: TrainState) -> None:
        """Once before the first epoch trained here (after a resume put ``state`` back)."""

    def before_step(self, run: FoldRun, state: TrainState, images: torch.Tensor, targets: torch.Tensor,
                    mix: Mix | None) -> None:
        """Sees a training batch exactly as the model gets it (augmented, mixed, on the device)."""

    def after_step(self, run: FoldRun, state: TrainState, loss: float, updated: bool) -> None:
        """After each training batch (``state`` counts it); ``updated``: the optimiser stepped."""

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> str | None:
        """An epoch has been validated; return a reason to end the fold after it, or None."""
        return None

    def epoch_saved(self, run: FoldRun, state: TrainState, row: dict[str, Any]) -> None:
        """The epoch is on disk (last.pt, history.csv, the run in place): what reads the run may run
        now, and what it raises ends the fit there (comp tune's pruning)."""

    def fold_end(self, run: FoldRun, state: TrainState, earlier: Mapping[str, OofProbs]) -> dict[str, OofProbs]:
        """The fold has trained its last epoch: write what the hook leaves, and name the checkpoints
        (``[predict] checkpoints`` values) it leaves with their OOF probabilities. ``earlier``:
        what the hooks before it named; a name given again replaces theirs."""
        return {}

    def close(self) -> None:
        """Always called once the fold ends, trained or not (files and connections closed)."""

    def state_dict(self) -> Any:
        """What last.pt keeps of the hook under :attr:`name` (tensors and plain values)."""
        return None

    def load_state_dict(self, state: Any) -> None:
        """Put :meth:`state_dict`'s value back (a resume)."""


# last.pt's own keys, which no hook's name may take.
RESERVED = frozenset({"format", "last_format", "model", "optimizer", "scheduler", "scaler", "classes", "rng",
                      *TrainState().state_dict()})


class FoldHooks:
    """A fold's hooks, called in their order. ``checkpoints`` is the one every fold has: it keeps
    best.pt and names the best epoch (the fold's result)."""

    def __init__(self, hooks: Sequence[Hook], checkpoints: Any) -> None:
        names = [h.name for h in hooks if h.name]
        clash = sorted({n for n in names if names.count(n) > 1 or n in RESERVED})
        if clash:
            raise ValueError(f"hook names clash in last.pt: {clash}")
        self.hooks = list(hooks)
        self.checkpoints = checkpoints

    def __iter__(self):
        return iter(self.hooks)

    def validates(self) -> nn.Module | None:
        return next((m for m in (h.validates() for h in self.hooks) if m is not None), None)

    def start(self, run: FoldRun, state: TrainState) -> None:
        for h in self.hooks:
            h.start(run, state)

    def before_step(self, run: FoldRun, state: TrainState, images: torch.Tensor, targets: torch.Tensor,
                    mix: Mix | None) -> None:
        for h in self.hooks:
            h.before_step(run, state, images, targets, mix)

    def after_step(self, run: FoldRun, state: TrainState, loss: float, updated: bool) -> None:
        for h in self.hooks:
            h.after_step(run, state, loss, updated)

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> None:
        """Each hook in turn; the first that asks to stop ends the fold (``state.stopped``), and
        the hooks after it see that in ``end.stop``."""
        for h in self.hooks:
            reason = h.epoch_end(run, state, end)
            if reason and not end.stop:
                end.stop, state.stopped = reason, end.epoch

    def epoch_saved(self, run: FoldRun, state: TrainState, row: dict[str, Any]) -> None:
        for hook in self.hooks:
            hook.epoch_saved(run, state, row)

    def fold_end(self, run: FoldRun, state: TrainState) -> dict[str, OofProbs]:
        named: dict[str, OofProbs] = {}
        for h in self.hooks:
            named.update(h.fold_end(run, state, dict(named)))
        return named

    def close(self) -> None:
        for h in self.hooks:
            h.close()

    def state_dict(self) -> dict[str, Any]:
        return {h.name: h.state_dict() for h in self.hooks if h.name}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Each named hook's state from ``saved`` (last.pt); a missing one is a KeyError."""
        for h in self.hooks:
            if h.name:
                h.load_state_dict(saved[h.name])
