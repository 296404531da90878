"""An image cache: resized, preprocessed copies of a competition's images, read instead of them.

``comp cache RECIPE`` writes ``<data root>/.cache/<size>_<preprocess>/`` once: every train and
test image, decoded, preprocessed (``ben_graham``) and resized to ``[augment] size`` exactly as
:class:`~comp.data.dataset.ImageDataset` would, saved as raw uint8 ``.npy`` (lossless) under its
path relative to the data root (``train/x.jpeg`` → ``train/x.jpeg.npy``). Later epochs, folds and
runs then read them with no decoding and skip preprocessing; the pipeline's Resize finds them at
size and does nothing. Raw arrays are about twice PNG's size on disk but read over 30 times faster
(512-px fundus images on one core: 0.11 ms against 3.6-4.2 ms for PNG and 1.0 ms for a lossy
JPEG; benchmarks/README.md).

Images no larger than the target and without preprocessing are left out: a copy would be
no faster to decode than the source (for RetinaMNIST's 28-px PNGs at 64 px it is slower).

``manifest.json`` is written last (atomically), listing each cached source with the size and
mtime it had: a folder without it (an interrupted ``comp cache``) is never read, and a source
changed since is read from the source again.

This module finds cached copies (what :class:`~comp.data.dataset.ImageDataset` reads);
:mod:`comp.data.cache_build` writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from comp import atomic
from comp.data.images import ImageReadError

CACHE_DIR = ".cache"
MANIFEST = "manifest.json"
FORMAT = 2  # bump when what a cached image holds changes, so old caches are ignored (1: PNG)
SUFFIX = ".npy"


def cache_key(size: int, preprocess: str) -> str:
    """The folder name of a cache: what its images were made with."""
    return f"{size}_{preprocess}"


def cache_folder(root: str | Path, size: int, preprocess: str) -> Path:
    return Path(root) / CACHE_DIR / cache_key(size, preprocess)


def read_cached(path: str | os.PathLike) -> np.ndarray:
    """A cached image: the uint8 H x W x 3 RGB array ``comp cache`` saved."""
    try:
        image = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ImageReadError(f"cannot read cached image {path}: {err} (run `comp cache` again)") from None
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageReadError(f"cached image {path} holds {image.dtype} {image.shape}, not uint8 H x W x 3 "
                             f"(run `comp cache` again)")
    return image


def write_cached(path: str | os.PathLike, image: np.ndarray) -> None:
    """Save ``image`` (uint8 H x W x 3) where :func:`read_cached` reads it, atomically."""
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(image), allow_pickle=False)


def source_stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def read_manifest(folder: Path) -> dict[str, list] | None:
    """``{source path relative to the data root: [cached path, size, mtime_ns]}``, or None when
    the folder has no complete cache."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return None
    return data["files"]


def cached_paths(paths: Sequence[str], size: int, preprocess: str) -> list[str | None] | None:
    """For each source image, its cached copy if a complete, up-to-date one exists, else None.

    The cache is looked for in ``.cache/<key>/`` of each image's folder and its parents (the
    data root is not known here); the walk is memoised per folder, so it costs a few ``stat``
    calls per distinct folder plus two per image. Returns None when no image is cached.
    """
    key = cache_key(size, preprocess)
    memo: dict[str, tuple[str, str, dict] | None] = {}
    out: list[str | None] = []
    for path in paths:
        src = os.path.abspath(str(path))
        found = _find(os.path.dirname(src), key, memo)
        cached = None
        if found is not None:
            root, folder, files = found
            entry = files.get(os.path.relpath(src, root))
            if entry is not None and entry[0] is not None:  # None: small, read the source
                candidate = os.path.join(folder, entry[0])
                try:
                    fresh = source_stamp(src) == list(entry[1:]) and os.path.isfile(candidate)
                except OSError:
                    fresh = False
                cached = candidate if fresh else None
        out.append(cached)
    return out if any(c is not None for c in out) else None


def _find(directory: str, key: str, memo: dict) -> tuple[str, str, dict] | None:
    """(data root, cache folder, manifest entries) of the nearest cache above ``directory``."""
    walked, d = [], directory
    while d not in memo:
        walked.append(d)
        folder = os.path.join(d, CACHE_DIR, key)
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            files = read_manifest(Path(folder))
            memo[d] = None if files is None else (d, folder, files)
            break
        parent = os.path.dirname(d)
        if parent == d:
            memo[d] = None
            break
        d = parent
    for w in walked:
        memo[w] = memo[d]
    return memo[d]
