"""``comp cache``: write the image cache that :mod:`comp.data.cache` finds (see there)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from comp import atomic
from comp.console import progress
from comp.data.augment import build_transform, resize_step
from comp.data.cache import (FORMAT, MANIFEST, SUFFIX, cache_folder, cached_fits, read_manifest, source_stamp,
                              write_cached)
from comp.data.dataset import ImageDataset, make_loader
from comp.data.images import ImageReadError
from comp.data.table import ImageTable, load_test_table, load_train_table
from comp.recipe import Recipe


@dataclass(frozen=True)
class CacheSummary:
    """What ``comp cache`` did."""

    folder: Path
    size: int
    copies: int  # cached copies, up to date now
    written: int  # of which written by this run
    direct: int  # no larger than the target and not preprocessed: read from the source
    outside: list[str] = field(default_factory=list)  # not under the data root: not cached
    failed: list[str] = field(default_factory=list)  # unreadable: left to the sources

    def line(self) -> str:
        text = f"{self.folder}: {self.copies} images ({self.written} written now)"
        if self.direct:
            text += (f"; {self.direct} no larger than {self.size} px and not preprocessed stay "
                     f"read from the source (a copy would decode no faster)")
        if self.outside:
            text += f"; {len(self.outside)} outside the data root left uncached"
        if self.failed:
            text += f"; {len(self.failed)} unreadable left uncached: {', '.join(self.failed[:5])}"
        return text


class _Writer(Dataset):
    """Item i: decode source i as the dataset does, resize, and write its ``.npy`` atomically."""

    def __init__(self, source: Dataset, resize: Callable, dests: list[Path]):
        self.source, self.resize, self.dests = source, resize, dests

    def __len__(self) -> int:
        return len(self.dests)

    def __getitem__(self, i: int) -> tuple[int, str, str]:
        """(i, "written" | "small" | "failed", error message)."""
        try:
            image = self.source.load(i)
        except ImageReadError as err:
            return i, "failed", str(err)
        if self.source.preprocess == "none" and max(image.shape[:2]) <= self.resize.height:
            # No larger than the target: decoding the source costs no more than a copy would.
            return i, "small", ""
        image = self.resize(image=image)["image"]
        # Through a temp name: a crash mid-write never leaves half a file under the real name.
        write_cached(self.dests[i], image)
        return i, "written", ""


def build_cache(recipe: Recipe) -> CacheSummary:
    """Write (or bring up to date) the cache of the recipe's train and test images."""
    a = recipe.augment
    root = Path(recipe.data.root)
    folder = cache_folder(root, a.size, a.preprocess)
    tables = [load_train_table(recipe)[0]]
    if (root / recipe.data.test_csv).is_file():
        tables.append(load_test_table(recipe))
    sources = list(dict.fromkeys(os.path.abspath(str(p)) for t in tables for p in t.paths))
    root_abs = os.path.abspath(root)
    old = read_manifest(folder, a.size) or {}  # another size's cache is rewritten; each array checked below
    files: dict[str, list] = {}
    todo: list[tuple[str, str, list[int]]] = []  # (source, relative path, stamp)
    outside: list[str] = []
    for src in sources:
        rel = os.path.relpath(src, root_abs)
        if rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            outside.append(src)
            continue
        try:
            stamp = source_stamp(src)
        except OSError:
            stamp = [-1, -1]  # missing: the read below reports it
        entry = old.get(rel)
        if entry is not None and list(entry[1:]) == stamp and (entry[0] is None
                                                               or cached_fits(folder / entry[0], a.size)):
            files[rel] = entry  # unchanged since the last run, and of the recipe's size
        else:
            todo.append((src, rel, stamp))
    failed: list[str] = []
    written = 0
    if todo:
        transform = build_transform(a, train=False)
        table = ImageTable(ids=np.arange(len(todo)), paths=np.array([s for s, _, _ in todo], dtype=object))
        source = ImageDataset(table, transform, a.preprocess, cache=False)
        dests = [folder / (rel + SUFFIX) for _, rel, _ in todo]
        loader = make_loader(_Writer(source, resize_step(transform), dests), 16,
                             train_cfg=recipe.train, device=torch.device("cpu"))
        bar = progress(total=len(todo), desc=f"cache {folder.name}")
        for indices, outcomes, errors in loader:
            for i, outcome, err in zip(indices.tolist(), outcomes, errors):
                _, rel, stamp = todo[i]
                if outcome == "written":
                    files[rel] = [rel + SUFFIX, *stamp]
                    written += 1
                elif outcome == "small":
                    files[rel] = [None, *stamp]  # remembered, so the next run skips it too
                else:
                    failed.append(err)
            bar.update(len(outcomes))
        bar.close()
    # Last: only now is the cache complete enough to be read.
    manifest = {"format": FORMAT, "size": a.size, "preprocess": a.preprocess, "files": files}
    atomic.write_text(folder / MANIFEST, json.dumps(manifest))
    direct = sum(entry[0] is None for entry in files.values())
    return CacheSummary(folder, a.size, len(files) - direct, written, direct, outside, failed)
