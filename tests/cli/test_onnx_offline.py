"""A bundle with ONNX models predicts in a fresh virtual environment where torch is not installed
(issue 34): comp from the bundle's wheel (built here, offline), onnxruntime, numpy, pandas and the rest
from this environment's own files (its site-packages less torch and its kin), nothing downloaded."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.predict import bundle as bundle_mod
from tests.cli.test_export_offline import image_venv, run
from tests.conftest import write_competition, write_recipe

runner = CliRunner()
NO_TORCH = ("torch", "functorch", "torchgen", "torchvision", "triton", "nvidia")


def comp(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.slow
def test_a_bundle_predicts_through_onnx_runtime_where_torch_is_not_installed(tmp_path, monkeypatch):
    competition = write_competition(tmp_path / "comp")
    runs = tmp_path / "runs"
    comp("fit", write_recipe(tmp_path / "tiny.toml", competition), "--runs", runs, "--set", "train.epochs=1",
         "--no-report", "--device", "cpu")
    monkeypatch.setattr(bundle_mod, "pinned_requirements", lambda *a, **k: [])  # from this environment's files
    bundle = tmp_path / "bundle"
    comp("export", "--runs", runs, "--run", "tiny", "--tta", "--onnx", "--out", bundle, "--wheels", "--no-torch")
    expected = tmp_path / "expected.csv"
    comp("predict", "--runs", runs, "--run", "tiny", "--tta", "--out", expected, "--device", "cpu")

    venv, _, env = image_venv(tmp_path, without=NO_TORCH)
    python = venv / "bin" / "python"
    # --no-deps: comp's wheel names torch, which this environment (on purpose) does not have.
    run([python, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", bundle / "wheels", "comp"], env=env)
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    run([python, "-c", "import onnxruntime, numpy, pandas"], env=env, cwd=tmp_path)

    out = tmp_path / "working" / "submission.csv"
    result = run([venv / "bin" / "comp", "predict", "--bundle", bundle, "--out", out], env=env, cwd=tmp_path)
    assert "ONNX Runtime" in result.stdout + result.stderr and "3 view(s)" in result.stdout + result.stderr
    assert out.read_bytes() == expected.read_bytes()
    # torch asked for where there is none: one message, exit 2.
    done = subprocess.run([venv / "bin" / "comp", "predict", "--bundle", bundle, "--engine", "torch", "--out",
                           tmp_path / "t.csv"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "torch" in done.stderr and "Traceback" not in done.stderr, done.stderr
