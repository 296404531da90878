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
changed since is read from the source again. A cache whose manifest or arrays are of another
size than the recipe's (a copy from another cache, a hand-made folder) is not read: a sample of
its arrays' headers is checked when it is found, every array when it is loaded, and
``comp cache`` rewrites every array that does not fit.

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


def read_cached(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """A cached image: the uint8 H x W x 3 RGB array ``comp cache`` saved (``size`` x ``size``
    when given)."""
    try:
        image = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ImageReadError(f"cannot read cached image {path}: {err} (run `comp cache` again)") from None
    if not _fits(image.dtype, image.shape, size):
        want = f"{size} x {size} x 3" if size else "H x W x 3"
        raise ImageReadError(f"cached image {path} holds {image.dtype} {image.shape}, not uint8 {want} "
                             f"(run `comp cache` again: it rewrites what does not fit)")
    return image


def _fits(dtype: np.dtype, shape: tuple, size: int | None) -> bool:
    return (dtype == np.uint8 and len(shape) == 3 and shape[2] == 3
            and (size is None or tuple(shape[:2]) == (size, size)))


def cached_fits(path: str | os.PathLike, size: int) -> bool:
    """Whether the ``.npy`` at ``path`` holds a uint8 ``size`` x ``size`` x 3 array, from its
    header alone (a few bytes read)."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError):
        return False
    return _fits(dtype, shape, size)


def write_cached(path: str | os.PathLike, image: np.ndarray) -> None:
    """Save ``image`` (uint8 H x W x 3) where :func:`read_cached` reads it, atomically."""
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(image), allow_pickle=False)


def source_stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


SAMPLE = 16  # cached arrays whose header is checked when a cache is found


def read_manifest(folder: Path, size: int | None = None) -> dict[str, list] | None:
    """``{source path relative to the data root: [cached path, size, mtime_ns]}``, or None when
    the folder has no complete cache (or, given ``size``, one made for another size: its manifest
    says so, or one of a sample of its arrays is not ``size`` x ``size``)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return None
    if size is not None:
        cached = [e[0] for e in data["files"].values() if isinstance(e, list) and e and e[0] is not None]
        sample = cached[:: max(1, len(cached) // SAMPLE)][:SAMPLE]
        if data.get("size") != size or not all(cached_fits(folder / c, size) for c in sample):
            return None
    return data["files"]


def misfit_cache(root: str | Path, size: int, preprocess: str) -> Path | None:
    """The cache folder of this size and preprocessing under ``root`` when it is complete but
    made for another size (so it is not read); else None."""
    folder = cache_folder(root, size, preprocess)
    if read_manifest(folder) is not None and read_manifest(folder, size) is None:
        return folder
    return None


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
        found = _find(os.path.dirname(src), key, size, memo)
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


def _find(directory: str, key: str, size: int, memo: dict) -> tuple[str, str, dict] | None:
    """(data root, cache folder, manifest entries) of the nearest cache above ``directory``."""
    walked, d = [], directory
    while d not in memo:
        walked.append(d)
        folder = os.path.join(d, CACHE_DIR, key)
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            files = read_manifest(Path(folder), size)
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
