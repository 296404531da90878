"""``comp fit``: validate the data, assign folds, train each fold and write its validation predictions.

Merging them into oof.csv and fitting thresholds afterwards is :func:`comp.evaluate.oof.finish_run`.
"""

from __future__ import annotations

import contextlib
import platform
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from comp.console import Countdown, RunLog
from comp.data import splits
from comp.data.cache import cached_paths, misfit_cache
from comp.data.check import check_data
from comp.data.table import ClassMap, ImageTable
from comp.errors import CompError
from comp.metrics import Task
from comp.model.runtime import Runtime, resolve_runtime
from comp.recipe import Provenance, Recipe, apply_override, parse_override, recipe_from_dict, recipe_to_dict
from comp.recipe.task import class_table, describe_task, resolve_task
from comp.train import distributed, tensorboard
from comp.train.loop import FoldResult, FoldRun, Interrupted, LoopIO, StopFlag, fold_parts, train_fold
from comp.train.parts import FoldParts, FoldSplit
from comp.run.folder import FoldDir, RunDir, RunInfo, check_runs_root, find_run, list_runs, prob_column, task_record
from comp.run.lock import RunLock


@dataclass(frozen=True)
class FitRequest:
    """What the ``comp fit`` command line asks for besides the recipe."""

    runs_root: Path = Path("runs")
    fold: int | None = None  # train only this fold
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    skip_bad: bool = False


def cache_hint(recipe: Recipe, table: ImageTable) -> str | None:
    """A line suggesting ``comp cache`` when the images are preprocessed in the workers every epoch
    (``ben_graham`` costs far more than the step on a GPU) and no cache of them exists; else None."""
    a = recipe.augment
    sets = " ".join(f"--set {shlex.quote(o)}" for o in recipe.source.overrides)
    command = " ".join(filter(None, ["comp cache", shlex.quote(recipe.source.file or "RECIPE"), sets]))
    misfit = misfit_cache(recipe.data.root, a.size, a.preprocess)
    if misfit is not None:
        return (f"warning: the cache {misfit} holds images of another size than {a.size} px, so the sources "
                f"are read instead; `{command}` rewrites it")
    if a.preprocess == "none" or cached_paths(table.paths[:16], a.size, a.preprocess) is not None:
        return None
    return (f"preprocess {a.preprocess!r} runs on every image in every epoch: `{command}` once makes "
            f"later fits and predicts read ready {a.size}-px copies")


def fit_command(source: Provenance, runs_root: Path, *, resume: bool = False, fold: int | None = None,
                extra: tuple[str, ...] = ()) -> list[str]:
    """The ``comp fit`` arguments (after ``comp``) that train this recipe again: the one place
    the command line is rebuilt, for the resume hint and for ``--folds-parallel``'s fold jobs."""
    args = ["fit", source.file]
    args += ["--resume"] if resume else []
    args += ["--fold", str(fold)] if fold is not None else []
    args += [a for o in source.overrides for a in ("--set", o)]
    args += ["--runs", str(runs_root)] if str(runs_root) != "runs" else []
    return args + list(extra)


def resume_hint(source: Provenance, runs_root: Path, fold: int | None = None) -> str:
    """The command a user types to continue an interrupted run."""
    return "comp " + shlex.join(fit_command(source, runs_root, resume=True, fold=fold))


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
    """A prepared run: its folder, checked training table, classes and fold assignment."""

    run: RunDir
    table: ImageTable
    classes: ClassMap
    folds: np.ndarray
    plan: list[int]
    task: Task | None = None  # resolved once the classes are known
    init: dict[int, tuple[Path, str]] = field(default_factory=dict)  # [model] init_from: fold → (checkpoint, why)
    ready: dict[int, FoldParts] = field(default_factory=dict)  # parts the set-up check built, by fold
    extra: ImageTable | None = None  # [data] extra_csv: trained in every fold, never validated

    def split(self, recipe: Recipe, fold: int) -> FoldSplit:
        train_index, valid_index = fold_indices(recipe, self.folds, fold)
        return FoldSplit(fold, self.table, self.classes, train_index, valid_index, self.task, self.extra)


def open_run(recipe: Recipe, request: FitRequest, *, one_fold: bool) -> tuple[Recipe, RunDir, bool]:
    """(recipe, run folder, whether it exists) after checking that the request fits the folder.

    On ``resume`` the run's own saved recipe is returned, so overrides survive; ``--set``
    overrides that differ from it are refused. Nothing is written here.
    """
    check_runs_root(request.runs_root)
    if one_fold and request.overwrite:
        raise CompError(f"--overwrite with --fold {request.fold}: a fold job joins its run (the first job "
                        f"creates it) and never replaces it; replace the run with `comp fit RECIPE --overwrite`, "
                        f"or remove {Path(request.runs_root) / recipe.name} before starting the fold jobs")
    run = RunDir.under(request.runs_root, recipe.name)
    _check_inside_runs(run, recipe.name, request.runs_root)
    run.check_replaceable()
    _check_data_outside(run, recipe)
    existing = run.exists()
    if existing and not (request.resume or request.overwrite or one_fold):
        raise CompError(f"{run.path} already exists: use --resume to continue it or --overwrite "
                        f"to start again")
    if request.resume and not existing:
        raise CompError(f"nothing to resume: {run.path} has no run")
    if not request.resume:
        return recipe, run, existing
    stored = run.recipe()
    _check_resume_overrides(stored, recipe.source.overrides, run)
    return stored, run, existing


def _check_inside_runs(run: RunDir, name: str, runs_root: Path) -> None:
    """The run folder, resolved (links followed), must be a folder directly under --runs."""
    home = run.home
    if home.is_symlink() or home.resolve().parent != Path(runs_root).resolve():
        raise CompError(f"run name {name!r}: {home} resolves to {home.resolve()}, not a folder inside "
                        f"--runs {runs_root}/; comp writes runs only inside --runs (remove the link or "
                        f"choose another name)")


def _check_data_outside(run: RunDir, recipe: Recipe) -> None:
    """A run folder is replaced as a whole: it must not hold the competition it trains on."""
    home, data = run.home.resolve(), Path(recipe.data.root).resolve()
    if data == home or home in data.parents:
        raise CompError(f"run {recipe.name!r} would live at {run.home}, which holds the competition "
                        f"([data] root {recipe.data.root}); choose another --runs or name")


def _check_resume_overrides(stored: Recipe, overrides: tuple[str, ...], run: RunDir) -> None:
    """--resume trains the run's own recipe: a --set that changes it is an error naming each
    key; one equal to the stored value (or none at all) is fine."""
    raw = recipe_to_dict(stored)
    for item in overrides:
        apply_override(raw, item)
    wanted = recipe_to_dict(recipe_from_dict(raw, where="--set"))
    before = recipe_to_dict(stored)
    differ = []
    for item in overrides:
        keys, _ = parse_override(item)
        old, new = before, wanted
        for k in keys:
            old, new = old.get(k) if isinstance(old, dict) else None, new.get(k) if isinstance(new, dict) else None
        if old != new:
            name = f"[{'.'.join(keys[:-1])}] {keys[-1]}" if len(keys) > 1 else keys[0]
            differ.append(f"{name} = {new!r} (the run has {old!r})")
    if differ:
        raise CompError(f"--resume continues {run.path} with its own recipe, but --set changes "
                        + "; ".join(differ) + ": resume without these --set, or start again with --overwrite")


def prepare_run(recipe: Recipe, run: RunDir, runtime: Runtime, request: FitRequest, *, reuse: bool,
                io: LoopIO | None = None) -> RunPlan:
    """Check the data, assign the folds (or reread them when ``reuse``-ing the run's folder) and
    make every set-up check (:func:`check_setup`); nothing is written here, so a failure leaves
    no run behind.

    Rank 0 checks the data and tells the others, so every rank stops on the same message.
    """
    io = io or LoopIO()
    failure, report = None, None
    if runtime.is_main:
        try:
            report = check_data(recipe, test=False, skip_bad=request.skip_bad, progress=io.progress, log=io.log)
        except CompError as err:
            failure = str(err)
    failure, report = distributed.broadcast((failure, report), runtime)
    if failure:
        raise CompError(failure)
    table, classes = report.readable_train_table(), report.classes  # parsed once, by the check
    task = report.task or resolve_task(recipe, classes.labels)
    io.log(class_table(list(classes.labels), list(report.class_counts.values()), report.weights, task.names))
    io.log(describe_task(task, classes.labels))
    if reuse:
        info = run.info()
        if info.classes != list(classes.labels):
            raise CompError(f"{run.path} was trained on classes {info.classes}, the data now has "
                            f"{list(classes.labels)}; use --overwrite to start again")
    folds = run.read_folds(table.ids) if reuse else None
    plan = plan_run(recipe, table, classes, request.runs_root, run=run, folds=folds, task=task,
                    extra=report.readable_extra_table())
    if request.fold is not None and request.fold not in plan.plan:
        raise CompError(f"--fold {request.fold}: the run's folds are {plan.plan}")
    done = run.completed_folds() if request.resume else []
    todo = [f for f in ([request.fold] if request.fold is not None else plan.plan) if f not in done]
    if todo:
        check_setup(recipe, plan, runtime, fold=todo[0], log=io.log)
    return plan


def check_setup(recipe: Recipe, plan: RunPlan, runtime: Runtime, *, fold: int | None = None,
                log: Callable[[str], None] = print) -> None:
    """Every set-up step of a fit, before any folder is touched: the parts of ``fold`` (default
    the plan's first; :func:`prepare_run` has checked ``--fold`` against the plan) as it will
    train with them (model and backbone, pretrained or init_from weights, loss and its class
    weights, optimiser, schedule, loaders, and on CUDA the batch probe). ``comp check`` runs it too."""
    first = plan.plan[0] if fold is None else fold
    init = plan.init.get(first)
    plan.ready[first] = fold_parts(recipe, plan.split(recipe, first), runtime,
                                   init=None if init is None else init[0], log=log)


def plan_run(recipe: Recipe, table: ImageTable, classes: ClassMap, runs_root: Path, *, run: RunDir | None = None,
             folds: np.ndarray | None = None, task: Task | None = None, extra: ImageTable | None = None) -> RunPlan:
    """A run's plan (``comp fit``, ``comp check``): its folder (default ``runs_root/<name>``), the
    folds (assigned, unless ``folds`` were read back from a reused run), the folds to train, the
    task and the init_from checkpoints; nothing written. ``extra`` rows train in every fold and
    are in no fold of ``folds`` (folds.csv)."""
    folds = assign_folds(recipe, table) if folds is None else folds
    folds_to_train = fold_plan(recipe, folds)
    init = init_checkpoints(recipe, runs_root, folds_to_train, classes) if recipe.model.init_from else {}
    return RunPlan(run or RunDir.under(runs_root, recipe.name), table, classes, folds, folds_to_train,
                   task or resolve_task(recipe, classes.labels), init, extra=extra)


def fit(recipe: Recipe, request: FitRequest, *, progress: bool = True,
        log: Callable[[str], None] = print) -> Path:
    """Train every fold (or ``request.fold``) of a recipe into ``runs_root/<name>/``.

    Ctrl-C or SIGTERM finishes the current step, writes last.pt and raises :class:`Interrupted`
    (exit 130) naming the command that resumes; ``resume`` continues with the run's own saved
    recipe, so a resumed run trains exactly what the interrupted one would have. Under torchrun
    every rank trains each fold together (DDP) and only rank 0 writes. Training only: the caller
    merges the folds afterwards on rank 0 (:func:`comp.evaluate.oof.finish_run`).

    The run folder is locked while this writes it (:class:`~comp.run.lock.RunLock`); a new
    run is built in a staging folder and moved into place at its first checkpoint; one replacing
    an old run (``--overwrite``) only once all its folds are trained, so a failure, a kill or
    Ctrl-C before then leaves the old run as it was. Each fold trains under its own lock.

    ``request.fold`` makes this a fold job: it holds the run's lock only while it creates or joins
    the run (:func:`join_run`), then only its fold's lock, so ``comp fit RECIPE --fold K`` for
    each K may run at once, here or on machines sharing --runs.
    """
    rank, local_rank, world = distributed.env_world()
    if rank != 0:
        log, progress = (lambda *_: None), False
    elif not isinstance(log, RunLog):
        log = RunLog(log)  # the run's fit.log keeps what fit prints
    only_fold = request.fold
    recipe, home, existing = open_run(recipe, request, one_fold=only_fold is not None)
    tensorboard.require(recipe)
    runtime = resolve_runtime(recipe.train, request.device, rank=rank, world_size=world, local_rank=local_rank)
    distributed.init_process_group(runtime)
    finished = False
    lock = RunLock(home, brief=only_fold is not None)
    reuse = existing and not request.overwrite
    # A new run, or one replacing an old run, is built in a staging folder and swapped in
    # after its first checkpoint; only rank 0 writes, so only its staging folder exists.
    # A fold job's run is staged only inside join_run.
    run = home if reuse or only_fold is not None else home.stage()
    try:
        # Locked before the checks when --runs exists (a second fit stops at once), else after them:
        # the lock would create --runs, and a set-up that fails creates nothing.
        early = distributed.broadcast(home.home.parent.is_dir() if runtime.is_main else None, runtime)
        if early and only_fold is None:
            _on_rank0(lock.acquire, runtime)
        plan = prepare_run(recipe, run, runtime, request, reuse=reuse, io=LoopIO(progress=progress, log=log))
        if only_fold is not None:
            _on_rank0(lambda: join_run(recipe, plan, runtime, lock), runtime)
        elif not early:
            _on_rank0(lock.acquire, runtime)
        if runtime.is_main and only_fold is None:
            start_run(recipe, plan, runtime, reuse=reuse)
        if runtime.is_main:
            if isinstance(log, RunLog):
                log.attach(lambda: run.fit_log)  # follows the run when a staged one is promoted
        distributed.barrier(runtime)
        log(f"run {home.home}: {len(plan.table)} training rows, {len(plan.classes)} classes, "
            f"{recipe.cv.scheme} with folds {plan.plan}, model {recipe.model.source}:{recipe.model.name}, "
            f"device {runtime.device}"
            + (f", {runtime.world_size} processes (DDP)" if runtime.world_size > 1 else ""))
        if plan.extra is not None:
            log(f"{len(plan.extra)} extra rows ({recipe.data.extra_csv}) train in every fold and are never validated")
        hint = cache_hint(recipe, plan.table)
        if hint:
            log(hint)
        done = run.completed_folds() if request.resume else []
        # A new run moves into place at its first checkpoint (so Ctrl-C leaves it resumable);
        # one replacing an old run only once every fold is trained: the old run survives until then.
        promote = run.promote if run.staged and home.final is None else (lambda: None)
        early = (lambda: None) if existing else promote
        folds = [only_fold] if only_fold is not None else plan.plan
        todo = [f for f in folds if f not in done]
        clock = Countdown(len(todo) * recipe.train.epochs)  # the whole run's ETA in every epoch line
        for fold in folds:
            if fold in done:
                log(f"fold {fold}: already complete")
                continue
            mosaic = run.train_batch_jpg if fold == todo[0] and runtime.is_main else None
            fold_lock = RunLock(run, fold=fold)
            _on_rank0(fold_lock.acquire, runtime)
            try:
                _fit_fold(recipe, plan, fold, runtime, request,
                          LoopIO(progress=progress, log=log, on_saved=early, clock=clock, batch_mosaic=mosaic))
            finally:
                fold_lock.release()
        if runtime.is_main:
            promote()
        distributed.barrier(runtime)
        finished = True
        return run.home
    finally:
        if runtime.is_main and run.staged and home.final is None:
            run.discard()  # failed before its first checkpoint: the old run (if any) is untouched
        lock.release()
        distributed.shutdown(runtime, together=finished)


def _on_rank0(step: Callable[[], None], runtime: Runtime) -> None:
    """Rank 0 takes a lock (or joins the run); every rank learns the outcome."""
    failure = None
    if runtime.is_main:
        try:
            step()
        except CompError as err:
            failure = str(err)
    failure = distributed.broadcast(failure, runtime)
    if failure:
        raise CompError(failure)


def join_run(recipe: Recipe, plan: RunPlan, runtime: Runtime, lock: RunLock) -> None:
    """A fold job's share of setting up the run, under the run's lock held only meanwhile: the
    first job to arrive creates the run (staged, then moved into place whole, so a job arriving
    at the same time sees all of it or none); a later one checks that the run there has this
    recipe, classes and folds. Either way the run is marked running."""
    run = plan.run
    lock.acquire()
    try:
        if not run.exists():
            staged = run.stage()
            start_run(recipe, replace(plan, run=staged), runtime, reuse=False)
            staged.promote()
            return
        _check_same_run(recipe, plan)
        start_run(recipe, plan, runtime, reuse=True)
    finally:
        lock.release()


def _flat(table: dict, prefix: str = "") -> dict:
    """A recipe table as {"train.epochs": 3, ...}."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _check_same_run(recipe: Recipe, plan: RunPlan) -> None:
    """A fold job joins a run only when it trains what the run's other folds trained."""
    run = plan.run
    mine, theirs = _flat(recipe_to_dict(recipe)), _flat(recipe_to_dict(run.recipe()))
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        raise CompError(f"{run.path} was made with another recipe ({', '.join(differ)} differ); the fold "
                        f"jobs of one run train one recipe: add --resume to train the run's own, or use "
                        f"another name (--set name=...)")
    if run.classes() != list(plan.classes.labels):
        raise CompError(f"{run.path} was trained on classes {run.classes()}, the data now has "
                        f"{list(plan.classes.labels)}; use another name (--set name=...)")
    if not np.array_equal(run.read_folds(plan.table.ids), plan.folds):
        raise CompError(f"{run.folds_path} assigns other folds than this job would; start the fold jobs "
                        f"from the same recipe and data")


def _fit_fold(recipe: Recipe, plan: RunPlan, fold: int, runtime: Runtime, request: FitRequest,
              io: LoopIO) -> None:
    """Train one fold and record its result; an interruption names the command that resumes."""
    folder = plan.run.fold(fold)
    split = plan.split(recipe, fold)
    if plan.extra is not None:
        io.log(f"fold {fold}: trains on {len(split.train_index)} rows + {len(plan.extra)} extra rows, "
               f"validates {len(split.valid_index)}")
    if runtime.is_main:
        folder.clear_result()  # the fold is unfinished until rewritten
    io.stop = StopFlag()
    try:
        with _stop_on_signals(io.stop):
            init = plan.init.get(fold)
            if init is not None and not (request.resume and folder.last.is_file()):
                io.log(f"fold {fold}: starting from {init[0]} ({init[1]})")
            parts = plan.ready.pop(fold, None) or fold_parts(recipe, split, runtime,
                                                              init=None if init is None else init[0], log=io.log)
            run = FoldRun(recipe, parts, runtime, io.stop, split.task)
            result = train_fold(run, split, folder, resume=request.resume, io=io)
    except (Interrupted, KeyboardInterrupt) as err:
        if isinstance(err, KeyboardInterrupt):  # a second Ctrl-C: stopped at once, mid-step
            err = f"stopped at once by a second Ctrl-C (last.pt is the last one saved, fold {fold})"
        if runtime.is_main and plan.run.info_path.is_file():
            plan.run.set_status("interrupted")
        if plan.run.staged and RunDir(plan.run.home).exists():  # an --overwrite not finished: the old run stays
            again = "comp " + shlex.join(fit_command(recipe.source, request.runs_root, fold=request.fold,
                                                     extra=("--overwrite",)))
            raise Interrupted(f"{err}; {plan.run.home} is kept as it was (--overwrite replaces it only "
                              f"once the new run is trained); start again with: {again}") from None
        again = resume_hint(recipe.source, request.runs_root, request.fold)
        raise Interrupted(f"{err}; resume with: {again}") from None
    if runtime.is_main:
        _write_fold_result(folder, plan, result)
    if len(split.valid_index):
        io.log(f"fold {fold}: best {split.task.monitor} {result.best_score:.4f} "
               f"at epoch {result.best_epoch}")


def init_checkpoints(recipe: Recipe, runs_root: Path, folds: list[int],
                     classes: ClassMap) -> dict[int, tuple[Path, str]]:
    """``[model] init_from``: for each fold to train, the checkpoint it starts from and why.

    The source is a run name under ``runs_root`` or a run folder. Each fold takes that run's
    same fold (its ``best.pt``) when the run has it, else the run's best fold by the run's own
    monitor. The class lists must be equal; all of this is checked before anything is trained.
    """
    name = recipe.model.init_from
    source = find_run(runs_root, name)
    if source is None:
        raise CompError(f"[model] init_from {name!r}: no run of that name under {runs_root}/ and no run "
                        f"folder at that path (train it first with `comp fit`)"
                        + _same_classes(runs_root, classes, recipe.name))
    if source.classes() != list(classes.labels):
        raise CompError(f"[model] init_from {name!r} was trained on classes {source.classes()}, this run "
                        f"has {list(classes.labels)}; the class lists must match"
                        + _same_classes(runs_root, classes, recipe.name))
    done = [k for k in source.completed_folds() if source.fold(k).best.is_file()]
    if not done:
        raise CompError(f"[model] init_from {name!r}: {source.path} has no finished fold with a best.pt")
    scores = {k: (source.fold(k).read_result() or {}).get("best_score") for k in done}
    scored = {k: v for k, v in scores.items() if v is not None}
    if scored:
        src_task = source.task()
        pick = max if src_task.mode == "max" else min
        best = pick(scored, key=lambda k: (scored[k], -k) if pick is max else (scored[k], k))
        best_why = f"{name}'s best fold {best}, {src_task.monitor} {scored[best]:.4f}"
    else:
        best, best_why = done[0], f"{name}'s fold {done[0]} (its folds have no validation score)"
    return {k: (source.fold(k).best, f"{name}'s fold {k}") if k in done else (source.fold(best).best, best_why)
            for k in folds}


def _same_classes(runs_root: Path, classes: ClassMap, name: str) -> str:
    """"; runs with these classes: a, b (--set model.init_from=NAME)" for an init_from error."""
    try:
        same = [r.name for r in list_runs(runs_root) if r.name != name and r.classes() == list(classes.labels)]
    except (CompError, OSError):
        same = []
    if not same:
        return f"; no run under {runs_root}/ has these classes"
    return f"; runs under {runs_root}/ with these classes: {', '.join(same)} (--set model.init_from={same[-1]})"


def start_run(recipe: Recipe, plan: RunPlan, runtime: Runtime, *, reuse: bool) -> None:
    """Create (or reopen) the run folder: run.json, the resolved recipe, folds.csv. A new run's
    folder is its staging folder; an old run of the same name is not touched here."""
    run = plan.run
    try:
        run.path.mkdir(parents=True, exist_ok=reuse)
    except OSError as err:
        raise CompError(f"cannot write {run.path}: {err.strerror}") from None
    if reuse:
        info = run.info()
    else:
        info = RunInfo(name=recipe.name, recipe_file=recipe.source.file, overrides=list(recipe.source.overrides),
                       classes=list(plan.classes.labels), scheme=recipe.cv.scheme, folds=plan.plan,
                       device=str(runtime.device), versions=_versions(),
                       task=task_record(plan.task, recipe.predict.decision))
        run.write_recipe(recipe)
        run.write_folds(plan.table.ids, plan.folds)
    info.status = "running"
    run.write_info(info)


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


def _write_fold_result(folder: FoldDir, plan: RunPlan, result: FoldResult) -> None:
    """The fold's validation predictions, then result.json, which marks the fold complete."""
    if len(result.valid_index):
        folder.write_predictions(oof_frame(plan.table, plan.classes, result))
    folder.write_result(best_epoch=result.best_epoch, best_score=result.best_score,
                        checkpoints=result.checkpoints, stopped_early=result.stopped_early)


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


def _versions() -> dict[str, str]:
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
