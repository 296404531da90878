"""``comp tune`` end to end: processes sharing one study, a dead process's trial retried once,
pruning, best.toml, the report, and bad input refused before any study exists."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.storages import fail_stale_trials

from comp.tune.objective import trial_figure
from comp.tune.folder import StudyDir
from comp.tune.storage import open_storage
from comp.tune.study import on_dead_trial
from tests.conftest import run_comp, write_competition, write_recipe

SPACE = """\
[optim.lr]
low = 0.0003
high = 0.03
log = true
[loss.label_smoothing]
low = 0.0
high = 0.2
"""
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # the heartbeat's
# A trial's process dies once its run is trained, before the study hears of it (its trial stays RUNNING).
DIE_AFTER_FIT = "import os, comp.tune.study as s\ns.trial_figure = lambda path: os._exit(9)\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("tune") / "comp", n_train=24, size=8)


@pytest.fixture
def project(tmp_path: Path, data: Path) -> Path:
    """A working folder with tiny.toml (holdout, 16-px images, 2 epochs) and space.toml."""
    recipe = write_recipe(tmp_path / "tiny.toml", data, extra='[cv]\nscheme = "holdout"\n')
    recipe.write_text(recipe.read_text().replace("size = 32", "size = 16"))
    (tmp_path / "space.toml").write_text(SPACE)
    return tmp_path


def tune(cwd: Path, *args: str, prelude: str = "") -> tuple[int | None, str, str]:
    return run_comp(["tune", "tiny.toml", "--space", "space.toml", "--no-report", *args], cwd, prelude=prelude,
                    timeout=240)


def load(cwd: Path, name: str, storage: str | None = None) -> optuna.Study:
    url = storage or f"sqlite:///{cwd / 'runs' / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=url)


def trials(study: optuna.Study, state: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state.name == state]


def test_two_processes_share_one_study_and_finish_its_trials_once(project):
    results: list = [None, None]

    def worker(i: int) -> None:
        results[i] = tune(project, "--study", "duo", "--trials", "3")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for code, out, err in results:
        assert code == 0, err[-2000:]
    study = load(project, "duo")
    done = trials(study, "COMPLETE")
    assert len(done) == 3  # in all, not per process
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.get_trials())  # a FAIL: a race for the last
    assert len({t.number for t in done}) == 3
    assert len({tuple(sorted(t.params.items())) for t in done}) == 3
    for t in done:  # each trial one run, trained once, complete, on the same folds
        run = project / "runs" / "duo" / f"trial_{t.number:04d}"
        assert json.loads((run / "run.json").read_text())["status"] == "complete"
        assert (run / "fit.log").read_text().count(f"run runs/duo/trial_{t.number:04d}:") == 1
        assert abs(trial_figure(run).value - t.value) < 1e-12
    folds = {(project / "runs" / "duo" / f"trial_{t.number:04d}" / "folds.csv").read_text() for t in done}
    assert len(folds) == 1
    assert all("trial_" in err + out for _, out, err in results)  # both processes trained trials


def test_a_dead_process_trial_is_retried_once(project):
    fast = ("--study", "dead", "--trials", "1", "--heartbeat", "1")
    code, _, _ = tune(project, *fast, prelude=DIE_AFTER_FIT)
    assert code == 9
    time.sleep(3)  # the heartbeat goes stale after 2 s
    code, out, err = tune(project, *fast, prelude=DIE_AFTER_FIT)  # the retry dies as well
    assert code == 9, err[-2000:]
    assert "trial 0 again" in out + err
    time.sleep(3)
    study = load(project, "dead")
    # The next process fails the retry too, and queues nothing: a trial is retried once.
    folder = StudyDir(project / "runs", "dead")
    fail_stale_trials(optuna.load_study(study_name="dead", storage=open_storage(
        folder.default_storage, heartbeat=1, on_stale=on_dead_trial(folder))))
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "FAIL"]
    first, retry = study.get_trials()
    assert retry.params == first.params and retry.system_attrs["failed_trial"] == 0
    for n in (0, 1):
        run = project / "runs" / "dead" / f"trial_{n:04d}" / "run.json"
        assert json.loads(run.read_text())["status"] == "failed"


def test_a_pruned_trial_stops_early_is_marked_and_never_blended_and_best_refits(project, tmp_path):
    # Two trials whose order the test fixes: a learning one, then one that cannot learn (lr 1e-7).
    recipe = project / "tiny.toml"
    recipe.write_text(recipe.read_text().replace('monitor = "accuracy"', 'monitor = "ovr_auc"'))
    (project / "space.toml").write_text("[optim.lr]\nlow = 1e-8\nhigh = 0.1\nlog = true\n")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    study.enqueue_trial({"optim.lr": 0.01})
    study.enqueue_trial({"optim.lr": 1e-7})
    code, out, err = tune(project, "--study", "p", "--storage", url, "--trials", "2", "--startup", "1",
                          "--set", "train.epochs=3")
    assert code == 0, err[-2000:]
    study = load(project, "p", url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "PRUNED"]
    runs = project / "runs" / "p"
    pruned = runs / "trial_0001"
    assert json.loads((pruned / "run.json").read_text())["status"] == "pruned"
    assert len(pd.read_csv(pruned / "fold0" / "history.csv")) == 1  # stopped after epoch 1 of 3
    assert not (pruned / "oof.csv").exists()
    code, _, err = run_comp(["blend", "--run", "trial_0000", "--run", "trial_0001", "--runs", "runs/p"], project)
    assert code == 2 and "pruned" in err and len(err.strip().splitlines()) == 1

    # --report finds the storage in study.json; best.toml refits to the best trial's OOF, exactly.
    assert not (runs / "best.toml").exists()  # --no-report: the study's report waits for --report
    code, out, err = run_comp(["tune", "--report", "--study", "p"], project)
    assert code == 0, err
    for name in ("trials.csv", "report.md", "history.png", "best.toml"):
        assert (runs / name).is_file(), name
    assert "pruned" in (runs / "trials.csv").read_text()
    code, _, err = run_comp(["fit", "runs/p/best.toml", "--runs", "refit", "--no-report"], project)
    assert code == 0, err[-2000:]
    best = study.best_trial
    refit = project / "refit" / "p-best"
    assert trial_figure(refit).value == best.value
    a, b = (pd.read_csv(r / "oof.csv") for r in (runs / "trial_0000", refit))
    prob = [c for c in a.columns if c.startswith("prob_")]
    np.testing.assert_allclose(a[prob].to_numpy(), b[prob].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("space, args, says", [
    ("", (), "searches nothing"),
    ("[optim.lr]\nlow = 0.1\nhigh = 0.01\n", (), "is above high"),
    ('[optim.name]\nchoices = ["adamw", "lion"]\n', (), "[optim] name must be one of"),
    ("[optim.lrr]\nlow = 0.1\nhigh = 0.2\n", (), "unknown key [optim] lrr"),
    (SPACE, ("--storage", "sqlite:////nonexistent-dir/x.db"), "--storage sqlite:////nonexistent-dir/x.db: cannot open it"),
    (SPACE, ("--storage", "nonsense://x"), "cannot open it"),
    (SPACE, ("--storage", "journal:/nonexistent-dir/x.log"), "cannot open it"),
    (SPACE, ("--trials", "0"), "--trials must be at least 1"),
])
def test_bad_input_is_one_message_and_no_study(project, space, args, says):
    (project / "space.toml").write_text(space)
    code, out, err = tune(project, "--study", "bad", *args)
    assert code == 2, err[-2000:]
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (project / "runs" / "bad").exists()


@pytest.mark.parametrize("name", ["a/b", "../escape", "x" * 150, ".hidden", "link"])
def test_hostile_study_names_are_refused(project, tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    (project / "runs").mkdir()
    os.symlink(outside, project / "runs" / "link")
    code, _, err = tune(project, "--study", name)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err[-2000:]
    assert not any(outside.iterdir())
    assert sorted(p.name for p in (project / "runs").iterdir()) == ["link"]
    assert not (project / "escape").exists()


# Ctrl-C during the first training step of the first trial.
CTRL_C = ("import os, signal, comp.train.loop as loop\n_step = loop.train_batch\n"
          "def train_batch(*a, **k):\n    os.kill(os.getpid(), signal.SIGINT)\n    return _step(*a, **k)\n"
          "loop.train_batch = train_batch\n")


def test_ctrl_c_stops_the_trial_as_comp_fit_does_and_queues_its_values(project):
    code, out, err = tune(project, "--study", "stop", "--trials", "2", prelude=CTRL_C)
    assert code == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "saved last.pt" in last and "continue the study with: comp tune tiny.toml --space space.toml" in last
    stopped, queued = load(project, "stop").get_trials()
    assert (stopped.state.name, queued.state.name) == ("FAIL", "WAITING")
    assert queued.system_attrs["fixed_params"] == stopped.params and queued.user_attrs["retry_of"] == 0
    run = project / "runs" / "stop" / "trial_0000"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert (run / "fold0" / "last.pt").is_file()
