"""Decode speed of the formats `comp cache` could store its images in, on this machine's CPU.

    .venv/bin/python benchmarks/cache_formats.py [NPZ] [--size 512] [--images 64] [--repeat 5]

Renders fundus-like images as benchmarks/make_fundus_jpegs.py does (RetinaMNIST upscaled to SIZE
with cubic interpolation, noise sigma 6, black outside the circle), once as they are and once after
``ben_graham`` (what a ``preprocess = "ben_graham"`` cache holds), writes each as PNG (OpenCV's
default compression 1 and level 9), JPEG quality 90 (lossy: for reference only) and raw uint8
``.npy``, then times reading them back as the dataset does (file read + decode to RGB uint8), one
process and one OpenCV thread, from the page cache (every file read once untimed). Prints
images/s, ms per image and mean file size per format.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_fundus_jpegs import load_sources, render  # noqa: E402

from comp.data.images import ben_graham, read_image  # noqa: E402

FORMATS = {  # name: (suffix, imencode params)
    "png (level 1)": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
    "png (level 9)": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]),
    "jpeg q90 (lossy)": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]),
    "npy (raw uint8)": (".npy", None),
}


def write(path: Path, image: np.ndarray, params: list[int] | None) -> int:
    if params is None:
        np.save(path, image)
    else:
        ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        assert ok
        path.write_bytes(buf.tobytes())
    return path.stat().st_size


def read(path: Path) -> np.ndarray:
    return np.load(path) if path.suffix == ".npy" else read_image(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", nargs="?", default="../shared/data/retinamnist.npz")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="timed passes; the best is reported")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    sources = load_sources(args.npz)[0]["train"]
    rng = np.random.default_rng(0)
    plain = [render(sources[i % len(sources)], args.size, rng) for i in range(args.images)]
    kinds = {"fundus": plain, "fundus + ben_graham": [cv2.resize(ben_graham(im), (args.size, args.size),
                                                                 interpolation=cv2.INTER_AREA) for im in plain]}
    print(f"{args.images} images of {args.size} x {args.size} x 3, best of {args.repeat} passes, "
          f"1 process, 1 OpenCV thread")
    print(f"{'images':<22} {'format':<18} {'images/s':>9} {'ms/image':>9} {'KB/image':>9}  lossless")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, images in kinds.items():
            for name, (suffix, params) in FORMATS.items():
                paths = [Path(tmp) / f"{kind[:6]}_{name[:4]}_{params}_{i}{suffix}".replace(" ", "")
                         for i in range(len(images))]
                sizes = [write(p, im, params) for p, im in zip(paths, images)]
                back = [read(p) for p in paths]  # untimed: warms the page cache
                lossless = all(np.array_equal(a, b) for a, b in zip(images, back))
                best = float("inf")
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    for p in paths:
                        read(p)
                    best = min(best, time.perf_counter() - t0)
                print(f"{kind:<22} {name:<18} {len(paths) / best:>9.0f} {1000 * best / len(paths):>9.2f} "
                      f"{np.mean(sizes) / 1024:>9.1f}  {'yes' if lossless else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
