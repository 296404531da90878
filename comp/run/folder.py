"""The run folder, ``runs/<recipe name>/``: the one owner of every path, file name and format in it.

    run.json            RunInfo: name, recipe file and overrides, classes, folds, status, versions
    recipe.toml         the resolved recipe (overrides applied)
    folds.csv           id, fold: each training row's validation fold (-1: train only)
    fold<K>/            FoldDir: best.pt, last.pt, swa.pt, ema.pt, epoch<NNN>.pt (top-k), history.csv,
                        valid_predictions.csv and result.json (written last: the fold is complete)
    oof.csv             the folds' validation predictions merged: id, label, fold, pred, prob_<class>...
    thresholds.json     the decision fitted on oof.csv: ordinal cut points (ordinal tasks) or the
                        positive class's probability threshold (binary tasks)
    report.md/.json, confusion*.csv/.png, curves.png, roc.png, pr.png, calibration.png,
    oof_mistakes.jpg, val_predictions.jpg               written by ``comp cv-report`` (and ``comp fit``)
    train_batch.jpg     the augmented training batch as the model sees it, written at fit start
    fit.log, predict.log, report.log   what each command printed, timestamped, appended
    tb/fold<K>/         TensorBoard event files (``[log] tensorboard = true``)

A blend of runs (``comp blend``) is one file beside the runs, ``runs/.blends/<name>.json``
(:class:`BlendInfo`): hidden, so it is never taken for a run nor replaced by a fit of that name.

Nothing else in comp spells these names or the ``prob_`` column prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comp import atomic
from comp.console import parse_time, timestamp
from comp.data.table import PROB_PREFIX, prob_column, prob_columns  # noqa: F401 (the run files' prob_ columns)
from comp.errors import CompError
from comp.metrics import Task
from comp.recipe import Provenance, Recipe, load_recipe, recipe_to_toml
from comp.recipe.load import MAX_NAME, RUN_NAME
from comp.recipe.task import resolve_task

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # a run.json without a readable time sorts first
_EPOCH_FILE = re.compile(r"epoch(\d{3,})\.pt")
_FOLD_DIR = re.compile(r"fold(\d+)")
_STAGED, _TRASH = ".new-", ".old-"  # .<name>.new-<pid>: a staged run; .<name>.old-<pid>: a replaced one
# The columns of a fold's valid_predictions.csv and of oof.csv, then one prob_<class> column per
# class in the run's class order (written by FoldDir.write_predictions, read as comp.run.oof.Oof).
ID_COLUMN, LABEL_COLUMN, FOLD_COLUMN, PRED_COLUMN = "id", "label", "fold", "pred"
# The text columns: ids and labels are read as strings, never as numbers.
_TEXT_COLUMNS = {ID_COLUMN: str, LABEL_COLUMN: str, PRED_COLUMN: str}


@dataclass
class RunInfo:
    """What a run records about itself beside its recipe (run.json)."""

    name: str
    recipe_file: str
    overrides: list[str]
    classes: list[str]
    scheme: str
    folds: list[int]
    status: str = "running"  # running → complete, partial or interrupted; comp tune: pruned, failed (its process died)
    # ISO 8601 in UTC to the second (console.timestamp; read back with console.parse_time)
    created: str = field(default_factory=timestamp)
    updated: str = field(default_factory=timestamp)
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)
    stopped_early: dict[str, int] = field(default_factory=dict)  # fold -> the epoch [train] patience ended it at
    # The task as the fit resolved it (task_record): what everything after training reads (RunDir.task).
    task: dict[str, Any] = field(default_factory=dict)
    # The experiment tracker's run this run reports to (comp.run.track): a resume continues it.
    tracking: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FoldDir:
    """One fold's folder: its checkpoints, history, validation predictions and result. It lives
    in its run's folder wherever that is, so it follows a staged run when it is promoted."""

    run: RunDir
    fold: int

    @property
    def path(self) -> Path:
        return self.run.path / f"fold{self.fold}"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def swa(self) -> Path:
        return self.path / "swa.pt"

    @property
    def ema(self) -> Path:
        """The EMA weights as the fold ended (``[train] ema_decay``)."""
        return self.path / "ema.pt"

    def epoch(self, epoch: int) -> Path:
        """The kept (top-k) weights of one epoch."""
        return self.path / f"epoch{epoch:03d}.pt"

    def kept_epochs(self) -> list[Path]:
        """The top-k epoch checkpoints present, in epoch order."""
        found = [p for p in self.path.glob("epoch*.pt") if _EPOCH_FILE.fullmatch(p.name)]
        return sorted(found, key=lambda p: int(_EPOCH_FILE.fullmatch(p.name).group(1)))

    def checkpoints(self, which: str) -> list[Path]:
        """The weights ``[predict] checkpoints`` names: best, last, swa, ema, or the kept top-k."""
        if which == "top_k":
            return self.kept_epochs() or [self.best]
        return [self.path / f"{which}.pt"]

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def predictions_path(self) -> Path:
        return self.path / "valid_predictions.csv"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        atomic.write_csv(self.history_path, pd.DataFrame(rows))

    def read_history(self) -> pd.DataFrame | None:
        return pd.read_csv(self.history_path) if self.history_path.is_file() else None

    def write_predictions(self, ids: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                          classes: tuple[str, ...] | list[str], pred: np.ndarray | None = None) -> None:
        """The fold's validation rows: their ids and true labels, the class probabilities (one
        column per class of ``classes``, the run's order) and the prediction (``pred``; by
        default the argmax class)."""
        probs = np.asarray(probs)
        if pred is None:
            pred = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
        frame = pd.DataFrame({ID_COLUMN: ids, LABEL_COLUMN: labels, FOLD_COLUMN: self.fold, PRED_COLUMN: pred})
        for i, name in enumerate(classes):
            frame[prob_column(name)] = probs[:, i]
        atomic.write_csv(self.predictions_path, frame)

    def read_predictions(self) -> pd.DataFrame | None:
        if not self.predictions_path.is_file():
            return None
        return pd.read_csv(self.predictions_path, dtype=_TEXT_COLUMNS)

    def write_result(self, *, best_epoch: int, best_score: float, checkpoints: str, stopped_early: int = 0) -> None:
        """result.json, written last: its presence marks the fold complete (``finished``: ISO 8601;
        ``stopped_early``: the epoch early stopping ended the fold at, else null)."""
        atomic.write_text(self.result_path, json.dumps(
            {"fold": self.fold, "best_epoch": best_epoch,
             "best_score": None if best_score != best_score else best_score,
             "oof_checkpoints": checkpoints, "stopped_early": stopped_early or None,
             "finished": timestamp()}) + "\n")

    def read_result(self) -> dict[str, Any] | None:
        """result.json as written by :meth:`write_result`; None when the fold is unfinished."""
        if not self.result_path.is_file():
            return None
        try:
            return json.loads(self.result_path.read_text())
        except (json.JSONDecodeError, OSError) as err:
            raise CompError(f"cannot read {self.result_path}: {err}") from None

    def clear_result(self) -> None:
        """The fold is unfinished until its result is written again."""
        self.result_path.unlink(missing_ok=True)

    @property
    def complete(self) -> bool:
        return self.result_path.is_file()

    @property
    def lock_path(self) -> Path:
        """The lock of whoever trains this fold (:class:`~comp.run.lock.RunLock` with ``fold``), beside the fold's folder."""
        return self.run.path / f".fold{self.fold}.lock"


@dataclass(eq=False)
class RunDir:
    """A run folder and typed access to everything in it.

    A new run (or one replacing an old run with ``--overwrite``) is *staged*: it is built in a
    hidden folder beside its place under ``--runs`` (``.<name>.new-<pid>``) and :meth:`promote`
    swaps it in (a new run at its first checkpoint, a replacement once trained); until then the
    old run stays as it was, and
    :meth:`discard` removes the staging folder after a failure.
    """

    path: Path
    final: Path | None = None  # while staged: the run's place under --runs

    def __post_init__(self) -> None:
        for folder in (self.path, self.final):
            if folder is not None and Path(folder).name not in ("", ".", ".."):
                atomic.confine(folder)  # writes in a run never follow a link out of it

    @classmethod
    def under(cls, runs_root: Path, name: str) -> RunDir:
        return cls(Path(runs_root) / name)

    @property
    def home(self) -> Path:
        """The run's place under --runs (where it is, or where a staged run will go)."""
        return self.final if self.final is not None else self.path

    @property
    def name(self) -> str:
        return self.home.name

    # ------------------------------------------------------------------ staging and locking
    @property
    def staged(self) -> bool:
        return self.final is not None

    def stage(self) -> RunDir:
        """A staged run that will replace (or become) this one."""
        return RunDir(self.path.parent / f".{self.name}{_STAGED}{os.getpid()}", self.path)

    @property
    def lock_path(self) -> Path:
        return self.home.parent / f".{self.name}.lock"

    def promote(self) -> None:
        """Swap a staged run into its place: the old run (if any) is renamed to a trash name,
        the new one renamed into place, then the trash deleted. Nothing to do once in place."""
        if self.final is None:
            return
        final, trash = self.final, None
        try:
            if os.path.lexists(final):
                trash = final.with_name(f".{final.name}{_TRASH}{os.getpid()}")
                os.rename(final, trash)
            os.rename(self.path, final)
        except OSError as err:
            if trash is not None and not os.path.lexists(final):
                os.rename(trash, final)  # put the old run back
            raise CompError(f"cannot move the new run into {final}: {err.strerror}") from None
        self.path, self.final = final, None
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def discard(self) -> None:
        """Remove a staged run that never got promoted (after a failure)."""
        if self.final is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def clean_leftovers(self) -> None:
        """Staging and trash folders of this run left by a killed fit (call with the lock held):
        an unpromoted staging folder is deleted; an old run renamed away by a swap that was
        killed half-way is put back, or deleted when the new run made it into place."""
        home = self.home
        for leftover in sorted(home.parent.glob(f".{self.name}.*")):
            if leftover.is_symlink() or not leftover.is_dir():
                continue
            rest = leftover.name[len(self.name) + 1:]
            if rest.startswith(_STAGED) and leftover != self.path:
                shutil.rmtree(leftover, ignore_errors=True)
            elif rest.startswith(_TRASH):
                if os.path.lexists(home):
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    os.rename(leftover, home)


    def check_replaceable(self) -> None:
        """What lies at the run's place must be a run, an empty folder or nothing: a folder comp
        did not make (no run.json: the user's notes, a competition) is never replaced."""
        home = self.home
        if not os.path.lexists(home) or RunDir(home).exists():
            return
        if home.is_dir() and not home.is_symlink() and not any(home.iterdir()):
            return  # an empty folder: nothing to lose
        raise CompError(f"{home} exists and is not a run (no {self.info_path.name}): comp replaces only "
                        f"runs it made; move it away or choose another name (--set name=...)")

    # ------------------------------------------------------------------ paths
    @property
    def info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def folds_path(self) -> Path:
        return self.path / "folds.csv"

    @property
    def oof_path(self) -> Path:
        return self.path / "oof.csv"

    @property
    def thresholds_path(self) -> Path:
        return self.path / "thresholds.json"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def report_json(self) -> Path:
        return self.path / "report.json"

    @property
    def curves_png(self) -> Path:
        return self.path / "curves.png"

    @property
    def roc_png(self) -> Path:
        return self.path / "roc.png"

    @property
    def pr_png(self) -> Path:
        return self.path / "pr.png"

    @property
    def calibration_png(self) -> Path:
        return self.path / "calibration.png"

    @property
    def values_png(self) -> Path:
        """A regression run's predicted-against-true scatter."""
        return self.path / "values.png"

    @property
    def cooccurrence_png(self) -> Path:
        """A multilabel run's label co-occurrence heat map."""
        return self.path / "cooccurrence.png"

    @property
    def residuals_png(self) -> Path:
        """A regression run's residuals by range of the true value."""
        return self.path / "residuals.png"

    @property
    def train_batch_jpg(self) -> Path:
        """A mosaic of the augmented training batch as the model sees it (written at fit start)."""
        return self.path / "train_batch.jpg"

    @property
    def oof_mistakes_jpg(self) -> Path:
        return self.path / "oof_mistakes.jpg"

    @property
    def val_predictions_jpg(self) -> Path:
        return self.path / "val_predictions.jpg"

    @property
    def cam_jpg(self) -> Path:
        """cv-report's class activation maps: per class the most confident right and worst wrong OOF image."""
        return self.path / "cam.jpg"

    @property
    def fit_log(self) -> Path:
        """Everything ``comp fit`` printed, timestamped (appended by each fit of the run)."""
        return self.path / "fit.log"

    @property
    def predict_log(self) -> Path:
        return self.path / "predict.log"

    @property
    def report_log(self) -> Path:
        return self.path / "report.log"

    def tensorboard_dir(self, fold: int) -> Path:
        """``[log] tensorboard``: one fold's event files."""
        return self.path / "tb" / f"fold{fold}"

    def confusion(self, ext: str, *, fold: int | None = None, normalised: bool = False) -> Path:
        """A confusion matrix file (``ext`` "csv" or "png"): of all OOF rows or of one ``fold``'s,
        counts or ``normalised`` by row, e.g. confusion_fold1_normalised.png."""
        stem = "confusion" + ("" if fold is None else f"_fold{fold}") + ("_normalised" if normalised else "")
        return self.path / f"{stem}.{ext}"

    @property
    def bench_json(self) -> Path:
        """``comp bench``'s figures when no --out is given."""
        return self.path / "bench.json"

    def fold(self, k: int) -> FoldDir:
        return FoldDir(self, k)

    # ------------------------------------------------------------------ run.json, recipe, folds
    def exists(self) -> bool:
        """Whether a run lives here (its run.json exists)."""
        return self.info_path.is_file()

    def info(self) -> RunInfo:
        try:
            return RunInfo(**json.loads(self.info_path.read_text()))
        except FileNotFoundError:
            raise CompError(f"not a run folder (no {self.info_path.name}): {self.path}") from None
        except (json.JSONDecodeError, TypeError) as err:
            raise CompError(f"cannot read {self.info_path}: {err}") from None

    def write_info(self, info: RunInfo) -> None:
        info.updated = timestamp()
        atomic.write_text(self.info_path, json.dumps(asdict(info), indent=2) + "\n")

    def set_status(self, status: str) -> None:
        info = self.info()
        info.status = status
        self.write_info(info)

    def classes(self) -> list[str]:
        """The run's own class order (from run.json)."""
        return list(self.info().classes)

    def task(self) -> Task:
        """The task the run was trained for, as its fit resolved it (run.json's ``task``: kind,
        class names, positive class, metric, monitor), so a report, a merge or a prediction never
        resolves it anew from recipe.toml (a changed default would name another monitor than the
        one that chose best.pt). A run written before run.json recorded it: from its recipe."""
        info = self.info()
        if not info.task:
            return resolve_task(self.recipe(), info.classes)
        known = {f.name for f in dataclasses.fields(Task)}
        try:
            return Task(**{k: tuple(v) if isinstance(v, list) else v for k, v in info.task.items() if k in known})
        except TypeError as err:
            raise CompError(f"cannot read the task in {self.info_path}: {err}") from None

    def recipe(self) -> Recipe:
        """The resolved recipe the run was trained with (overrides included), with the
        provenance run.json records: the user's recipe file and overrides."""
        info = self.info()
        return dataclasses.replace(load_recipe(self.recipe_path),
                                   source=Provenance(info.recipe_file, tuple(info.overrides)))

    def write_recipe(self, recipe: Recipe) -> None:
        atomic.write_text(self.recipe_path, recipe_to_toml(recipe))

    def write_folds(self, ids: np.ndarray, folds: np.ndarray) -> None:
        atomic.write_csv(self.folds_path, pd.DataFrame({"id": ids, "fold": folds}))

    def read_folds(self, ids: np.ndarray) -> np.ndarray:
        """The saved fold assignment of ``ids``, which must be exactly the saved rows."""
        saved = pd.read_csv(self.folds_path, dtype={"id": str})
        if set(saved["id"]) != set(ids) or len(saved) != len(ids):
            raise CompError(f"{self.folds_path} no longer matches the training rows; "
                            f"use --overwrite to start again")
        return saved.set_index("id").loc[ids, "fold"].to_numpy()

    # ------------------------------------------------------------------ folds and OOF
    def completed_folds(self) -> list[int]:
        """Folds whose result.json exists: written last, so its presence means the fold finished."""
        done = []
        for p in self.path.glob("fold*"):
            m = _FOLD_DIR.fullmatch(p.name)
            if m and self.fold(int(m.group(1))).complete:
                done.append(int(m.group(1)))
        return sorted(done)

    def has_oof(self) -> bool:
        return self.oof_path.is_file()

    def read_oof(self) -> pd.DataFrame:
        if not self.oof_path.is_file():
            raise CompError(f"{self.path} has no {self.oof_path.name}: it has no validated fold (the "
                            f"\"full\" scheme has no validation to report)")
        return pd.read_csv(self.oof_path, dtype=_TEXT_COLUMNS)

    def write_oof(self, frame: pd.DataFrame) -> None:
        atomic.write_csv(self.oof_path, frame)


def task_record(task: Task, decision: str) -> dict[str, Any]:
    """run.json's ``task``: the resolved task and the recipe's ``[predict] decision``."""
    return {**asdict(task), "decision": decision}


def run_holding(path: str | Path) -> Path | None:
    """The run folder (a folder with a run.json) that ``path``, links followed, lies in; else None."""
    info = RunDir(Path()).info_path.name
    for folder in Path(os.path.realpath(path)).parents:
        if (folder / info).is_file():
            return folder
    return None


def check_output(path: str | Path, option: str = "--out") -> None:
    """A command's output (``option``) never goes into a run folder: its files are the run's own."""
    run = run_holding(path)
    if run is not None:
        raise CompError(f"{option} {path} lies in the run folder {run}: comp never writes a command's "
                        f"output into a run (its files are the run's own); write it elsewhere")


def check_runs_root(root: Path) -> None:
    """--runs must be a folder (or not exist yet): never a file."""
    if os.path.lexists(root) and not Path(root).is_dir():
        raise CompError(f"--runs {root} is not a folder (a file of that name exists); name the folder "
                        f"of runs with --runs")


def list_runs(root: Path) -> list[RunDir]:
    """Run folders under ``root``, oldest first by last update (staging folders left out)."""
    runs = [RunDir(p.parent) for p in Path(root).glob(f"*/{RunDir(Path()).info_path.name}")
            if not p.parent.name.startswith(".")]
    return sorted(runs, key=lambda r: (_updated(r), r.name))


def _updated(run: RunDir) -> datetime:
    """When a run was last updated; a run.json that cannot be read sorts first (one broken run
    does not stop commands that use others; using it names the problem)."""
    try:
        return parse_time(run.info().updated) or _EPOCH
    except CompError:
        return _EPOCH


def find_run(root: Path, name: str) -> RunDir | None:
    """The run ``name`` names: a run folder at that path, else the run of that name under
    ``root``; None when neither exists. The one lookup of ``--run``, ``init_from`` and the like."""
    for candidate in (RunDir(Path(name)), RunDir.under(root, name)):
        if candidate.path.is_dir() and candidate.exists():
            return candidate
    return None


def resolve_runs(root: Path, names: list[str] | None, *, default_all: bool = False) -> list[Path]:
    """Named runs (a name under ``root`` or a path); none named → the latest run (or all)."""
    check_runs_root(root)
    if names:
        dirs = []
        for name in names:
            candidate = find_run(root, name)
            if candidate is None:
                known = ", ".join(r.name for r in list_runs(root)) if Path(root).is_dir() else ""
                raise CompError(f"no run named {name!r} under {root}/" + (f" (runs: {known})" if known else ""))
            dirs.append(candidate.path)
        return dirs
    runs = list_runs(root) if Path(root).is_dir() else []
    if not runs:
        raise CompError(f"no runs under {root}/ yet: train one with `comp fit RECIPE`")
    return [r.path for r in runs] if default_all else [runs[-1].path]


# ---------------------------------------------------------------------- blends of runs
_BLENDS = ".blends"


@dataclass
class BlendInfo:
    """A blend of runs written by ``comp blend`` (``runs/.blends/<name>.json``): the runs and
    their weights, how their probabilities are averaged ("probability", or "rank" for the
    probability columns of an AUC metric), the decision fitted on the blended OOF (as
    thresholds.json holds it: ``{}`` for argmax, ``{"cuts": [...]}`` or ``{"threshold",
    "positive"}``), the figures ``comp blend`` printed, and what it was fitted on: each run's
    oof.csv SHA-256 (``fitted_on``; empty in a blend written before it was recorded)."""

    name: str
    runs: list[str]
    weights: list[float]
    metric: str
    mean: str
    classes: list[str]
    decision: dict[str, Any]
    figures: dict[str, Any]
    created: str = field(default_factory=timestamp)
    fitted_on: dict[str, str] = field(default_factory=dict)


def default_blend_name(runs: list[str]) -> str:
    """A blend's name when none is given: the runs' names joined by '-', cut to a run name's
    length limit with a hash of the whole (``a-b-c...-<10 hex>``) when longer."""
    joined = "-".join(runs)
    if len(joined) <= MAX_NAME:
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:10]
    return f"{joined[:MAX_NAME - len(digest) - 1].rstrip('.-')}-{digest}"


def blends_folder(root: Path) -> Path:
    """``runs/.blends``, whose writes never leave --runs through a link (a planted link in it,
    or the folder itself a link out of --runs), as a run folder's never leave the run."""
    folder = Path(root) / _BLENDS
    atomic.confine(folder, within=root)
    return folder


def blend_path(root: Path, name: str) -> Path:
    """The blend file of ``name``; a name that is not a plain file name of at most a run name's
    length is a CompError (before any file is looked at: a long one is "File name too long")."""
    if not RUN_NAME.fullmatch(name):
        raise CompError(f"blend name {name!r} is not a plain file name (letters, digits, '.', '_', '-', "
                        f"not starting with '.')")
    if len(name) > MAX_NAME:
        raise CompError(f"blend name {name[:20]!r}... is {len(name)} characters long; a blend name has at "
                        f"most {MAX_NAME}")
    return blends_folder(root) / f"{name}.json"


def _load_blend(path: Path) -> BlendInfo:
    return BlendInfo(**json.loads(path.read_text(encoding="utf-8")))


def check_blend_writable(root: Path, name: str, overwrite: bool = False) -> Path:
    """The blend file ``name`` may be written: its name is fine, it does not exist (or
    ``overwrite``, and it is a blend: a file comp did not make is never replaced), and the write
    stays inside --runs. Call it before any work; returns the path."""
    path = blend_path(root, name)
    atomic.write_target(path)  # a link out of --runs, a folder or FIFO of that name: refused
    if os.path.lexists(path):
        if not overwrite:
            raise CompError(f"blend {name!r} exists ({path}); --overwrite replaces it, or --name another")
        try:
            _load_blend(path)
        except (ValueError, TypeError, OSError):
            raise CompError(f"{path} exists and is not a blend (not one `comp blend` wrote): comp replaces only "
                            f"blends it made; move it away or --name another") from None
    return path


def write_blend(root: Path, blend: BlendInfo) -> Path:
    """Write (or replace) the blend file; a file of that name comp did not make is refused."""
    path = check_blend_writable(root, blend.name, overwrite=True)
    atomic.write_text(path, json.dumps(asdict(blend), indent=2) + "\n")
    return path


def read_blend(root: Path, name: str) -> BlendInfo:
    """The blend ``name`` under ``root``; a missing or damaged file is a CompError naming it."""
    path = blend_path(root, name)
    if not path.is_file():
        known = ", ".join(b.name for b in list_blends(root))
        raise CompError(f"no blend named {name!r} under {root}/ (make one with `comp blend --run A --run B"
                        f" --name {name}`" + (f"; blends: {known})" if known else ")"))
    try:
        return _load_blend(path)
    except (ValueError, TypeError, OSError) as err:
        raise CompError(f"cannot read {path} ({type(err).__name__}); make the blend again with `comp blend`") from None


def list_blends(root: Path) -> list[BlendInfo]:
    """The blends under ``root``, by name (unreadable files left out)."""
    found = []
    for path in sorted((Path(root) / _BLENDS).glob("*.json")):
        try:
            found.append(_load_blend(path))
        except (ValueError, TypeError, OSError):
            continue
    return found


def oof_digest(run_dir: Path) -> str:
    """SHA-256 of a run's oof.csv ("" without one): what a blend records of each run it is
    fitted on, so that a run replaced or refitted since is noticed."""
    path = RunDir(Path(run_dir)).oof_path
    if not path.is_file():
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def blend_members(root: Path, name: str) -> tuple[BlendInfo, list[Path], list[float]]:
    """The blend ``name``, the runs that predict with it (weight > 0: a weight of 0 changes
    nothing) and their weights; a run that changed since the blend was fitted on it (its
    oof.csv differs: refitted, --overwrite, more folds) is a CompError naming it."""
    blend = read_blend(root, name)
    kept = [(r, w) for r, w in zip(blend.runs, blend.weights) if w > 0]
    dirs = resolve_runs(root, [r for r, _ in kept])
    for (run, _), d in zip(kept, dirs):
        if run in blend.fitted_on and oof_digest(d) != blend.fitted_on[run]:
            raise CompError(f"run {run!r} changed since blend {name!r} was fitted on it (its "
                            f"{RunDir(d).oof_path.name} differs: fitted again, --overwrite or other folds); fit "
                            f"the blend again: comp blend --overwrite --name {name} "
                            + " ".join(f"--run {r}" for r in blend.runs))
    return blend, dirs, [w for _, w in kept]
