"""Issue 25's offline smoke test: a bundle used as in a Kaggle code competition.

A tiny run is exported with --wheels (comp's own wheel built here, offline; the dependencies
are those a notebook image already has, so nothing is downloaded), comp is installed into a
fresh virtual environment with ``pip install --no-index --find-links`` from the bundle, and
predicts from the read-only bundle on test images at another path, with the internet not used.
The "image" is this environment's third-party packages put on the new one's path (comp's own
editable install left out), as torch and the rest are preinstalled on Kaggle.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.predict import bundle as bundle_mod
from tests.conftest import write_competition, write_recipe

runner = CliRunner()


def comp(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def image_packages(dest: Path, without: tuple[str, ...] = ()) -> Path:
    """This environment's installed packages, linked into ``dest``, without comp itself (and
    without the packages whose names start with one of ``without``, lower-case)."""
    dest.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name
        if name == "comp" or name.startswith(("comp-", "__editable__")) or entry.suffix == ".pth":
            continue
        if without and name.lower().startswith(without):
            continue
        (dest / name).symlink_to(entry)
    return dest


def image_venv(tmp_path: Path, without: tuple[str, ...] = ()) -> tuple[Path, Path, dict[str, str]]:
    """A fresh venv without pip's index whose site-packages reaches this environment's packages
    (:func:`image_packages`, less ``without``) as a notebook image's would: (venv, its
    site-packages, the environment to run it in)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_FIND_LINKS", "PIP_INDEX_URL")}
    env["PIP_NO_INDEX"] = "1"
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "image.pth").write_text(f"{image_packages(tmp_path / 'image', without)}\n")
    return venv, site, env


def run(cmd, **kwargs):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_install_offline_and_predict_from_a_read_only_bundle(tmp_path, monkeypatch):
    competition = write_competition(tmp_path / "comp")
    runs = tmp_path / "runs"
    comp("fit", write_recipe(tmp_path / "tiny.toml", competition), "--runs", runs, "--set", "train.epochs=1",
         "--no-report")
    monkeypatch.setattr(bundle_mod, "pinned_requirements", lambda *a, **k: [])  # the image has them all
    bundle = tmp_path / "bundle"
    comp("export", "--runs", runs, "--run", "tiny", "--tta", "--out", bundle, "--wheels")
    assert [p.name for p in (bundle / "wheels").iterdir()] == ["comp-0.1.0-py3-none-any.whl"]

    venv, site, env = image_venv(tmp_path)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-index", "--find-links", bundle / "wheels", "comp"], env=env)
    where = run([python, "-c", "import comp; print(comp.__file__)"], env=env, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(site), where  # the bundle's wheel, not the checkout

    moved = tmp_path / "input" / "competition"
    moved.parent.mkdir()
    os.rename(competition, moved)
    expected = tmp_path / "expected.csv"
    comp("predict", "--runs", runs, "--run", "tiny", "--tta", "--proba", "--data", moved, "--out", expected, "--device", "cpu")
    for p in [bundle, *bundle.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        out = tmp_path / "working" / "submission.csv"
        result = run([venv / "bin" / "comp", "predict", "--bundle", bundle, "--data", moved, "--proba",
                      "--out", out, "--device", "cpu"], env=env, cwd=tmp_path)
    finally:
        for p in [bundle, *bundle.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert "3 view(s)" in result.stdout
    assert out.read_bytes() == expected.read_bytes()
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()) == [
        "README.md", "bundle.json", "runs/tiny/fold0/best.safetensors", "runs/tiny/recipe.toml", "runs/tiny/run.json",
        "wheels/comp-0.1.0-py3-none-any.whl"]
    shutil.rmtree(venv)
