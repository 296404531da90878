"""Shared fixtures: a tiny, learnable competition written by the tests themselves."""

from __future__ import annotations

import os

# One intra-op thread per test process: `make test` runs pytest-xdist workers, one per core, and
# the tiny models gain nothing from more threads (two threads per worker on two cores made steps
# several times slower). Set before torch is imported, so the fits the tests start in child
# processes compute with the same thread count as those in the test process.
os.environ["OMP_NUM_THREADS"] = "1"

import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)

COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "eel": (40, 40, 220)}


def write_competition(root: Path, n_train: int = 36, n_test: int = 9, size: int = 16,
                      seed: int = 0) -> Path:
    """Images whose class is their dominant colour, plus noise; string labels on purpose."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()

    def image(label: str) -> np.ndarray:
        base = np.array(COLOURS[label], dtype=np.float64)
        img = base + rng.normal(0, 25, size=(size, size, 3))
        return np.clip(img, 0, 255).astype(np.uint8)

    train_labels = [names[i % 3] for i in range(n_train)]
    test_labels = [names[i % 3] for i in range(n_test)]
    train_ids = [f"tr{i:03d}" for i in range(n_train)]
    test_ids = [f"te{i:03d}" for i in range(n_test)]
    for folder, ids, labels in (("train", train_ids, train_labels), ("test", test_ids, test_labels)):
        for i, lab in zip(ids, labels):
            cv2.imwrite(str(root / folder / f"{i}.png"), image(lab)[:, :, ::-1])
    pd.DataFrame({"id": train_ids, "label": train_labels}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": test_ids}).to_csv(root / "test.csv", index=False)
    # The sample lists ids in another order than test.csv, as real ones may.
    pd.DataFrame({"id": test_ids[::-1], "label": "cat"}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": test_ids, "label": test_labels}).to_csv(root / "solution.csv", index=False)
    return root


def write_recipe(path: Path, data_root: Path, extra: str = "") -> Path:
    """A recipe for the tiny competition: small model input, two quick epochs, no workers."""
    path.write_text(textwrap.dedent(f"""\
        name = "tiny"
        seed = 1

        [data]
        root = "{data_root}"

        [model]
        name = "test_resnet"

        [augment]
        size = 32
        hflip = 0.5

        [optim]
        lr = 0.003

        [train]
        epochs = 2
        batch_size = 8
        workers = 0
        monitor = "accuracy"
        """) + textwrap.dedent(extra))
    return path


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return write_competition(tmp_path / "comp")


@pytest.fixture
def recipe_file(tmp_path: Path, competition: Path) -> Path:
    return write_recipe(tmp_path / "tiny.toml", competition)
