"""The torch Dataset over an :class:`~comp.data.table.ImageTable`, its sampler, collate and DataLoader
(which transform and which options: :mod:`comp.data.pipeline`)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from comp.data.augment import resize_step
from comp.data.cache import cached_paths, read_cached
from comp.data.images import JPEG_SUFFIXES, decode_preprocessed, decode_reduction, jpeg_decodable_as_is
from comp.data.table import ImageTable
from comp.data.workers import resolve_workers
from comp.recipe import TrainConfig


class ImageDataset(Dataset):
    """Reads each image with OpenCV (RGB uint8), preprocesses, and applies the transform.

    Items are ``(image, class index)``, the image a uint8 ``H x W x 3`` tensor as the transform
    leaves it (conversion to float, normalisation and memory format happen on the device:
    :class:`comp.data.prepare.BatchPrep`); unlabelled tables yield class index -1, a table with
    soft labels (``targets``: extra rows) its row of class probabilities, a float32 tensor. An item
    asked for as ``(index, seed)`` (what :class:`EpochSampler` yields) is augmented with that
    seed, so augmentation depends on the seed alone, not on which worker drew the item.

    Two shortcuts keep decoding cheap, both keyed on the size the transform's Resize produces:

    * ``cache``: a complete ``comp cache`` of that size and preprocessing (see
      :mod:`comp.data.cache`) is read instead of the sources; its images are already preprocessed
      and resized, so neither step runs again.
    * ``reduced_decode``: a JPEG at least twice the target size (twice again with
      ``ben_graham``, whose crop to the eye may drop much of the frame) is decoded at 1/2,
      1/4 or 1/8 scale natively by libjpeg, several times faster than a full decode and a
      shrink. The size comes from each ``.jpg``/``.jpeg`` file's header (a few bytes, read per
      image, so folders of mixed sizes are handled). Other formats decode at full size:
      OpenCV's reduced flags only shrink after decoding, and convert 16-bit and alpha otherwise.

    ``raw`` (JPEGs decoded on the device, :func:`comp.data.pipeline.device_decode`): a JPEG that
    decodes as it is (:func:`~comp.data.images.jpeg_decodable_as_is`) and has no cached copy is
    shipped as its file's bytes, a 1-d uint8 tensor, and resized on the device; other images are
    read as usual. Only for a transform that is a Resize alone and no preprocessing.
    """

    def __init__(self, table: ImageTable, transform: Callable, preprocess: str = "none", *,
                 cache: bool = True, reduced_decode: bool = True, raw: bool = False):
        self.table = table
        self.transform = transform
        self.preprocess = preprocess
        steps = list(getattr(transform, "transforms", ()))
        if raw and (preprocess != "none" or len(steps) != 1 or resize_step(transform) is not steps[0]):
            raise ValueError("raw JPEG bytes are only shipped for a Resize-only transform without preprocessing")
        self.raw = raw
        resize = resize_step(transform)
        self.size = None if resize is None else min(resize.height, resize.width)
        self.reduced_decode = reduced_decode and self.size is not None
        square = resize is not None and resize.height == resize.width
        self.cached = cached_paths(table.paths, self.size, preprocess) if cache and square else None

    def __len__(self) -> int:
        return len(self.table)

    def decode_reduce(self, path: str) -> int:
        """The ``read_image`` reduction for ``path``: 1 unless it is a large enough JPEG."""
        return decode_reduction(path, self.size, self.preprocess) if self.reduced_decode else 1

    def _cached(self, index: int) -> str | None:
        return None if self.cached is None else self.cached[index]

    def source(self, index: int) -> str:
        """The file ``load`` reads for row ``index``: its cached copy or the image itself."""
        return self._cached(index) or str(self.table.paths[index])

    def load(self, index: int) -> np.ndarray:
        """The preprocessed RGB image before augmentation (from the cache: also resized)."""
        cached = self._cached(index)
        if cached is not None:
            return read_cached(cached, self.size)  # preprocessed already: never ben_graham twice
        path = self.table.paths[index]
        return decode_preprocessed(path, self.decode_reduce(path), self.preprocess)

    def jpeg_bytes(self, index: int) -> torch.Tensor | None:
        """Row ``index``'s JPEG file as a 1-d uint8 tensor when ``raw`` allows it, else None."""
        if not self.raw or self._cached(index) is not None:
            return None
        path = str(self.table.paths[index])
        if not path.lower().endswith(JPEG_SUFFIXES):
            return None
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError:
            return None  # load() says what is wrong with the file
        return torch.from_numpy(data) if jpeg_decodable_as_is(data[:262144].tobytes()) else None

    def decode_key(self, index: int) -> tuple:
        """What ``load(index)`` depends on: rows (of datasets over one table) with equal keys load
        the same array (:class:`SharedDecodeDataset` decodes it once)."""
        cached = self._cached(index)
        if cached is not None:
            return ("cache", cached)
        path = str(self.table.paths[index])
        return (path, self.decode_reduce(path), self.preprocess)

    def ship(self, image: np.ndarray, seed: int | None = None) -> torch.Tensor:
        """A loaded image through the transform, as a uint8 ``H x W x 3`` tensor."""
        if seed is not None:
            self.transform.set_random_seed(seed)
        image = self.transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image

    def image(self, index: int, seed: int | None = None) -> torch.Tensor:
        """Row ``index`` as the workers ship it: uint8 ``H x W x 3`` (or JPEG bytes, see ``raw``)."""
        data = self.jpeg_bytes(index)
        return data if data is not None else self.ship(self.load(index), seed)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int | torch.Tensor]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        if self.table.targets is not None:
            return self.image(index, seed), torch.from_numpy(self.table.targets[index])
        label = -1 if self.table.labels is None else int(self.table.labels[index])
        return self.image(index, seed), label


class SharedDecodeDataset(Dataset):
    """Several :class:`ImageDataset` over one table (``comp predict``'s runs: each its input size
    and preprocessing), read together: item ``i`` is ``(tuple of images, label)``, one image per
    dataset as that dataset ships it, and a file that several of them load alike
    (:meth:`ImageDataset.decode_key`) is decoded once."""

    def __init__(self, datasets: list[ImageDataset]):
        if not datasets or any(len(d) != len(datasets[0]) for d in datasets):
            raise ValueError("SharedDecodeDataset needs datasets over the same rows")
        self.datasets = datasets
        self.table = datasets[0].table

    def __len__(self) -> int:
        return len(self.datasets[0])

    def __getitem__(self, index: int) -> tuple[tuple[torch.Tensor, ...], int]:
        loaded: dict[tuple, np.ndarray] = {}
        images = []
        for ds in self.datasets:
            data = ds.jpeg_bytes(index)
            if data is None:
                key = ds.decode_key(index)
                if key not in loaded:
                    loaded[key] = ds.load(index)
                data = ds.ship(loaded[key])
            images.append(data)
        label = -1 if self.table.labels is None else int(self.table.labels[index])
        return tuple(images), label


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


CPU_WORKER_NICE = 19


def _worker_init(_: int, nice: int = 0) -> None:
    import cv2

    # Ctrl-C reaches the whole process group: the main process handles it (fit finishes its step
    # and saves last.pt, then shuts the workers down). A forked worker would otherwise run the
    # parent's handler too and print its message once per worker.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # OpenCV's own thread pool fights the DataLoader's processes for the same cores.
    cv2.setNumThreads(0)
    if nice:
        # Training on the CPU, the step's OpenMP threads already use every core, and a worker
        # that preempts one stalls the whole parallel region. At low priority the workers run in
        # the step's gaps instead, and still get every core whenever the step waits for data.
        # (comp bench, RetinaMNIST at 64 px, 2 cores: full step / bare step ~0.90 -> ~0.96.)
        with contextlib.suppress(OSError):
            os.nice(nice)


def _stack_or_list(images: list[Any]) -> Any:
    first = images[0]
    if isinstance(first, torch.Tensor) and first.ndim == 3 and all(t.shape == first.shape for t in images):
        return default_collate(images)  # in a worker: straight into shared memory
    if isinstance(first, torch.Tensor):
        return images
    return default_collate(images)


def collate_images(batch: list[Any]) -> Any:
    """The loaders' collate: ``(image, label)`` items whose images share a shape stack into one
    ``(N, H, W, 3)`` tensor; otherwise (JPEG bytes for the device, mixed sizes) the images stay
    a list. An item's image may be a tuple (one per input spec: ``comp predict``'s runs of
    different sizes), collated position by position. Other items: ``default_collate``."""
    first = batch[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2):
        return default_collate(batch)
    image = first[0]
    labels = default_collate([item[1] for item in batch])
    if isinstance(image, torch.Tensor):
        return _stack_or_list([item[0] for item in batch]), labels
    if isinstance(image, tuple) and image and all(isinstance(t, torch.Tensor) for t in image):
        return tuple(_stack_or_list([item[0][k] for item in batch]) for k in range(len(image))), labels
    return default_collate(batch)


def make_loader(dataset: Dataset, batch_size: int, *, train_cfg: TrainConfig, device: torch.device,
                sampler: Sampler | None = None) -> DataLoader:
    """A DataLoader with the recipe's workers and pinned memory on CUDA; on the CPU the
    workers run at low priority, so that loading never preempts the training step.

    Training passes an :class:`EpochSampler` (shuffled, seeded, last partial batch dropped);
    evaluation passes none and reads rows in order.
    """
    workers = resolve_workers(train_cfg.workers)
    train = sampler is not None
    init = functools.partial(_worker_init, nice=CPU_WORKER_NICE if device.type == "cpu" else 0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=train and len(sampler) > batch_size,  # a batch of 1 breaks BatchNorm
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=init if workers > 0 else None,
        collate_fn=collate_images,
    )

