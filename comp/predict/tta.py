"""Test-time augmentation views, applied to whole batches of normalised tensors.

Views act on the tensor, not the image file, so every view of a batch shares one decode and
one forward pass. Classification is invariant to the view, so outputs need no inverse.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.nn.functional as F

from comp.errors import CompError

_FIXED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "hvflip": lambda x: x.flip(-2, -1),
    "rot90": lambda x: torch.rot90(x, 1, (-2, -1)),
    "rot180": lambda x: torch.rot90(x, 2, (-2, -1)),
    "rot270": lambda x: torch.rot90(x, 3, (-2, -1)),
}
_SCALE = re.compile(r"^scale([0-9]*\.?[0-9]+)$")  # e.g. "scale1.15": resize by 1.15


def view_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The tensor transform for one named view."""
    if name in _FIXED:
        return _FIXED[name]
    match = _SCALE.match(name)
    if match:
        factor = float(match.group(1))
        if factor <= 0:
            raise CompError(f"TTA view {name!r}: the scale must be positive")
        return lambda x: F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    known = ", ".join(list(_FIXED) + ["scale<factor>"])
    raise CompError(f"unknown TTA view {name!r} (known: {known})")


def validate_views(names: list[str]) -> list[str]:
    """Check every view name; an empty list means identity only."""
    for name in names:
        view_fn(name)
    return list(names) or ["identity"]
