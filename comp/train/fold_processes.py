"""``comp fit --folds-parallel``: each fold in its own process, one per GPU (or CPU share).

The parent prepares the run once (data check, folds.csv) and starts ``comp fit --fold K``
children that each write only their own fold folder; the ``comp fit`` command then merges the
out-of-fold predictions (:func:`comp.evaluate.oof.finish_run`) exactly as after a serial run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from comp.errors import CompError
from comp.model.runtime import resolve_runtime
from comp.recipe import Recipe
from comp.train.fit import FitRequest, fit_command, open_run, prepare_run


def fit_folds_parallel(recipe: Recipe, request: FitRequest, *, processes: int | None,
                       log: Callable[[str], None] = print) -> Path:
    """Train the folds as concurrent processes (the caller merges their OOF predictions)."""
    source = recipe.source
    recipe, run, existing = open_run(recipe, request, one_fold=False)
    if not request.resume:
        prepare_run(recipe, run, existing, resolve_runtime(recipe.train, request.device), request, log=log)
    done = run.completed_folds() if request.resume else []
    todo = [k for k in run.info().folds if k not in done]
    gpus = torch.cuda.device_count() if request.device != "cpu" else 0
    slots = gpus or processes or 2
    threads = max(1, (os.cpu_count() or 2) // slots)  # so the CPU processes do not oversubscribe
    log(f"{len(todo)} folds over {slots} {'GPUs' if gpus else 'CPU processes'}")
    running: list[tuple[int, subprocess.Popen]] = []
    failed: list[int] = []
    for i, fold in enumerate(todo):
        while len(running) >= slots:
            failed += _reap(running)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        extra = ("--no-merge",) + (("--device", request.device) if request.device else ())
        args = fit_command(source, request.runs_root, resume=request.resume, fold=fold, extra=extra)
        running.append((fold, subprocess.Popen([sys.executable, "-m", "comp", *args], env=env)))
    while running:
        failed += _reap(running)
    if failed:
        raise CompError(f"folds {sorted(failed)} failed (their output is above); rerun them with "
                        f"comp fit {source.file} --fold K, or continue with --resume")
    return run.path


def _reap(running: list[tuple[int, subprocess.Popen]]) -> list[int]:
    """Remove finished children; return the folds whose process failed."""
    failed = []
    for item in list(running):
        fold, proc = item
        if proc.poll() is not None:
            running.remove(item)
            if proc.returncode != 0:
                failed.append(fold)
    if running and len(running) == len([p for p in running if p[1].poll() is None]):
        time.sleep(0.2)
    return failed
