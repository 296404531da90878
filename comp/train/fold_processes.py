"""``comp fit --folds-parallel``: each fold in its own process, one per GPU (or CPU share).

The parent checks the data and joins the run (:meth:`comp.run.life.Run.join`: creates it once),
then starts ``comp fit --fold K`` fold jobs, as a user may start them by hand or from a job
array: each trains only its fold under its fold's lock, and the last to finish merges the run.
The parent merges it if that last merge failed, so the run it returns is merged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time

import torch

from comp.errors import CompError
from comp.model.runtime import resolve_runtime
from comp.recipe import Recipe
from comp.run.life import FitRequest, Run, RunContents, fit_command
from comp.run.track import open_tracker
from comp.train.fit import Fitted, prepare_run

logger = logging.getLogger(__name__)


def fit_folds_parallel(recipe: Recipe, request: FitRequest, *, processes: int | None) -> Fitted:
    """Train the unfinished folds as concurrent fold jobs; the run comes back merged.

    ``--overwrite`` is refused: fold jobs join a run, they never replace one."""
    run = Run.open(recipe, request, parent=True)
    recipe = run.recipe

    def prepare() -> RunContents | None:
        if request.resume:  # the run is there, with its folds
            return None
        # The set-up check, on the CPU: the fold jobs train on the accelerators.
        plan = prepare_run(recipe, run, resolve_runtime(recipe.train, "cpu"))
        plan.ready.clear()
        return plan.contents()

    device = str(resolve_runtime(recipe.train, request.device).device)
    with run.session(prepare, device, tracker=open_tracker(recipe.track, request.runs_root)) as session:
        failed = _train_children(recipe, request, run, processes)
        if failed:
            raise CompError(f"folds {sorted(failed)} failed (their output is above); rerun them with "
                            f"comp fit {recipe.source.file} --fold K --resume, or continue with --resume")
    return Fitted(run.home.path, session.merged.merged)


def _train_children(recipe: Recipe, request: FitRequest, run: Run, processes: int | None) -> list[int]:
    """Start a ``comp fit --fold K`` per unfinished fold, ``processes`` at a time; the folds that failed."""
    todo = run.folds_to_train(run.folder.info().folds)
    gpus = torch.cuda.device_count() if request.device != "cpu" else 0
    slots = gpus or processes or 2
    threads = max(1, (os.cpu_count() or 2) // slots)  # so the CPU processes do not oversubscribe
    logger.info(f"{len(todo)} folds over {slots} {'GPUs' if gpus else 'CPU processes'}")
    running: list[tuple[int, subprocess.Popen]] = []
    failed: list[int] = []
    for i, fold in enumerate(todo):
        while len(running) >= slots:
            failed += _reap(running)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        args = fit_command(recipe.source, dataclasses.replace(request, fold=fold), extra=("--no-report",))
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
