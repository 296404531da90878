"""ONNX models in a bundle (comp.predict.onnx): export checked against torch, prediction through
ONNX Runtime with the same CSV as torch, and a layer that cannot be exported named."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from comp.errors import CompError
from comp.predict.onnx import OPSET, check_onnx, export_onnx, normalise, session
from comp.predict.tta import numpy_view_fn, view_fn
from comp.recipe import AugmentConfig
from tests.conftest import run_comp, write_competition, write_recipe

pytestmark = pytest.mark.xdist_group("test_onnx")  # one worker makes the module's fixtures (conftest)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import timm

    model = timm.create_model("test_resnet", num_classes=3).eval()
    path = tmp_path_factory.mktemp("exported") / "m.onnx"
    assert export_onnx(model, path, 32) == "torchscript"
    return model, path


def test_onnx_and_torch_probabilities_agree(exported):
    model, path = exported
    images = torch.randn(5, 3, 40, 36)  # another batch size and shape than the export's: they are dynamic
    diff = check_onnx(model, path, images, "classification", 3, "fold0")
    assert 0 <= diff < 1e-4
    import onnx

    assert onnx.load(str(path)).opset_import[0].version == OPSET
    logits = session(path).run(["logits"], {"input": images.numpy()})[0]
    assert logits.shape == (5, 3)


def test_a_mismatch_fails_naming_the_fold(exported):
    import copy

    model, path = exported
    model = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # torch's model now differs from the file
    with pytest.raises(CompError, match=r"fold3: ONNX Runtime's probabilities differ from torch's"):
        check_onnx(model, path, torch.randn(4, 3, 32, 32), "classification", 3, "fold3")


@pytest.mark.slow
def test_the_dynamo_exporter_takes_over_when_torchscript_cannot(tmp_path, monkeypatch):
    """The fallback (torch's default exporter, and the only one once torch drops TorchScript's)."""
    import timm

    import comp.predict.onnx as onnx_mod

    monkeypatch.setattr(onnx_mod, "EXPORTERS", ("gone", "dynamo"))
    model = timm.create_model("test_resnet", num_classes=3).eval()
    assert export_onnx(model, tmp_path / "m.onnx", 32) == "dynamo"
    assert check_onnx(model, tmp_path / "m.onnx", torch.randn(3, 3, 36, 36), "classification", 3, "fold0") < 1e-4


class Svd(nn.Module):
    """No ONNX operator computes singular values."""

    def forward(self, x):
        return torch.linalg.svdvals(x.flatten(2)[..., :4].reshape(x.shape[0], -1, 2, 2)).flatten(1)


def test_a_layer_that_cannot_be_exported_is_named(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Svd(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(CompError, match=r"layer 2 \(Svd\) cannot be exported"):
        export_onnx(model.eval(), tmp_path / "m.onnx", 8)
    assert not (tmp_path / "m.onnx").exists()


def test_numpy_inputs_and_views_match_torch():
    from comp.data.device_augment import DeviceAugment

    cfg = AugmentConfig(size=16, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    expected = DeviceAugment(cfg, False)(torch.from_numpy(batch)).numpy()
    assert np.array_equal(normalise(batch, cfg), expected)
    x = torch.from_numpy(expected)
    for name in ("identity", "hflip", "vflip", "hvflip", "rot90", "rot180", "rot270", "scale1.15", "scale0.8"):
        a, b = view_fn(name)(x).numpy(), numpy_view_fn(name)(expected)
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-5, name


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    data = write_competition(tmp / "comp")
    write_recipe(tmp / "tiny.toml", data, extra="""
        [predict]
        tta = ["identity", "hflip", "scale1.15"]
        """)
    code, out, err = run_comp(["fit", "tiny.toml", "--runs", "runs", "--set", "train.epochs=1", "--no-report",
                               "--device", "cpu"], tmp)
    assert code == 0, err
    code, out, err = run_comp(["export", "--runs", "runs", "--run", "tiny", "--tta", "--onnx", "--out", "bundle"], tmp)
    assert code == 0, err
    return tmp


def test_export_onnx_and_predict_through_onnx_runtime(onnx_bundle):
    tmp = onnx_bundle
    manifest = json.loads((tmp / "bundle" / "bundle.json").read_text())
    assert manifest["runs"][0]["onnx"] == ["runs/tiny/fold0/best.onnx"]
    record = manifest["onnx"]["runs/tiny/fold0/best.onnx"]
    assert record["opset"] == OPSET and record["max_abs_diff"] < 1e-4 and record["check_images"] == 8
    assert "runs/tiny/fold0/best.onnx" in manifest["files"]
    outs = {}
    for engine in ("torch", "onnx", "auto"):
        code, out, err = run_comp(["predict", "--bundle", "bundle", "--engine", engine, "--out", f"{engine}.csv"], tmp)
        assert code == 0, err
        assert "3 view(s)" in err + out
        assert ("ONNX Runtime" in err + out) == (engine != "torch"), err
        outs[engine] = (tmp / f"{engine}.csv").read_bytes()
    assert outs["onnx"] == outs["torch"] == outs["auto"]  # the labels: the same bytes
    # The probabilities (--proba) agree to float32 rounding, not to the last digit printed.
    probs = {}
    for engine in ("torch", "onnx"):
        code, out, err = run_comp(["predict", "--bundle", "bundle", "--engine", engine, "--proba", "--out",
                                   f"{engine}_p.csv"], tmp)
        assert code == 0, err
        probs[engine] = pd.read_csv(tmp / f"{engine}_p.csv")
    assert probs["torch"]["id"].tolist() == probs["onnx"]["id"].tolist()
    columns = [c for c in probs["torch"].columns if c.startswith("prob_")]
    assert len(columns) == 3
    assert np.abs(probs["torch"][columns].to_numpy() - probs["onnx"][columns].to_numpy()).max() < 1e-5


def test_predict_through_onnx_runtime_never_imports_torch(onnx_bundle):
    """With torch unimportable, a bundle's ONNX models still predict (what a torch-less notebook sees)."""
    tmp = onnx_bundle
    code = ("import sys; sys.modules['torch'] = None\n"
            "from comp.cli import main\n"
            "sys.argv = ['comp', 'predict', '--bundle', 'bundle', '--out', 'no_torch.csv']\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ONNX Runtime" in done.stderr + done.stdout
    # Its own torch reference: under xdist the test that writes torch.csv may run on another worker.
    code, out, err = run_comp(["predict", "--bundle", "bundle", "--engine", "torch", "--out", "torch_ref.csv"], tmp)
    assert code == 0, err
    assert (tmp / "no_torch.csv").read_bytes() == (tmp / "torch_ref.csv").read_bytes()


def test_engine_onnx_on_a_bundle_without_onnx_models(onnx_bundle, tmp_path):
    tmp = onnx_bundle
    code, out, err = run_comp(["export", "--runs", "runs", "--run", "tiny", "--out", str(tmp_path / "plain")], tmp)
    assert code == 0, err
    code, out, err = run_comp(["predict", "--bundle", str(tmp_path / "plain"), "--engine", "onnx", "--out",
                               str(tmp_path / "x.csv")], tmp)
    assert code == 2 and "has no ONNX models" in err, err
    code, out, err = run_comp(["predict", "--run", "tiny", "--runs", "runs", "--engine", "onnx", "--out",
                               str(tmp_path / "x.csv")], tmp)
    assert code == 2 and "with --bundle" in err, err


def test_wheels_carry_onnxruntime_without_torch():
    from comp.predict.bundle import pinned_requirements

    pins = pinned_requirements("3.11", no_torch=True, also=("onnxruntime",))
    names = {p.split("==")[0] for p in pins}
    assert "onnxruntime" in names and "numpy" in names
    assert not names & {"torch", "torchvision", "triton"}
