"""Issue 25: `comp predict --data`, `comp export` bundles, and `comp predict --bundle`.

Two tiny runs of different input sizes are fitted once per module; every case copies what it
changes. The test set is moved away from where the runs' recipes say it is, as on Kaggle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.cli import app
from comp.predict import bundle as bundle_mod
from tests.conftest import write_competition, write_recipe

pytestmark = pytest.mark.xdist_group("test_bundle")  # one worker makes the module's fixtures (conftest)

runner = CliRunner()


def comp(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def refused(result, *words):
    """Exit 2, one line naming the thing, no traceback."""
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two fitted runs (32 px and 24 px input), their competition moved to another folder."""
    root = tmp_path_factory.mktemp("bundle")
    competition = write_competition(root / "comp")
    recipe = write_recipe(root / "tiny.toml", competition)
    runs = root / "runs"
    ok(comp("fit", recipe, "--runs", runs, "--set", "train.epochs=1", "--no-report"))
    ok(comp("fit", recipe, "--runs", runs, "--set", "train.epochs=1", "--set", "name=tiny2",
            "--set", "augment.size=24", "--no-report"))
    moved = root / "elsewhere" / "input"
    moved.parent.mkdir()
    os.rename(competition, moved)  # the runs' [data] root no longer exists
    return {"root": root, "runs": runs, "data": moved}


@pytest.fixture(scope="module")
def bundle(project):
    out = project["root"] / "bundle"
    result = ok(comp("export", "--runs", project["runs"], "--run", "tiny", "--run", "tiny2",
                     "--weight", "1", "--weight", "3", "--tta", "--out", out))
    assert "MB" in result.output and "fold0/best.safetensors" in result.output
    return out


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read_only(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


# --------------------------------------------------------------------------- --data


def test_predict_reads_the_test_set_at_another_path(project, tmp_path):
    runs, data = project["runs"], project["data"]
    refused(comp("predict", "--runs", runs, "--run", "tiny", "--out", tmp_path / "a.csv"), "data folder not found", "--data ROOT")
    out = tmp_path / "a.csv"
    ok(comp("predict", "--runs", runs, "--run", "tiny", "--data", data, "--out", out))
    sub = pd.read_csv(out, dtype=str)
    assert list(sub.id) == list(pd.read_csv(data / "sample_submission.csv", dtype=str).id)
    # The same through --set, with test.csv and its images under other names.
    other = tmp_path / "other"
    shutil.copytree(data / "test", other / "imgs")
    shutil.copy(data / "test.csv", other / "rows.csv")
    out2 = tmp_path / "b.csv"
    ok(comp("predict", "--runs", runs, "--run", "tiny", "--set", f"data.root={other}", "--set", "data.test_csv=rows.csv",
            "--set", "data.test_image_dir=imgs", "--out", out2))
    b = pd.read_csv(out2, dtype=str)  # no sample_submission.csv there: test.csv's order
    assert list(b.id) == list(pd.read_csv(data / "test.csv", dtype=str).id)
    assert b.set_index("id").label.to_dict() == sub.set_index("id").label.to_dict()


def test_predict_data_runs_the_same_checks_before_any_model(project, tmp_path):
    runs, data = project["runs"], project["data"]
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    pd.DataFrame({"image": ["te000"]}).to_csv(bad / "test.csv", index=False)  # no id column
    refused(comp("predict", "--runs", runs, "--run", "tiny", "--data", bad, "--out", tmp_path / "x.csv"), "id")
    shutil.copy(data / "test.csv", bad / "test.csv")
    (bad / "test" / "te003.png").unlink()  # an image missing
    refused(comp("predict", "--runs", runs, "--run", "tiny", "--data", bad, "--out", tmp_path / "x.csv"), "te003")
    # Only the test set's place may change: the model and its preprocessing are the run's.
    refused(comp("predict", "--runs", runs, "--run", "tiny", "--data", data, "--set", "augment.size=64",
                 "--out", tmp_path / "x.csv"), "augment.size", "data.test_csv")
    refused(comp("predict", "--runs", runs, "--run", "tiny", "--set", "data.label_col=level",
                 "--out", tmp_path / "x.csv"), "data.label_col")
    assert not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------- export and --bundle


def test_bundle_holds_only_what_predict_needs(bundle):
    files = sorted(digests(bundle))
    assert files == ["README.md", "bundle.json",
                     "runs/tiny/fold0/best.safetensors", "runs/tiny/recipe.toml", "runs/tiny/run.json",
                     "runs/tiny2/fold0/best.safetensors", "runs/tiny2/recipe.toml", "runs/tiny2/run.json"]
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["format"] == bundle_mod.FORMAT and manifest["ensemble_weights"] == [1.0, 3.0]
    assert manifest["tta"] is True and manifest["decision"] == "argmax"
    assert [r["classes"] for r in manifest["runs"]] == [["cat", "dog", "eel"]] * 2
    assert set(manifest["files"]) == {f for f in files if f.startswith("runs/")}
    # Weights only: the tensors of the model, the same values as the checkpoint's.
    from safetensors.torch import load_file

    from comp.run.checkpoint import load_checkpoint
    weights = load_file(str(bundle / "runs/tiny/fold0/best.safetensors"))
    saved = load_checkpoint(bundle.parent / "runs/tiny/fold0/best.pt")["model"]
    assert weights.keys() == saved.keys() and all((weights[k] == saved[k]).all() for k in saved)
    readme = (bundle / "README.md").read_text()
    assert "comp predict --bundle /kaggle/input/bundle --data /kaggle/input/<competition>" in readme


def test_bundle_files_get_the_umasks_mode(bundle):
    """Issue 35, item 8: every file, the safetensors weights included, gets the umask's mode."""
    from comp import atomic

    modes = {str(p.relative_to(bundle)): stat.S_IMODE(p.stat().st_mode) for p in bundle.rglob("*") if p.is_file()}
    assert modes == dict.fromkeys(modes, 0o666 & ~atomic.umask()), modes


def test_bundle_predicts_what_its_runs_predict_bit_for_bit(project, bundle, tmp_path):
    runs, data = project["runs"], project["data"]
    by_runs = tmp_path / "runs.csv"
    ok(comp("predict", "--runs", runs, "--run", "tiny", "--run", "tiny2", "--weight", "1", "--weight", "3",
            "--tta", "--proba", "--data", data, "--out", by_runs))
    before = digests(bundle)
    read_only(bundle)
    try:
        by_bundle = tmp_path / "bundle.csv"
        result = ok(comp("predict", "--bundle", bundle, "--data", data, "--proba", "--out", by_bundle))
    finally:
        writable(bundle)
    assert "3 view(s)" in result.output  # TTA, as exported
    assert by_bundle.read_bytes() == by_runs.read_bytes()  # the probabilities to the last bit
    probs = pd.read_csv(by_bundle)[["prob_cat", "prob_dog", "prob_eel"]].to_numpy()
    assert probs.shape == (9, 3) and abs(probs.sum(1) - 1).max() < 1e-5
    assert digests(bundle) == before  # nothing written inside the bundle


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(bundle, dest)
    return dest


EDITS = {"format": {"format": 99, "comp": "0.0.1"}, "manifest": {"runs": 3}, "no runs": {"runs": []},
         "format as text": {"format": "1"}, "weights too few": {"ensemble_weights": [1.0]},
         "weight negative": {"ensemble_weights": [1.0, -3.0]}, "tta as text": {"tta": "yes"}}


@pytest.mark.parametrize("damage, words", [
    ("missing", ["incomplete", "runs/tiny2/fold0/best.safetensors is missing"]),
    ("altered", ["runs/tiny/fold0/best.safetensors differs"]),
    ("recipe", ["runs/tiny/recipe.toml differs"]),
    ("format", ["made by comp 0.0.1 (bundle format 99)"]),
    ("manifest", ["bundle.json is damaged"]),
    ("not a bundle", ["not a comp bundle"]),
    # Issue 35, items 3 and 7: hand-edited values, each named before any model loads.
    ("no runs", ['bundle.json is damaged: "runs" is []']),
    ("format as text", ['"format" is "1", not a whole number']),
    ("weights too few", ['"ensemble_weights" has 1 value(s) for 2 run(s)']),
    ("weight negative", ['"ensemble_weights" is [1.0, -3.0]', ">= 0"]),
    ("tta as text", ['"tta" is "yes", not true or false']),
])
def test_a_damaged_bundle_is_refused_before_anything_is_read(project, bundle, tmp_path, damage, words):
    b = copy_of(bundle, tmp_path)
    if damage == "missing":
        (b / "runs/tiny2/fold0/best.safetensors").unlink()
    elif damage == "altered":
        blob = bytearray((b / "runs/tiny/fold0/best.safetensors").read_bytes())
        blob[-5] ^= 1  # one bit of one weight
        (b / "runs/tiny/fold0/best.safetensors").write_bytes(bytes(blob))
    elif damage == "recipe":
        path = b / "runs/tiny/recipe.toml"
        path.write_text(path.read_text().replace("size = 32", "size = 64"))
    elif damage in EDITS:
        manifest = json.loads((b / "bundle.json").read_text())
        manifest.update(EDITS[damage])
        (b / "bundle.json").write_text(json.dumps(manifest))
    else:
        (b / "bundle.json").unlink()
    out = tmp_path / "sub.csv"
    message = refused(comp("predict", "--bundle", b, "--data", project["data"], "--out", out), *words)
    assert not out.exists() and "--weight" not in message  # the manifest's field, not an option never given


def test_bundle_options_that_conflict_are_refused(project, bundle, tmp_path):
    out = tmp_path / "sub.csv"
    refused(comp("predict", "--bundle", bundle, "--run", "tiny", "--data", project["data"], "--out", out),
            "--bundle", "--run")
    refused(comp("predict", "--bundle", bundle, "--decision-from", "tiny", "--data", project["data"], "--out", out),
            "--decision-from")
    refused(comp("predict", "--bundle", bundle, "--threshold", "0.3", "--data", project["data"], "--out", out),
            "--threshold")  # a multiclass task has no threshold decision, with a bundle as with its runs
    refused(comp("predict", "--bundle", bundle, "--data", project["data"], "--out", bundle / "sub.csv"),
            "inside the bundle")
    bad = tmp_path / "bad"
    shutil.copytree(project["data"], bad)
    shutil.rmtree(bad / "test")
    refused(comp("predict", "--bundle", bundle, "--data", bad, "--out", out), "te000")
    assert not out.exists() and not (bundle / "sub.csv").exists()


def test_export_checks_before_it_writes(project, bundle, tmp_path):
    runs = project["runs"]
    refused(comp("export", "--runs", runs, "--run", "tiny", "--out", bundle), "not an empty folder")
    out = tmp_path / "b"
    refused(comp("export", "--runs", runs, "--run", "tiny", "--decision", "threshold", "--out", out), "threshold")
    refused(comp("export", "--runs", runs, "--run", "tiny", "--run", "tiny2", "--weight", "1", "--out", out), "--weight")
    refused(comp("export", "--runs", runs, "--run", "tiny", "--no-torch", "--out", out), "--wheels")
    refused(comp("export", "--runs", runs, "--run", "nope", "--out", out), "nope")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".b.")]


# --------------------------------------------------------------------------- --wheels


def test_wheels_are_pinned_platform_tagged_downloads(project, tmp_path, monkeypatch):
    """The pip commands --wheels runs (recorded, not run: no network in tests)."""
    calls = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--wheel-dir" if "wheel" in cmd[3] else "--dest") + 1])
        name = "comp-0.1.0-py3-none-any.whl" if cmd[3] == "wheel" else "numpy-2-cp312-manylinux.whl"
        (dest / name).write_bytes(b"wheel")
        return Done()

    monkeypatch.setattr(bundle_mod.subprocess, "run", fake_run)
    out = tmp_path / "b"
    result = ok(comp("export", "--runs", project["runs"], "--run", "tiny", "--out", out, "--wheels", "--no-torch",
                     "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64"))
    build, download = calls
    assert build[:4] == [sys.executable, "-m", "pip", "wheel"]
    assert {"--no-deps", "--no-build-isolation", "--no-index"} <= set(build)
    assert download[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(download)
    assert download[download.index("--python-version") + 1] == "3.12"
    platforms = [download[i + 1] for i, a in enumerate(download) if a == "--platform"]
    assert platforms[0] == "manylinux_2_28_x86_64" and {"manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(platforms)
    pins = [a for a in download if "==" in a]
    assert f"numpy=={metadata.version('numpy')}" in pins and f"timm=={metadata.version('timm')}" in pins
    assert not [p for p in pins if p.split("==")[0] in ("torch", "torchvision", "triton") or p.startswith("nvidia")]
    assert not [p for p in pins if p.startswith("comp==")]
    manifest = json.loads((out / "bundle.json").read_text())
    assert sorted(manifest["wheels"]) == ["comp-0.1.0-py3-none-any.whl", "numpy-2-cp312-manylinux.whl"]
    assert "2 wheels" in result.output
    assert f"pip install --no-index --find-links /kaggle/input/b/wheels comp" in (out / "README.md").read_text()
    # With torch: the pins carry it, at the installed version.
    assert f"torch=={metadata.version('torch')}" in bundle_mod.pinned_requirements("3.12")


def test_a_failed_download_leaves_nothing(project, tmp_path, monkeypatch):
    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for numpy==2.4.6\n"

    monkeypatch.setattr(bundle_mod.subprocess, "run", lambda cmd, **kw: Failed())
    out = tmp_path / "b"
    refused(comp("export", "--runs", project["runs"], "--run", "tiny", "--out", out, "--wheels"),
            "failed", "No matching distribution")
    assert list(tmp_path.iterdir()) == []


def test_a_blend_exports_with_its_weights_mean_and_decision(project, tmp_path):
    runs, data = project["runs"], project["data"]
    ok(comp("blend", "--runs", runs, "--run", "tiny", "--run", "tiny2", "--name", "duo", "--steps", "5"))
    refused(comp("export", "--runs", runs, "--blend", "duo", "--run", "tiny", "--out", tmp_path / "x"), "--blend")
    out = tmp_path / "duo"
    result = ok(comp("export", "--runs", runs, "--blend", "duo", "--out", out))
    assert "blend duo" in result.output
    manifest = json.loads((out / "bundle.json").read_text())
    blend = json.loads((runs / ".blends" / "duo.json").read_text())
    assert manifest["blend"] == "blend.json" and "blend.json" in manifest["files"]
    assert manifest["ensemble_weights"] == [w for w in blend["weights"] if w > 0]
    by_blend, by_bundle = tmp_path / "blend.csv", tmp_path / "bundle.csv"
    ok(comp("predict", "--runs", runs, "--blend", "duo", "--proba", "--data", data, "--out", by_blend))
    ok(comp("predict", "--bundle", out, "--proba", "--data", data, "--out", by_bundle))
    assert by_bundle.read_bytes() == by_blend.read_bytes()


def test_export_refuses_weights_that_do_not_fit_the_run(project, tmp_path):
    import torch

    runs = tmp_path / "runs"
    shutil.copytree(project["runs"] / "tiny", runs / "tiny", ignore=shutil.ignore_patterns("last.pt", "*.png", "*.jpg"))
    best = runs / "tiny" / "fold0" / "best.pt"
    state = torch.load(best, weights_only=True)
    state["model"]["fc.weight"] = torch.zeros(5, state["model"]["fc.weight"].shape[1])  # five classes, not three
    torch.save(state, best)
    refused(comp("export", "--runs", runs, "--run", "tiny", "--out", tmp_path / "b"), "best.pt", "does not fit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
