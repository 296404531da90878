"""``comp fit``: validate the data, assign folds, train each fold into the run and merge it.

The run's life (open, lock, stage, join, promote, merge) is :class:`comp.run.life.Run`, its
order :meth:`~comp.run.life.Run.session`; this module checks the data, plans the folds and
trains them inside that session.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from comp.console import Countdown, log_to, quiet_rank
from comp.data import splits
from comp.data.cache import cached_paths, misfit_cache
from comp.data.check import check_data
from comp.data.table import ClassMap, ImageTable
from comp.errors import CompError
from comp.kinds import KINDS, Decision, kind_of
from comp.metrics import Task
from comp.model.runtime import Runtime, resolve_runtime
from comp.recipe import Recipe
from comp.recipe.task import class_table, describe_task
from comp.run.folder import FoldDir, RunDir, find_run, list_runs
from comp.run.life import FitRequest, Run, RunContents, Session
from comp.run.track import Tracker, open_tracker
from comp.train import distributed, tensorboard
from comp.train.fold_hooks import fold_hooks
from comp.train.loop import FoldResult, FoldRun, Interrupted, StopFlag, fold_parts, train_fold
from comp.train.parts import FoldParts, FoldSplit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitted:
    """A fit's outcome: the run's folder, and whether this fit merged it (a fold job merges only
    when it is the last to finish; under torchrun only rank 0 merges)."""

    path: Path
    merged: bool


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


def assign_folds(recipe: Recipe, table: ImageTable) -> np.ndarray:
    """Each row's validation fold (-1: train only), by the recipe's ``[cv] scheme``."""
    cv, kind = recipe.cv, KINDS.get(recipe.data.task)
    labels = table.labels if kind is None else kind.strata(table.labels, table.targets)
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
    task: Task  # as check_data resolved it once the classes are known
    init: dict[int, tuple[Path, str]] = field(default_factory=dict)  # [model] init_from: fold → (checkpoint, why)
    ready: dict[int, FoldParts] = field(default_factory=dict)  # parts the set-up check built, by fold
    extra: ImageTable | None = None  # [data] extra_csv: trained in every fold, never validated

    def split(self, recipe: Recipe, fold: int) -> FoldSplit:
        train_index, valid_index = fold_indices(recipe, self.folds, fold)
        return FoldSplit(fold, self.table, self.classes, train_index, valid_index, self.task, self.extra)

    def contents(self) -> RunContents:
        """What the run records when it starts (run.json, folds.csv)."""
        return RunContents(tuple(self.classes.labels), self.table.ids, self.folds, self.plan, self.task)


def prepare_run(recipe: Recipe, life: Run, runtime: Runtime) -> RunPlan:
    """Check the data, assign the folds (or reread them when the run's folder is reused) and
    make every set-up check (:func:`check_setup`, on the first fold still to train); nothing is
    written here, so a failure leaves no run behind.

    Rank 0 checks the data and tells the others, so every rank stops on the same message.
    """
    run, request = life.folder, life.request
    failure, report = None, None
    if runtime.is_main:
        try:
            report = check_data(recipe, test=False, skip_bad=request.skip_bad)
        except CompError as err:
            failure = str(err)
    failure, report = distributed.broadcast((failure, report), runtime)
    if failure:
        raise CompError(failure)
    table, classes = report.readable_train_table(), report.classes  # parsed once, by the check
    task = report.task  # a training check always resolves it
    logger.info(report.target_line or class_table(list(classes.labels), list(report.class_counts.values()),
                                                  report.weights, task.names))
    logger.info(describe_task(task, classes.labels))
    if life.reuse:
        info = run.info()
        if info.classes != list(classes.labels):
            raise CompError(f"{run.path} was trained on classes {info.classes}, the data now has "
                            f"{list(classes.labels)}; use --overwrite to start again")
    folds = run.read_folds(table.ids) if life.reuse else None
    plan = plan_run(recipe, table, classes, request.runs_root, run=run, folds=folds, task=task,
                    extra=report.readable_extra_table())
    if request.fold is not None and request.fold not in plan.plan:
        raise CompError(f"--fold {request.fold}: the run's folds are {plan.plan}")
    todo = life.folds_to_train(plan.plan)
    if todo:
        check_setup(recipe, plan, runtime, fold=todo[0])
    return plan


def check_setup(recipe: Recipe, plan: RunPlan, runtime: Runtime, *, fold: int | None = None) -> None:
    """Every set-up step of a fit, before any folder is touched: the parts of ``fold`` (default
    the plan's first; :func:`prepare_run` has checked ``--fold`` against the plan) as it will
    train with them (model and backbone, pretrained or init_from weights, loss and its class
    weights, optimiser, schedule, loaders, and on CUDA the batch probe). ``comp check`` runs it too."""
    first = plan.plan[0] if fold is None else fold
    init = plan.init.get(first)
    plan.ready[first] = fold_parts(recipe, plan.split(recipe, first), runtime, init=None if init is None else init[0])


def plan_run(recipe: Recipe, table: ImageTable, classes: ClassMap, runs_root: Path, *, run: RunDir | None = None,
             folds: np.ndarray | None = None, task: Task, extra: ImageTable | None = None) -> RunPlan:
    """A run's plan (``comp fit``, ``comp check``): its folder (default ``runs_root/<name>``), the
    folds (assigned, unless ``folds`` were read back from a reused run), the folds to train, the
    task and the init_from checkpoints; nothing written. ``extra`` rows train in every fold and
    are in no fold of ``folds`` (folds.csv)."""
    folds = assign_folds(recipe, table) if folds is None else folds
    folds_to_train = fold_plan(recipe, folds)
    init = init_checkpoints(recipe, runs_root, folds_to_train, classes) if recipe.model.init_from else {}
    return RunPlan(run or RunDir.under(runs_root, recipe.name), table, classes, folds, folds_to_train,
                   task, init, extra=extra)


def fit(recipe: Recipe, request: FitRequest, *, on_epoch: Callable[[int, dict], None] | None = None) -> Fitted:
    """Train every fold (or ``request.fold``) of a recipe into ``runs_root/<name>/`` and merge
    the run: oof.csv, the decision fitted on it (thresholds.json), run.json "complete". A fold
    job (``request.fold``) merges only when it is the last to finish; the others leave that to it
    (or to ``comp merge``).

    Ctrl-C or SIGTERM finishes the current step, writes last.pt and raises :class:`Interrupted`
    (exit 130) naming the command that resumes; ``resume`` continues with the run's own saved
    recipe, so a resumed run trains exactly what the interrupted one would have. Under torchrun
    every rank trains each fold together (DDP) and only rank 0 writes and merges.

    The run's life (its checks, lock, staging, promotion, fold locks and merge) is
    :class:`~comp.run.life.Run`: a fold job holds the run's lock only while it creates or joins
    the run, then only its fold's lock, so ``comp fit RECIPE --fold K`` for each K may run at
    once, here or on machines sharing --runs. The report is the command line's, afterwards.

    What it says goes to the "comp" logger (a library caller that sets up no logging sees only
    warnings) and, timestamped, to the run's fit.log; under torchrun only rank 0 says anything.
    """
    if distributed.env_world()[0] != 0:
        quiet_rank()  # rank 0 speaks for the run
        return _fit(recipe, request, lambda _: None, on_epoch)
    started: list[Run] = []  # the run, once started: its fit.log follows a staged run promoted into place
    with log_to(lambda: started[0].folder.fit_log if started else None):
        return _fit(recipe, request, started.append, on_epoch)


def _fit(recipe: Recipe, request: FitRequest, on_started: Callable[[Run], None],
         on_epoch: Callable[[int, dict], None] | None = None) -> Fitted:
    rank, local_rank, world = distributed.env_world()
    run = Run.open(recipe, request)
    recipe = run.recipe  # on --resume: the run's own
    tensorboard.require(recipe)
    tracker = open_tracker(recipe.track, request.runs_root)  # its store checked on every rank; used on rank 0
    runtime = resolve_runtime(recipe.train, request.device, rank=rank, world_size=world, local_rank=local_rank)
    distributed.init_process_group(runtime)
    finished, plans = False, []

    def prepare() -> RunContents:
        plans.append(prepare_run(recipe, run, runtime))
        return plans[0].contents()

    try:
        with run.session(prepare, str(runtime.device), main=runtime.is_main, partial=True,
                         on_main=functools.partial(_on_rank0, runtime=runtime),
                         tracker=tracker if runtime.is_main else None) as session:
            if runtime.is_main:
                on_started(run)
            distributed.barrier(runtime)
            _train_folds(recipe, plans[0], runtime, request, run, session, on_epoch)
        distributed.barrier(runtime)
        finished = True
        return Fitted(run.home.path, session.merged.merged)
    finally:
        distributed.shutdown(runtime, together=finished)


def _train_folds(recipe: Recipe, plan: RunPlan, runtime: Runtime, request: FitRequest, run: Run,
                 session: Session, on_epoch: Callable[[int, dict], None] | None = None) -> None:
    """Train the folds still to train, each under its lock."""
    logger.info(f"run {run.home.path}: {len(plan.table)} training rows, {len(plan.classes)} classes, "
                f"{recipe.cv.scheme} with folds {plan.plan}, model {recipe.model.source}:{recipe.model.name}, "
                f"device {runtime.device}"
                + (f", {runtime.world_size} processes (DDP)" if runtime.world_size > 1 else ""))
    if plan.extra is not None:
        logger.info(f"{len(plan.extra)} extra rows ({recipe.data.extra_csv}) train in every fold and are never "
                    f"validated")
    hint = cache_hint(recipe, plan.table)
    if hint:
        (logger.warning if hint.startswith("warning:") else logger.info)(hint)
    todo = run.folds_to_train(plan.plan)
    clock = Countdown(len(todo) * recipe.train.epochs)  # the whole run's ETA in every epoch line
    on_saved = run.promote_new if runtime.is_main else (lambda: None)
    for fold in run.asked_folds(plan.plan):
        if fold not in todo:
            logger.info(f"fold {fold}: already complete")
            continue
        mosaic = run.folder.train_batch_jpg if fold == todo[0] and runtime.is_main else None
        with session.fold(fold):
            _fit_fold(recipe, plan, fold, runtime, request, run, FoldIO(on_saved, clock, mosaic, run.tracker, on_epoch))


def _on_rank0(step: Callable[[], None], *, runtime: Runtime) -> None:
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


@dataclass(frozen=True)
class FoldIO:
    """What a fold's training hands to the outside besides its files: what runs after each
    last.pt (a staged run is promoted then), the run's ETA and where to draw the batch mosaic."""

    on_saved: Callable[[], None]
    clock: Countdown | None = None
    batch_mosaic: Path | None = None
    tracker: Tracker | None = None  # the experiment tracker (rank 0's)
    on_epoch: Callable[[int, dict], None] | None = None  # after each epoch: (fold, its row); comp tune prunes


def _fit_fold(recipe: Recipe, plan: RunPlan, fold: int, runtime: Runtime, request: FitRequest, life: Run,
              io: FoldIO) -> None:
    """Train one fold and record its result; an interruption names the command that resumes."""
    folder = plan.run.fold(fold)
    split = plan.split(recipe, fold)
    if plan.extra is not None:
        logger.info(f"fold {fold}: trains on {len(split.train_index)} rows + {len(plan.extra)} extra rows, "
                    f"validates {len(split.valid_index)}")
    if runtime.is_main:
        folder.clear_result()  # the fold is unfinished until rewritten
    stop = StopFlag()
    try:
        with _stop_on_signals(stop):
            init = plan.init.get(fold)
            if init is not None and not (request.resume and folder.last.is_file()):
                logger.info(f"fold {fold}: starting from {init[0]} ({init[1]})")
            parts = plan.ready.pop(fold, None) or fold_parts(recipe, split, runtime,
                                                              init=None if init is None else init[0])
            run = FoldRun(recipe, parts, runtime, stop, split.task)
            hooks = fold_hooks(run, split, folder, clock=io.clock, batch_mosaic=io.batch_mosaic, tracker=io.tracker,
                               on_epoch=io.on_epoch)
            result = train_fold(run, split, folder, hooks, resume=request.resume, on_saved=io.on_saved)
    except (Interrupted, KeyboardInterrupt) as err:
        if isinstance(err, KeyboardInterrupt):  # a second Ctrl-C: stopped at once, mid-step
            err = f"stopped at once by a second Ctrl-C (last.pt is the last one saved, fold {fold})"
        raise Interrupted(life.stopped(str(err), mark=runtime.is_main)) from None
    if runtime.is_main:
        _write_fold_result(folder, plan, result)
    if len(split.valid_index):
        logger.info(f"fold {fold}: best {split.task.monitor} {result.best_score:.4f} "
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
        idx, kind, labels = result.valid_index, kind_of(plan.task), plan.classes.labels
        targets = None if plan.table.targets is None else plan.table.targets[idx]
        probs = result.valid_probs
        folder.write_predictions(plan.table.ids[idx], kind.row_labels(plan.table.labels[idx], targets, labels),
                                 probs, labels, pred=kind.as_labels(kind.plain_rule.apply(Decision(), probs), labels))
    folder.write_result(best_epoch=result.best_epoch, best_score=result.best_score,
                        checkpoints=result.checkpoints, stopped_early=result.stopped_early)
