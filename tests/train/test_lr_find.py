"""The learning-rate range test (comp.train.lr_find, `comp lr-find`)."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from comp.train.lr_find import lr_schedule, smooth, valley
from tests.conftest import run_comp, write_competition, write_recipe


def test_schedule_smoothing_and_valley():
    lrs = lr_schedule(1e-6, 1.0, 7)
    assert np.allclose(lrs, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert np.allclose(smooth([2.0, 2.0, 2.0], 0.9), 2.0)  # the bias correction: no ramp up from 0
    # Flat, then falling from index 3 to 12, then rising: the valley is a half of the way down.
    losses = np.r_[np.full(3, 5.0), np.linspace(5, 1, 10), np.linspace(1.5, 9, 5)]
    assert 5 <= valley(losses) <= 9
    assert valley(np.array([1.0])) == 0


def test_lr_find_suggests_a_rate_near_a_good_one_and_makes_no_run(tmp_path):
    """The tiny competition trains well at lr 3e-3 (its recipe's, AdamW); the suggestion is within
    a factor of 10 of it. Only the plot is written: under --runs/.lr_find, no run."""
    data = write_competition(tmp_path / "comp", n_train=72)
    write_recipe(tmp_path / "tiny.toml", data)
    code, out, err = run_comp(["lr-find", "tiny.toml", "--runs", "runs", "--device", "cpu", "--steps", "100",
                               "--start", "1e-6", "--end", "3"], tmp_path)
    assert code == 0, err
    lr = float(re.search(r"--set optim\.lr=([0-9.e+-]+)", out).group(1))
    assert 3e-4 <= lr <= 3e-2, out
    assert "comp fit tiny.toml --set optim.lr=" in out
    assert sorted(os.listdir(tmp_path / "runs")) == [".lr_find"]
    assert os.listdir(tmp_path / "runs" / ".lr_find") == ["tiny.png"]
    assert (tmp_path / "runs" / ".lr_find" / "tiny.png").read_bytes()[:4] == b"\x89PNG"
    assert math.isfinite(lr)


def test_lr_find_refuses_links_and_run_folders_and_cuts_long_names(tmp_path):
    data = write_competition(tmp_path / "comp", n_train=12, n_test=3)
    long = "r" * 240
    write_recipe(tmp_path / f"{long}.toml", data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / ".lr_find").symlink_to(outside)
    args = ["lr-find", f"{long}.toml", "--runs", "runs", "--device", "cpu", "--steps", "5"]
    code, out, err = run_comp(args, tmp_path)
    assert code == 2 and "is a link comp did not make" in err and "Traceback" not in err, err
    assert os.listdir(outside) == []
    (tmp_path / "runs" / ".lr_find").unlink()
    (tmp_path / "runs" / "old").mkdir()
    (tmp_path / "runs" / "old" / "run.json").write_text("{}")
    code, out, err = run_comp([*args, "--out", "runs/old/lr.png"], tmp_path)
    assert code == 2 and "lies in the run folder" in err, err
    code, out, err = run_comp([*args, "--start", "1", "--end", "0.1"], tmp_path)
    assert code == 2 and "need 0 < start < end" in err, err
    code, out, err = run_comp(args, tmp_path)
    assert code == 0, err
    assert os.listdir(tmp_path / "runs" / ".lr_find") == [f"{'r' * 120}.png"]
