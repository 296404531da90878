"""``comp fit --folds-parallel``: each fold in its own process, one per GPU (or CPU share).

The parent checks the data and creates the run once (:func:`comp.train.fit.join_run`), then
starts ``comp fit --fold K`` fold jobs, as a user may start them by hand or from a job array:
each trains only its fold under its fold's lock, and the last to finish merges the run
(``comp merge``'s :func:`comp.cli.merge.merge_folds`); the parent then writes the report.
"""

from __future__ import annotations

import dataclasses
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
from comp.train.fit import FitRequest, fit_command, join_run, open_run, prepare_run
from comp.train.loop import LoopIO
from comp.run.folder import RunDir
from comp.run.lock import RunLock


def fit_folds_parallel(recipe: Recipe, request: FitRequest, *, processes: int | None,
                       log: Callable[[str], None] = print) -> Path:
    """Train the unfinished folds as concurrent fold jobs (the last one merges the run).

    ``--overwrite`` is refused: fold jobs join a run, they never replace one."""
    if request.overwrite:
        raise CompError(f"--overwrite with --folds-parallel: its fold jobs join the run and never replace "
                        f"it; remove {Path(request.runs_root) / recipe.name} first, or use another name "
                        f"(--set name=...)")
    recipe, run, existing = open_run(recipe, request, one_fold=False)
    if not request.resume:  # the set-up check, on the CPU: the fold jobs train on the accelerators
        plan = prepare_run(recipe, run, resolve_runtime(recipe.train, "cpu"),
                           dataclasses.replace(request, fold=None), reuse=existing, io=LoopIO(log=log))
        plan.ready.clear()
        join_run(recipe, plan, resolve_runtime(recipe.train, request.device), RunLock(run, brief=True))
    failed = _train_children(recipe, request, run, processes, log)
    if failed:
        raise CompError(f"folds {sorted(failed)} failed (their output is above); rerun them with "
                        f"comp fit {recipe.source.file} --fold K, or continue with --resume")
    return run.path


def _train_children(recipe: Recipe, request: FitRequest, run: RunDir, processes: int | None,
                    log: Callable[[str], None]) -> list[int]:
    """Start a ``comp fit --fold K`` per unfinished fold, ``processes`` at a time; the folds that failed."""
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
        extra = ("--no-report",) + (("--device", request.device) if request.device else ())  # the parent reports
        args = fit_command(recipe.source, request.runs_root, resume=request.resume, fold=fold, extra=extra)
        running.append((fold, subprocess.Popen([sys.executable, "-m", "comp", *args], env=env)))
    while running:
        failed += _reap(running)
    return failed


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
