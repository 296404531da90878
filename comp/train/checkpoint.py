"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values, so loading one never runs code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from comp import atomic
from comp.errors import CompError

FORMAT = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Atomically save a checkpoint dict; ``model`` may be a module (its state dict is taken)."""
    if isinstance(state.get("model"), nn.Module):
        state["model"] = unwrap(state["model"]).state_dict()
    atomic.torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU without unpickling code; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CompError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0]
        raise CompError(f"refusing to load {path}: it is not a plain weights file ({first})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CompError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CompError(f"{path} is not a comp checkpoint")
    return state


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
