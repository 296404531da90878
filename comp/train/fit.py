"""``comp fit``: validate the data, assign folds, train each fold and write its validation predictions.

Merging them into oof.csv and fitting thresholds afterwards is :func:`comp.evaluate.oof.finish_run`.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from comp import atomic
from comp.data import splits
from comp.data.check import check_data, drop_bad
from comp.data.table import ClassMap, ImageTable, load_train_table
from comp.errors import CompError
from comp.model.runtime import Runtime, resolve_runtime
from comp.recipe import Recipe, recipe_to_toml
from comp.train import distributed
from comp.train.loop import FoldResult, Interrupted, StopFlag, train_fold
from comp.train.rundir import (FOLD_OOF_FILE, RECIPE_FILE, RESULT_FILE, RunInfo, completed_folds, prob_column,
                               read_run_info, run_recipe, write_run_info)

FOLDS_FILE = "folds.csv"


def assign_folds(recipe: Recipe, table: ImageTable) -> np.ndarray:
    """Each row's validation fold (-1: train only), by the recipe's ``[cv] scheme``."""
    cv, labels = recipe.cv, table.labels
    if cv.scheme == "holdout":
        return splits.holdout_folds(labels, cv.valid_fraction, recipe.seed, groups=table.groups)
    if cv.scheme == "kfold":
        return splits.kfold_folds(labels, cv.folds, recipe.seed, groups=table.groups)
    if cv.scheme == "predefined":
        if table.splits is None:
            raise CompError('[cv] scheme = "predefined" needs [cv] split_col or [data] valid_csv')
        return splits.predefined_folds(table.splits)
    return splits.full_folds(len(table))


def fold_plan(recipe: Recipe, folds: np.ndarray) -> list[int]:
    """The folds to train: each validation fold, or one fold 0 on everything for "full"."""
    return [0] if recipe.cv.scheme == "full" else splits.fold_ids(folds)


def fold_indices(recipe: Recipe, folds: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of one fold."""
    rows = np.arange(len(folds))
    if recipe.cv.scheme == "full":
        return rows, rows[:0]
    return rows[folds != fold], rows[folds == fold]


@dataclass(frozen=True)
class RunPlan:
    """A prepared run: its checked training table, classes and fold assignment."""

    run_dir: Path
    table: ImageTable
    classes: ClassMap
    folds: np.ndarray
    plan: list[int]


def open_run(recipe: Recipe, runs_root: Path, *, resume: bool, overwrite: bool,
             one_fold: bool) -> tuple[Recipe, Path, bool]:
    """(recipe, run folder, whether it exists) after checking that the request fits the folder.

    On ``resume`` the run's own saved recipe is returned, so overrides survive.
    """
    run_dir = runs_root / recipe.name
    existing = (run_dir / "run.json").is_file()
    if existing and not (resume or overwrite or one_fold):
        raise CompError(f"{run_dir} already exists: use --resume to continue it or --overwrite "
                        f"to start again")
    if resume and not existing:
        raise CompError(f"nothing to resume: {run_dir} has no run")
    return (run_recipe(run_dir) if resume else recipe), run_dir, existing


def prepare_run(recipe: Recipe, run_dir: Path, existing: bool, runtime: Runtime, *, recipe_file: str,
                overrides: list[str], overwrite: bool, skip_bad: bool = False, progress: bool = True,
                log: Callable[[str], None] = print) -> RunPlan:
    """Check the data, assign (or reread) the folds, and create the run folder (rank 0).

    The whole data check comes before anything is written, so bad data leaves no run behind;
    rank 0 checks and tells the others, so every rank stops on the same message.
    """
    failure, report = None, None
    if runtime.is_main:
        try:
            report = check_data(recipe, test=False, skip_bad=skip_bad, progress=progress, log=log)
        except CompError as err:
            failure = str(err)
    failure, report = distributed.broadcast((failure, report), runtime)
    if failure:
        raise CompError(failure)
    table, classes = load_train_table(recipe)
    if report.bad:
        table = drop_bad(table, report)
    if existing and not overwrite:
        info = read_run_info(run_dir)
        if info.classes != list(classes.labels):
            raise CompError(f"{run_dir} was trained on classes {info.classes}, the data now has "
                            f"{list(classes.labels)}; use --overwrite to start again")
        folds = _read_folds(run_dir, table)
    else:
        folds = assign_folds(recipe, table)
    plan = fold_plan(recipe, folds)
    if runtime.is_main:
        _start_run(recipe, run_dir, existing, overwrite, recipe_file, overrides, classes, table,
                   folds, plan, runtime)
    distributed.barrier(runtime)
    return RunPlan(run_dir, table, classes, folds, plan)


def fit(recipe: Recipe, *, recipe_file: str, overrides: list[str], runs_root: Path,
        only_fold: int | None = None, resume: bool = False, overwrite: bool = False,
        device: str | None = None, progress: bool = True, skip_bad: bool = False,
        log: Callable[[str], None] = print) -> Path:
    """Train every fold (or ``only_fold``) of a recipe into ``runs_root/<name>/``.

    Ctrl-C or SIGTERM finishes the current step, writes last.pt and raises :class:`Interrupted`
    (exit 130) naming the command that resumes; ``resume`` continues with the run's own saved
    recipe, so a resumed run trains exactly what the interrupted one would have. Under torchrun
    every rank trains each fold together (DDP) and only rank 0 writes. Training only: the caller
    merges the folds afterwards on rank 0 (:func:`comp.evaluate.oof.finish_run`).
    """
    rank, local_rank, world = distributed.env_world()
    if rank != 0:
        log, progress = (lambda *_: None), False
    recipe, run_dir, existing = open_run(recipe, runs_root, resume=resume, overwrite=overwrite,
                                         one_fold=only_fold is not None)
    runtime = resolve_runtime(recipe.train, device, rank=rank, world_size=world, local_rank=local_rank)
    distributed.init_process_group(runtime)
    finished = False
    try:
        run = prepare_run(recipe, run_dir, existing, runtime, recipe_file=recipe_file,
                          overrides=overrides, overwrite=overwrite, skip_bad=skip_bad,
                          progress=progress, log=log)
        if only_fold is not None and only_fold not in run.plan:
            raise CompError(f"--fold {only_fold}: the run's folds are {run.plan}")
        log(f"run {run_dir}: {len(run.table)} training rows, {len(run.classes)} classes, "
            f"{recipe.cv.scheme} with folds {run.plan}, model {recipe.model.source}:{recipe.model.name}, "
            f"device {runtime.device}"
            + (f", {runtime.world_size} processes (DDP)" if runtime.world_size > 1 else ""))
        for fold in [only_fold] if only_fold is not None else run.plan:
            if resume and fold in completed_folds(run_dir):
                log(f"fold {fold}: already complete")
                continue
            again = (f"comp fit {recipe_file} --resume" + (f" --fold {fold}" if only_fold is not None else "")
                     + "".join(f" --set {o}" for o in overrides)
                     + (f" --runs {runs_root}" if str(runs_root) != "runs" else ""))
            _fit_fold(recipe, run, fold, runtime, resume=resume, progress=progress, again=again, log=log)
        distributed.barrier(runtime)
        finished = True
        return run_dir
    finally:
        distributed.shutdown(runtime, together=finished)


def _fit_fold(recipe: Recipe, run: RunPlan, fold: int, runtime: Runtime, *, resume: bool,
              progress: bool, again: str, log: Callable[[str], None]) -> None:
    """Train one fold and record its result; an interruption names the command that resumes."""
    train_index, valid_index = fold_indices(recipe, run.folds, fold)
    fold_dir = run.run_dir / f"fold{fold}"
    if runtime.is_main:
        (fold_dir / RESULT_FILE).unlink(missing_ok=True)  # the fold is unfinished until rewritten
    stop = StopFlag()
    try:
        with _stop_on_signals(stop):
            result = train_fold(recipe, run.table, run.classes, train_index, valid_index, fold_dir,
                                runtime, fold=fold, resume=resume, progress=progress, stop=stop, log=log)
    except Interrupted as err:
        if runtime.is_main:
            info = read_run_info(run.run_dir)
            info.status = "interrupted"
            write_run_info(run.run_dir, info)
        raise Interrupted(f"{err}; resume with: {again}") from None
    if runtime.is_main:
        _write_fold_result(fold_dir, run.table, run.classes, result)
    if len(valid_index):
        log(f"fold {fold}: best {recipe.train.monitor} {result.best_score:.4f} at epoch {result.best_epoch}")


def _start_run(recipe: Recipe, run_dir: Path, existing: bool, overwrite: bool, recipe_file: str,
               overrides: list[str], classes: ClassMap, table: ImageTable, folds: np.ndarray,
               plan: list[int], runtime: Runtime) -> None:
    """Create (or reopen) the run folder: run.json, the resolved recipe, folds.csv."""
    try:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CompError(f"cannot write {run_dir}: {err.strerror}") from None
    if existing and not overwrite:
        info = read_run_info(run_dir)
    else:
        info = RunInfo(name=recipe.name, recipe_file=recipe_file, overrides=list(overrides),
                       classes=list(classes.labels), scheme=recipe.cv.scheme, folds=plan,
                       device=str(runtime.device), versions=_versions())
        atomic.write_text(run_dir / RECIPE_FILE, recipe_to_toml(recipe))
        atomic.write_csv(run_dir / FOLDS_FILE, pd.DataFrame({"id": table.ids, "fold": folds}))
    info.status = "running"
    write_run_info(run_dir, info)


@contextlib.contextmanager
def _stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """While training, SIGINT/SIGTERM ask the loop to stop after the current step; a second
    Ctrl-C stops at once. The previous handlers come back afterwards."""
    signals = [signal.SIGINT, signal.SIGTERM]

    def handler(signum: int, _frame) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.reason = signal.Signals(signum).name
        print(f"\n{stop.reason}: finishing the current step, then saving last.pt", file=sys.stderr)

    try:
        previous = {s: signal.signal(s, handler) for s in signals}
    except ValueError:  # not the main thread: signals cannot be caught here
        yield
        return
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _write_fold_result(fold_dir: Path, table: ImageTable, classes: ClassMap,
                       result: FoldResult) -> None:
    """The fold's validation predictions, then result.json, which marks the fold complete."""
    if len(result.valid_index):
        atomic.write_csv(fold_dir / FOLD_OOF_FILE, oof_frame(table, classes, result))
    atomic.write_text(fold_dir / RESULT_FILE, json.dumps(
        {"fold": result.fold, "best_epoch": result.best_epoch,
         "best_score": None if math.isnan(result.best_score) else result.best_score,
         "oof_checkpoints": result.checkpoints}) + "\n")


def oof_frame(table: ImageTable, classes: ClassMap, result: FoldResult) -> pd.DataFrame:
    """One fold's validation rows: id, label, fold, prediction and per-class probabilities."""
    idx, probs = result.valid_index, result.valid_probs
    frame = pd.DataFrame({
        "id": table.ids[idx],
        "label": classes.decode(table.labels[idx]),
        "fold": result.fold,
        "pred": classes.decode(probs.argmax(axis=1)),
    })
    for i, name in enumerate(classes.labels):
        frame[prob_column(name)] = probs[:, i]
    return frame


def _read_folds(run_dir: Path, table: ImageTable) -> np.ndarray:
    """The saved fold assignment, which must cover exactly the current training rows."""
    saved = pd.read_csv(run_dir / FOLDS_FILE, dtype={"id": str})
    if set(saved["id"]) != set(table.ids) or len(saved) != len(table):
        raise CompError(f"{run_dir / FOLDS_FILE} no longer matches the training rows; "
                        f"use --overwrite to start again")
    return saved.set_index("id").loc[table.ids, "fold"].to_numpy()


def _versions() -> dict[str, str]:
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
