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
from comp.recipe import load_recipe
from comp.train.fit import open_run, prepare_run
from comp.train.rundir import completed_folds, read_run_info


def fit_folds_parallel(recipe_file: str, overrides: list[str], runs_root: Path, *,
                       processes: int | None, overwrite: bool, resume: bool, device: str | None,
                       log: Callable[[str], None] = print) -> Path:
    """Train the folds as concurrent processes (the caller merges their OOF predictions)."""
    recipe, run_dir, existing = open_run(load_recipe(recipe_file, overrides), runs_root,
                                         resume=resume, overwrite=overwrite, one_fold=False)
    if not resume:
        prepare_run(recipe, run_dir, existing, resolve_runtime(recipe.train, device),
                    recipe_file=recipe_file, overrides=overrides, overwrite=overwrite, log=log)
    info = read_run_info(run_dir)
    todo = [k for k in info.folds if not (resume and k in completed_folds(run_dir))]
    gpus = torch.cuda.device_count() if device != "cpu" else 0
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
        cmd = [sys.executable, "-m", "comp", "fit", recipe_file, "--fold", str(fold), "--runs",
               str(runs_root), "--no-merge", *[a for o in overrides for a in ("--set", o)]]
        cmd += ["--resume"] if resume else []
        cmd += ["--device", device] if device else []
        running.append((fold, subprocess.Popen(cmd, env=env)))
    while running:
        failed += _reap(running)
    if failed:
        raise CompError(f"folds {sorted(failed)} failed (their output is above); rerun them with "
                        f"comp fit {recipe_file} --fold K, or continue with --resume")
    return run_dir


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
