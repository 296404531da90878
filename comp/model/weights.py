"""Pretrained weights from a file: ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors``.

Torch files are read with ``torch.load(weights_only=True)``, so a pickle that would run code is
refused instead of executed. The state dict may be bare or wrapped (``{"state_dict": ...}``,
``{"model": ...}``, as training scripts and comp checkpoints save it), and may carry the
``module.`` prefix of DDP or the ``_orig_mod.`` prefix of ``torch.compile``. Tensors whose shape
differs from the model's (typically a classifier head for another number of classes) are skipped
and reported; everything else must match by name, so torchvision and timm ResNet weights both
load into comp's hand-built ResNets (their names are identical).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from comp.errors import CompError, first_line

__all__ = ["LoadReport", "load_plain", "load_pretrained", "read_state_dict", "unreadable_reason"]

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
PREFIXES = ("module.", "_orig_mod.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: tensor names loaded, skipped, missing and unexpected."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in both, but the shapes differ
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model

    def summary(self) -> str:
        """One line, e.g. ``loaded 120 tensors, skipped 2 (shape mismatch: fc.weight, fc.bias), missing 0``."""
        line = f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}"
        if self.skipped:
            line += f" (shape mismatch: {', '.join(self.skipped)})"
        line += f", missing {len(self.missing)}"
        if self.missing:
            line += f" ({_some(self.missing)})"
        if self.unexpected:
            line += f", ignored {len(self.unexpected)} unknown ({_some(self.unexpected)})"
        return line

    def __str__(self) -> str:
        return f"{self.path}: {self.summary()}"


def _some(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict of tensors from ``path`` (unwrapped, prefixes stripped), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CompError(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        raw = _read_safetensors(path)
    else:
        raw = load_plain(path, "pretrained weights", "plain state dict")
    return _unwrap(raw, path)


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # noqa: BLE001 - SafetensorError, OSError, ... on a broken file
        raise CompError(f"cannot read pretrained weights {path}: {unreadable_reason(err)}") from None


def load_plain(path: Path, what: str, kind: str, *, empty: str = "the file is empty", hint: str = "") -> object:
    """``torch.load`` of a file of tensors on the CPU, without unpickling code: an empty, refused
    (it holds objects: "not a ``kind``") or unreadable file is one CompError naming the ``what``
    and the file, ``hint`` appended."""
    try:
        if path.stat().st_size == 0:
            raise CompError(f"cannot read {what} {path}: {empty}{hint}")
        return torch.load(path, map_location="cpu", weights_only=True)
    except CompError:
        raise
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower():
            raise CompError(f"refusing to load {path}: it is not a {kind} (loading it would unpickle "
                            f"arbitrary objects, which can run code){hint}") from None
        raise CompError(f"cannot read {what} {path}: {unreadable_reason(err)}{hint}") from None
    except Exception as err:  # noqa: BLE001 - the unpickler raises anything on a broken file
        raise CompError(f"cannot read {what} {path}: {unreadable_reason(err)}{hint}") from None


def _unwrap(raw: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a checkpoint and strip DDP/compile prefixes from its keys."""
    if not isinstance(raw, dict):
        raise CompError(f"{path} is not a state dict (it holds a {type(raw).__name__})")
    for key in WRAPPER_KEYS:
        inner = raw.get(key)
        if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            raw = inner
            break
    state = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        for prefix in PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    if not state:
        raise CompError(f"{path} holds no tensors (expected a state dict, bare or under "
                        f"{' / '.join(repr(k) for k in WRAPPER_KEYS)})")
    return state


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy matching tensors from the state-dict file at ``path`` into ``model``.

    Tensors present in both with equal shapes are loaded; shape mismatches are skipped (the
    model keeps its own initialisation there) and listed in the report. A file that shares no
    tensor with the model is an error: it is for another architecture.
    """
    path = Path(path)
    source = read_state_dict(path)
    target = model.state_dict()
    report = LoadReport(str(path))
    usable = {}
    for key, want in target.items():  # in the model's order, whatever the file's order
        if key not in source:
            report.missing.append(key)
        elif source[key].shape != want.shape:
            report.skipped.append(key)
        else:
            usable[key] = source[key]
            report.loaded.append(key)
    report.unexpected = [k for k in source if k not in target]
    if not usable:
        raise CompError(f"{path} shares no tensor with the model (file keys look like "
                        f"{_some(list(source), 3)}; model keys like {_some(list(target), 3)})")
    model.load_state_dict(usable, strict=False)
    return report


def unreadable_reason(err: BaseException) -> str:
    """Why a weights or checkpoint file could not be read, in a few words: the error's first
    line, or, for what an unpickler stumbles into on garbage (EOFError, IndexError, KeyError,
    often with no message), that the file is not one or was cut short."""
    first = first_line(err) if str(err).strip() else ""
    if isinstance(err, (EOFError, IndexError, KeyError)) or not first:
        return f"not a weights file, or cut short ({type(err).__name__}{': ' + first if first else ''})"
    return first
