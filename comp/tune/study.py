"""``comp tune``: an Optuna study whose every trial is an ordinary comp run.

:func:`prepare` checks the request (recipe, space, study name, storage) and writes nothing;
:func:`open_study` creates or joins the study; :func:`run_trials` runs trials in this process
until the study has its ``--trials`` (counted over every process that joined it) or the
``--timeout`` has passed. Each trial is ``comp fit RECIPE --set <its values> --set
name=trial_NNNN --runs runs/<study>`` run in this process, on the folds the study's recipe fixes.

Pruning: each epoch of the trial's first fold reports its validation figure; the pruner (median
by default, or Hyperband) stops a trial whose figure trails, so only survivors train their other
folds. Or each fold's figure, once it has trained, for Optuna's Wilcoxon pruner over folds. A pruned trial's run says so (run.json status "pruned") and ``comp blend`` refuses it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comp.errors import CompError
from comp.metrics import MONITOR_MODES
from comp.recipe import Recipe, load_recipe, recipe_to_toml
from comp.recipe.load import MAX_NAME
from comp.run.folder import RunDir
from comp.run.life import FitRequest
from comp.train.fit import fit
from comp.train.loop import Interrupted
from comp.tune.folder import StudyDir, trial_name
from comp.tune.objective import direction, objective_metric, trial_figure
from comp.tune.space import Space, load_space
from comp.tune.storage import HEARTBEAT, mask, open_storage

logger = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "wilcoxon", "none")
MAX_FAILURES = 3  # trials failing one after another in a process: the study stops (the data, not the values)
# What the study records of itself (user attributes), so every process that joins trains the same thing.
_RECIPE, _SPACE, _DIRECTION = "comp.recipe", "comp.space", "comp.direction"


@dataclass(frozen=True)
class TuneRequest:
    """What the ``comp tune`` command line asks for."""

    recipe: Path
    space: Path
    overrides: tuple[str, ...] = ()
    study: str | None = None  # default: <recipe name>-tune
    storage: str | None = None  # default: SQLite in the study's folder
    trials: int = 20  # in the study, over every process that joins it
    timeout: float | None = None  # seconds after which this process starts no new trial
    pruner: str = "median"
    startup: int = 5  # trials finished before the median pruner prunes
    heartbeat: int = HEARTBEAT
    runs_root: Path = Path("runs")
    device: str | None = None
    skip_bad: bool = False


@dataclass(frozen=True)
class Prepared:
    """A checked request: the study's recipe (its --set applied), space, folder and storage."""

    request: TuneRequest
    recipe: Recipe
    space: Space
    folder: StudyDir
    storage: str
    direction: str

    @property
    def default_storage(self) -> bool:
        return self.request.storage is None


def prepare(request: TuneRequest) -> Prepared:
    """Every check of a tune request before anything is written."""
    if request.trials < 1:
        raise CompError(f"--trials must be at least 1, got {request.trials}")
    if request.pruner not in PRUNERS:
        raise CompError(f"--pruner must be {', '.join(PRUNERS[:-1])} or {PRUNERS[-1]}, got {request.pruner!r}")
    if request.startup < 0:
        raise CompError(f"--startup must not be negative, got {request.startup}")
    if request.heartbeat < 1:
        raise CompError(f"--heartbeat must be at least 1 second, got {request.heartbeat}")
    if request.timeout is not None and request.timeout <= 0:
        raise CompError(f"--timeout must be positive, got {request.timeout}")
    recipe = load_recipe(request.recipe, list(request.overrides))
    space = load_space(request.space, recipe)
    folder = StudyDir(request.runs_root, request.study or f"{recipe.name[:MAX_NAME - 5]}-tune")
    folder.check()
    storage = request.storage or folder.default_storage
    return Prepared(request, recipe, space, folder, storage, direction(objective_metric(recipe)))


def open_study(prep: Prepared) -> Any:
    """Create the study (its folder, study.json and, by default, its SQLite file) or join it; a
    study that another process started with another recipe, space or direction is refused. Nothing
    is left behind when the storage cannot be opened."""
    import optuna

    quiet_optuna()
    folder, made = prep.folder, False
    if prep.default_storage:
        made = folder.create(None)
    try:
        storage = open_storage(prep.storage, heartbeat=prep.request.heartbeat, on_stale=on_dead_trial(folder))
        if not prep.default_storage:
            made = folder.create(mask(prep.storage))
        study = optuna.create_study(study_name=folder.name, storage=storage, direction=prep.direction,
                                    load_if_exists=True)
    except BaseException:
        if made:
            shutil.rmtree(folder.path, ignore_errors=True)
        raise
    _check_same(study, prep)
    return study


def _check_same(study: Any, prep: Prepared) -> None:
    """Record the study's recipe, space and direction, or check a joining process's against them."""
    mine = {_RECIPE: recipe_to_toml(prep.recipe), _SPACE: prep.space.fingerprint(), _DIRECTION: prep.direction}
    theirs = study.user_attrs
    differ = [what for key, what in ((_RECIPE, "recipe (with its --set)"), (_SPACE, "space"),
                                     (_DIRECTION, "direction"))
              if key in theirs and theirs[key] != mine[key]]
    if study.direction.name.lower() != prep.direction:
        differ.append("direction")
    if differ:
        raise CompError(f"study {study.study_name!r} in {mask(prep.storage)} was started with another "
                        f"{' and '.join(sorted(set(differ)))}: every process of a study trains the same recipe over "
                        f"the same space; use another --study")
    for key, value in mine.items():
        if key not in theirs:
            study.set_user_attr(key, value)


def on_dead_trial(folder: StudyDir) -> Callable[[Any, Any], None]:
    """What happens to a trial whose process died: its run is marked failed, and it is said."""

    def on_stale(_study: Any, trial: Any) -> None:
        retried = len(trial.system_attrs.get("retry_history", [])) < 1
        logger.info(f"trial {trial.number} stopped beating (its process died): marked failed"
                    + (", its parameters are tried again" if retried else ", already a retry: not tried again"))
        run = RunDir(folder.trial(trial.number))
        with contextlib.suppress(CompError, OSError):
            if run.exists():
                run.set_status("failed")

    return on_stale


class TrialFailed(Exception):
    """A trial that failed for its values (a recipe they make refused, a loss gone non-finite):
    the study goes on."""


class Surplus(Exception):
    """A trial started by a process that raced another for the study's last trial: not trained."""


@dataclass
class Objective:
    """One trial: the sampled values as --set overrides, fitted as a run under the study's folder,
    reporting the first fold's epochs to the pruner; its value is the run's OOF figure."""

    prep: Prepared
    after_fit: Callable[[Path], None] = lambda _: None  # the command line's closing words and report
    failures: int = 0  # trials failed one after another
    last_error: str = ""
    interrupted: str = ""

    def __call__(self, trial: Any) -> float:
        import optuna

        prep = self.prep
        if _ahead(trial) >= prep.request.trials:
            raise Surplus(f"trial {trial.number}: the study already has its {prep.request.trials} trials")
        values = {p.key: p.suggest(trial) for p in prep.space.params}
        name = trial_name(trial.number)
        overrides = [*prep.request.overrides, *prep.space.overrides(values), f"name={name}"]
        trial.set_user_attr("run", name)
        trial.set_user_attr("overrides", overrides)
        shown = ", ".join(f"{k} {_show(v)}" for k, v in values.items())
        retry = _retry_of(trial)
        logger.info(f"trial {trial.number} ({name}): {shown}" + (f" (trial {retry} again)" if retry is not None else ""))
        try:
            recipe = load_recipe(prep.request.recipe, overrides)
        except CompError as err:
            raise self._failed(f"trial {trial.number}: the recipe refuses these values: {err}") from None
        run_dir = prep.folder.trial(trial.number)
        request = FitRequest(runs_root=prep.folder.path, device=prep.request.device, skip_bad=prep.request.skip_bad)
        started = time.perf_counter()
        try:
            one_fold = recipe.cv.scheme in ("holdout", "full")
            pruning = None if prep.request.pruner == "none" else Pruning(
                trial, run_dir, by_fold=prep.request.pruner == "wilcoxon", last=recipe.train.epochs if one_fold else 0)
            fitted = fit(recipe, request, on_epoch=pruning)
        except optuna.TrialPruned as pruned:
            with contextlib.suppress(CompError, OSError):
                RunDir(run_dir).set_status("pruned")
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            logger.info(f"trial {trial.number} pruned: {pruned}")
            self.failures = 0
            raise
        except Interrupted as err:
            trial.study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
            self.interrupted = str(err).split("; resume with:")[0]
            raise
        except CompError as err:
            raise self._failed(f"trial {trial.number} failed: {err}") from None
        seconds = round(time.perf_counter() - started, 1)
        self.after_fit(fitted.path)
        figure = trial_figure(fitted.path)
        trial.set_user_attr("metric", figure.metric)
        trial.set_user_attr("decided", figure.how)
        trial.set_user_attr("seconds", seconds)
        self.failures = 0
        logger.info(f"trial {trial.number}: OOF {figure.metric} {figure.value:.4f} ({figure.how}) in {seconds:.0f}s")
        if math.isnan(figure.value):
            raise self._failed(f"trial {trial.number}: its OOF {figure.metric} is not a number")
        return figure.value

    def _failed(self, message: str) -> TrialFailed:
        self.failures += 1
        self.last_error = message
        logger.warning(message)
        return TrialFailed(message)


@dataclass
class Pruning:
    """The per-epoch callback of a trial's fit. By epoch (median, Hyperband): the first fold's
    validation figure at each epoch. By fold (Wilcoxon): each finished fold's best figure, once the
    next fold starts. A trial the pruner stops raises :class:`optuna.TrialPruned` (the fit ends there)."""

    trial: Any
    run_dir: Path
    by_fold: bool = False
    fold: int | None = None  # the fold being watched
    metric: str = ""
    best: float = math.nan  # by fold: the watched fold's best figure so far
    last: int = 0  # a run of one fold (holdout): its last epoch is reported, never pruned (nothing left to save)

    def __call__(self, fold: int, row: dict) -> None:
        if not self.metric:
            self.metric = RunDir(self.run_dir).task().headline  # as the fit resolved it (run.json)
            self.trial.set_user_attr("metric", self.metric)
        if self.fold is None:
            self.fold = fold
        value, epoch = row.get(self.metric, math.nan), int(row["epoch"])
        value = math.nan if value is None else float(value)
        if not self.by_fold:
            if fold == self.fold and not math.isnan(value):
                self._report(value, epoch, f"fold {fold} epoch {epoch}", prune=epoch != self.last)
            return
        if fold != self.fold:  # the watched fold has ended: its figure is the best of its epochs
            done, figure = self.fold, self.best
            self.fold, self.best = fold, math.nan
            if not math.isnan(figure):
                self._report(figure, done, f"fold {done}")
        if not math.isnan(value):
            better = max if MONITOR_MODES.get(self.metric) != "min" else min
            self.best = value if math.isnan(self.best) else better(self.best, value)

    def _report(self, value: float, step: int, where: str, *, prune: bool = True) -> None:
        import optuna

        self.trial.report(value, step)
        if prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"{where}: {self.metric} {value:.4f} trails the other trials'")


def pruner_of(prep: Prepared) -> Any:
    import optuna

    if prep.request.pruner == "median":
        # Epoch figures during the LR warmup say little of the trial: no pruning before it ends.
        first = math.ceil(prep.recipe.schedule.warmup_epochs) + 1
        return optuna.pruners.MedianPruner(n_startup_trials=prep.request.startup, n_warmup_steps=first)
    if prep.request.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=prep.recipe.train.epochs)
    if prep.request.pruner == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    return optuna.pruners.NopPruner()


def run_trials(prep: Prepared, study: Any, *, after_fit: Callable[[Path], None] = lambda _: None) -> Objective:
    """Trials in this process until the study has ``--trials`` (finished, pruned or running, over
    all its processes) or ``--timeout`` has passed. Each starts after failing the trials whose
    process died (Optuna's heartbeat; their parameters are queued once)."""
    import optuna
    from optuna.storages import fail_stale_trials

    quiet_optuna()
    study.pruner = pruner_of(prep)
    objective = Objective(prep, after_fit)
    deadline = None if prep.request.timeout is None else time.monotonic() + prep.request.timeout
    while True:
        fail_stale_trials(study)
        if _counted(study) >= prep.request.trials:
            logger.info(f"study {study.study_name!r} has its {prep.request.trials} trials")
            break
        if deadline is not None and time.monotonic() >= deadline:
            logger.info("--timeout has passed: no new trial")
            break
        study.optimize(objective, n_trials=1, catch=(TrialFailed, Surplus), gc_after_trial=True)
        if objective.failures >= MAX_FAILURES:
            raise CompError(f"{objective.failures} trials failed one after another; the last: {objective.last_error}")
    return objective


# A trial counts towards --trials once it runs; a queued one (a retry) runs before any new trial.
_COUNTED = ("COMPLETE", "PRUNED", "RUNNING")


def _counted(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=tuple(TrialState[s] for s in _COUNTED)))


def _ahead(trial: Any) -> int:
    """Trials of the study numbered before ``trial`` that count towards --trials."""
    from optuna.trial import TrialState

    states = tuple(TrialState[s] for s in _COUNTED)
    return sum(t.number < trial.number for t in trial.study.get_trials(deepcopy=False, states=states))


def _retry_of(trial: Any) -> int | None:
    """The trial whose values ``trial`` tries again: one whose process died (the heartbeat's retry)
    or one stopped by Ctrl-C; else None."""
    frozen = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
    attrs = {} if frozen is None else frozen.system_attrs
    return attrs.get("failed_trial", trial.user_attrs.get("retry_of"))


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def quiet_optuna() -> None:
    """comp says what happens; Optuna's own lines and its warnings about experimental features
    (the heartbeat) would say it twice."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
