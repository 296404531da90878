"""The input pipeline (comp.data.pipeline): one decision of where augmentation runs, and the
datasets, loaders, batch preparation and mixing that follow from it."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from comp.data.mixing import mix_batch, mix_rng
from comp.data.pipeline import device_decode, input_pipeline, resolve_augment_on
from comp.data.table import load_train_table
from comp.model.runtime import Runtime
from comp.recipe import recipe_from_dict
from comp.train.loop import TrainState

CPU = Runtime(torch.device("cpu"))


def _recipe(competition, **augment):
    return recipe_from_dict({"name": "t", "seed": 3, "data": {"root": str(competition)},
                             "augment": {"size": 24, "hflip": 0.5, "rotate": 20, "rotate_p": 0.5, **augment},
                             "train": {"batch_size": 8, "workers": 0}})


def _steps(dataset):
    return [type(s) for s in dataset.transform.transforms]


def test_where_augmentation_runs_decides_the_workers_transform_and_the_device_step(competition):
    table, _ = load_train_table(_recipe(competition))
    cpu = input_pipeline(_recipe(competition, on="auto"), CPU, table.paths, fold=1)
    dev = input_pipeline(_recipe(competition, on="device"), CPU, table.paths, fold=1)
    assert (cpu.augment_on, dev.augment_on) == ("cpu", "device")
    assert not cpu.decode_on_device and not dev.decode_on_device  # PNGs, and the CPU: never raw bytes
    # "cpu": the workers augment, the device only normalises; "device": the reverse.
    assert _steps(cpu.train_dataset(table)) == [A.Resize, A.HorizontalFlip, A.Rotate]
    assert _steps(dev.train_dataset(table)) == [A.Resize]
    assert _steps(cpu.eval_dataset(table)) == _steps(dev.eval_dataset(table)) == [A.Resize]
    assert not cpu.train_prep.random and dev.train_prep.random
    assert not cpu.eval_prep.random and not dev.eval_prep.random
    batch = torch.randint(0, 256, (4, 24, 24, 3), dtype=torch.uint8)
    assert torch.equal(cpu.train_batch(batch, 0, 1), cpu.eval_batch(batch))
    assert not torch.equal(dev.train_batch(batch, 0, 1), dev.eval_batch(batch))
    assert torch.equal(dev.train_batch(batch, 0, 1), dev.train_batch(batch, 0, 1))  # a function of the step
    # The training order is seeded by the recipe's seed plus the fold, as every fold always was.
    loader = cpu.train_loader(table, 8, rank=0, world_size=1)
    assert loader.sampler.seed == 3 + 1 and loader.drop_last
    assert not input_pipeline(_recipe(competition), CPU).eval_loader(table, 8).drop_last


def test_the_resolved_flags(tmp_path):
    cfg = _recipe(tmp_path).augment
    assert resolve_augment_on("auto", torch.device("cpu")) == "cpu"
    assert resolve_augment_on("auto", torch.device("cuda")) == "device"
    assert resolve_augment_on("cpu", torch.device("cuda")) == "cpu"
    with pytest.raises(ValueError):
        resolve_augment_on("gpu", torch.device("cpu"))
    assert device_decode(cfg, torch.device("cuda"), ["a.jpg"]) and not device_decode(cfg, torch.device("cuda"), [])


def test_mixing_is_the_pipelines_step_with_the_folds_seed(competition):
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 8, 8).clone()
    plain = input_pipeline(_recipe(competition), CPU, fold=2)
    assert not plain.mixes and plain.mix(images, 0, 1) == (images, None)
    mixing = input_pipeline(_recipe(competition, mixup=0.4, mix_p=1.0), CPU, fold=2)
    assert mixing.mixes
    got, mix = mixing.mix(images, 4, 7, rank=1)
    want, want_mix = mix_batch(images, mixing.cfg, mix_rng(3 + 2, 4, 7, 1))
    assert mix is not None and torch.equal(got, want) and mix.lam == want_mix.lam
    assert torch.equal(mix.perm, want_mix.perm)
    other, _ = mixing.mix(images, 4, 8, rank=1)
    assert not torch.equal(got, other)


def test_train_state_round_trips_and_needs_every_field():
    state = TrainState(epoch=2, step=3, updates=9, loss_sum=1.5, loss_count=6, correct=4, stopped=0,
                       history=[{"epoch": 1}])
    again = TrainState()
    again.load_state_dict(state.state_dict())
    assert (again.epoch, again.step, again.updates, again.correct, again.history) == (2, 3, 9, 4, [{"epoch": 1}])
    saved = state.state_dict()
    del saved["correct"]
    with pytest.raises(KeyError):  # no shim for a last.pt of another format
        TrainState().load_state_dict(saved)
