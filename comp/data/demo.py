"""The demo competitions: scikit-learn's bundled handwritten digits as real competition folders (the
digits themselves, and 2x2 mosaics of them as multi-label and continuous-target competitions)."""

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


# The kinds of demo competition: the digits themselves (one class per image), or 2x2 mosaics of
# them with the digits shown as tags (Planet's tag lists, or Plant Pathology's one 0/1 column per
# label) or their sum as a continuous target (Pawpularity's layout).
DEMO_KINDS = ("multiclass", "multilabel", "multilabel_cols", "regression")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BLANK_TILE = 0.25  # share of a multi-label mosaic's tiles left blank (so a few rows have no tag at all)


@dataclass(frozen=True)
class DemoSummary:
    dest: Path
    n_train: int
    n_test: int
    num_classes: int  # classes (multiclass) or labels (multi-label); 0 for a continuous target
    kind: str = "multiclass"

    @property
    def what(self) -> str:
        """The targets in words, for the command's one-line report."""
        if self.kind == "regression":
            return "a numeric target (the sum of the four digits of each 2x2 mosaic)"
        if self.kind.startswith("multilabel"):
            return f"{self.num_classes} labels (the digits shown in each 2x2 mosaic)"
        return f"{self.num_classes} classes"


@dataclass(frozen=True)
class _Competition:
    """A demo's content before it is written: images, ids, the split and the four CSVs."""

    images: np.ndarray  # (N, 32, 32, 3) uint8 RGB
    ids: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    tables: dict[str, pd.DataFrame]  # file name: its rows
    num_classes: int


def build_demo(dest: str | Path, seed: int = 0, test_fraction: float = 0.2,
               overwrite: bool = False, kind: str = "multiclass") -> DemoSummary:
    """Write a demo competition (train/, test/, train.csv, test.csv, sample_submission.csv,
    solution.csv) to ``dest``. The same seed gives the same split and the same bytes.

    ``kind``: "multiclass" (the digits, ``id,label``), "multilabel" (2x2 mosaics of digits tagged
    with the digits shown, Planet's ``image_name,tags``), "multilabel_cols" (the same mosaics
    with one 0/1 column per digit, ``image_id,zero,one,...``, as Plant Pathology) or
    "regression" (mosaics whose target is the sum of their four digits, ``Id,target``, as
    Pawpularity).

    The folder is built beside ``dest`` and renamed into place, so an interrupted build never
    leaves a half-made competition. A non-empty ``dest`` is refused (as ``comp import`` does)
    unless ``overwrite``, or unless it holds exactly what an earlier demo wrote.
    """
    from sklearn.datasets import load_digits

    if kind not in DEMO_KINDS:
        raise CompError(f"unknown demo kind {kind!r} (one of {', '.join(DEMO_KINDS)})")
    dest = Path(dest)
    if os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir()):
        raise CompError(f"{dest} exists and is not a folder")
    entries = {e.name for e in dest.iterdir()} if dest.is_dir() else set()
    if entries and entries != DEMO_ENTRIES and not overwrite:
        raise CompError(f"{dest} exists and is not empty (use --overwrite to replace it)")
    digits = load_digits()
    if kind == "multiclass":
        comp = _digits_competition(digits, seed, test_fraction)
    else:
        comp = _mosaic_competition(digits, seed, test_fraction, kind)
    ids, train_idx, test_idx = comp.ids, comp.train_idx, comp.test_idx

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temp_folder(dest.parent, prefix=f".{dest.name}.")
    try:
        for folder, idx in (("train", train_idx), ("test", test_idx)):
            (tmp / folder).mkdir()
            for i in idx:
                # RGB→BGR for OpenCV; the images are grey, but keep the convention honest.
                cv2.imwrite(str(tmp / folder / f"{ids[i]}.png"), comp.images[i][:, :, ::-1])
        for name, frame in comp.tables.items():
            frame.to_csv(tmp / name, index=False)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return DemoSummary(dest, len(train_idx), len(test_idx), comp.num_classes, kind)


def _shuffled_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(n)  # ids carry no hint of the label or the split
    ids = np.empty(n, dtype=object)
    ids[order] = [f"img_{i:04d}" for i in range(n)]
    return ids


def _split(n: int, ids: np.ndarray, test_fraction: float, seed: int,
           stratify: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows, each in id order."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(np.arange(n), test_size=test_fraction,
                                           random_state=seed, stratify=stratify)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return train_idx[np.argsort(ids[train_idx])], test_idx[np.argsort(ids[test_idx])]


def _digits_competition(digits, seed: int, test_fraction: float) -> _Competition:
    """The digits, one class each: ``id,label``."""
    images = _to_rgb(digits.images)
    labels = digits.target.astype(int)
    ids = _shuffled_ids(len(labels), np.random.default_rng(seed))
    train_idx, test_idx = _split(len(labels), ids, test_fraction, seed, labels)
    tables = {
        "train.csv": pd.DataFrame({"id": ids[train_idx], "label": labels[train_idx]}),
        "test.csv": pd.DataFrame({"id": ids[test_idx]}),
        "sample_submission.csv": pd.DataFrame({"id": ids[test_idx], "label": 0}),
        "solution.csv": pd.DataFrame({"id": ids[test_idx], "label": labels[test_idx]}),
    }
    return _Competition(images, ids, train_idx, test_idx, tables, int(labels.max()) + 1)


def _mosaic_competition(digits, seed: int, test_fraction: float, kind: str) -> _Competition:
    """As many 2x2 mosaics as there are digits, each tile a random digit (a multi-label one blank
    now and then), labelled as ``kind`` says."""
    from comp.data.labels import format_tags

    n = len(digits.target)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n, 4))
    shown = rng.random((n, 4)) >= (0.0 if kind == "regression" else BLANK_TILE)
    tiles = digits.images[picks] * shown[:, :, None, None]  # (n, 4, 8, 8)
    mosaics = np.concatenate([np.concatenate([tiles[:, 0], tiles[:, 1]], axis=2),
                              np.concatenate([tiles[:, 2], tiles[:, 3]], axis=2)], axis=1)  # (n, 16, 16)
    images = _to_rgb(mosaics)
    values = digits.target[picks]
    ids = _shuffled_ids(n, rng)
    train_idx, test_idx = _split(n, ids, test_fraction, seed, None)
    if kind == "regression":
        target = (values * shown).sum(axis=1).astype(int)
        baseline = round(float(target[train_idx].mean()), 1)  # the sample's value: the training mean
        tables = {
            "train.csv": pd.DataFrame({"Id": ids[train_idx], "target": target[train_idx]}),
            "test.csv": pd.DataFrame({"Id": ids[test_idx]}),
            "sample_submission.csv": pd.DataFrame({"Id": ids[test_idx], "target": baseline}),
            "solution.csv": pd.DataFrame({"Id": ids[test_idx], "target": target[test_idx]}),
        }
        return _Competition(images, ids, train_idx, test_idx, tables, 0)
    Y = np.zeros((n, 10), dtype=np.int8)
    for k in range(4):  # a digit shown twice is one tag
        Y[np.arange(n), values[:, k]] |= shown[:, k].astype(np.int8)
    if kind == "multilabel":
        names = [str(d) for d in range(10)]
        tags = np.array(format_tags(Y, names), dtype=object)
        tables = {
            "train.csv": pd.DataFrame({"image_name": ids[train_idx], "tags": tags[train_idx]}),
            "test.csv": pd.DataFrame({"image_name": ids[test_idx]}),
            # As Planet's, the sample lists tags in the submission's format.
            "sample_submission.csv": pd.DataFrame({"image_name": ids[test_idx], "tags": " ".join(names[:3])}),
            "solution.csv": pd.DataFrame({"image_name": ids[test_idx], "tags": tags[test_idx]}),
        }
    else:
        cols = list(DIGIT_WORDS)
        tables = {
            "train.csv": pd.DataFrame(Y[train_idx], columns=cols).pipe(_with_id, "image_id", ids[train_idx]),
            "test.csv": pd.DataFrame({"image_id": ids[test_idx]}),
            # As Plant Pathology's, the sample holds one probability column per label.
            "sample_submission.csv": pd.DataFrame(np.full((len(test_idx), 10), 0.5), columns=cols)
            .pipe(_with_id, "image_id", ids[test_idx]),
            "solution.csv": pd.DataFrame(Y[test_idx], columns=cols).pipe(_with_id, "image_id", ids[test_idx]),
        }
    return _Competition(images, ids, train_idx, test_idx, tables, 10)


def _with_id(frame: pd.DataFrame, column: str, ids: np.ndarray) -> pd.DataFrame:
    """``frame`` with an id column first."""
    frame.insert(0, column, ids)
    return frame


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """8×8 (or 16×16 mosaic) intensities 0..16 → 32×32×3 uint8, smoothly upscaled."""
    scaled = np.clip(images * (255.0 / 16.0), 0, 255).astype(np.float32)
    big = np.stack([cv2.resize(im, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
                    for im in scaled])
    big = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return np.repeat(big[..., None], 3, axis=-1)
