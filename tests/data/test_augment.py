"""The recipe's albumentations pipeline and auto_augment in the workers (issue 32, item 1): seeded
per item (so a resumed fold draws as an uninterrupted one), shown in train_batch.jpg, and a recipe
holding six or more of the competitors' transforms fits, resumes and predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from comp.data.augment import build_transform
from comp.data.dataset import ImageDataset
from comp.data.table import ImageTable
from comp.recipe import load_recipe
from tests.conftest import run_comp

# Seven of the list, a OneOf among them, and timm's RandAugment after them.
PIPELINE = """
auto_augment = "rand-m9-mstd0.5"

[[augment.pipeline]]
__class_fullname__ = "RandomResizedCrop"
size = [32, 32]
scale = [0.6, 1.0]
p = 1.0

[[augment.pipeline]]
__class_fullname__ = "HueSaturationValue"
p = 0.5

[[augment.pipeline]]
__class_fullname__ = "CLAHE"
p = 0.3

[[augment.pipeline]]
__class_fullname__ = "GaussNoise"
std_range = [0.02, 0.1]
p = 0.3

[[augment.pipeline]]
__class_fullname__ = "OneOf"
p = 0.5
transforms = [{ __class_fullname__ = "GaussianBlur", p = 1.0 }, { __class_fullname__ = "MotionBlur", p = 1.0 }]

[[augment.pipeline]]
__class_fullname__ = "GridDistortion"
p = 0.3

[[augment.pipeline]]
__class_fullname__ = "ElasticTransform"
p = 0.3

[[augment.pipeline]]
__class_fullname__ = "CoarseDropout"
p = 0.5
"""


@pytest.fixture
def pipeline_recipe(tmp_path, competition):
    from tests.conftest import write_recipe

    text = write_recipe(tmp_path / "tiny.toml", competition).read_text()
    (tmp_path / "tiny.toml").write_text(text.replace("hflip = 0.5\n", "hflip = 0.5\n" + PIPELINE.split("\n[[")[0]
                                                     + "\n").rstrip() + "\n\n[[" + PIPELINE.split("\n[[", 1)[1])
    return tmp_path / "tiny.toml"


@pytest.mark.parametrize("policy", ["rand-m9-mstd0.5", "trivialaugment", "augmix-m5"])
def test_each_item_draws_from_its_seed_alone(pipeline_recipe, competition, policy):
    import dataclasses

    a = dataclasses.replace(load_recipe(pipeline_recipe).augment, auto_augment=policy)
    assert len(a.pipeline) == 8
    transform = build_transform(a, train=True)
    frame = pd.read_csv(competition / "train.csv")
    table = ImageTable(ids=frame["id"].to_numpy(), paths=[competition / "train" / f"{i}.png" for i in frame["id"]],
                       labels=np.zeros(len(frame), dtype=np.int64))
    data = ImageDataset(table, transform)
    first = [data[(i, 1000 + i)][0].numpy() for i in range(6)]
    again = [data[(i, 1000 + i)][0].numpy() for i in reversed(range(6))][::-1]  # another order, as a resume
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    assert all(x.shape == (32, 32, 3) and x.dtype == np.uint8 for x in first)
    other = data[(0, 7)][0].numpy()
    assert not np.array_equal(first[0], other)  # the seed does change the draw
    plain = ImageDataset(table, build_transform(a, train=False))[0][0].numpy()
    assert not np.array_equal(first[0], plain)  # evaluation is a resize alone


def test_a_recipe_with_the_pipeline_fits_resumes_and_predicts(tmp_path, pipeline_recipe):
    runs = tmp_path / "runs"
    code, out, err = run_comp(["fit", str(pipeline_recipe), "--runs", str(runs), "--no-report",
                               "--set", "train.epochs=2", "--set", "train.deterministic=true"], tmp_path)
    assert code == 0, out + err
    assert (runs / "tiny" / "train_batch.jpg").stat().st_size > 0  # the batch as the model saw it
    # The same fit stopped after epoch 1 and resumed: the weights are equal to the uninterrupted ones.
    code, out, err = run_comp(["fit", str(pipeline_recipe), "--runs", str(tmp_path / "b"), "--no-report",
                               "--set", "train.epochs=2", "--set", "train.deterministic=true"], tmp_path,
                              prelude=_STOP_AFTER_FIRST_EPOCH)
    assert code == 130, out + err
    code, out, err = run_comp(["fit", str(pipeline_recipe), "--runs", str(tmp_path / "b"), "--no-report", "--resume",
                               "--set", "train.epochs=2", "--set", "train.deterministic=true"], tmp_path)
    assert code == 0, out + err
    import torch

    from comp.run.checkpoint import load_checkpoint

    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(runs / "tiny" / "fold0" / name)["model"]
        b = load_checkpoint(tmp_path / "b" / "tiny" / "fold0" / name)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    code, out, err = run_comp(["predict", "--run", "tiny", "--runs", str(runs), "--out", str(tmp_path / "s.csv")],
                              tmp_path)
    assert code == 0, out + err
    assert len(pd.read_csv(tmp_path / "s.csv")) == 9


# A Ctrl-C as the first epoch's checkpoint is written: the fold stops with last.pt at epoch 1.
_STOP_AFTER_FIRST_EPOCH = """
import os, signal
from pathlib import Path
from comp.train import checkpoints
_save = checkpoints.save_checkpoint
def _stop(path, **kwargs):
    _save(path, **kwargs)
    if Path(path).name == "last.pt":
        os.kill(os.getpid(), signal.SIGINT)
checkpoints.save_checkpoint = _stop
"""
