"""The demo competition: scikit-learn's bundled handwritten digits as a real competition folder."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from comp import atomic
from comp.errors import CompError

IMAGE_SIZE = 32
# What build_demo writes: a folder holding exactly these is an earlier demo, rebuilt in place.
DEMO_ENTRIES = frozenset({"train", "test", "train.csv", "test.csv", "sample_submission.csv", "solution.csv"})


@dataclass(frozen=True)
class DemoSummary:
    dest: Path
    n_train: int
    n_test: int
    num_classes: int


def build_demo(dest: str | Path, seed: int = 0, test_fraction: float = 0.2,
               overwrite: bool = False) -> DemoSummary:
    """Write the digits competition (train/, test/, train.csv, test.csv, sample_submission.csv,
    solution.csv) to ``dest``. The same seed gives the same split and the same bytes.

    The folder is built beside ``dest`` and renamed into place, so an interrupted build never
    leaves a half-made competition. A non-empty ``dest`` is refused (as ``comp import`` does)
    unless ``overwrite``, or unless it holds exactly what an earlier demo wrote.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    dest = Path(dest)
    if os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir()):
        raise CompError(f"{dest} exists and is not a folder")
    entries = {e.name for e in dest.iterdir()} if dest.is_dir() else set()
    if entries and entries != DEMO_ENTRIES and not overwrite:
        raise CompError(f"{dest} exists and is not empty (use --overwrite to replace it)")
    digits = load_digits()
    images = _to_rgb(digits.images)
    labels = digits.target.astype(int)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))  # ids carry no hint of the label or the split
    ids = np.empty(len(labels), dtype=object)
    ids[order] = [f"img_{i:04d}" for i in range(len(labels))]
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    train_idx = train_idx[np.argsort(ids[train_idx])]
    test_idx = test_idx[np.argsort(ids[test_idx])]

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temp_folder(dest.parent, prefix=f".{dest.name}.")
    try:
        for folder, idx in (("train", train_idx), ("test", test_idx)):
            (tmp / folder).mkdir()
            for i in idx:
                # RGB→BGR for OpenCV; the images are grey, but keep the convention honest.
                cv2.imwrite(str(tmp / folder / f"{ids[i]}.png"), images[i][:, :, ::-1])
        pd.DataFrame({"id": ids[train_idx], "label": labels[train_idx]}).to_csv(tmp / "train.csv", index=False)
        pd.DataFrame({"id": ids[test_idx]}).to_csv(tmp / "test.csv", index=False)
        pd.DataFrame({"id": ids[test_idx], "label": 0}).to_csv(tmp / "sample_submission.csv", index=False)
        pd.DataFrame({"id": ids[test_idx], "label": labels[test_idx]}).to_csv(tmp / "solution.csv", index=False)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return DemoSummary(dest, len(train_idx), len(test_idx), int(labels.max()) + 1)


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """8×8 intensities 0..16 → 32×32×3 uint8, smoothly upscaled."""
    scaled = np.clip(images * (255.0 / 16.0), 0, 255).astype(np.float32)
    big = np.stack([cv2.resize(im, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
                    for im in scaled])
    big = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return np.repeat(big[..., None], 3, axis=-1)
