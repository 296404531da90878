"""``comp import medmnist``: a MedMNIST v2 ``.npz`` as a competition folder.

The official validation rows join train.csv marked ``split = valid``, so a recipe can use them
as a predefined fold (``[cv] scheme = "predefined"``, ``split_col = "split"``) or cross-validate
over train + valid together; the test labels go to solution.csv for local scoring only.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from comp.errors import CompError

SPLITS = (("train", "train"), ("val", "valid"), ("test", "test"))


@dataclass(frozen=True)
class ImportSummary:
    counts: dict[str, int]  # rows per split: train, valid, test
    class_counts: dict[str, int]  # over train + valid

    def __str__(self) -> str:
        rows = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        classes = ", ".join(f"{k}: {v}" for k, v in self.class_counts.items())
        return f"{rows} images; classes in train+valid {{{classes}}}"


def _arrays(npz_path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not npz_path.is_file():
        raise CompError(f"file not found: {npz_path}")
    try:
        data = np.load(npz_path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise CompError(f"cannot read {npz_path} as a .npz file: {err}") from None
    with data:
        out = {}
        for key, _ in SPLITS:
            for part in ("images", "labels"):
                if f"{key}_{part}" not in data.files:
                    raise CompError(f"{npz_path}: missing array {key}_{part} (has {', '.join(data.files)})")
            images, labels = data[f"{key}_images"], data[f"{key}_labels"]
            if labels.ndim == 2 and labels.shape[1] > 1:
                raise CompError(f"{npz_path}: {key}_labels has {labels.shape[1]} columns; only "
                                f"single-label tasks are supported (not multi-label)")
            labels = labels.reshape(-1).astype(np.int64)
            if images.ndim not in (3, 4) or len(images) != len(labels):
                raise CompError(f"{npz_path}: {key}_images shape {images.shape} does not fit "
                                f"{len(labels)} labels")
            if images.dtype != np.uint8:
                raise CompError(f"{npz_path}: {key}_images must be uint8, got {images.dtype}")
            out[key] = (images, labels)
    return out


def import_medmnist(npz_path: str | Path, dest: str | Path, *, ext: str = ".png",
                    overwrite: bool = False) -> ImportSummary:
    """Write train/, test/, train.csv (id,label,split), test.csv, sample_submission.csv and
    solution.csv to ``dest``; built beside it and renamed into place, so never half-made."""
    npz_path, dest = Path(npz_path), Path(dest)
    arrays = _arrays(npz_path)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise CompError(f"{dest} exists and is not empty (use --overwrite)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        (tmp / "train").mkdir()
        (tmp / "test").mkdir()
        frames = {}
        for key, split in SPLITS:
            images, labels = arrays[key]
            folder = tmp / ("test" if key == "test" else "train")
            ids = [f"{key}_{i:05d}" for i in range(len(labels))]
            for i, image in zip(ids, images):
                if image.ndim == 3 and image.shape[-1] == 3:
                    image = image[:, :, ::-1]  # RGB → BGR for OpenCV
                if not cv2.imwrite(str(folder / f"{i}{ext}"), np.ascontiguousarray(image)):
                    raise CompError(f"cannot write {folder / f'{i}{ext}'}")
            frames[split] = pd.DataFrame({"id": ids, "label": labels, "split": split})
        train = pd.concat([frames["train"], frames["valid"]], ignore_index=True)
        train.to_csv(tmp / "train.csv", index=False)
        test = frames["test"]
        test[["id"]].to_csv(tmp / "test.csv", index=False)
        majority = int(np.bincount(train["label"]).argmax())
        test[["id"]].assign(label=majority).to_csv(tmp / "sample_submission.csv", index=False)
        test[["id", "label"]].to_csv(tmp / "solution.csv", index=False)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {split: len(frames[split]) for _, split in SPLITS}
    class_counts = {str(c): int(n) for c, n in enumerate(np.bincount(train["label"])) if n}
    return ImportSummary(counts, class_counts)
