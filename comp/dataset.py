"""The torch Dataset over an :class:`~comp.table.ImageTable`, and its DataLoader."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from comp.images import ben_graham, read_image
from comp.recipe import TrainConfig
from comp.table import ImageTable


class ImageDataset(Dataset):
    """Reads each image with OpenCV (RGB uint8), preprocesses, and applies the transform.

    Items are ``(image tensor, class index)``; unlabelled tables yield class index -1. An item
    asked for as ``(index, seed)`` (what :class:`EpochSampler` yields) is augmented with that
    seed, so augmentation depends on the seed alone, not on which worker drew the item.
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

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if seed is not None:
            self.transform.set_random_seed(seed)
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


class EpochSampler(Sampler):
    """Training order and per-item augmentation seeds as pure functions of (seed, epoch).

    Nothing carries over from one epoch to the next, so a resumed run draws exactly what an
    uninterrupted one would, with any number of workers. ``weights`` draws rows with
    replacement in proportion to them (a class-balanced sampler); ``rank``/``world_size`` give
    each distributed process its own share of the same permutation.
    """

    def __init__(self, n: int, seed: int, *, weights: np.ndarray | None = None, rank: int = 0,
                 world_size: int = 1):
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Draw epoch ``epoch``'s order, skipping its first ``start`` items (a mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self._share() - self.start

    def _share(self) -> int:
        return -(-self.n // self.world_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
        seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=g)
        total = self._share() * self.world_size  # pad by wrapping so every rank gets as many
        order, seeds = order.repeat(2)[:total], seeds.repeat(2)[:total]
        mine = slice(self.rank, total, self.world_size)
        pairs = list(zip(order[mine].tolist(), seeds[mine].tolist()))
        return iter(pairs[self.start:])


def balanced_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Row weights 1/n_class: every class is drawn equally often in expectation."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return 1.0 / counts[labels]


def _worker_init(_: int) -> None:
    import cv2

    # OpenCV's own thread pool fights the DataLoader's processes for the same cores.
    cv2.setNumThreads(0)


def make_loader(dataset: Dataset, batch_size: int, *, train_cfg: TrainConfig, device: torch.device,
                sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with the recipe's workers and pinned memory on CUDA.

    Training passes an :class:`EpochSampler` (shuffled, seeded, last partial batch dropped);
    evaluation passes none and reads rows in order.
    """
    workers = resolve_workers(train_cfg.workers)
    train = sampler is not None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train and len(sampler) > batch_size,  # a batch of 1 breaks BatchNorm
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
    )

