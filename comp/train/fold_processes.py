"""``comp fit --folds-parallel``: each fold in its own process, one per GPU (or CPU share).

The parent prepares the run once (data check, folds.csv) and starts ``comp fit --fold K``
children that each write only their own fold folder; the ``comp fit`` command then merges the
out-of-fold predictions (:func:`comp.evaluate.oof.finish_run`) exactly as after a serial run.
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
from comp.train.fit import FitRequest, fit_command, open_run, prepare_run, start_run
from comp.train.loop import LoopIO
from comp.train.rundir import LOCK_HELD_BY_ENV, RUN_FOLDER_ENV, RunDir, RunLock


def fit_folds_parallel(recipe: Recipe, request: FitRequest, *, processes: int | None,
                       log: Callable[[str], None] = print) -> Path:
    """Train the folds as concurrent processes (the caller merges their OOF predictions).

    The parent holds the run's lock for its children and, for a new run, builds it in a
    staging folder that is swapped in once the children have written a checkpoint."""
    recipe, home, existing = open_run(recipe, request, one_fold=False)
    reuse = existing and not request.overwrite
    run = home if reuse else home.stage()
    lock, plan = RunLock(home), None
    if home.home.parent.is_dir():  # as fit does: locked first unless that would create --runs
        lock.acquire()
    try:
        if not request.resume:  # the set-up check, on the CPU: the children train on the accelerators
            plan = prepare_run(recipe, run, resolve_runtime(recipe.train, "cpu"),
                               dataclasses.replace(request, fold=None), reuse=reuse, io=LoopIO(log=log))
            plan.ready.clear()
        if not lock.owned:
            lock.acquire()  # clears what a killed fit left
        if plan is not None:
            start_run(recipe, plan, resolve_runtime(recipe.train, request.device), reuse=reuse)
        failed = _train_children(recipe, request, run, processes, log)
        folds = [run.fold(k) for k in run.info().folds]
        # A new run moves into place once a fold has a checkpoint; one replacing an old run only
        # once every fold is trained (the old run survives a failed or killed --overwrite).
        if run.staged and (all(f.complete for f in folds) if existing else any(f.last.is_file() for f in folds)):
            run.promote()
    finally:
        run.discard()  # still staged: nothing was trained, the old run (if any) is untouched
        lock.release()
    if failed and existing and request.overwrite:
        raise CompError(f"folds {sorted(failed)} failed (their output is above); {home.path} is kept as it "
                        f"was (--overwrite replaces it only once every fold is trained)")
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
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), LOCK_HELD_BY_ENV: str(os.getpid()),
               RUN_FOLDER_ENV: str(run.path)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        extra = ("--no-merge",) + (("--device", request.device) if request.device else ())
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
