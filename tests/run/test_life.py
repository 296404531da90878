"""The run's life as one object (comp.run.life.Run, issue 24 item 1): the library call that fits
leaves a complete run; the merge's rules; the one rebuilt command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from comp.errors import CompError
from comp.recipe import Provenance, load_recipe
from comp.run.folder import RunDir, prob_column
from comp.run.life import FitRequest, Run, fit_command, merge_command, resume_hint
from tests.conftest import write_competition, write_recipe


def test_fit_called_from_python_leaves_a_complete_run(tmp_path, capsys, monkeypatch):
    """No command line: comp.train.fit.fit merges the run itself (oof.csv, the fitted decision,
    run.json "complete"); the report is the command line's, so none is written. With no logging
    set up it prints nothing and shows no progress, and its fit.log still gets every line."""
    from comp.train.fit import fit

    monkeypatch.setenv("COMP_PROGRESS", "lines")
    recipe_file = write_recipe(tmp_path / "tiny.toml", write_competition(tmp_path / "data"))
    recipe = load_recipe(recipe_file, ["cv.scheme=kfold", "cv.folds=2", "train.epochs=1", "data.task=ordinal"])
    fitted = fit(recipe, FitRequest(runs_root=tmp_path / "runs"))
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch" not in captured.err and "checking images" not in captured.err, captured
    run = RunDir(fitted.path)
    log = run.fit_log.read_text().splitlines()
    assert "=== " in log[0] and sum("===" in line for line in log) == 1
    assert any(" run " in line and "36 training rows" in line for line in log)
    assert any("fold 1: best" in line for line in log) and "OOF QWK: argmax" in log[-1]
    assert fitted.merged and fitted.path == tmp_path / "runs" / "tiny"
    info = json.loads(run.info_path.read_text())
    assert info["status"] == "complete" and info["folds"] == [0, 1]
    oof = pd.read_csv(run.oof_path, dtype={"id": str, "label": str, "pred": str})
    assert list(oof.columns) == ["id", "label", "fold", "pred"] + [prob_column(c) for c in info["classes"]]
    assert len(oof) == 36 and sorted(oof["fold"].unique()) == [0, 1]
    probs = oof[[prob_column(c) for c in info["classes"]]].to_numpy()
    assert (abs(probs.sum(axis=1) - 1) < 1e-5).all()
    assert (oof["pred"].to_numpy() == pd.Series(info["classes"]).to_numpy()[probs.argmax(axis=1)]).all()
    cuts = json.loads(run.thresholds_path.read_text())["cuts"]  # ordinal: cut points fitted on the OOF
    assert len(cuts) == len(info["classes"]) - 1 and cuts == sorted(cuts)
    assert not run.report_md.exists()
    assert not list((tmp_path / "runs").glob(".*"))  # no lock, no staging folder left


def _run_with_folds(tmp_path: Path, trained: list[int]) -> RunDir:
    """A run of folds [0, 1] with only ``trained`` finished (their predictions and result.json)."""
    from comp.recipe import recipe_from_dict
    from comp.recipe.task import resolve_task
    from comp.run.folder import RunInfo, task_record

    run = RunDir(tmp_path / "runs" / "r")
    run.path.mkdir(parents=True)
    recipe = recipe_from_dict({"name": "r", "data": {"task": "multiclass"}})
    run.write_info(RunInfo(name="r", recipe_file="r.toml", overrides=[], classes=["a", "b", "c"],
                           scheme="kfold", folds=[0, 1],
                           task=task_record(resolve_task(recipe, ["a", "b", "c"]), "argmax")))
    run.write_recipe(recipe)
    for k in trained:
        fold = run.fold(k)
        fold.create()
        fold.write_predictions([f"{k}-{i}" for i in range(3)], ["a", "b", "c"],
                               [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3]], ["a", "b", "c"])
        fold.write_result(best_epoch=1, best_score=0.5, checkpoints="best")
    return run


def test_merge_waits_for_every_fold_unless_partial(tmp_path):
    run = _run_with_folds(tmp_path, [0])
    merged = Run.at(run.path).merge()
    assert (merged.merged, merged.missing) == (False, [1]) and not run.oof_path.exists()
    merged = Run.at(run.path).merge(partial=True)
    assert (merged.merged, merged.missing) == (True, [1]) and run.info().status == "partial"
    oof = run.read_oof()
    assert oof["pred"].tolist() == ["a", "b", "a"] and oof["fold"].tolist() == [0, 0, 0]
    # Multiclass: argmax decides, nothing fitted.
    assert not run.thresholds_path.exists()
    run = _run_with_folds(tmp_path / "two", [0, 1])
    assert Run.at(run.path).merge().merged and run.info().status == "complete"
    # A fold job that finished after another merged the run does not merge it twice.
    assert Run.at(run.path).merge(again=False).merged is False
    with pytest.raises(CompError, match="not a run folder"):
        Run.at(tmp_path / "nowhere")


def test_one_command_line_for_the_resume_hint_fold_jobs_and_torchrun():
    source = Provenance("my recipe.toml", ("train.epochs=3",))
    request = FitRequest(runs_root=Path("elsewhere"), fold=2, overwrite=False, device="cpu", skip_bad=True)
    assert fit_command(source, request, extra=("--no-report",)) == [
        "fit", "my recipe.toml", "--fold", "2", "--set", "train.epochs=3", "--skip-bad", "--device", "cpu",
        "--runs", "elsewhere", "--no-report"]
    assert resume_hint(source, FitRequest(overwrite=True)) == "comp fit 'my recipe.toml' --resume --set train.epochs=3"
    assert merge_command("r", Path("runs")) == "comp merge r"
    assert merge_command("r", Path("x y")) == "comp merge r --runs 'x y'"


def test_gpus_relaunches_the_same_fit_under_torchrun(tmp_path, monkeypatch, recipe_file):
    """``comp fit --gpus N`` reruns the fit under torchrun with the command fit_command rebuilds
    (not a filtered sys.argv), so its options reach every rank."""
    import subprocess

    from typer.testing import CliRunner

    from comp.cli import app

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    result = CliRunner().invoke(app, ["fit", str(recipe_file), "--gpus", "2", "--fold", "1", "--skip-bad",
                                      "--set", "train.epochs=1", "--runs", str(tmp_path / "r"), "--no-report"])
    assert result.exit_code == 0, result.output
    (cmd,) = calls
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[5:] == ["-m", "comp", "fit", str(recipe_file), "--fold", "1", "--set", "train.epochs=1", "--skip-bad",
                       "--runs", str(tmp_path / "r"), "--no-report"]
    assert not (tmp_path / "r").exists()  # the parent only launches
    result = CliRunner().invoke(app, ["fit", str(recipe_file), "--gpus", "2", "--folds-parallel"])
    assert result.exit_code == 2 and "--gpus with --folds-parallel: choose one" in result.output, result.output
    assert len(calls) == 1


def test_a_fold_job_claims_only_a_fold_not_started_unless_resumed(tmp_path):
    """Issue 35, item 5: fold 0 trained, fold 1 killed mid-way (a last.pt, no result.json): a
    fold job without --resume refuses both, naming --resume; with it, or for a new fold, it claims."""
    from comp.run.lock import RunLock

    run = _run_with_folds(tmp_path, [0])
    run.fold(1).create()
    (run.fold(1).path / "last.pt").write_bytes(b"")
    root = run.path.parent
    for k in (0, 1):
        life = Run(run, request=FitRequest(runs_root=root, fold=k))
        lock = RunLock(run, fold=k)
        with pytest.raises(CompError, match=f"fold{k} already exists: use --resume"):
            life.claim_fold(k, lock)
        assert not lock.owned and not lock.path.exists()
        resumed = Run(run, request=FitRequest(runs_root=root, fold=k, resume=True))
        resumed.claim_fold(k, lock)
        lock.release()
    run.fold(1).path.joinpath("last.pt").unlink()
    import shutil

    shutil.rmtree(run.fold(1).path)
    lock = RunLock(run, fold=1)
    Run(run, request=FitRequest(runs_root=root, fold=1)).claim_fold(1, lock)  # a fold not started
    lock.release()
