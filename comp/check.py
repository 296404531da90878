"""``comp check``: the data pass that runs before any training or prediction.

Columns, ids and labels are checked by the table loaders; here every referenced image is
opened and decoded (in parallel threads: OpenCV releases the GIL), and all problems are
reported together, so a bad data set fails in seconds rather than an hour into a fit.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from comp.dataset import resolve_workers
from comp.errors import CompError
from comp.images import ImageReadError
from comp.recipe import Recipe
from comp.table import ClassMap, ImageTable, Problems, load_test_table, load_train_table


@dataclass(frozen=True)
class BadImage:
    id: str
    path: str
    reason: str  # "missing" or "undecodable"


@dataclass
class DataReport:
    """What the check found: row counts, classes, image sizes and the unreadable images."""

    train_rows: int
    test_rows: int
    classes: ClassMap
    declared: bool
    class_counts: dict[str, int]
    heights: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    channels: set[int] = field(default_factory=set)
    bad: list[BadImage] = field(default_factory=list)

    @property
    def imbalance(self) -> float:
        counts = [c for c in self.class_counts.values() if c]
        return max(counts) / min(counts) if counts else float("nan")


def probe_image(path: str) -> tuple[int, int, int]:
    """(height, width, channels as stored) of an image that decodes; raises ImageReadError."""
    p = Path(path)
    if not p.is_file():
        raise ImageReadError(f"image file missing: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(f"cannot decode image {path}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    return image.shape[0], image.shape[1], channels


def check_data(recipe: Recipe, *, train: bool = True, test: bool = True, skip_bad: bool = False,
               workers: int = -1,
               progress: bool = True, log: Callable[[str], None] = print) -> DataReport:
    """Check the competition a recipe points at; one CompError lists every problem found
    (ids, labels and images of train and test together).

    With ``skip_bad``, missing or undecodable images are listed in a warning (and in the
    report, for :func:`drop_bad`) instead of failing the check.
    """
    problems = Problems()
    tables: dict[str, ImageTable] = {}
    classes = ClassMap(tuple(recipe.data.classes))
    if train:
        tables["train"], classes = load_train_table(recipe, problems)
    if test:
        tables["test"] = load_test_table(recipe, problems)
    ids = np.concatenate([t.ids for t in tables.values()])
    paths = np.concatenate([t.paths for t in tables.values()])
    labels = tables["train"].labels if train else np.zeros(0, dtype=np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=len(classes))
    report = DataReport(train_rows=len(labels), test_rows=len(tables["test"]) if test else 0,
                        classes=classes, declared=bool(recipe.data.classes),
                        class_counts={c: int(n) for c, n in zip(classes.labels, counts)})

    def probe(path: str) -> tuple[int, int, int] | str:
        try:
            return probe_image(path)
        except ImageReadError as err:
            return "missing" if "missing" in str(err) else "undecodable"

    with ThreadPoolExecutor(max_workers=max(1, resolve_workers(workers))) as pool:
        results = list(tqdm(pool.map(probe, paths, chunksize=16), total=len(paths), desc="checking images",
                            disable=not progress or None, leave=False))
    for i, result in enumerate(results):
        if isinstance(result, str):
            report.bad.append(BadImage(str(ids[i]), str(paths[i]), result))
        else:
            report.heights.append(result[0])
            report.widths.append(result[1])
            report.channels.add(result[2])

    unreadable = Problems()
    for bad in report.bad:
        kind = "missing image files" if bad.reason == "missing" else "undecodable images"
        unreadable.add(kind, f"{bad.id} ({bad.path})")
    if unreadable and skip_bad:
        log(f"warning: skipping {len(report.bad)} unreadable images: {unreadable.message()}")
    elif unreadable:
        for kind, examples in unreadable.kinds.items():
            problems.extend(kind, examples)
    if problems:
        hint = " (--skip-bad drops unreadable images)" if unreadable and not skip_bad else ""
        raise CompError(f"bad data in {recipe.data.root}: {problems.message()}{hint}")
    empty = [c for c, n in report.class_counts.items() if n == 0]
    if empty:
        log(f"warning: declared classes with no training rows: {empty}")
    return report


def drop_bad(table: ImageTable, report: DataReport) -> ImageTable:
    """The table without the images the check could not read."""
    bad = {b.id for b in report.bad}
    keep = np.array([i not in bad for i in table.ids])
    return table.subset(np.flatnonzero(keep))


def format_report(report: DataReport) -> str:
    """A short summary for the terminal."""
    lines = [f"train rows {report.train_rows}, test rows {report.test_rows}"]
    lines.append(("classes" if report.declared else "classes found") + f": {list(report.classes.labels)}")
    width = max([len(c) for c in report.class_counts] + [5]) + 2
    total = max(sum(report.class_counts.values()), 1)
    for c, n in report.class_counts.items():
        lines.append(f"  {c:<{width}}{n:>7}  {n / total:6.1%}")
    lines.append(f"imbalance ratio (largest / smallest class): {report.imbalance:.2f}")
    if report.heights:
        h, w = np.array(report.heights), np.array(report.widths)
        lines.append(f"image height min/median/max {h.min()}/{int(np.median(h))}/{h.max()}, "
                     f"width {w.min()}/{int(np.median(w))}/{w.max()}, "
                     f"channels {sorted(report.channels)}")
    if report.bad:
        lines.append(f"unreadable images skipped: {len(report.bad)}")
    return "\n".join(lines)
