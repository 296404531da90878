"""A fold's checkpoints: best.pt and the top-k epochNNN.pt (the :class:`FoldCheckpoints` hook), and
last.pt, everything a resume needs (:func:`save_last`, :func:`load_last`): the model, optimiser,
schedule, scaler, the loop's state and each hook's state under its name. swa.pt and ema.pt are
their hooks' (:mod:`comp.train.swa`, :mod:`comp.train.ema`). The file format of one checkpoint is
:mod:`comp.run.checkpoint`; the names come from :class:`comp.run.folder.FoldDir`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from comp.errors import CompError
from comp.model.inference import combine_views
from comp.model.weights import unreadable_reason
from comp.run.checkpoint import load_checkpoint, save_checkpoint, unwrap
from comp.run.folder import FoldDir
from comp.train.hooks import EpochEnd, FoldHooks, Hook, OofProbs
from comp.train.parts import FoldParts
from comp.train.state import FoldRun, TrainState

# last.pt's layout: 2 = the loop's state, and each hook's under its name (1: before hooks, no number).
LAST_FORMAT = 2


@dataclass
class TopK:
    """Which epochs' weights to keep: the ``k`` best by the monitor metric."""

    k: int
    mode: str  # "max" or "min"
    kept: list[tuple[float, int]] = field(default_factory=list)  # (score, epoch), best first

    def offer(self, score: float, epoch: int) -> tuple[bool, list[int]]:
        """Record an epoch's score; returns (kept?, epochs to drop)."""
        if score != score:  # NaN never ranks
            return False, []
        sign = -1.0 if self.mode == "max" else 1.0
        ranked = sorted(self.kept + [(score, epoch)], key=lambda se: (sign * se[0], se[1]))
        self.kept, dropped = ranked[: self.k], ranked[self.k:]
        return (score, epoch) in self.kept, [e for _, e in dropped]

    @property
    def best(self) -> tuple[float, int] | None:
        return self.kept[0] if self.kept else None

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "mode": self.mode, "kept": [list(se) for se in self.kept]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = [(float(s), int(e)) for s, e in state["kept"]]


@dataclass(frozen=True)
class Kept:
    """What :meth:`FoldCheckpoints.record` did with an epoch."""

    best: bool  # it is the new best (best.pt rewritten)
    top_k: bool  # it is among the k best
    dropped: list[int]  # epochs that fell out of the k best


class FoldCheckpoints(Hook):
    """best.pt and the top-k epochNNN.pt of a fold, and the validation probabilities of the epochs
    they hold (the OOF rows of ``[predict] checkpoints`` best, top_k and last). Every rank keeps
    the same bookkeeping; only a ``write`` instance (rank 0) touches files."""

    name = "top_k"

    def __init__(self, folder: FoldDir, classes: list[str], top_k: TopK, *, write: bool = True,
                 tta_mean: str = "arithmetic") -> None:
        self.folder = folder
        self.classes = list(classes)
        self.top_k = top_k
        self.write = write
        self.tta_mean = tta_mean  # how the top-k epochs' probabilities are combined, as comp predict does
        self.kept_probs: dict[int, np.ndarray] = {}  # validation probs of the top-k epochs
        self.last_probs: np.ndarray | None = None  # validation probs of the latest epoch

    @property
    def best(self) -> tuple[float, int] | None:
        """(score, epoch) of the best epoch so far."""
        return self.top_k.best

    def record(self, model: nn.Module, epoch: int, score: float, *, validated: bool) -> Kept:
        """Offer an epoch's weights (the EMA's when ``[train] ema_decay`` is on: the ones
        validated): rewrite best.pt if it is the best, keep epochNNN.pt if it is among the top k
        (with k > 1), delete the epochs that fell out."""
        if not validated:  # without validation the latest weights are the ones to use
            kept = Kept(best=True, top_k=False, dropped=[])
        else:
            in_top, dropped = self.top_k.offer(score, epoch)
            kept = Kept(best=self.top_k.best is not None and self.top_k.best[1] == epoch,
                        top_k=in_top, dropped=dropped)
        if self.write:
            meta = {"epoch": epoch, "score": score, "classes": self.classes}
            if kept.best:
                save_checkpoint(self.folder.best, model=model, **meta)
            if kept.top_k and self.top_k.k > 1:
                save_checkpoint(self.folder.epoch(epoch), model=model, **meta)
            for e in kept.dropped:
                self.folder.epoch(e).unlink(missing_ok=True)
        return kept

    def epoch_end(self, run: FoldRun, state: TrainState, end: EpochEnd) -> None:
        kept = self.record(end.model, end.epoch, end.score, validated=end.validated)
        self.last_probs = end.probs
        if kept.top_k:
            self.kept_probs[end.epoch] = end.probs
        for e in kept.dropped:
            self.kept_probs.pop(e, None)
        end.best = self.best
        return None

    def fold_end(self, run: FoldRun, state: TrainState, earlier: Mapping[str, OofProbs]) -> dict[str, OofProbs]:
        """best (the best epoch's validation), top_k (the top-k epochs' combined as comp predict
        combines them) and last (the latest epoch's)."""
        named: dict[str, OofProbs] = {}
        kept = [self.kept_probs[e] for _, e in self.top_k.kept if e in self.kept_probs]
        if kept:
            named["best"] = lambda: kept[0]
            named["top_k"] = lambda: combine_views(np.stack(kept), self.tta_mean)
        if self.last_probs is not None:
            last = self.last_probs
            named["last"] = lambda: last
        return named

    def state_dict(self) -> dict[str, Any]:
        return {**self.top_k.state_dict(),
                "kept_probs": {str(e): torch.from_numpy(np.asarray(p)) for e, p in self.kept_probs.items()},
                "last_probs": None if self.last_probs is None else torch.from_numpy(np.asarray(self.last_probs))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.top_k.load_state_dict(state)
        self.kept_probs = {int(e): p.numpy() for e, p in state["kept_probs"].items()}
        last = state["last_probs"]
        self.last_probs = None if last is None else last.numpy()


START_OVER = "it cannot be resumed from: run with --overwrite to start again"


def save_last(folder: FoldDir, parts: FoldParts, state: TrainState, hooks: FoldHooks, classes: list[str]) -> None:
    """last.pt: the model (as trained, not the EMA), optimiser, schedule, scaler, the loop's state,
    each hook's state under its name, and the RNG."""
    save_checkpoint(
        folder.last, model=parts.model, optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict(), scaler=parts.scaler.state_dict(), last_format=LAST_FORMAT,
        **state.state_dict(), **hooks.state_dict(), classes=list(classes), rng={"torch": torch.get_rng_state()},
    )


def load_last(folder: FoldDir, parts: FoldParts, state: TrainState, hooks: FoldHooks) -> None:
    """Put everything :func:`save_last` saved back in place; a last.pt that cannot be resumed
    from (another run's, another comp's layout) is one error saying how to start again."""
    saved = load_checkpoint(folder.last, start_over=START_OVER)
    layout = saved.get("last_format", 1)
    if layout != LAST_FORMAT:
        raise CompError(f"{folder.last} has the layout of another comp version (last.pt format {layout!r}, "
                        f"this comp reads {LAST_FORMAT}); {START_OVER}, or finish the run with the comp "
                        f"that started it")
    try:
        unwrap(parts.model).load_state_dict(saved["model"])
        parts.optimizer.load_state_dict(saved["optimizer"])
        parts.scheduler.load_state_dict(saved["scheduler"])
        parts.scaler.load_state_dict(saved["scaler"])
        state.load_state_dict(saved)
        hooks.load_state_dict(saved)
        torch.set_rng_state(saved["rng"]["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:  # another run's, or not a last.pt
        raise CompError(f"{folder.last} does not match this run ({unreadable_reason(err)}); "
                        f"{START_OVER}") from None
