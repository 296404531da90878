"""Test-time BatchNorm adaptation (issue 32, item 2): ``comp predict --adapt-bn`` recovers what a
brightness shift costs, changes no file of the run, works for bundles, is refused for a model
without BatchNorm; ``comp cv-report --adapt-bn`` gives the nested figure beside the plain one."""

from __future__ import annotations

import hashlib
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from comp.errors import CompError
from comp.predict.adapt import adapt_models, reset_for_estimation
from tests.conftest import run_comp, write_competition, write_recipe


def _hashes(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _accuracy(csv, solution) -> float:
    sub = pd.read_csv(csv, dtype=str).set_index("id")["label"]
    truth = pd.read_csv(solution, dtype=str).set_index("id")["label"]
    return float((sub.loc[truth.index] == truth).mean())


def test_adapt_bn_recovers_a_darkened_test_set_and_changes_no_run_file(tmp_path):
    root = write_competition(tmp_path / "comp", n_train=48, n_test=60)
    recipe = write_recipe(tmp_path / "tiny.toml", root)
    dark = tmp_path / "dark"
    shutil.copytree(root, dark)
    for path in (dark / "test").glob("*.png"):  # the same test images at 35% of their brightness
        cv2.imwrite(str(path), (cv2.imread(str(path)) * 0.35).astype(np.uint8))
    runs = tmp_path / "runs"
    code, out, err = run_comp(["fit", str(recipe), "--runs", str(runs), "--no-report"], tmp_path)
    assert code == 0, out + err
    before = _hashes(runs / "tiny")

    def predict(name, data, *extra):
        code, out, err = run_comp(["predict", "--run", "tiny", "--runs", str(runs), "--data", str(data),
                                   "--out", str(tmp_path / f"{name}.csv"), *extra], tmp_path)
        assert code == 0, out + err
        return _accuracy(tmp_path / f"{name}.csv", root / "solution.csv"), out + err

    clean, _ = predict("clean", root)
    shifted, _ = predict("dark", dark)
    adapted, said = predict("adapted", dark, "--adapt-bn")
    assert "re-estimated on 60 images" in said
    assert clean >= 0.9 and shifted <= clean - 0.3, (clean, shifted)  # the shift costs a lot
    assert adapted - shifted >= 0.75 * (clean - shifted), (clean, shifted, adapted)  # most of it comes back
    after = _hashes(runs / "tiny")
    log = runs / "tiny" / "predict.log"
    assert {k: v for k, v in after.items() if k.name != "predict.log"} == \
        {k: v for k, v in before.items() if k.name != "predict.log"}  # weights, OOF, recipe: byte-identical
    # [predict] adapt_bn in the recipe of a bundle asks the same, and the bundle is not changed.
    code, out, err = run_comp(["export", "--run", "tiny", "--runs", str(runs), "--out", str(tmp_path / "b")], tmp_path)
    assert code == 0, out + err
    bundle = _hashes(tmp_path / "b")
    code, out, err = run_comp(["predict", "--bundle", str(tmp_path / "b"), "--data", str(dark), "--adapt-bn",
                               "--out", str(tmp_path / "bundle.csv")], tmp_path)
    assert code == 0, out + err
    assert _accuracy(tmp_path / "bundle.csv", root / "solution.csv") == adapted
    assert _hashes(tmp_path / "b") == bundle
    assert log.is_file()

    # cv-report: the nested figure beside the plain one, from each fold's own validation rows.
    code, out, err = run_comp(["cv-report", "--run", "tiny", "--runs", str(runs), "--adapt-bn"], tmp_path)
    assert code == 0, out + err
    table = (out + err).split("--adapt-bn, nested", 1)[1]
    assert "plain" in table and "adapt_bn" in table and "accuracy" in table


def test_a_model_without_batchnorm_is_refused():
    from timm import create_model

    model = create_model("test_convnext", num_classes=3)  # LayerNorm only
    with pytest.raises(CompError, match="has no BatchNorm layer"):
        adapt_models([[model]], [None], [], [0], None, ["convnext"])


def test_statistics_are_the_batches_average_and_the_original_is_untouched():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5)).eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    copy = reset_for_estimation(model)
    x = torch.randn(8, 3, 5, 5) * 3 + 2
    with torch.no_grad():
        copy(x[:4])
        copy(x[4:])
    conv = model[0](x).detach()
    batch_means = torch.stack([conv[:4].mean((0, 2, 3)), conv[4:].mean((0, 2, 3))]).mean(0)
    assert torch.allclose(copy[1].running_mean, batch_means, atol=1e-5)  # the cumulative average, not EMA
    assert not copy[2].training  # dropout stays off
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())
