"""Test-time augmentation views, applied to whole batches of normalised tensors.

Views act on the tensor, not the image file, so every view of a batch shares one decode and
one forward pass. Classification is invariant to the view, so outputs need no inverse.

Each view has a torch form (:func:`view_fn`) and a numpy form (:func:`numpy_view_fn`, for ONNX
Runtime without torch) that gives the same numbers; torch is imported only when a torch view runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from comp.errors import CompError

_FIXED: dict[str, Callable] = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "hvflip": lambda x: x.flip(-2, -1),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
}
_NUMPY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "hflip": lambda x: np.flip(x, -1),
    "vflip": lambda x: np.flip(x, -2),
    "hvflip": lambda x: np.flip(x, (-2, -1)),
    "rot90": lambda x: np.rot90(x, 1, (-2, -1)),
    "rot180": lambda x: np.rot90(x, 2, (-2, -1)),
    "rot270": lambda x: np.rot90(x, 3, (-2, -1)),
}
_SCALE = re.compile(r"^scale([0-9]*\.?[0-9]+)$")  # e.g. "scale1.15": resize by 1.15


def _scale_factor(name: str) -> float | None:
    match = _SCALE.match(name)
    if not match:
        return None
    factor = float(match.group(1))
    if factor <= 0:
        raise CompError(f"TTA view {name!r}: the scale must be positive")
    return factor


def _unknown(name: str) -> CompError:
    known = ", ".join(list(_FIXED) + ["scale<factor>"])
    return CompError(f"unknown TTA view {name!r} (known: {known})")


def view_fn(name: str) -> Callable:
    """The tensor transform for one named view."""
    if name in _FIXED:
        return _FIXED[name]
    factor = _scale_factor(name)
    if factor is None:
        raise _unknown(name)

    def scale(x):
        import torch.nn.functional as F

        return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    return scale


def numpy_view_fn(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The same view on a float32 ``(N, C, H, W)`` numpy batch (the scale views:
    :func:`resize_bilinear`, torch's bilinear resize with ``align_corners=False``)."""
    if name in _NUMPY:
        return lambda x: np.ascontiguousarray(_NUMPY[name](x))
    factor = _scale_factor(name)
    if factor is None:
        raise _unknown(name)
    return lambda x: resize_bilinear(x, factor)


def resize_bilinear(x: np.ndarray, factor: float) -> np.ndarray:
    """``F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)`` in numpy:
    the output side is ``floor(side * factor)``, and output pixel ``i`` samples the input at
    ``(i + 0.5) / factor - 0.5`` (clamped at 0), between its two neighbours."""
    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_out = int(math.floor(n_in * factor))
        src = np.maximum((np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(1.0 / factor) - 0.5, 0)
        low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (src - low).astype(np.float32)

    h0, h1, hw = axis(x.shape[-2])
    w0, w1, ww = axis(x.shape[-1])
    rows = x[..., h0, :] * (1 - hw)[:, None] + x[..., h1, :] * hw[:, None]
    return np.ascontiguousarray(rows[..., w0] * (1 - ww) + rows[..., w1] * ww, dtype=np.float32)


def validate_views(names: list[str]) -> list[str]:
    """Check every view name; an empty list means identity only."""
    for name in names:
        view_fn(name)
    return list(names) or ["identity"]
