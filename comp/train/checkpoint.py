"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values, so loading one never runs code.
"""

from __future__ import annotations

import pickle
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
