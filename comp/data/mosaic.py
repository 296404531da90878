"""Image mosaics: a grid of uint8 tiles, each with a caption strip, saved as a small JPEG.

Drawn with OpenCV. Training writes the augmented batch as the model sees it (``train_batch.jpg``,
de-normalised with the recipe's mean and std); ``comp cv-report`` writes the most confident
out-of-fold mistakes and a sample of validation predictions the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from comp.atomic import atomic_path
from comp.errors import CompError

MAX_TILES = 64
TILE = 112  # pixels per tile side: small images are enlarged so their captions fit
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.36
_LINE_PX = 13
_WRONG = (150, 30, 30)  # RGB strip colours: a wrong prediction, a right one, a plain caption
_RIGHT = (25, 110, 45)
_PLAIN = (40, 40, 40)


def denormalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N, C, H, W) float images normalised by ``mean``/``std`` (of 0..1 pixels) → (N, H, W, 3)
    uint8 RGB, as they were before normalisation (a one-channel batch becomes grey RGB)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {x.shape}")
    c = x.shape[1]
    m = np.asarray(mean, dtype=np.float32)[:c].reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32)[:c].reshape(1, -1, 1, 1)
    x = np.clip((x * s + m) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    if c == 1:
        x = np.repeat(x, 3, axis=3)
    return np.ascontiguousarray(x[..., :3])


def mosaic(images: Sequence[np.ndarray], captions: Sequence[str] = (), *, tile: int = TILE,
           columns: int | None = None, correct: Sequence[bool | None] | None = None,
           max_tiles: int = MAX_TILES, name_first: bool = False) -> tuple[np.ndarray, int]:
    """(the mosaic as an RGB uint8 array, the number of tiles drawn).

    Each image (H×W×3 or H×W uint8) is resized to ``tile`` pixels square and captioned below
    with its caption's lines (``\\n``-separated); ``correct`` colours a strip green (True) or red
    (False). At most ``max_tiles`` images are drawn, the first ones. A line too long for the tile
    is cut at its end, except the first with ``name_first`` (a file name): cut at its start, so
    the part that tells files apart stays.
    """
    n = min(len(images), max_tiles)
    if n == 0:
        raise ValueError("a mosaic needs at least one image")
    captions = list(captions) + [""] * (n - len(captions))
    lines = max(1, max(len(str(c).split("\n")) for c in captions[:n]))
    strip = lines * _LINE_PX + 5
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    gap = 2
    height, width = rows * (tile + strip + gap) + gap, cols * (tile + gap) + gap
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = gap + r * (tile + strip + gap), gap + c * (tile + gap)
        canvas[y:y + tile, x:x + tile] = _tile(images[i], tile)
        ok = None if correct is None or i >= len(correct) else correct[i]
        canvas[y + tile:y + tile + strip, x:x + tile] = _PLAIN if ok is None else (_RIGHT if ok else _WRONG)
        for j, text in enumerate(str(captions[i]).split("\n")):
            cv2.putText(canvas, fit_text(text, tile - 4, keep_end=name_first and j == 0),
                        (x + 3, y + tile + (j + 1) * _LINE_PX), _FONT, _FONT_SCALE, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return canvas, n


def write_mosaic(path: str | Path, images: Sequence[np.ndarray], captions: Sequence[str] = (), **kwargs) -> int:
    """Draw :func:`mosaic` and save it as a JPEG at ``path`` (atomically); returns the tile count."""
    canvas, n = mosaic(images, captions, **kwargs)
    write_jpeg(path, canvas)
    return n


def write_jpeg(path: str | Path, rgb: np.ndarray, quality: int = 88) -> None:
    """Save an RGB uint8 image as a JPEG, atomically."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CompError(f"cannot encode {path} as JPEG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def _tile(image: np.ndarray, tile: int) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Enlarged pixels stay sharp blocks (a 28-px digit is read pixel by pixel); shrinking averages.
    resized = cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)
    out = np.zeros((tile, tile, 3), dtype=np.uint8)
    top, left = (tile - size[1]) // 2, (tile - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = resized
    return out


def fit_text(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` cut so it fits ``width`` pixels of a caption, the cut marked ".."; at its end, or
    at its start with ``keep_end``."""
    def wide(t: str) -> int:
        return cv2.getTextSize(t, _FONT, _FONT_SCALE, 1)[0][0]

    if wide(text) <= width:
        return text
    while text and wide(".." + text if keep_end else text + "..") > width:
        text = text[1:] if keep_end else text[:-1]
    return ".." + text if keep_end else text + ".."
