"""A fold's checkpoint files, owned by one object (:class:`FoldCheckpoints`): best.pt, the top-k
epochNNN.pt, last.pt (everything a resume needs), swa.pt and ema.pt. The file format of one checkpoint is
:mod:`comp.run.checkpoint`; the names come from :class:`comp.run.folder.FoldDir`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from comp.errors import CompError
from comp.model.weights import unreadable_reason
from comp.run.checkpoint import load_checkpoint, save_checkpoint, unwrap
from comp.train.ema import ModelEma
from comp.train.parts import FoldParts
from comp.run.folder import FoldDir
from comp.train.swa import SwaAverage

if TYPE_CHECKING:
    from comp.train.loop import TrainState


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


class FoldCheckpoints:
    """Saves, prunes and loads one fold's checkpoints. Every rank keeps the same bookkeeping;
    only a ``write`` instance (rank 0) touches files."""

    def __init__(self, folder: FoldDir, classes: list[str], top_k: TopK, *, write: bool = True) -> None:
        self.folder = folder
        self.classes = list(classes)
        self.top_k = top_k
        self.write = write

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

    def save_last(self, parts: FoldParts, state: TrainState, swa: SwaAverage, ema: ModelEma | None = None) -> None:
        """last.pt: the model (as trained, not the EMA), optimiser, schedule, scaler, loop state,
        top-k, SWA mean, EMA weights and RNG."""
        if not self.write:
            return
        save_checkpoint(
            self.folder.last, model=parts.model, optimizer=parts.optimizer.state_dict(),
            scheduler=parts.scheduler.state_dict(), scaler=parts.scaler.state_dict(),
            **state.state_dict(), top_k=self.top_k.state_dict(), swa=swa.state_dict(),
            ema=None if ema is None else ema.state_dict(),
            classes=self.classes, rng={"torch": torch.get_rng_state()},
        )

    def has_last(self) -> bool:
        return self.folder.last.is_file()

    def load_last(self, parts: FoldParts, state: TrainState, swa: SwaAverage, ema: ModelEma | None = None) -> None:
        """Put everything :meth:`save_last` saved back in place; a last.pt that cannot be
        resumed from is one error saying how to start again."""
        start_over = "it cannot be resumed from: run with --overwrite to start again"
        saved = load_checkpoint(self.folder.last, start_over=start_over)
        try:
            unwrap(parts.model).load_state_dict(saved["model"])
            parts.optimizer.load_state_dict(saved["optimizer"])
            parts.scheduler.load_state_dict(saved["scheduler"])
            parts.scaler.load_state_dict(saved["scaler"])
            self.top_k.load_state_dict(saved["top_k"])
            state.load_state_dict(saved)
            swa.load_state_dict(saved.get("swa"))
            if ema is not None:
                ema.load_state_dict(saved["ema"])
            torch.set_rng_state(saved["rng"]["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # another run's, or not a last.pt
            raise CompError(f"{self.folder.last} does not match this run ({unreadable_reason(err)}); "
                            f"{start_over}") from None

    def save_swa(self, model: nn.Module, epoch: int, count: int) -> None:
        if self.write:
            save_checkpoint(self.folder.swa, model=model, epoch=epoch, score=float("nan"),
                            classes=self.classes, swa_epochs=count)

    def save_ema(self, model: nn.Module, epoch: int, score: float, decay: float) -> None:
        """ema.pt: the EMA weights as the fold ended (``[predict] checkpoints = "ema"``)."""
        if self.write:
            save_checkpoint(self.folder.ema, model=model, epoch=epoch, score=score, classes=self.classes,
                            ema_decay=decay)
