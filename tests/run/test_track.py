"""Experiment trackers (issue 31, item 3): a fit reported to MLflow, read back with MLflow's own
client; a tracker that fails (a dead server, a missing package) changes nothing but one warning;
MLflow's store under --runs is comp's or refused."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from comp.recipe import load_recipe, recipe_to_dict
from comp.recipe.schema import TrackConfig
from comp.run.checkpoint import load_checkpoint
from comp.run.track import open_tracker
from tests.conftest import run_comp, write_competition, write_recipe

pytestmark = pytest.mark.xdist_group("test_track")  # one worker makes the module's fixtures (conftest)

SETS = ["--set", "cv.scheme=kfold", "--set", "cv.folds=2", "--set", "train.deterministic=true"]
# Files whose bytes hold a time (run.json, fit.log, result.json; history.csv and last.pt an epoch's seconds).
TIMED = {"run.json", "fit.log", "result.json", "history.csv", "last.pt", "recipe.toml"}


STOP_AFTER_FIRST_EPOCH = """
import os, signal
from comp.train import fold_hooks
_line = fold_hooks.EpochLine.epoch_end
def _stop(self, run, state, end):
    if self.fold == 0 and end.epoch == 1:
        os.kill(os.getpid(), signal.SIGINT)
    return _line(self, run, state, end)
fold_hooks.EpochLine.epoch_end = _stop
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("track")
    write_recipe(root / "tiny.toml", write_competition(root / "data"))
    return root


@pytest.fixture(scope="module")
def tracked(project) -> dict:
    """One fit tracked in the default store, stopped by SIGINT during its first fold, then
    resumed to its end (with its report): what the store holds is read back once. (MLflow's
    import and a new database cost seconds: this is the module's one tracked fit.)"""
    from mlflow import MlflowClient

    runs = project / "runs"
    # A real SIGINT at the end of fold 0's first epoch (the fit stops at its next step).
    code, out, err1 = run_comp(["fit", "tiny.toml", "--runs", "runs", "--track", "mlflow", "--no-report", *SETS],
                               project, prelude=STOP_AFTER_FIRST_EPOCH)
    assert code == 130, out + err1
    out += err1
    first_id = json.loads((runs / "tiny" / "run.json").read_text())["tracking"]["run_id"]
    # Resumed to its end with the report, which comp fit hands to the tracker as artifacts.
    code, out2, err = run_comp(["fit", "tiny.toml", "--runs", "runs", "--resume", *SETS], project)
    assert code == 0, out2 + err
    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("comp")
    found = client.search_runs([experiment.experiment_id])
    return {"runs": runs, "client": client, "found": found, "first_id": first_id, "log": out + out2 + err}


def test_one_mlflow_run_per_run_with_its_recipe_as_params(tracked):
    parents = [r for r in tracked["found"] if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    info = json.loads((tracked["runs"] / "tiny" / "run.json").read_text())
    # The resumed fit continued the run the interrupted one started.
    assert parent.info.run_id == info["tracking"]["run_id"] == tracked["first_id"]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tiny"
    params = parent.data.params
    assert params["train.epochs"] == "2" and params["cv.folds"] == "2" and params["model.name"] == "test_resnet"
    assert params["track.tracker"] == "mlflow"
    tags = parent.data.tags
    assert tags["comp.run"] == "tiny" and tags["comp.task"] == "multiclass" and tags["comp.version"]
    assert 0.0 <= parent.data.metrics["oof_accuracy"] <= 1.0  # the OOF metrics once merged
    assert "warning" not in tracked["log"]
    assert not (tracked["runs"].parent / "mlruns").exists()  # nothing outside --runs


def test_each_fold_a_nested_run_with_every_epochs_metrics(tracked):
    client, parent_id = tracked["client"], tracked["first_id"]
    children = [r for r in tracked["found"] if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert sorted(r.data.tags["comp.fold"] for r in children) == ["0", "1"]  # a resumed fold continued its run
    for child in children:
        assert child.info.status == "FINISHED"
        for key in ("val_loss", "accuracy", "train_loss", "lr"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(set(steps)) == [1, 2], (child.data.tags["comp.fold"], key, steps)


def test_the_report_and_a_submission_go_with_the_run_as_artifacts(tracked, project):
    code, out, err = run_comp(["predict", "--run", "tiny", "--runs", "runs", "--out", "sub.csv"], project)
    assert code == 0, out + err
    names = {a.path for a in tracked["client"].list_artifacts(tracked["first_id"])}
    assert {"report.md", "oof.csv", "confusion.csv", "sub.csv"} <= names and any(n.endswith(".png") for n in names), names
    assert (tracked["runs"] / "mlflow-artifacts").is_dir()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: nothing listens there


def test_a_dead_server_changes_no_file_of_the_fit(project):
    dead = f"http://127.0.0.1:{_closed_port()}"
    sets = ["--set", "train.deterministic=true", "--set", "train.epochs=1"]  # one holdout fold: enough here
    code, out, plain_err = run_comp(["fit", "tiny.toml", "--runs", "plain", "--no-report", *sets], project)
    assert code == 0, out + plain_err
    t0 = time.monotonic()
    code, out, err = run_comp(["fit", "tiny.toml", "--runs", "dead", "--no-report", "--track", "mlflow",
                               "--set", f"track.tracking_uri={dead}", *sets], project)
    assert code == 0, out + err
    assert time.monotonic() - t0 < 120  # no minutes of retries
    said = out + err
    assert said.count("tracker mlflow failed") == 1 and dead in said and "Traceback" not in said, said
    plain, tracked = project / "plain" / "tiny", project / "dead" / "tiny"
    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tracked) for p in tracked.rglob("*") if p.is_file())
    compared = [f for f in files if f.name not in TIMED]
    assert any(f.name == "best.pt" for f in compared) and any(f.name == "oof.csv" for f in compared)
    for f in compared:
        if f.suffix == ".pt":  # a checkpoint's zip records are named after its random temp file: its tensors
            a, b = load_checkpoint(plain / f)["model"], load_checkpoint(tracked / f)["model"]
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
        else:
            assert (plain / f).read_bytes() == (tracked / f).read_bytes(), f
    assert json.loads((tracked / "run.json").read_text())["tracking"] == {}  # no tracker run to continue
    a, b = (recipe_to_dict(load_recipe(d / "recipe.toml")) for d in (plain, tracked))
    assert a.pop("track") != b.pop("track") and a == b  # the recipe differs by what was asked of [track]
    assert sorted(os.listdir(project / "dead")) == ["tiny"]  # no store for a server's run


def test_a_missing_package_is_one_warning(tmp_path, caplog):
    pytest.importorskip("mlflow")  # the MLflow path is tested above; wandb is an extra not installed here
    if _installed("wandb"):
        pytest.skip("wandb is installed")
    tracker = open_tracker(TrackConfig(tracker="wandb"), tmp_path)
    with caplog.at_level(logging.WARNING, logger="comp"):
        for fold in (0, 1):
            tracker.fold_start(fold)
            tracker.epoch(fold, 1, {"val_loss": 0.5})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "tracker wandb" in warnings[0] and "pip install comp[wandb]" in warnings[0]
    assert not list(tmp_path.iterdir())


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.mark.parametrize("plant", ["db-link", "artifacts-link", "db-not-mlflow"])
def test_a_store_comp_did_not_make_is_refused(tmp_path, plant):
    write_recipe(tmp_path / "tiny.toml", write_competition(tmp_path / "data"))
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    runs.mkdir()
    outside.mkdir()
    (outside / "notes.txt").write_text("mine\n")
    if plant == "db-link":
        (runs / "mlflow.db").symlink_to(outside / "notes.txt")
    elif plant == "artifacts-link":
        (runs / "mlflow-artifacts").symlink_to(outside)
    else:
        (runs / "mlflow.db").write_text("my notes, not a database\n")
    before = sorted(p.name for p in runs.iterdir())
    code, out, err = run_comp(["fit", "tiny.toml", "--runs", "runs", "--track", "mlflow"], tmp_path)
    assert code == 2 and "Traceback" not in err, out + err
    assert ("mlflow-artifacts" if plant == "artifacts-link" else "mlflow.db") in err
    assert sorted(p.name for p in runs.iterdir()) == before  # no run, nothing written
    assert sorted(os.listdir(outside)) == ["notes.txt"] and (outside / "notes.txt").read_text() == "mine\n"
