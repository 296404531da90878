"""Experiment trackers (``[track]``, ``comp fit --track``): a fit reported to MLflow or Weights &
Biases besides its run folder. One tracker run per comp run, a nested one per fold: the resolved
recipe as parameters, each epoch's figures per fold (step = epoch), the OOF metrics once merged,
the report's pictures and tables as artifacts, and tags (comp's version, the run, the fold, the task).

A tracker never stops or slows a fit: whatever fails (a wrong URI, a server down, the package
missing) is one warning naming it, and the fit goes on untracked (:class:`Guarded`). The files of a
fit are the same with or without a tracker, but for run.json's ``tracking`` record, written only
once a tracker run exists (so a resumed fit, and fold jobs on several machines, report to the same
one). The packages are imported only here, only when asked for (``import mlflow`` alone costs
seconds).

MLflow's default store is the SQLite database ``<runs>/mlflow.db`` with artifacts in
``<runs>/mlflow-artifacts`` (never MLflow's file store); both must be comp's (no link out of
--runs, no file comp did not make), checked before anything is trained (:func:`check_store`).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from comp import __version__
from comp.errors import CompError
from comp.kinds import kind_of
from comp.recipe import Recipe, recipe_to_dict
from comp.recipe.schema import TrackConfig
from comp.run.folder import RunDir

logger = logging.getLogger(__name__)

INSTALL = {"mlflow": "pip install comp[mlflow]", "wandb": "pip install comp[wandb]"}
DB_NAME, ARTIFACTS_NAME = "mlflow.db", "mlflow-artifacts"  # beside the runs
HTTP_TIMEOUT = 5  # seconds: a server that does not answer costs one warning, not a slower fit


class Tracker:
    """What a fit tells a tracker; this one tracks nothing (``[track] tracker = "none"``)."""

    name = "none"

    def begin(self, run: RunDir, recipe: Recipe, record: Mapping[str, str]) -> dict[str, str]:
        """Start the run's tracker run, or continue the one ``record`` (run.json's) names; the
        record to keep in run.json (empty: nothing to keep)."""
        return dict(record)

    def fold_start(self, fold: int) -> None:
        """A fold starts (or resumes): its nested run."""

    def epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """An epoch's history row (finite numbers) of ``fold``."""

    def fold_end(self, fold: int, finished: bool) -> None:
        """The fold's nested run ends: finished, or stopped (it resumes later)."""

    def finish(self, run: RunDir, merged: bool) -> None:
        """The fit is over: the OOF metrics when the run was merged, the run's status."""

    def stopped(self) -> None:
        """The fit stopped before its end (Ctrl-C, an error)."""

    def artifacts(self, paths: list[Path]) -> None:
        """Files to keep with the run (the report's pictures and tables)."""


class Guarded(Tracker):
    """A tracker whose first failure is one warning naming it; from then on it tracks nothing."""

    def __init__(self, inner: Tracker | Callable[[], Tracker], name: str) -> None:
        self._inner: Tracker | Callable[[], Tracker] = inner
        self.name = name

    def _call(self, method: str, *args: Any, default: Any = None) -> Any:
        try:
            if not isinstance(self._inner, Tracker):
                self._inner = self._inner()  # opened at first use: the import and the connection
            return getattr(self._inner, method)(*args)
        except Exception as err:  # noqa: BLE001 -- a tracker never stops a fit, whatever it raises
            if type(self._inner) is not Tracker:
                reason = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
                if isinstance(err, ImportError):
                    reason = f"the {self.name} package is not installed: {INSTALL[self.name]}"
                logger.warning(f"warning: tracker {self.name} failed ({reason}); the fit goes on without it")
            self._inner = Tracker()
            return default

    def begin(self, run: RunDir, recipe: Recipe, record: Mapping[str, str]) -> dict[str, str]:
        return self._call("begin", run, recipe, record, default=dict(record))

    def fold_start(self, fold: int) -> None:
        self._call("fold_start", fold)

    def epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        self._call("epoch", fold, epoch, metrics)

    def fold_end(self, fold: int, finished: bool) -> None:
        self._call("fold_end", fold, finished)

    def finish(self, run: RunDir, merged: bool) -> None:
        self._call("finish", run, merged)

    def stopped(self) -> None:
        self._call("stopped")

    def artifacts(self, paths: list[Path]) -> None:
        self._call("artifacts", paths)


def open_tracker(cfg: TrackConfig, runs_root: Path) -> Tracker:
    """The tracker ``[track]`` asks for, guarded; its package is imported at its first use. A
    store that is not comp's (:func:`check_store`) is an error, before anything is trained."""
    if cfg.tracker == "none":
        return Tracker()
    if cfg.tracker == "mlflow" and not cfg.tracking_uri:
        check_store(Path(runs_root))
    make = {"mlflow": lambda: MlflowTracker(cfg, Path(runs_root)), "wandb": lambda: WandbTracker(cfg, Path(runs_root))}
    return Guarded(make[cfg.tracker], cfg.tracker)


def reopen(run: RunDir) -> Tracker:
    """The tracker a finished fit recorded in run.json (to add the report's files and a
    submission), or none."""
    record = run.info().tracking
    if record.get("tracker") != "mlflow" or not record.get("run_id"):
        return Tracker()
    cfg = TrackConfig(tracker="mlflow", tracking_uri=record.get("tracking_uri", ""))
    return Guarded(lambda: MlflowTracker(cfg, run.home.parent, run_id=record["run_id"]), "mlflow")


def check_store(runs_root: Path) -> None:
    """MLflow's default store under --runs must be comp's: mlflow.db a database of MLflow's (or
    absent), neither it nor the artifacts folder a link, nothing written through one out of --runs."""
    db, artifacts = runs_root / DB_NAME, runs_root / ARTIFACTS_NAME
    for path in (db, artifacts):
        if path.is_symlink():
            raise CompError(f"{path} is a link (to {os.path.realpath(path)}): comp keeps MLflow's store inside "
                            f"--runs {runs_root}/ and writes through no link; remove it, or set [track] "
                            f"tracking_uri")
    if artifacts.exists() and not artifacts.is_dir():
        raise CompError(f"{artifacts} is not a folder: comp did not make it; remove it, or set [track] tracking_uri")
    if not db.exists():
        return
    if not db.is_file() or not _is_mlflow_db(db):
        raise CompError(f"{db} is not an MLflow database (comp did not make it): remove or rename it, or set "
                        f"[track] tracking_uri")


def _is_mlflow_db(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return False
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return False
    return {"experiments", "runs", "metrics", "params"} <= tables


def flat_params(recipe: Recipe) -> dict[str, str]:
    """The resolved recipe as {"train.epochs": "3", ...}."""
    def walk(table: Mapping[str, Any], prefix: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in table.items():
            if isinstance(value, Mapping):
                out.update(walk(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = str(value)
        return out
    return walk(recipe_to_dict(recipe), "")


def finite(row: Mapping[str, Any]) -> dict[str, float]:
    """A history row's finite numbers (not the epoch itself)."""
    return {k: float(v) for k, v in row.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def oof_metrics(run: RunDir) -> dict[str, float]:
    """The merged run's OOF metrics (oof.csv against its labels), as ``oof_<metric>``."""
    from comp.data.table import ClassMap
    from comp.run.oof import oof_from_frame

    if not run.oof_path.is_file():
        return {}
    oof = oof_from_frame(run.read_oof(), ClassMap(tuple(run.classes())))
    if not len(oof.y_true):
        return {}
    task = run.task()
    return {f"oof_{k}": v for k, v in kind_of(task).summarise(task, oof.y_true, oof.probs).items() if math.isfinite(v)}


class MlflowTracker(Tracker):
    """One MLflow run per comp run (``runs/<name>``), a nested run per fold, through
    :class:`mlflow.MlflowClient` (no global active run). The default store is the SQLite database
    beside the runs; a ``tracking_uri`` of a server is asked for its health first, with a short
    timeout and no retries, so a server that is down costs one warning."""

    name = "mlflow"

    def __init__(self, cfg: TrackConfig, runs_root: Path, *, run_id: str = "") -> None:
        self.cfg = cfg
        if not cfg.tracking_uri:
            check_store(runs_root)  # again for a later command (predict): a link planted since the fit
        self.uri = cfg.tracking_uri or f"sqlite:///{(runs_root / DB_NAME).resolve()}"
        self.artifact_root = (runs_root / ARTIFACTS_NAME).resolve()
        if self.uri.startswith(("http://", "https://")):
            # MLflow retries a request 7 times with a growing backoff (minutes against a dead server).
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT))
            _check_health(self.uri)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id, self.experiment_id = run_id, ""
        self.folds: dict[int, str] = {}
        self.run_name, self.task = "", ""

    def begin(self, run: RunDir, recipe: Recipe, record: Mapping[str, str]) -> dict[str, str]:
        client = self.client
        self.run_name, self.task = run.home.name, run.task().kind
        if record.get("run_id") and record.get("tracker") == "mlflow":
            self.run_id, self.experiment_id = record["run_id"], record.get("experiment_id", "")
            client.update_run(self.run_id, status="RUNNING")  # a resumed fit, or another fold job
            return dict(record)
        experiment = client.get_experiment_by_name(self.cfg.experiment)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        else:
            local = self.uri.startswith("sqlite:")
            self.experiment_id = client.create_experiment(
                self.cfg.experiment, artifact_location=self.artifact_root.as_uri() if local else None)
        tags = {"comp.version": __version__, "comp.run": self.run_name, "comp.task": self.task}
        self.run_id = client.create_run(self.experiment_id, run_name=self.run_name, tags=tags).info.run_id
        self._log(self.run_id, params=flat_params(recipe))
        logger.info(f"tracking with MLflow: run {self.run_id} in experiment {self.cfg.experiment!r} at {self.uri}")
        return {"tracker": "mlflow", "tracking_uri": self.cfg.tracking_uri, "experiment_id": self.experiment_id,
                "run_id": self.run_id}

    def fold_start(self, fold: int) -> None:
        found = self.client.search_runs(
            [self.experiment_id] if self.experiment_id else [self.client.get_run(self.run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}' and tags.`comp.fold` = '{fold}'")
        if found:  # a resumed fold continues its run
            self.folds[fold] = found[0].info.run_id
            self.client.update_run(self.folds[fold], status="RUNNING")
            return
        parent = self.client.get_run(self.run_id).info
        tags = {"mlflow.parentRunId": self.run_id, "comp.version": __version__, "comp.run": self.run_name,
                "comp.fold": str(fold), "comp.task": self.task}
        self.folds[fold] = self.client.create_run(parent.experiment_id, run_name=f"{self.run_name} fold {fold}",
                                                  tags=tags).info.run_id

    def epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        if fold in self.folds:
            self._log(self.folds[fold], metrics=metrics, step=epoch)

    def fold_end(self, fold: int, finished: bool) -> None:
        if fold in self.folds:
            self.client.set_terminated(self.folds.pop(fold), status="FINISHED" if finished else "KILLED")

    def finish(self, run: RunDir, merged: bool) -> None:
        if merged:
            self._log(self.run_id, metrics=oof_metrics(run), step=0)
        complete = run.info().status == "complete"
        if complete:
            self.client.set_terminated(self.run_id, status="FINISHED")

    def stopped(self) -> None:
        for fold in list(self.folds):
            self.fold_end(fold, False)
        if self.run_id:
            self.client.set_terminated(self.run_id, status="KILLED")

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            if path.is_file() and not path.is_symlink():
                self.client.log_artifact(self.run_id, str(path))

    def _log(self, run_id: str, *, params: Mapping[str, str] | None = None,
             metrics: Mapping[str, float] | None = None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(k, v[:6000]) for k, v in (params or {}).items()]
        ms = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        for i in range(0, max(len(ps), len(ms)), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, metrics=ms[i:i + 100], params=ps[i:i + 100])


def _check_health(uri: str) -> None:
    """An MLflow server answers /health within :data:`HTTP_TIMEOUT` seconds, else this raises."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=HTTP_TIMEOUT) as answer:
            answer.read(64)
    except (OSError, urllib.error.URLError) as err:
        reason = getattr(err, "reason", None) or err
        raise ConnectionError(f"{uri} does not answer ({reason})") from None


class WandbTracker(Tracker):
    """Weights & Biases (``pip install comp[wandb]``): a W&B run per fold, grouped by the comp run,
    and one for the run's OOF metrics and files; offline (files under ``<runs>/wandb``) unless an
    API key is configured or ``[track] wandb_mode = "online"``."""

    name = "wandb"

    def __init__(self, cfg: TrackConfig, runs_root: Path) -> None:
        import wandb  # the package missing: one warning (Guarded), the fit goes on

        self.wandb, self.cfg, self.dir = wandb, cfg, (runs_root / "wandb").resolve()
        mode = cfg.wandb_mode
        self.mode = ("online" if os.environ.get("WANDB_API_KEY") else "offline") if mode == "auto" else mode
        self.run_name, self.config, self.current = "", {}, None

    def _init(self, name: str, job: str) -> Any:
        self.dir.mkdir(exist_ok=True)
        return self.wandb.init(project=self.cfg.experiment, group=self.run_name, name=name, job_type=job,
                               config=self.config, dir=str(self.dir), mode=self.mode, reinit="create_new",
                               tags=[f"comp-{__version__}"])

    def begin(self, run: RunDir, recipe: Recipe, record: Mapping[str, str]) -> dict[str, str]:
        self.run_name, self.config = run.home.name, flat_params(recipe)
        return dict(record)

    def fold_start(self, fold: int) -> None:
        self.current = self._init(f"{self.run_name} fold {fold}", "fold")

    def epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.current is not None:
            self.current.log(dict(metrics), step=epoch)

    def fold_end(self, fold: int, finished: bool) -> None:
        if self.current is not None:
            self.current.finish(exit_code=0 if finished else 1)
            self.current = None

    def finish(self, run: RunDir, merged: bool) -> None:
        if merged:
            summary = self._init(f"{self.run_name} oof", "oof")
            summary.log(oof_metrics(run))
            summary.finish()
