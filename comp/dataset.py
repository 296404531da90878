"""The torch Dataset over an :class:`~comp.table.ImageTable`, and its DataLoader."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from comp.images import ben_graham, read_image
from comp.recipe import TrainConfig
from comp.table import ImageTable


class ImageDataset(Dataset):
    """Reads each image with OpenCV (RGB uint8), preprocesses, and applies the transform.

    Items are ``(image tensor, class index)``; unlabelled tables yield class index -1.
    """

    def __init__(self, table: ImageTable, transform: Callable, preprocess: str = "none"):
        self.table = table
        self.transform = transform
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.table)

    def load(self, index: int) -> np.ndarray:
        """The preprocessed RGB image before augmentation."""
        image = read_image(self.table.paths[index])
        if self.preprocess == "ben_graham":
            image = ben_graham(image)
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=self.load(index))["image"]
        label = -1 if self.table.labels is None else int(self.table.labels[index])
        return image, label


def resolve_workers(requested: int) -> int:
    """-1 means one worker per core this process may use."""
    if requested >= 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def balanced_sampler(labels: np.ndarray, num_classes: int, seed: int) -> Sampler:
    """Draws every class equally often in expectation (weights 1/n_class per row)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = 1.0 / counts[labels]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(labels), replacement=True,
                                 generator=generator)


def _worker_init(_: int) -> None:
    import cv2

    # OpenCV's own thread pool fights the DataLoader's processes for the same cores.
    cv2.setNumThreads(0)


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, train_cfg: TrainConfig,
                device: torch.device, seed: int, sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with the recipe's workers, pinned memory on CUDA, and a seeded shuffle."""
    workers = resolve_workers(train_cfg.workers)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) > batch_size,  # a batch of 1 breaks BatchNorm
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=generator,
    )

