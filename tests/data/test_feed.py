"""Feeding the device (issue 19), through the real code on the CPU: the loaders ship uint8 and the
device converts and normalises; the "device" augmentation path; JPEGs decoded on the device (by
torchvision on the CPU here); exact resume with device augmentation; and ``comp predict``'s one
decode-once pass for every run, checkpoint and view."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

import comp.data.dataset
import comp.data.images
import comp.train.loop
from comp.cli import app
from comp.data.augment import build_transform
from comp.data.dataset import EpochSampler, ImageDataset, make_loader
from comp.data.images import jpeg_decodable_as_is, read_image
from comp.data.pipeline import device_decode, input_pipeline, resolve_augment_on
from comp.data.prepare import BatchPrep, decode_batch, step_generator
from comp.data.table import ImageTable, load_test_table, load_train_table
from comp.model.inference import combine_views, forward_views, outputs_to_probs
from comp.model.runtime import Runtime
from comp.predict.predict import checkpoint_paths, predict_runs
from comp.predict.tta import view_fn
from comp.recipe import TrainConfig, load_recipe, recipe_from_dict
from comp.run.checkpoint import load_checkpoint
from comp.train.fit import assign_folds, fold_indices
from comp.train.loop import FoldRun, StopFlag, TrainState, train_batch
from comp.train.parts import FoldSplit, build_parts
from comp.recipe.task import resolve_task
from comp.run.folder import RunDir
from tests.data.worker_reference import normalising_transform

CPU = Runtime(torch.device("cpu"))
AUGMENT = dict(size=24, hflip=0.5, vflip=0.5, rotate=30, rotate_p=0.7, scale=0.1, shift=0.1,
               brightness_contrast=0.5, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
OFF = dict(hflip=0.0, vflip=0.0, rotate_p=0.0, brightness_contrast=0.0)


def _recipe(competition, **augment):
    return recipe_from_dict({"name": "t", "seed": 3, "data": {"root": str(competition)},
                             "augment": {**AUGMENT, **augment}, "train": {"batch_size": 8, "workers": 0}})


# --- the CPU path: uint8 from the workers, normalised on the device, the same numbers -------------

def test_uint8_workers_and_device_normalisation_give_the_tensors_the_workers_used_to_ship(competition):
    recipe = _recipe(competition)
    table, _ = load_train_table(recipe)
    before = ImageDataset(table, normalising_transform(recipe.augment, train=True))  # float, as before
    now = ImageDataset(table, build_transform(recipe.augment, train=True))
    sampler = EpochSampler(len(table), seed=5)
    loader = make_loader(now, 8, train_cfg=TrainConfig(workers=2), device=torch.device("cpu"), sampler=sampler)
    items = list(sampler)  # the (row, seed) pairs the loader reads, in order
    prep = BatchPrep(recipe.augment, device="cpu")
    assert not prep.random  # the CPU path's workers augmented already
    for b, (images, labels) in enumerate(loader):
        assert images.dtype == torch.uint8 and images.shape == (8, 24, 24, 3)  # a quarter of float32's bytes
        want = torch.stack([before[items[8 * b + i]][0] for i in range(8)])
        torch.testing.assert_close(prep(images), want, rtol=0, atol=1e-5)
        assert labels.tolist() == [int(table.labels[items[8 * b + i][0]]) for i in range(8)]


def _first_step_input(recipe, monkeypatch, *, epoch=0):
    """The model input of epoch ``epoch``'s first training step, through build_parts and train_batch."""
    table, classes = load_train_table(recipe)
    folds = assign_folds(recipe, table)
    train_index, valid_index = fold_indices(recipe, folds, 0)
    task = resolve_task(recipe, classes.labels)
    parts = build_parts(recipe, FoldSplit(0, table, classes, train_index, valid_index, task), CPU)
    seen = []

    def step(parts, images, targets, runtime, **kw):  # the step itself is not what is tested here
        seen.append((images, targets))
        return torch.tensor(0.0), torch.tensor(0)

    monkeypatch.setattr(comp.train.loop, "train_step", step)
    parts.sampler.set_epoch(epoch)
    images, targets = next(iter(parts.train_loader))
    train_batch(FoldRun(recipe, parts, CPU, StopFlag(), task), TrainState(epoch=epoch), images, targets,
                total_steps=len(parts.train_loader))
    return parts, images, seen[0]


def test_device_path_equals_the_cpu_path_with_augmentation_off(competition, monkeypatch):
    cpu_parts, cpu_batch, (cpu_x, cpu_y) = _first_step_input(_recipe(competition, on="cpu", **OFF), monkeypatch)
    dev_parts, dev_batch, (dev_x, dev_y) = _first_step_input(_recipe(competition, on="device", **OFF), monkeypatch)
    assert (cpu_parts.pipeline.augment_on, dev_parts.pipeline.augment_on) == ("cpu", "device")
    assert cpu_batch.dtype == dev_batch.dtype == torch.uint8
    assert cpu_x.dtype == torch.float32 and cpu_x.shape == (8, 3, 24, 24)
    torch.testing.assert_close(dev_x, cpu_x, rtol=0, atol=1e-5)
    assert torch.equal(dev_y, cpu_y)
    # Validation reads the same uint8 and normalises alike on both paths.
    for parts in (cpu_parts, dev_parts):
        images, _ = next(iter(parts.valid_loader))
        assert images.dtype == torch.uint8
        ds = parts.valid_loader.dataset
        old = ImageDataset(ds.table, normalising_transform(parts.pipeline.cfg, train=False))
        want = torch.stack([old[i][0] for i in range(len(images))])
        torch.testing.assert_close(parts.pipeline.eval_batch(images), want, rtol=0, atol=1e-5)


def test_device_augmentation_is_a_function_of_the_step(competition, monkeypatch):
    recipe = _recipe(competition, on="device")
    parts, batch, (x, _) = _first_step_input(recipe, monkeypatch)
    pipeline = parts.pipeline
    assert pipeline.train_prep.random and batch.dtype == torch.uint8
    # The workers only decoded and resized: the device drew the augmentation, from (seed, fold, epoch, step, rank).
    plain = pipeline.eval_batch(batch)
    assert not torch.allclose(x, plain)
    again = pipeline.train_prep(batch, step_generator(recipe.seed, 0, 0, 1, 0))
    assert torch.equal(x, again) and torch.equal(x, pipeline.train_batch(batch, 0, 1))
    assert not torch.equal(x, pipeline.train_batch(batch, 0, 2))
    assert not torch.equal(x, pipeline.train_batch(batch, 1, 1))
    assert not torch.equal(x, pipeline.train_batch(batch, 0, 1, rank=1))
    assert input_pipeline(recipe, CPU).eval_prep.random is False
    assert resolve_augment_on("auto", torch.device("cpu")) == "cpu"
    assert resolve_augment_on("auto", torch.device("cuda")) == "device"


# --- JPEGs decoded on the device ----------------------------------------------------------------

def _fundus(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([128 + 90 * np.sin(xx / 7 + c) * np.cos(yy / 9) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _write_jpeg(path, rgb, quality=90):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 EXIF segment (big-endian TIFF, one IFD entry: Orientation) after SOI."""
    tiff = (b"MM\x00\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big")
            + (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
            + orientation.to_bytes(2, "big") + b"\x00\x00" + (0).to_bytes(4, "big"))
    body = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


def test_decode_jpeg_agrees_with_opencv_within_jpeg_tolerance(tmp_path):
    from torchvision.io import ImageReadMode, decode_jpeg

    original = _fundus(60, 84)
    path = _write_jpeg(tmp_path / "eye.jpg", original)
    by_opencv = read_image(path).astype(np.int16)
    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    with _quiet():
        by_torchvision = decode_jpeg(data, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy().astype(np.int16)
    diff = np.abs(by_opencv - by_torchvision)
    assert diff.mean() < 0.5 and diff.max() <= 4, (diff.mean(), diff.max())  # IDCT and upsampling rounding
    loss = np.abs(by_opencv - original.astype(np.int16)).mean()  # what JPEG at quality 90 costs anyway
    assert diff.mean() < loss


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29's notice that decoding moves to TorchCodec
        yield


def test_jpeg_headers_decide_what_the_device_may_decode(tmp_path):
    data = _write_jpeg(tmp_path / "a.jpg", _fundus(16, 16)).read_bytes()
    assert jpeg_decodable_as_is(data)
    assert jpeg_decodable_as_is(_with_exif_orientation(data, 1))
    assert not jpeg_decodable_as_is(_with_exif_orientation(data, 6))  # OpenCV rotates it, nvjpeg would not
    ok, png = cv2.imencode(".png", _fundus(16, 16))
    assert not jpeg_decodable_as_is(png.tobytes()) and not jpeg_decodable_as_is(data[:20])
    cfg = _recipe(tmp_path).augment
    assert device_decode(cfg, torch.device("cuda"), ["a.jpg", "b.JPEG"])
    assert not device_decode(cfg, torch.device("cpu"), ["a.jpg"])  # on the CPU this path is off
    assert not device_decode(cfg, torch.device("cuda"), ["a.jpg", "b.png"])
    assert not device_decode(dataclasses.replace(cfg, preprocess="ben_graham"), torch.device("cuda"), ["a.jpg"])


def test_jpeg_bytes_decoded_and_resized_by_the_batch_prep_match_the_workers_decoding(tmp_path):
    paths = [str(_write_jpeg(tmp_path / f"{i}.jpg", _fundus(48, 48, seed=i))) for i in range(5)]
    rotated = tmp_path / "rotated.jpg"  # decoded by the worker: OpenCV applies the EXIF rotation
    rotated.write_bytes(_with_exif_orientation(_write_jpeg(tmp_path / "r.jpg", _fundus(48, 32, 9)).read_bytes(), 6))
    paths.append(str(rotated))
    table = ImageTable(ids=np.arange(len(paths)), paths=np.array(paths, dtype=object))
    cfg = _recipe(tmp_path, size=24, **OFF).augment
    transform = build_transform(cfg, train=False)
    raw = ImageDataset(table, transform, raw=True)
    assert [raw[i][0].ndim for i in range(len(paths))] == [1, 1, 1, 1, 1, 3]
    with pytest.raises(ValueError, match="Resize-only"):
        ImageDataset(table, build_transform(dataclasses.replace(cfg, hflip=0.5), train=True), raw=True)
    loader = make_loader(raw, 6, train_cfg=TrainConfig(workers=0), device=torch.device("cpu"))
    batch, _ = next(iter(loader))
    assert isinstance(batch, list) and len(batch) == 6  # bytes and decoded images: collated as a list
    prep = BatchPrep(cfg, device="cpu")
    with _quiet():
        got = prep(batch)
    plain, _ = next(iter(make_loader(ImageDataset(table, transform), 6, train_cfg=TrainConfig(workers=0),
                                     device=torch.device("cpu"))))
    want = prep(plain)
    # In grey levels: the workers decode 48 px at half size in libjpeg's DCT (reduced decoding) and
    # round to uint8; the device decodes full size and takes 2x2 means. JPEG's tolerance, not more.
    levels = (got - want).abs() * 255 * torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert got.shape == (6, 3, 24, 24) and levels.mean() < 1.0 and levels.max() <= 8, (levels.mean(), levels.max())
    assert levels[5].max() < 1e-3  # the EXIF-rotated one was decoded by the worker, as before
    with pytest.raises(ValueError):
        decode_batch([], torch.device("cpu"), 24)


# --- predict: one pass, each image decoded once ----------------------------------------------------

def _old_way(run_dir, table, tta):
    """A run's probabilities computed as comp predict did before: per checkpoint, a loader of
    float tensors normalised in the worker, forward_views over it, views then checkpoints averaged."""
    from comp.model import build_model

    run = RunDir(run_dir)
    recipe = run.recipe()
    classes = run.classes()
    views = recipe.predict.tta if tta else ["identity"]
    ds = ImageDataset(table, normalising_transform(recipe.augment, train=False), recipe.augment.preprocess)
    loader = DataLoader(ds, batch_size=4)
    per_checkpoint = []
    for path in checkpoint_paths(run_dir, recipe.predict.checkpoints):
        model = build_model(dataclasses.replace(recipe.model, pretrained=False), len(classes))
        model.load_state_dict(load_checkpoint(path)["model"])
        outputs, _ = forward_views(model, loader, CPU, [view_fn(v) for v in views], prepare=CPU.to_device)
        per_checkpoint.append(combine_views(outputs_to_probs(outputs, recipe.model.head, len(classes)),
                                            recipe.predict.tta_mean))
    return combine_views(np.stack(per_checkpoint), recipe.predict.tta_mean)


def test_predict_decodes_each_image_once_for_every_run_checkpoint_and_view(tmp_path, recipe_file, monkeypatch):
    runs = tmp_path / "runs"
    fits = [["--set", "cv.scheme=kfold", "--set", "cv.folds=2"],  # two checkpoints, size 32
            ["--set", "name=small", "--set", "augment.size=24", "--set", "augment.mean=[0.5, 0.5, 0.5]",
             "--set", "augment.std=[0.5, 0.5, 0.5]", "--set", "predict.tta=[\"identity\", \"rot90\"]"]]
    for extra in fits:
        result = CliRunner().invoke(app, ["fit", str(recipe_file), "--runs", str(runs), "--set", "train.epochs=1",
                                          *extra])
        assert result.exit_code == 0, result.output
    run_dirs = [runs / "tiny", runs / "small"]
    table = load_test_table(load_recipe(recipe_file))

    decoded = []
    real = comp.data.images.read_image
    monkeypatch.setattr(comp.data.images, "read_image", lambda path, reduce=1: decoded.append(str(path)) or real(path, reduce))
    got = predict_runs(run_dirs, CPU, tta=True, table=table)
    # 9 test images, 2 runs of different sizes, 3 checkpoints, 3 + 2 views: each file decoded once.
    assert sorted(decoded) == sorted(str(p) for p in table.paths)
    monkeypatch.setattr(comp.data.images, "read_image", real)
    for run_dir, prediction in zip(run_dirs, got):
        np.testing.assert_allclose(prediction.probs, _old_way(run_dir, table, tta=True), rtol=0, atol=1e-5)
        assert list(prediction.ids) == list(table.ids)
