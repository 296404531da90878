"""Folds as independent jobs: ``comp fit RECIPE --fold K`` for each K at once into one run, the
last to finish merging it, and ``comp merge`` (issue 24, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_comp, write_competition, write_recipe

pytestmark = pytest.mark.xdist_group("test_fold_jobs")  # one worker makes the module's fixtures (conftest)

SETS = ["--set", "cv.scheme=kfold", "--set", "cv.folds=3", "--set", "train.epochs=1",
        "--set", "train.deterministic=true", "--set", "data.task=ordinal"]  # ordinal: the merge fits thresholds


def comp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m comp ARGS`` in its own process (forked from one that has imported torch already)."""
    code, out, err = run_comp(list(args), cwd, timeout=300)
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A serial fit (runs s/) and three fold jobs started at once (runs p/), of one recipe and seed."""
    root = tmp_path_factory.mktemp("jobs")
    recipe = write_recipe(root / "tiny.toml", write_competition(root / "data"))
    start = [["fit", str(recipe), "--runs", "s", "--no-report", *SETS]]
    start += [["fit", str(recipe), "--runs", "p", "--fold", str(k), "--no-report", *SETS] for k in range(3)]
    # Four processes at once (each forked from one that has imported torch already).
    with ThreadPoolExecutor(len(start)) as pool:
        done = list(pool.map(lambda args: comp(*args, cwd=root), start))
    outs = [res.stdout + res.stderr for res in done]
    for res, out in zip(done, outs):
        assert res.returncode == 0, out
    (root / "outs.json").write_text(json.dumps(outs))
    return root


def _oof(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str).sort_values("id", ignore_index=True)


def test_three_fold_jobs_at_once_merge_into_the_serial_runs_oof(runs):
    jobs = json.loads((runs / "outs.json").read_text())[1:]
    assert sum("done:" in out for out in jobs) == 1, jobs  # exactly one job merged the run
    assert all("done:" in out or "are not yet" in out or "another fold job merged" in out for out in jobs), jobs
    serial, parallel = _oof(runs / "s" / "tiny" / "oof.csv"), _oof(runs / "p" / "tiny" / "oof.csv")
    assert sorted(parallel.fold.unique()) == ["0", "1", "2"] and len(parallel) == 36
    pd.testing.assert_frame_equal(serial, parallel)  # ids, folds and every probability, to the digit
    assert (json.loads((runs / "s" / "tiny" / "thresholds.json").read_text())
            == json.loads((runs / "p" / "tiny" / "thresholds.json").read_text()))
    info = json.loads((runs / "p" / "tiny" / "run.json").read_text())
    assert info["status"] == "complete" and info["folds"] == [0, 1, 2]
    assert (runs / "s" / "tiny" / "folds.csv").read_text() == (runs / "p" / "tiny" / "folds.csv").read_text()
    leftovers = [p.name for p in (runs / "p").iterdir()] + [p.name for p in (runs / "p" / "tiny").glob(".*")]
    assert leftovers == ["tiny"], leftovers  # no lock, staging or temp file left behind


def test_merge_names_the_missing_fold_and_merges_partially_on_request(runs):
    copy = runs / "m"
    subprocess.run(["cp", "-r", str(runs / "p"), str(copy)], check=True)
    (copy / "tiny" / "fold2" / "result.json").unlink()  # fold 2 unfinished
    res = comp("merge", "tiny", "--runs", "m", "--no-report", cwd=runs)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "fold 2 of [0, 1, 2] not trained yet" in res.stderr and "Traceback" not in res.stderr
    assert "--fold K" in res.stderr and "--partial" in res.stderr
    res = comp("merge", "tiny", "--runs", "m", "--partial", "--no-report", cwd=runs)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(_oof(copy / "tiny" / "oof.csv").fold.unique()) == ["0", "1"]
    assert json.loads((copy / "tiny" / "run.json").read_text())["status"] == "partial"


def test_a_held_fold_lock_stops_a_second_job_of_that_fold(runs):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "comp"])
    lock = runs / "p" / "tiny" / ".fold1.lock"
    try:
        import socket

        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        before = (runs / "p" / "tiny" / "fold1" / "result.json").read_text()
        res = comp("fit", str(runs / "tiny.toml"), "--runs", "p", "--fold", "1", *SETS, cwd=runs)
        assert res.returncode == 2, res.stdout + res.stderr
        assert f"fold 1 of run 'tiny' is being written by another comp fit (pid {holder.pid}" in res.stderr
        assert (runs / "p" / "tiny" / "fold1" / "result.json").read_text() == before
    finally:
        holder.kill()
        holder.wait()
        lock.unlink(missing_ok=True)


def test_fold_jobs_refuse_overwrite_and_another_recipe(runs):
    res = comp("fit", str(runs / "tiny.toml"), "--runs", "p", "--fold", "0", "--overwrite", *SETS, cwd=runs)
    assert res.returncode == 2 and "--overwrite with --fold 0" in res.stderr, res.stderr
    res = comp("fit", str(runs / "tiny.toml"), "--runs", "p", "--fold", "0", *SETS, "--set", "optim.lr=0.01",
               cwd=runs)
    assert res.returncode == 2 and "optim.lr differ" in res.stderr, res.stdout + res.stderr


def test_the_task_is_read_from_run_json_not_resolved_again(runs):
    """Issue 24, item 2: run.json records the task the fit resolved; the merge, the report and
    predict's decision read it there, so a recipe.toml that now says otherwise (as a changed
    default would) changes nothing."""
    from comp.predict.decision import load_decision
    from comp.run.folder import RunDir
    from comp.run.life import Run

    copy = runs / "t"
    subprocess.run(["cp", "-r", str(runs / "p"), str(copy)], check=True)
    run = RunDir(copy / "tiny")
    recorded = json.loads(run.info_path.read_text())["task"]
    assert recorded["kind"] == "ordinal" and recorded["monitor"] == "accuracy" and recorded["mode"] == "max"
    assert recorded["names"] == ["cat", "dog", "eel"] and recorded["decision"] == "argmax"
    text = run.recipe_path.read_text()
    changed = text.replace('task = "ordinal"', 'task = "multiclass"').replace('monitor = "accuracy"', 'monitor = "val_loss"')
    assert changed.count("multiclass") == 1 and changed.count('"val_loss"') == 1, text
    run.recipe_path.write_text(changed)
    assert run.task().kind == "ordinal" and run.task().monitor == "accuracy"
    run.thresholds_path.unlink()
    assert Run.at(run.path).merge().merged
    assert run.thresholds_path.is_file()  # cut points fitted: still ordinal (a multiclass task fits none)
    rule = load_decision(run.recipe(), run.path, "ordinal_thresholds")  # refused for a multiclass task
    assert rule.rule == "ordinal_thresholds"
    info = json.loads(run.info_path.read_text())
    del info["task"]  # a run written before run.json recorded its task: resolved from its recipe
    run.info_path.write_text(json.dumps(info))
    assert run.task().kind == "multiclass"


def test_a_fold_job_without_resume_refuses_a_fold_already_trained(runs):
    """Issue 35, item 5: a fold job rerun on a trained fold (of a merged run) is refused as a
    whole-run fit is ("already exists: use --resume"), exit 2, the fold's files untouched."""
    fold = runs / "p" / "tiny" / "fold2"
    before = {p.name: p.read_bytes() for p in fold.iterdir()}
    res = comp("fit", str(runs / "tiny.toml"), "--runs", "p", "--fold", "2", "--no-report", *SETS, cwd=runs)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert "p/tiny/fold2 already exists: use --resume" in res.stderr, res.stderr
    assert {p.name: p.read_bytes() for p in fold.iterdir()} == before
    assert not list((runs / "p" / "tiny").glob(".fold*.lock"))  # its lock given back
