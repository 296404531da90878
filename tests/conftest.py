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


def write_regression_competition(root: Path, n_train: int = 36, n_test: int = 9, size: int = 16,
                                 seed: int = 0) -> Path:
    """Grey images whose brightness is the target (0-100, one decimal) plus noise; column "score"."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    values = {"train": rng.uniform(0, 100, n_train).round(1), "test": rng.uniform(0, 100, n_test).round(1)}
    ids = {"train": [f"tr{i:03d}" for i in range(n_train)], "test": [f"te{i:03d}" for i in range(n_test)]}
    for folder in ("train", "test"):
        for i, v in zip(ids[folder], values[folder]):
            img = np.full((size, size, 3), 40 + 2 * v) + rng.normal(0, 10, size=(size, size, 3))
            cv2.imwrite(str(root / folder / f"{i}.png"), np.clip(img, 0, 255).astype(np.uint8))
    pd.DataFrame({"id": ids["train"], "score": values["train"]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ids["test"]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": ids["test"][::-1], "score": 0}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids["test"], "score": values["test"]}).to_csv(root / "solution.csv", index=False)
    return root


def write_multilabel_competition(root: Path, n_train: int = 36, n_test: int = 9, size: int = 16,
                                 seed: int = 0, columns: bool = False) -> Path:
    """Images whose labels are the colour channels lit ("red", "green", "blue"; a row may have
    none), plus noise. Tags in one column ``tags`` (Planet's layout), or with ``columns`` one 0/1
    column per label (Plant Pathology's), the sample then holding probabilities."""
    rng = np.random.default_rng(seed)
    names = ["red", "green", "blue"]
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    sets = {"train": [(i * 5 + 1) % 8 for i in range(n_train)], "test": [(i * 3 + 2) % 8 for i in range(n_test)]}
    ids = {"train": [f"tr{i:03d}" for i in range(n_train)], "test": [f"te{i:03d}" for i in range(n_test)]}
    Y = {k: np.array([[(code >> j) & 1 for j in range(3)] for code in v]) for k, v in sets.items()}
    for folder in ("train", "test"):
        for i, row in zip(ids[folder], Y[folder]):
            rgb = 30 + 190 * row
            img = rgb[None, None, :] + rng.normal(0, 20, size=(size, size, 3))
            cv2.imwrite(str(root / folder / f"{i}.png"), np.clip(img, 0, 255).astype(np.uint8)[:, :, ::-1])

    def frame(part: str, order=slice(None)) -> pd.DataFrame:
        rows = Y[part][order]
        if columns:
            return pd.DataFrame(rows, columns=names).assign(id=ids[part][order])[["id", *names]]
        tags = [" ".join(n for n, on in zip(names, r) if on) for r in rows]
        return pd.DataFrame({"id": ids[part][order], "tags": tags})

    frame("train").to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ids["test"]}).to_csv(root / "test.csv", index=False)
    sample = frame("test", slice(None, None, -1))
    if columns:
        sample[names] = 0.5
    else:
        sample["tags"] = "red green"
    sample.to_csv(root / "sample_submission.csv", index=False)
    frame("test").to_csv(root / "solution.csv", index=False)
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


# --------------------------------------------------------------------------- comp in a process

# What a command imports, loaded once by the fork server, so a forked `comp` starts in
# milliseconds instead of the seconds that importing torch, timm and matplotlib take.
_PRELOAD = ["torch", "timm", "comp.cli", "comp.train.fit", "comp.train.fold_processes", "comp.predict.predict",
            "comp.evaluate.report", "comp.data.check", "comp.evaluate.score", "sklearn.metrics",
            "sklearn.calibration", "sklearn.model_selection", "scipy.stats", "rich.console", "rich.progress",
            "PIL.JpegImagePlugin"]
_forks = None


def _forked_comp(args: list[str], cwd: str, umask: int, prelude: str, out: str, err: str) -> None:
    """Child side of :func:`run_comp`: ``python -m comp ARGS`` less the interpreter's start-up.

    stdout and stderr are the FIFOs ``out`` and ``err`` at the descriptor level (pipes, as for a
    subprocess: a file-size limit a prelude sets does not apply to them), stdin is /dev/null; an
    exception leaves as a traceback on stderr and exit code 1, ``SystemExit`` as its code
    (multiprocessing's bootstrap does what the interpreter does with them).
    """
    import atexit
    import runpy
    import sys

    os.chdir(cwd)
    os.umask(umask)
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        f = os.open(path, mode)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if prelude:
        exec(compile(prelude, "<prelude>", "exec"), {"__name__": "__prelude__"})
    sys.argv = ["comp", *args]
    try:
        runpy.run_module("comp", run_name="__main__", alter_sys=True)
    finally:
        atexit._run_exitfuncs()  # the interpreter runs them at exit; multiprocessing's child does not


def run_comp(args: list[str], cwd: Path, *, umask: int = 0o022, prelude: str = "",
             timeout: float = 300) -> tuple[int | None, str, str]:
    """Run ``python -m comp ARGS`` in ``cwd`` in its own process, forked from a server that has
    already imported torch and comp; ``prelude`` is Python run first in that process.

    Returns (exit code, stdout, stderr); the exit code is None if the command still ran after
    ``timeout`` seconds (it is killed). A negative code is the signal that ended it.
    """
    global _forks
    import multiprocessing
    import selectors
    import tempfile
    import time

    if _forks is None:
        _forks = multiprocessing.get_context("forkserver")
        _forks.set_forkserver_preload(_PRELOAD)
    with tempfile.TemporaryDirectory(prefix="comp-out-") as tmp:
        paths = [os.path.join(tmp, "out"), os.path.join(tmp, "err")]
        for path in paths:
            os.mkfifo(path)
        # Opened read-write (Linux allows it for a FIFO): the child's opens for writing never
        # block, and the FIFO never reads as at its end, so select waits for data, not spins.
        fds = [os.open(path, os.O_RDWR | os.O_NONBLOCK) for path in paths]
        got = {fd: bytearray() for fd in fds}
        sel = selectors.DefaultSelector()
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)

        def drain(wait: float) -> None:
            for key, _ in sel.select(wait):
                try:
                    while chunk := os.read(key.fd, 65536):
                        got[key.fd] += chunk
                except BlockingIOError:
                    pass

        try:
            proc = _forks.Process(target=_forked_comp, args=([str(a) for a in args], str(cwd), umask, prelude,
                                                              *paths))
            proc.start()
            deadline = time.monotonic() + timeout
            while proc.is_alive() and time.monotonic() < deadline:
                drain(0.05)
            code = proc.exitcode
            if code is None:
                proc.kill()
                proc.join()
            proc.join()
            drain(0)
        finally:
            sel.close()
            for fd in fds:
                os.close(fd)
        return code, *(got[fd].decode(errors="replace") for fd in fds)
