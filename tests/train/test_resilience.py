"""Runs that survive interruptions and bad numbers: resume, Ctrl-C, NaN, unsafe checkpoints."""

import os
import pickle
import signal
import time

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import run_comp, start_comp
from comp.cli import app
from comp.errors import CompError
from comp.train import parts as train_module
from comp.run.checkpoint import load_checkpoint

SETS = ["--set", "train.deterministic=true", "--set", "train.epochs=4", "--set", "augment.size=64",
        "--set", "train.swa_epochs=2", "--set", "augment.mixup=0.4", "--set", "augment.cutmix=1.0"]
# Augmentation on the device (batch-wise, draws seeded per step) instead of in the workers.
DEVICE_SETS = ["--set", "train.deterministic=true", "--set", "train.epochs=3", "--set", "augment.on=device",
               "--set", "augment.vflip=0.5", "--set", "augment.rot90=0.5", "--set", "augment.rotate=30",
               "--set", "augment.rotate_p=0.5", "--set", "augment.scale=0.1",
               "--set", "augment.brightness_contrast=0.5", "--set", "augment.mixup=0.4"]
# The weights' EMA (kept in last.pt), early stopping's SWA window, random erasing and drop path.
EMA_SETS = ["--set", "train.deterministic=true", "--set", "train.epochs=3", "--set", "train.ema_decay=0.9",
            "--set", "train.swa_epochs=2", "--set", "train.patience=2", "--set", "augment.erasing=0.5",
            "--set", "model.drop_path_rate=0.2", "--set", "augment.size=48"]


def _args(recipe_file, runs, *extra, sets=SETS) -> list[str]:
    # The report is not compared (and costs as much as the fit of a run this small).
    return ["fit", str(recipe_file), "--runs", str(runs), "--no-report", *sets, *extra]


def _fit(recipe_file, runs, *extra, sets=SETS):
    """`comp fit` started in a process of its own (forked as _fit_through's), to be stopped by a real
    SIGINT while it runs."""
    return start_comp(_args(recipe_file, runs, *extra, sets=sets), recipe_file.parent, runs.parent / "stopped")


def _fit_through(recipe_file, runs, *extra, sets=SETS) -> None:
    """`comp fit` to its end, in a process forked from one that has imported torch already."""
    code, out, err = run_comp(_args(recipe_file, runs, *extra, sets=sets), recipe_file.parent, timeout=600)
    assert code == 0, out + err


@pytest.mark.parametrize("sets,epochs,files", [
    (SETS, 4, ("last.pt", "best.pt", "swa.pt")),
    (DEVICE_SETS, 3, ("last.pt", "best.pt")),
    (EMA_SETS, 3, ("last.pt", "best.pt", "ema.pt", "swa.pt")),
], ids=["augment-in-workers-swa-mixing", "augment-on-device", "ema-patience-erasing-drop-path"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, recipe_file, sets, epochs, files):
    _fit_through(recipe_file, tmp_path / "a", sets=sets)

    proc = _fit(recipe_file, tmp_path / "b", sets=sets)
    history = tmp_path / "b" / "tiny" / "fold0" / "history.csv"
    deadline = time.time() + 300
    while not history.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    out = proc.output()
    assert proc.returncode == 130, out
    assert "resume with: comp fit" in out and "--resume" in out and "Traceback" not in out
    stopped = load_checkpoint(tmp_path / "b" / "tiny" / "fold0" / "last.pt")
    assert stopped["epoch"] < epochs  # it really stopped early

    _fit_through(recipe_file, tmp_path / "b", "--resume", sets=sets)
    for name in files:
        a = load_checkpoint(tmp_path / "a" / "tiny" / "fold0" / name)["model"]
        b = load_checkpoint(tmp_path / "b" / "tiny" / "fold0" / name)["model"]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, recipe_file, monkeypatch):
    real_build = train_module.build_loss
    calls = {"n": 0}

    def poisoned(cfg, counts, *classes, **options):
        inner = real_build(cfg, counts, *classes, **options)

        class Poisoned(torch.nn.Module):
            def forward(self, logits, targets):
                calls["n"] += 1
                loss = inner(logits, targets)
                # Calls 1-3 train epoch 1, call 4 validates it, call 5 is epoch 2, step 1.
                return loss * float("nan") if calls["n"] == 5 else loss

        return Poisoned()

    monkeypatch.setattr(train_module, "build_loss", poisoned)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["fit", str(recipe_file), "--runs", str(runs), "--set", "train.epochs=3"])
    assert result.exit_code == 2, result.output
    assert "the loss became nan at epoch 2, step 1" in result.output
    last = load_checkpoint(runs / "tiny" / "fold0" / "last.pt")
    assert last["epoch"] == 1 and last["step"] == 0  # the end of the last good epoch
    assert load_checkpoint(runs / "tiny" / "fold0" / "best.pt")["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = _RunsCode()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": payload}, f)
    with pytest.raises(CompError, match="refusing to load .*evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoints_load_weights_only(tmp_path, recipe_file):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["fit", str(recipe_file), "--runs", str(runs), "--no-report",
                                      "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    for name in ("best.pt", "last.pt"):
        state = torch.load(runs / "tiny" / "fold0" / name, weights_only=True)
        assert "model" in state
