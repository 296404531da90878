"""The demo competitions: scikit-learn's bundled handwritten digits as real competition folders (the
digits themselves, and 2x2 mosaics of them as multi-label and continuous-target competitions)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
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


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BLANK_TILE = 0.25  # share of a multi-label mosaic's tiles left blank (so a few rows have no tag at all)


@dataclass(frozen=True)
class _Competition:
    """A demo's content before it is written: images, ids, the split and the four CSVs."""

    images: np.ndarray  # (N, 32, 32, 3) uint8 RGB
    ids: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    tables: dict[str, pd.DataFrame]  # file name: its rows
    num_classes: int


@dataclass(frozen=True)
class DemoKind:
    """One kind of demo competition: how it is built, where it goes by default, what it holds."""

    build: Callable[..., _Competition]  # (digits, seed, test_fraction) -> its content
    folder: str  # the default destination
    targets: str  # the targets in words; {n}: the number of classes or labels


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
        return DEMOS[self.kind].targets.format(n=self.num_classes)


def demo_kind(kind: str) -> DemoKind:
    """The demo of that name; an unknown one is a :class:`CompError` listing them."""
    if kind not in DEMOS:
        raise CompError(f"unknown demo kind {kind!r} (one of {', '.join(DEMOS)})")
    return DEMOS[kind]


def build_demo(dest: str | Path, seed: int = 0, test_fraction: float = 0.2,
               overwrite: bool = False, kind: str = "multiclass") -> DemoSummary:
    """Write a demo competition (train/, test/, train.csv, test.csv, sample_submission.csv,
    solution.csv) to ``dest``. The same seed gives the same split and the same bytes.

    ``kind`` (:data:`DEMOS`): "multiclass" (the digits, ``id,label``), "multilabel" (2x2 mosaics
    of digits tagged with the digits shown, Planet's ``image_name,tags``), "multilabel_cols" (the
    same mosaics with one 0/1 column per digit, ``image_id,zero,one,...``, as Plant Pathology) or
    "regression" (mosaics whose target is the sum of their four digits, ``Id,target``, as
    Pawpularity).

    The folder is built beside ``dest`` and renamed into place, so an interrupted build never
    leaves a half-made competition. A non-empty ``dest`` is refused (as ``comp import`` does)
    unless ``overwrite``, or unless it holds exactly what an earlier demo wrote.
    """
    from sklearn.datasets import load_digits

    spec = demo_kind(kind)
    dest = Path(dest)
    if os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir()):
        raise CompError(f"{dest} exists and is not a folder")
    entries = {e.name for e in dest.iterdir()} if dest.is_dir() else set()
    if entries and entries != DEMO_ENTRIES and not overwrite:
        raise CompError(f"{dest} exists and is not empty (use --overwrite to replace it)")
    comp = spec.build(load_digits(), seed, test_fraction)
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


@dataclass(frozen=True)
class _Mosaics:
    """2x2 mosaics of random digits: the images, the digit of each tile and whether it is shown."""

    images: np.ndarray
    ids: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    digits: np.ndarray  # (n, 4)
    shown: np.ndarray  # (n, 4) bool

    def tags(self) -> np.ndarray:
        """``(n, 10)`` 0/1: which digits each mosaic shows (a digit shown twice is one tag)."""
        Y = np.zeros((len(self.digits), 10), dtype=np.int8)
        for k in range(4):
            Y[np.arange(len(Y)), self.digits[:, k]] |= self.shown[:, k].astype(np.int8)
        return Y

    def competition(self, tables: dict[str, pd.DataFrame], num_classes: int) -> _Competition:
        return _Competition(self.images, self.ids, self.train_idx, self.test_idx, tables, num_classes)


def _mosaics(digits, seed: int, test_fraction: float, blank: float) -> _Mosaics:
    """As many 2x2 mosaics as there are digits, each tile a random digit, blank with probability
    ``blank``; the same seed draws the same tiles whatever ``blank`` is."""
    n = len(digits.target)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n, 4))
    shown = rng.random((n, 4)) >= blank
    tiles = digits.images[picks] * shown[:, :, None, None]  # (n, 4, 8, 8)
    mosaics = np.concatenate([np.concatenate([tiles[:, 0], tiles[:, 1]], axis=2),
                              np.concatenate([tiles[:, 2], tiles[:, 3]], axis=2)], axis=1)  # (n, 16, 16)
    ids = _shuffled_ids(n, rng)
    train_idx, test_idx = _split(n, ids, test_fraction, seed, None)
    return _Mosaics(_to_rgb(mosaics), ids, train_idx, test_idx, digits.target[picks], shown)


def _tags_competition(digits, seed: int, test_fraction: float) -> _Competition:
    """Mosaics tagged with the digits shown, as Planet's ``image_name,tags``."""
    from comp.data.labels import format_tags

    m = _mosaics(digits, seed, test_fraction, BLANK_TILE)
    names = [str(d) for d in range(10)]
    tags = np.array(format_tags(m.tags(), names), dtype=object)
    train, test = m.train_idx, m.test_idx
    return m.competition({
        "train.csv": pd.DataFrame({"image_name": m.ids[train], "tags": tags[train]}),
        "test.csv": pd.DataFrame({"image_name": m.ids[test]}),
        # As Planet's, the sample lists tags in the submission's format.
        "sample_submission.csv": pd.DataFrame({"image_name": m.ids[test], "tags": " ".join(names[:3])}),
        "solution.csv": pd.DataFrame({"image_name": m.ids[test], "tags": tags[test]}),
    }, len(names))


def _columns_competition(digits, seed: int, test_fraction: float) -> _Competition:
    """The same mosaics with one 0/1 column per digit, as Plant Pathology's ``image_id,healthy,...``."""
    m = _mosaics(digits, seed, test_fraction, BLANK_TILE)
    Y, cols = m.tags(), list(DIGIT_WORDS)
    train, test = m.train_idx, m.test_idx

    def table(values: np.ndarray, idx: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(values, columns=cols)
        frame.insert(0, "image_id", m.ids[idx])
        return frame

    return m.competition({
        "train.csv": table(Y[train], train),
        "test.csv": pd.DataFrame({"image_id": m.ids[test]}),
        # As Plant Pathology's, the sample holds one probability column per label.
        "sample_submission.csv": table(np.full((len(test), len(cols)), 0.5), test),
        "solution.csv": table(Y[test], test),
    }, len(cols))


def _sum_competition(digits, seed: int, test_fraction: float) -> _Competition:
    """Mosaics of four digits (none blank) whose target is their sum, as Pawpularity's ``Id,target``."""
    m = _mosaics(digits, seed, test_fraction, 0.0)
    target = m.digits.sum(axis=1).astype(int)
    train, test = m.train_idx, m.test_idx
    baseline = round(float(target[train].mean()), 1)  # the sample's value: the training mean
    return m.competition({
        "train.csv": pd.DataFrame({"Id": m.ids[train], "target": target[train]}),
        "test.csv": pd.DataFrame({"Id": m.ids[test]}),
        "sample_submission.csv": pd.DataFrame({"Id": m.ids[test], "target": baseline}),
        "solution.csv": pd.DataFrame({"Id": m.ids[test], "target": target[test]}),
    }, 0)


# The demo competitions: the digits themselves (one class per image), or 2x2 mosaics of them with
# the digits shown as tags (Planet's tag lists, or Plant Pathology's one 0/1 column per label) or
# their sum as a continuous target (Pawpularity's layout).
DEMOS = {
    "multiclass": DemoKind(_digits_competition, "data/digits", "{n} classes"),
    "multilabel": DemoKind(_tags_competition, "data/digits_multilabel",
                           "{n} labels (the digits shown in each 2x2 mosaic)"),
    "multilabel_cols": DemoKind(_columns_competition, "data/digits_multilabel_cols",
                                "{n} labels (the digits shown in each 2x2 mosaic, one column each)"),
    "regression": DemoKind(_sum_competition, "data/digits_regression",
                           "a numeric target (the sum of the four digits of each 2x2 mosaic)"),
}
DEMO_KINDS = tuple(DEMOS)


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """8×8 (or 16×16 mosaic) intensities 0..16 → 32×32×3 uint8, smoothly upscaled."""
    scaled = np.clip(images * (255.0 / 16.0), 0, 255).astype(np.float32)
    big = np.stack([cv2.resize(im, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
                    for im in scaled])
    big = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return np.repeat(big[..., None], 3, axis=-1)
