"""Build the 512-px fundus-like JPEG competition folder that `comp bench` is measured on.

    .venv/bin/python benchmarks/make_fundus_jpegs.py [NPZ [DEST]] [--train 4096] [--test 1024]
        [--size 512] [--seed 0] [--workers N] [--overwrite]

RetinaMNIST images (NPZ: train_images/val_images/test_images (N, 28, 28, 3) uint8 RGB and
*_labels (N, 1)) are upscaled to SIZE x SIZE with cubic interpolation, given Gaussian noise
(sigma 6), blacked out beyond a circle of radius 0.47 x SIZE, and written as JPEG quality 90
(about 45 KB each at 512 px). Train rows cycle through the train + val images, test rows through
the test images; each row has its own noise, seeded by (seed, split, row), so the folder is the
same whatever --workers. DEST gets the `image,level` layout of the 2015 retinopathy competition:
train.csv (image,level), test.csv (image), sample_submission.csv (image,level),
solution.csv (image,level), train/<image>.jpeg, test/<image>.jpeg.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

NOISE_SIGMA = 6.0
RADIUS = 0.47  # of the size
QUALITY = 90
SPLITS = {"train": 0, "test": 1}

_SOURCE: dict[str, np.ndarray] = {}  # per worker: split -> source images


def _init_worker(npz: str) -> None:
    cv2.setNumThreads(1)
    _SOURCE.update(load_sources(npz)[0])


def load_sources(npz: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(images, labels) per output split: train from train + val, test from test."""
    with np.load(npz) as d:
        images = {"train": np.concatenate([d["train_images"], d["val_images"]]), "test": d["test_images"]}
        labels = {"train": np.concatenate([d["train_labels"], d["val_labels"]]).ravel(),
                  "test": d["test_labels"].ravel()}
    for split, arr in images.items():
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
            raise ValueError(f"{npz}: {split} images must be non-empty (N, H, W, 3) uint8, "
                             f"got {arr.shape} {arr.dtype}")
    return images, {k: v.astype(np.int64) for k, v in labels.items()}


def render(source: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One fundus-like RGB uint8 image: cubic upscale, Gaussian noise, black outside the circle."""
    image = cv2.resize(source.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, NOISE_SIGMA, image.shape).astype(np.float32)
    yy, xx = np.ogrid[:size, :size]
    centre = (size - 1) / 2
    image[(yy - centre) ** 2 + (xx - centre) ** 2 > (RADIUS * size) ** 2] = 0
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _write(job: tuple[str, int, int, str, int, int]) -> int:
    """Render and write one row's JPEG; its size in bytes."""
    split, row, source_index, path, size, seed = job
    rng = np.random.default_rng([seed, SPLITS[split], row])
    image = render(_SOURCE[split][source_index], size, rng)
    ok, buf = cv2.imencode(".jpeg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    Path(path).write_bytes(buf.tobytes())
    return len(buf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", nargs="?", default="../shared/data/retinamnist.npz", help="RetinaMNIST .npz")
    parser.add_argument("dest", nargs="?", default="data/fundus512", help="the competition folder to write")
    parser.add_argument("--train", type=int, default=4096, help="train rows")
    parser.add_argument("--test", type=int, default=1024, help="test rows")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing JPEGs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder's CSVs and images")
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1 or args.size < 8 or args.workers < 1:
        parser.error("--train, --test and --workers must be >= 1, --size >= 8")

    dest = Path(args.dest)
    parts = ("train", "test", "train.csv", "test.csv", "sample_submission.csv", "solution.csv")
    outputs = [dest / n for n in parts]
    if any(p.exists() for p in outputs):
        if not args.overwrite:
            print(f"{dest} already holds a competition; pass --overwrite to replace it", file=sys.stderr)
            return 2
        for p in outputs:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    images, labels = load_sources(args.npz)

    tables, jobs = {}, []
    for split, rows in (("train", args.train), ("test", args.test)):
        (dest / split).mkdir(parents=True, exist_ok=True)
        prefix = "tr" if split == "train" else "te"
        names = [f"{prefix}_{row:05d}" for row in range(rows)]
        sources = np.arange(rows) % len(images[split])  # cycle; repeats differ by their noise
        tables[split] = pd.DataFrame({"image": names, "level": labels[split][sources]})
        jobs += [(split, row, int(s), str(dest / split / f"{name}.jpeg"), args.size, args.seed)
                 for row, (name, s) in enumerate(zip(names, sources))]

    start = time.perf_counter()
    if args.workers == 1:
        _init_worker(args.npz)
        sizes = [_write(job) for job in jobs]
    else:
        with mp.get_context("spawn").Pool(args.workers, _init_worker, (args.npz,)) as pool:
            sizes = pool.map(_write, jobs, chunksize=max(1, len(jobs) // (8 * args.workers)))
    elapsed = time.perf_counter() - start

    tables["train"].to_csv(dest / "train.csv", index=False)
    tables["test"][["image"]].to_csv(dest / "test.csv", index=False)
    tables["test"].assign(level=0).to_csv(dest / "sample_submission.csv", index=False)
    tables["test"].to_csv(dest / "solution.csv", index=False)
    sizes = np.asarray(sizes)
    print(f"{dest}: {args.train} train + {args.test} test JPEGs at {args.size} px in {elapsed:.1f} s "
          f"({len(sizes) / elapsed:.0f}/s, {args.workers} workers); mean {sizes.mean() / 1024:.1f} KB "
          f"(min {sizes.min() / 1024:.1f}, max {sizes.max() / 1024:.1f}), total {sizes.sum() / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
