"""DDP on the CPU with the Gloo backend: 2 processes through torchrun, on the tiny competition.

torchrun and the processes it starts run as processes forked from one that has imported torch and
comp (conftest.forked_python, given to torchrun as its PYTHON_EXEC): three fresh interpreters per
torchrun would import torch three times over."""

import os
import subprocess
import textwrap

import pandas as pd
import pytest
import torch

from tests.conftest import forked_python, run_comp

pytestmark = pytest.mark.xdist_group("test_distributed")  # one worker makes the module's fixtures (conftest)


@pytest.fixture(scope="module")
def python(tmp_path_factory):
    preload = ["torch.distributed.run", "torch.distributed.elastic.agent.server.local_elastic_agent",
               "comp.train.distributed", "comp.train.loop", "comp.train.parts", "comp.data.table"]
    with forked_python(tmp_path_factory.mktemp("python"), preload) as python:
        yield python


def torchrun(python, *args: str) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON_EXEC": str(python)})


def test_two_process_fit_covers_every_row_once_and_only_rank0_writes(tmp_path, recipe_file, competition, python):
    runs = tmp_path / "runs"
    out = torchrun(python, "-m", "comp", "fit", str(recipe_file), "--runs", str(runs),
                   "--set", "cv.scheme=kfold", "--set", "cv.folds=3", "--set", "train.epochs=2",
                   "--set", "train.ema_decay=0.9")  # the EMA of the unwrapped module, validated on every rank
    assert out.returncode == 0, out.stdout + out.stderr
    oof = pd.read_csv(runs / "tiny" / "oof.csv", dtype=str)
    train = pd.read_csv(competition / "train.csv", dtype=str)
    assert sorted(oof.id) == sorted(train.id) and not oof.id.duplicated().any()
    assert sorted(oof.fold.unique()) == ["0", "1", "2"]
    # Rank 0 alone logs and writes: each epoch line and the closing line appear once.
    assert out.stdout.count("fold 0 epoch   1") == 1 and out.stdout.count("done:") == 1
    assert "2 processes (DDP)" in out.stdout and "× 2 processes" in out.stdout
    for k in range(3):
        history = pd.read_csv(runs / "tiny" / f"fold{k}" / "history.csv")
        assert list(history.epoch) == [1, 2]
        last = torch.load(runs / "tiny" / f"fold{k}" / "last.pt", weights_only=True)
        ema = torch.load(runs / "tiny" / f"fold{k}" / "ema.pt", weights_only=True)
        assert ema["model"].keys() == last["model"].keys()  # plain names, not DDP's "module."
        assert all(torch.equal(v, last["ema"][n]) for n, v in ema["model"].items())
    files = sorted(p.relative_to(runs / "tiny").as_posix() for p in (runs / "tiny").rglob("*") if p.is_file())
    assert not [f for f in files if ".tmp" in f]


GRADS = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from comp.train.distributed import env_world, init_process_group, shutdown
    from comp.recipe import load_recipe
    from comp.model.runtime import resolve_runtime
    from comp.data.table import load_train_table
    from comp.train.loop import train_step
    from comp.train.parts import FoldSplit, build_parts, seed_everything
    from comp.recipe.task import resolve_task

    recipe_file, per_process, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # LayerNorm, not BatchNorm: per-process batch statistics would make the gradients differ.
    recipe = load_recipe(recipe_file, ["model.name=convnext_atto", f"train.batch_size={per_process}"])
    rank, local, world = env_world()
    runtime = resolve_runtime(recipe.train, "cpu", rank=rank, world_size=world)
    init_process_group(runtime)
    table, classes = load_train_table(recipe)
    seed_everything(recipe.seed)
    rows = np.arange(len(table))
    split = FoldSplit(0, table, classes, rows, rows[:0], resolve_task(recipe, classes.labels))
    parts = build_parts(recipe, split, runtime)
    parts.sampler.set_epoch(0)
    images, targets = next(iter(parts.train_loader))  # uint8, as the workers ship it
    images = parts.pipeline.train_batch(images, 0, 1, rank)
    train_step(parts, images, targets, runtime, update=False)
    if rank == 0:
        torch.save({n: p.grad for n, p in parts.model.named_parameters()}, out)
    shutdown(runtime)
""")


def test_two_process_first_step_gradients_equal_one_process(tmp_path, recipe_file, python):
    # Its own folder: the script's folder goes first on sys.path, and tmp_path/comp is the data.
    (tmp_path / "script").mkdir()
    script = tmp_path / "script" / "grads.py"
    script.write_text(GRADS)
    single = subprocess.run([str(python), str(script), str(recipe_file), "8", str(tmp_path / "one.pt")],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    double = torchrun(python, str(script), str(recipe_file), "4", str(tmp_path / "two.pt"))
    assert double.returncode == 0, double.stderr
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in one.values())


def test_folds_parallel_merges_oof_like_a_serial_run(tmp_path, recipe_file, python):
    # Ordinal, so that the merge also fits thresholds (a nominal task fits none).
    sets = ["--set", "cv.scheme=kfold", "--set", "cv.folds=3", "--set", "train.epochs=1", "--set", "data.task=ordinal"]
    # Both through the fork server (no report: its pictures are not compared), and so are the fold
    # jobs --folds-parallel starts (`sys.executable -m comp ...`: the forked python as its
    # interpreter); they run in a folder without the competition's "comp" folder, which
    # `python -m comp` would find first.
    work = tmp_path / "work"
    work.mkdir()
    code, out, err = run_comp(["fit", str(recipe_file), "--runs", str(tmp_path / "s"), "--no-report", *sets], work)
    assert code == 0, out + err
    code, out, err = run_comp(["fit", str(recipe_file), "--runs", str(tmp_path / "p"), "--no-report",
                               "--folds-parallel", "--procs", "2", *sets], work,
                              prelude=f"import sys\nsys.executable = {str(python)!r}\n")
    assert code == 0, out + err
    assert "3 folds over 2 CPU processes" in out
    a = pd.read_csv(tmp_path / "s" / "tiny" / "oof.csv", dtype=str).sort_values("id", ignore_index=True)
    b = pd.read_csv(tmp_path / "p" / "tiny" / "oof.csv", dtype=str).sort_values("id", ignore_index=True)
    assert list(a.columns) == list(b.columns)
    assert a[["id", "label", "fold"]].equals(b[["id", "label", "fold"]])
    assert (tmp_path / "p" / "tiny" / "thresholds.json").is_file()
    assert '"status": "complete"' in (tmp_path / "p" / "tiny" / "run.json").read_text()
