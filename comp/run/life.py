"""A run's life, owned by one object (:class:`Run`): open (every check of the request against
the folder), lock, stage, start or join, the folds still to train (each under its own lock),
promote or discard, and merge (oof.csv, the fitted decision, run.json "complete").

Every way of fitting goes through it: the serial fit (which holds the run's lock throughout and
merges at the end), each rank 0 under torchrun (the other ranks only train), ``--folds-parallel``
(a parent that starts the run, then fold jobs), and fold jobs (``comp fit RECIPE --fold K``, here
or on machines sharing ``--runs``), which create or join the run under a brief hold of its lock,
train their fold under the fold's lock, and of which the last to finish merges the run.
``comp merge RUN`` merges a run with :meth:`Run.merge` too. The order of all this is written once,
in :meth:`Run.session`, which every one of them uses. The report is not part of the run's
life: the command line writes it afterwards (``comp cv-report`` writes it again).
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from comp.errors import CompError
from comp.metrics import Task
from comp.recipe import Provenance, Recipe, apply_override, parse_override, recipe_from_dict, recipe_to_dict
from comp.run.folder import RunDir, RunInfo, check_runs_root, task_record
from comp.run.lock import RunLock
from comp.run.track import Tracker
from comp.run.oof import merge_oof

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitRequest:
    """What the ``comp fit`` command line asks for besides the recipe."""

    runs_root: Path = Path("runs")
    fold: int | None = None  # train only this fold (a fold job)
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    skip_bad: bool = False


def fit_command(source: Provenance, request: FitRequest, *, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``comp fit`` arguments (after ``comp``) that make ``request`` of this recipe: the one
    place the command line is rebuilt, for the resume hint, ``--folds-parallel``'s fold jobs and
    the torchrun relaunch of ``--gpus``."""
    args = ["fit", source.file]
    args += ["--resume"] if request.resume else []
    args += ["--overwrite"] if request.overwrite else []
    args += ["--fold", str(request.fold)] if request.fold is not None else []
    args += [a for o in source.overrides for a in ("--set", o)]
    args += ["--skip-bad"] if request.skip_bad else []
    args += ["--device", request.device] if request.device else []
    args += ["--runs", str(request.runs_root)] if Path(request.runs_root) != Path("runs") else []
    return args + list(extra)


def resume_hint(source: Provenance, request: FitRequest) -> str:
    """The command a user types to continue an interrupted run."""
    return "comp " + shlex.join(fit_command(source, replace(request, resume=True, overwrite=False)))


def merge_command(name: str, runs_root: Path) -> str:
    """The ``comp merge`` command of a run."""
    return "comp " + shlex.join(["merge", name] + (["--runs", str(runs_root)] if Path(runs_root) != Path("runs") else []))


@dataclass(frozen=True)
class RunContents:
    """What a run records when it starts, beside its recipe: its classes, each training row's
    validation fold (folds.csv), the folds to train and the task as resolved for these classes."""

    classes: tuple[str, ...]
    ids: np.ndarray
    folds: np.ndarray
    plan: list[int]
    task: Task


@dataclass(frozen=True)
class Merged:
    """What :meth:`Run.merge` did: whether it merged, and the folds not trained yet."""

    merged: bool
    missing: list[int]


def _here(step: Callable[[], None]) -> None:
    step()


@dataclass
class Session:
    """A run between its start and its close (:meth:`Run.session`): :meth:`fold` holds a fold's
    lock while it trains; :attr:`merged` says, once the session has ended, what the merge did."""

    run: Run
    on_main: Callable[[Callable[[], None]], None] = _here
    merged: Merged = field(default_factory=lambda: Merged(False, []))

    @contextlib.contextmanager
    def fold(self, fold: int) -> Iterator[None]:
        """While ``fold`` trains: its lock held (taken on the main rank, the outcome shared), and a
        fold job's fold checked to be new unless resumed."""
        lock = self.run.fold_lock(fold)
        self.on_main(lambda: self.run.claim_fold(fold, lock))
        try:
            yield
        finally:
            lock.release()


class Run:
    """One run's life. :meth:`open` checks a fit's request against the folder; then the run is
    locked and started (:meth:`lock`, :meth:`start`) or joined (:meth:`join`: fold jobs and the
    ``--folds-parallel`` parent), its folds are trained each under :meth:`fold_lock`, it is
    promoted into place (:meth:`promote`) and merged (:meth:`merge`); :meth:`close` releases it,
    discarding a staged run that never got into place.

    A new run (or one replacing an old run, ``--overwrite``) is staged: built in a hidden folder
    beside its place (:meth:`RunDir.stage`); a new one moves into place at its first checkpoint
    (:meth:`promote_new`), a replacement only once all its folds are trained (:meth:`promote`), so
    a failure before then leaves the old run as it was. A run that is joined is staged only while
    the first job creates it, under the brief lock.

    Under torchrun only rank 0 calls these; the trainer shares the outcome with the other ranks.
    """

    def __init__(self, home: RunDir, recipe: Recipe | None = None, request: FitRequest | None = None, *,
                 existing: bool = True, joins: bool = False, parent: bool = False) -> None:
        self.recipe = recipe
        self.parent = parent  # --folds-parallel's parent: starts fold jobs, merges once they are done
        self.tracker = Tracker()  # the session's: told when the run starts and ends
        self.request = request or FitRequest(runs_root=home.path.parent)
        self.home = home  # the run's place under --runs
        self.existing = existing  # a run was there when opened
        self.joins = joins  # created or joined under a brief lock, never staged whole nor held
        self.reuse = existing and not self.request.overwrite
        # A new run, or one replacing an old run, is written in a staging folder.
        self.folder = home if self.reuse or joins else home.stage()
        self._lock = RunLock(home, brief=joins)

    @classmethod
    def at(cls, path: Path) -> Run:
        """A run that exists (to merge it)."""
        run = RunDir(Path(path))
        if not run.exists():
            raise CompError(f"not a run folder (no {run.info_path.name}): {run.path}")
        return cls(run)

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, recipe: Recipe, request: FitRequest, *, parent: bool = False) -> Run:
        """The run ``recipe`` trains into, after checking that the request fits the folder (the
        runs folder, the run inside it and not holding the data, a folder comp may replace, and
        exists / ``--resume`` / ``--overwrite``). On ``resume`` the run's own saved recipe is
        the one trained (:attr:`recipe`), so overrides survive; ``--set`` overrides that differ
        from it are refused. ``parent``: ``--folds-parallel``'s parent, which joins the run as
        its fold jobs do. Nothing is written here."""
        one_fold = request.fold is not None
        check_runs_root(request.runs_root)
        if one_fold and request.overwrite:
            raise CompError(f"--overwrite with --fold {request.fold}: a fold job joins its run (the first job "
                            f"creates it) and never replaces it; replace the run with `comp fit RECIPE "
                            f"--overwrite`, or remove {Path(request.runs_root) / recipe.name} before starting "
                            f"the fold jobs")
        if parent and request.overwrite:
            raise CompError(f"--overwrite with --folds-parallel: its fold jobs join the run and never replace "
                            f"it; remove {Path(request.runs_root) / recipe.name} first, or use another name "
                            f"(--set name=...)")
        home = RunDir.under(request.runs_root, recipe.name)
        _check_inside_runs(home, recipe.name, request.runs_root)
        home.check_replaceable()
        _check_data_outside(home, recipe)
        existing = home.exists()
        if existing and not (request.resume or request.overwrite or one_fold):
            raise CompError(f"{home.path} already exists: use --resume to continue it or --overwrite "
                            f"to start again")
        if request.resume and not existing:
            raise CompError(f"nothing to resume: {home.path} has no run")
        if request.resume:
            stored = home.recipe()
            _check_resume_overrides(stored, recipe.source.overrides, home)
            recipe = stored
        return cls(home, recipe, request, existing=existing, joins=one_fold or parent, parent=parent)

    # ------------------------------------------------------------------ lock, start, join
    @property
    def can_lock_early(self) -> bool:
        """Whether the run's lock can be taken before the set-up checks (a second fit then stops
        at once): when --runs exists, since taking the lock would create it, and a set-up that
        fails creates nothing. A joined run is locked only briefly, in :meth:`join`."""
        return not self.joins and self.home.home.parent.is_dir()

    def lock(self) -> None:
        """Hold the run's lock until :meth:`close` (the serial fit)."""
        if not self._lock.owned:
            self._lock.acquire()

    def start(self, contents: RunContents, device: str) -> None:
        """Create (or reopen) the run folder under the held lock: run.json, the resolved recipe,
        folds.csv; the run is marked running. A new run's folder is its staging folder; an old
        run of the same name is not touched here."""
        self.lock()
        _write_start(self.folder, self.recipe, contents, device, reuse=self.reuse)
        self._begin_tracking(self.folder)

    def join(self, contents: RunContents, device: str) -> None:
        """A fold job's (or the ``--folds-parallel`` parent's) share of starting the run, under
        the run's lock held only meanwhile: the first to arrive creates the run (staged, then
        moved into place whole, so a job arriving at the same time sees all of it or none); a
        later one checks that the run there has this recipe, classes and folds. Either way the
        run is marked running."""
        self._lock.acquire()
        try:
            if not self.folder.exists():
                staged = self.folder.stage()
                _write_start(staged, self.recipe, contents, device, reuse=False)
                self._begin_tracking(staged)
                staged.promote()
                return
            _check_same_run(self.recipe, self.folder, contents)
            _write_start(self.folder, self.recipe, contents, device, reuse=True)
            self._begin_tracking(self.folder)
        finally:
            self._lock.release()

    def _begin_tracking(self, folder: RunDir) -> None:
        """The tracker's run starts, or continues the one run.json records (under the run's lock,
        so fold jobs arriving together report to one); run.json keeps what it names."""
        info = folder.info()
        record = self.tracker.begin(folder, self.recipe, info.tracking)
        if record != info.tracking:
            info.tracking = record
            folder.write_info(info)

    # ------------------------------------------------------------------ folds
    def folds_to_train(self, plan: list[int]) -> list[int]:
        """The fold job's fold, else the plan's folds, less those complete when resuming."""
        done = self.folder.completed_folds() if self.request.resume else []
        return [f for f in self.asked_folds(plan) if f not in done]

    def asked_folds(self, plan: list[int]) -> list[int]:
        return [self.request.fold] if self.request.fold is not None else list(plan)

    def fold_lock(self, fold: int) -> RunLock:
        """The lock to hold while ``fold`` trains (it follows a staged run into place)."""
        return RunLock(self.folder, fold=fold)

    def claim_fold(self, fold: int, lock: RunLock) -> None:
        """Take ``fold``'s lock; a fold job (``--fold K``) without ``--resume`` then refuses a fold
        that has been started already (trained, killed, or in a merged run), as a whole-run fit
        refuses a run that exists."""
        lock.acquire()
        folder = self.folder.fold(fold)
        if self.request.fold is not None and not self.request.resume and folder.path.exists():
            lock.release()
            raise CompError(f"{folder.path} already exists: use --resume to continue fold {fold} (a finished "
                            f"fold is kept), or --overwrite without --fold to train the whole run again")

    # ------------------------------------------------------------------ the sequence
    @contextlib.contextmanager
    def session(self, prepare: Callable[[], RunContents | None] = lambda: None, device: str = "cpu", *,
                main: bool = True, on_main: Callable[[Callable[[], None]], None] = _here,
                partial: bool = False, hold: bool = True, tracker: Tracker | None = None) -> Iterator[Session]:
        """A fit's sequence, owned here: lock (a serial fit, when it can) → ``prepare`` (the
        set-up checks; it returns what the run records, or None for nothing to start: a resumed
        ``--folds-parallel`` parent, ``comp merge``) → start or join → the caller trains each fold
        under :meth:`Session.fold` → promote → merge → close. The merge is a fold job's
        (:meth:`merge_fold_job`), a ``--folds-parallel`` parent's (once, after its jobs), or the
        run's (``partial``: whatever is trained; a serial fit merges partially at its end). On any
        failure the run is closed as :meth:`close` says (a staged run removed, the old one kept).

        ``main``: this process writes (rank 0 under torchrun); ``on_main(step)`` runs a step on the
        main rank and shares its outcome with every rank (a failure is raised on all). ``hold``:
        the run's lock is held throughout when it can be (:attr:`can_lock_early`); ``comp merge``
        takes it only while it merges. ``tracker`` (the main rank's) hears of the start, the
        end and the merge (:mod:`comp.run.track`)."""
        session = Session(self, on_main)
        self.tracker = tracker or Tracker()
        ended = False
        try:
            on_main(lambda: self.lock() if hold and self.can_lock_early else None)
            contents = prepare()
            if contents is not None:
                on_main(lambda: self.join(contents, device) if self.joins else self.start(contents, device))
            yield session
            if main:
                self.promote()
                if self.request.fold is not None:
                    session.merged = Merged(self.merge_fold_job(), [])
                elif self.parent:
                    self.merge(again=False)  # the last fold job merged it, unless that merge failed
                    session.merged = Merged(self.home.info().status == "complete", [])
                else:
                    session.merged = self.merge(partial=partial)
                self.tracker.finish(self.home, session.merged.merged)
            ended = True
        finally:
            if main and not ended:
                self.tracker.stopped()
            if main:
                self.close()  # a staged run not yet in place is removed: the old run (if any) is untouched

    # ------------------------------------------------------------------ promote, stop, close
    def promote_new(self) -> None:
        """A new run moves into place at its first checkpoint (so Ctrl-C leaves it resumable); one
        replacing an old run waits for :meth:`promote`."""
        if not self.existing:
            self.folder.promote()

    def promote(self) -> None:
        """Every fold is trained: the staged run (new or replacing an old one) moves into place."""
        self.folder.promote()

    def stopped(self, reason: str, *, mark: bool = True) -> str:
        """The message of a stopped fit, naming the command that goes on; ``mark``: the run is
        marked interrupted (rank 0 only, under torchrun)."""
        if mark and self.folder.info_path.is_file():
            self.folder.set_status("interrupted")
        if self.folder.staged and RunDir(self.folder.home).exists():  # an --overwrite not finished: the old run stays
            again = "comp " + shlex.join(fit_command(self.recipe.source, replace(self.request, resume=False,
                                                                                 overwrite=True)))
            return (f"{reason}; {self.folder.home} is kept as it was (--overwrite replaces it only once the "
                    f"new run is trained); start again with: {again}")
        return f"{reason}; resume with: {resume_hint(self.recipe.source, self.request)}"

    def close(self) -> None:
        """Release the run: a staged run that never got into place is removed (the old run, if
        any, is untouched), and the lock released."""
        if self.folder.staged:
            self.folder.discard()
        self._lock.release()

    # ------------------------------------------------------------------ merge
    def merge(self, *, partial: bool = False, again: bool = True) -> Merged:
        """Merge the trained folds into oof.csv, fit the decision on them and mark the run
        complete, once every fold is trained (or, ``partial``, whatever is: the run is marked
        partial). Under the run's lock: the one this fit holds, else a brief hold of it (fold
        jobs, ``comp merge``). ``again=False`` (a fold job that just finished): a run another job
        has already merged complete is not merged twice."""
        run = self.folder
        if run.staged:
            raise CompError(f"{run.home} is not in place yet: a staged run is merged once promoted")
        brief = None if self._lock.owned else RunLock(run, brief=True)
        if brief is not None:
            brief.acquire()
        try:
            info = run.info()
            missing = sorted(set(info.folds) - set(run.completed_folds()))
            if (missing and not partial) or (not again and not missing and info.status == "complete"):
                return Merged(False, missing)
            done = merge_oof(run)
            info = run.info()
            info.status = "partial" if missing else "complete"
            stops = {str(k): (run.fold(k).read_result() or {}).get("stopped_early") for k in done}
            info.stopped_early = {k: int(v) for k, v in stops.items() if v}  # [train] patience: fold -> epoch
            run.write_info(info)
            return Merged(True, missing)
        finally:
            if brief is not None:
                brief.release()

    def merge_fold_job(self) -> bool:
        """A fold job's end: the last fold job to finish merges the run; the log says what is
        left otherwise. Whether this job merged it."""
        fold, again = self.request.fold, merge_command(self.home.name, self.request.runs_root)
        try:
            merged = self.merge(again=False)
        except CompError as err:  # the fold is trained: a merge problem is not a failed fit
            logger.info(f"fold {fold} is trained; the run was not merged ({err}); merge it with `{again}`")
            return False
        if merged.missing:
            logger.info(f"fold {fold} is trained; folds {merged.missing} are not yet: the last fold job to finish "
                        f"merges the run (or `{again}`)")
        elif not merged.merged:
            logger.info(f"fold {fold} is trained; another fold job merged the run")
        return merged.merged


def _write_start(run: RunDir, recipe: Recipe, contents: RunContents, device: str, *, reuse: bool) -> None:
    try:
        run.path.mkdir(parents=True, exist_ok=reuse)
    except OSError as err:
        raise CompError(f"cannot write {run.path}: {err.strerror}") from None
    if reuse:
        info = run.info()
    else:
        info = RunInfo(name=recipe.name, recipe_file=recipe.source.file, overrides=list(recipe.source.overrides),
                       classes=list(contents.classes), scheme=recipe.cv.scheme, folds=list(contents.plan),
                       device=device, versions=_versions(),
                       task=task_record(contents.task, recipe.predict.decision))
        run.write_recipe(recipe)
        run.write_folds(contents.ids, contents.folds)
    info.status = "running"
    run.write_info(info)


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


def _flat(table: dict, prefix: str = "") -> dict:
    """A recipe table as {"train.epochs": 3, ...}."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _check_same_run(recipe: Recipe, run: RunDir, contents: RunContents) -> None:
    """A fold job joins a run only when it trains what the run's other folds trained."""
    mine, theirs = _flat(recipe_to_dict(recipe)), _flat(recipe_to_dict(run.recipe()))
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        raise CompError(f"{run.path} was made with another recipe ({', '.join(differ)} differ); the fold "
                        f"jobs of one run train one recipe: add --resume to train the run's own, or use "
                        f"another name (--set name=...)")
    if run.classes() != list(contents.classes):
        raise CompError(f"{run.path} was trained on classes {run.classes()}, the data now has "
                        f"{list(contents.classes)}; use another name (--set name=...)")
    if not np.array_equal(run.read_folds(contents.ids), contents.folds):
        raise CompError(f"{run.folds_path} assigns other folds than this job would; start the fold jobs "
                        f"from the same recipe and data")


def _versions() -> dict[str, str]:
    import timm
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}

