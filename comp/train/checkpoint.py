"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values, so loading one never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from comp import atomic
from comp.errors import CompError
from comp.model.weights import load_plain

FORMAT = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Atomically save a checkpoint dict; ``model`` may be a module (its state dict is taken)."""
    if isinstance(state.get("model"), nn.Module):
        state["model"] = unwrap(state["model"]).state_dict()
    with atomic.atomic_path(path) as tmp:
        try:
            torch.save({"format": FORMAT, **state}, tmp)
        except RuntimeError as err:  # torch's C++ writer: a full disk is a RuntimeError, not an OSError
            raise atomic.write_error(path, err) from None


def load_checkpoint(path: str | Path, *, start_over: str = "") -> dict[str, Any]:
    """Load a checkpoint on the CPU without unpickling code; errors name the file.

    Whatever the file holds (nothing, text, random bytes, half a checkpoint), a file that is not
    a checkpoint is one CompError; ``start_over`` is added to it (how to go on without it).
    """
    path = Path(path)
    hint = f"; {start_over}" if start_over else ""
    if not path.is_file():
        raise CompError(f"checkpoint not found: {path}{hint}")
    state = load_plain(path, "checkpoint", "plain weights file",
                       empty="the file is empty (a write that never finished?)", hint=hint)
    if not isinstance(state, dict) or "model" not in state:
        raise CompError(f"{path} is not a comp checkpoint{hint}")
    return state

