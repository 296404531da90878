"""``comp import medmnist``: a MedMNIST v2 ``.npz`` as a competition folder.

The official validation rows join train.csv marked ``split = valid``, so a recipe can use them
as a predefined fold (``[cv] scheme = "predefined"``, ``split_col = "split"``) or cross-validate
over train + valid together; the test labels go to solution.csv for local scoring only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from comp import atomic
from comp.errors import CompError

# (key in the .npz, split name in train.csv / the summary)
SPLITS = (("train", "train"), ("val", "valid"), ("test", "test"))
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class ImportSummary:
    """What was written: rows per split (train, valid, test) and per class over train + valid."""

    counts: dict[str, int]
    class_counts: dict[str, int]

    def __str__(self) -> str:
        rows = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        classes = ", ".join(f"{k}: {v}" for k, v in self.class_counts.items())
        return f"{rows} images; classes in train+valid {{{classes}}}"


def _open(npz_path: Path) -> np.lib.npyio.NpzFile:
    """The archive, opened lazily, once it is known to hold all six MedMNIST arrays."""
    if not npz_path.is_file():
        raise CompError(f"file not found: {npz_path}")
    try:
        data = np.load(npz_path, allow_pickle=False)
    except _READ_ERRORS as err:
        raise CompError(f"cannot read {npz_path} as a .npz file: {err}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CompError(f"cannot read {npz_path} as a .npz file: it holds a single array, not "
                        f"the train/val/test arrays of a MedMNIST archive")
    missing = [f"{key}_{part}" for key, _ in SPLITS for part in ("images", "labels")
               if f"{key}_{part}" not in data.files]
    if missing:
        data.close()
        raise CompError(f"{npz_path}: missing array {', '.join(missing)} "
                        f"(has {', '.join(data.files) or 'none'})")
    return data


def _array(data: np.lib.npyio.NpzFile, name: str, npz_path: Path) -> np.ndarray:
    try:
        return data[name]
    except _READ_ERRORS as err:
        raise CompError(f"cannot read array {name} from {npz_path}: {err}") from None


def _labels(data: np.lib.npyio.NpzFile, key: str, npz_path: Path) -> np.ndarray:
    """One split's labels as a flat int array; (N, k > 1) multi-label arrays are refused."""
    labels = _array(data, f"{key}_labels", npz_path)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise CompError(f"{npz_path}: {key}_labels has {labels.shape[1]} columns (multi-label or "
                        f"one-hot); only single-label tasks are supported")
    if labels.ndim not in (1, 2):
        raise CompError(f"{npz_path}: {key}_labels has shape {labels.shape}, expected (N, 1)")
    labels = labels.reshape(-1)
    whole = np.issubdtype(labels.dtype, np.integer) or np.array_equal(labels, np.round(labels))
    if labels.size and not (whole and labels.min() >= 0):
        raise CompError(f"{npz_path}: {key}_labels must be class numbers 0, 1, …")
    return labels.astype(np.int64)


def _header(npz_path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one array from its .npy header, without decompressing the data."""
    try:
        with zipfile.ZipFile(npz_path) as archive, archive.open(f"{name}.npy") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
    except _READ_ERRORS as err:
        raise CompError(f"cannot read array {name} from {npz_path}: {err}") from None
    return shape, dtype


def _check_images(header: tuple[tuple[int, ...], np.dtype], key: str, n: int, npz_path: Path) -> None:
    """``n`` uint8 images, grayscale (H, W) or (H, W, 1) or RGB (H, W, 3)."""
    shape, dtype = header
    image_shape = len(shape) == 3 or len(shape) == 4 and shape[-1] in (1, 3)
    if not image_shape or shape[0] != n:
        raise CompError(f"{npz_path}: {key}_images has shape {shape}; expected "
                        f"({n}, H, W) or ({n}, H, W, 3) to match {key}_labels")
    if dtype != np.uint8:
        raise CompError(f"{npz_path}: {key}_images must be uint8, got {dtype}")


def _images(data: np.lib.npyio.NpzFile, key: str, n: int, npz_path: Path) -> np.ndarray:
    images = _array(data, f"{key}_images", npz_path)
    _check_images((images.shape, images.dtype), key, n, npz_path)
    return images[..., 0] if images.ndim == 4 and images.shape[-1] == 1 else images


def _write_images(folder: Path, ids: list[str], images: np.ndarray, ext: str) -> None:
    for image_id, image in zip(ids, images):
        if image.ndim == 3:
            image = image[:, :, ::-1]  # RGB → BGR for OpenCV; grayscale stays one channel
        target = folder / f"{image_id}{ext}"
        try:
            written = cv2.imwrite(str(target), np.ascontiguousarray(image))
        except cv2.error as err:
            raise CompError(f"cannot write {target}: {str(err).strip().splitlines()[-1]}") from None
        if not written:
            raise CompError(f"cannot write {target}")


def import_medmnist(npz_path: str | Path, dest: str | Path, *, ext: str = ".png",
                    overwrite: bool = False) -> ImportSummary:
    """Turn a MedMNIST v2 ``.npz`` into a competition folder at ``dest``.

    Writes ``train/`` (train + val images, ids ``train_00000``, ``val_00000``), ``train.csv``
    (id,label,split with split "train" or "valid"), ``test/`` (``test_00000``), ``test.csv``
    (id), ``sample_submission.csv`` (id,label = the most common train+valid class) and
    ``solution.csv`` (id,label). Everything is built in a temp folder beside ``dest`` and
    renamed into place, so a failure leaves no half-made folder. A non-empty ``dest`` is
    refused unless ``overwrite``. Only single-label tasks are supported. ``ext`` picks the
    image format; .png (the default) is lossless, so images round trip exactly.
    """
    npz_path, dest = Path(npz_path), Path(dest)
    ext = ext if ext.startswith(".") else f".{ext}"
    if not cv2.haveImageWriter(f"image{ext}"):
        raise CompError(f"OpenCV cannot write {ext!r} images; use .png (lossless) or .jpg")
    if dest.exists() and not dest.is_dir():
        raise CompError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise CompError(f"{dest} exists and is not empty (use --overwrite to replace it)")
    if dest.resolve() in npz_path.resolve().parents:
        raise CompError(f"{npz_path} is inside {dest}; import into another folder")

    with _open(npz_path) as data:
        labels = {key: _labels(data, key, npz_path) for key, _ in SPLITS}
        for key, _ in SPLITS:  # every array's shape (from its header) is checked before writing
            _check_images(_header(npz_path, f"{key}_images"), key, len(labels[key]), npz_path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = atomic.temp_folder(dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        except OSError as err:
            raise CompError(f"cannot create {dest}: {err.strerror}") from None
        try:
            summary = _build(tmp, data, labels, npz_path, ext)
            _move_into_place(tmp, dest)
        except OSError as err:
            raise CompError(f"cannot write {dest}: {err.strerror or err}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _build(root: Path, data: np.lib.npyio.NpzFile, labels: dict[str, np.ndarray], npz_path: Path,
           ext: str) -> ImportSummary:
    """Write the whole competition folder into ``root``, one split's images in memory at a time."""
    (root / "train").mkdir()
    (root / "test").mkdir()
    frames = {}
    for key, split in SPLITS:
        n = len(labels[key])
        width = max(5, len(str(n - 1)))
        ids = [f"{key}_{i:0{width}d}" for i in range(n)]
        _write_images(root / ("test" if key == "test" else "train"), ids,
                      _images(data, key, n, npz_path), ext)
        frames[split] = pd.DataFrame({"id": ids, "label": labels[key], "split": split})
    train = pd.concat([frames["train"], frames["valid"]], ignore_index=True)
    test = frames["test"]
    class_counts = np.bincount(train["label"].to_numpy(), minlength=1)
    placeholder = int(class_counts.argmax())  # the most common class
    train.to_csv(root / "train.csv", index=False)
    test[["id"]].to_csv(root / "test.csv", index=False)
    test[["id"]].assign(label=placeholder).to_csv(root / "sample_submission.csv", index=False)
    test[["id", "label"]].to_csv(root / "solution.csv", index=False)
    return ImportSummary(counts={split: len(frames[split]) for _, split in SPLITS},
                         class_counts={str(c): int(k) for c, k in enumerate(class_counts) if k})


def _move_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` is set aside first and removed after."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.rename(dest, old / dest.name)
    try:
        os.rename(tmp, dest)
    except OSError:
        os.rename(old / dest.name, dest)  # put the original back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
