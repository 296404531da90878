"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain Python values, so loading one never runs code.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    weights = state["model"]
    if not isinstance(weights, dict) or not weights or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CompError(f"{path} is not a comp checkpoint: its model entry is not a state dict of "
                        f"tensors{hint}")
    return state


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, *,
                     classes: int) -> None:
    """Load ``state`` into ``model`` exactly; weights made for another model (another number of
    classes, another architecture: a checkpoint copied from another run) are one CompError
    naming the file, checked before any tensor is copied."""
    want = model.state_dict()
    wrong = [k for k, v in state.items() if k in want and tuple(v.shape) != tuple(want[k].shape)]
    if wrong:
        k = wrong[0]
        raise CompError(f"{path} does not fit this run's model ({classes} classes): its {k} has shape "
                        f"{tuple(state[k].shape)}, the model's {tuple(want[k].shape)} (weights from "
                        f"another run?)")
    missing, unexpected = [k for k in want if k not in state], [k for k in state if k not in want]
    if missing or unexpected:
        raise CompError(f"{path} does not fit this run's model: "
                        + "; ".join(f"{what} {', '.join(keys[:3])}" + (" ..." if len(keys) > 3 else "")
                                    for what, keys in (("missing", missing), ("unknown", unexpected)) if keys)
                        + " (weights of another architecture?)")
    model.load_state_dict(state)

