"""comp bench (throughputs, bench.json), comp cache (resized copies read instead of the
sources), and reduced JPEG decoding."""

import json
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from comp.cli import app
from comp.data.augment import build_transform
from comp.data.cache import MANIFEST, cache_folder
from comp.data.cache_build import build_cache
from comp.data.dataset import ImageDataset
from comp.data.images import jpeg_frame
from comp.data.table import ImageTable, load_test_table, load_train_table
from comp.recipe import AugmentConfig, load_recipe
import comp.data.dataset
import comp.data.images
import comp.evaluate.bench as bench_module
from tests.conftest import forked_python

runner = CliRunner()
PHASE_KEYS = ("data", "step", "train", "epoch", "forward", "infer", "infer_tta")
QUICK = ["--infer-images", "16"]  # (d) over 16 test images after its warm-up: enough to run every phase


def test_bench_writes_positive_throughputs_and_efficiency(tmp_path, recipe_file):
    out = tmp_path / "out" / "bench.json"
    result = runner.invoke(app, ["bench", str(recipe_file), "--steps", "2", "--warmup", "1",
                                 "--device", "cpu", "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert "(a) data pipeline" in result.output and "efficiency" in result.output
    data = json.loads(out.read_text())
    phases = data["phases"]
    for key in PHASE_KEYS:
        assert phases[key]["images_per_s"] > 0, key
        assert phases[key]["images_per_s"] == pytest.approx(phases[key]["images"] / phases[key]["seconds"])
    # batch 8, two timed batches each for the loader and the steps; one whole epoch of full batches
    assert phases["data"]["images"] == phases["step"]["images"] == phases["train"]["images"] == 16
    batches = data["train_images"] // 8
    assert phases["epoch"]["batches"] == batches and phases["epoch"]["images"] == 8 * batches
    assert phases["infer"]["images"] >= 16 and phases["infer_tta"]["images"] >= 16  # after the warm-up
    r = data["ratios"]
    assert r["train_over_step"] == pytest.approx(phases["train"]["images_per_s"] / phases["step"]["images_per_s"])
    assert r["infer_over_forward"] == pytest.approx(phases["infer"]["images_per_s"] / phases["forward"]["images_per_s"])
    assert "(c)/bare step" in result.output and "(d)/bare forward" in result.output
    assert data["augment_on"] == "cpu" and "by_augment" not in data  # "auto" on the CPU
    assert len(phases["data"]["rounds"]) == len(phases["train"]["rounds"]) == 2  # 2 steps, 1 a round
    assert phases["infer_tta"]["views"] == ["identity", "hflip", "vflip"]
    a, b, c = (phases[k]["images_per_s"] for k in ("data", "step", "train"))
    assert data["efficiency"] == pytest.approx(c / min(a, b))
    assert data["bound"] == ("data" if a < b else "compute")
    assert data["memory"]["rss_peak_mib"] > 0 and data["memory"]["cuda_peak_mib"] is None
    assert not (tmp_path / "runs").exists()


def test_bench_defaults_to_the_run_folder(tmp_path, recipe_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["bench", str(recipe_file), "--steps", "1", "--warmup", "0", "--epochs", "0",
                                 "--set", "train.workers=1", *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "runs" / "tiny" / "bench.json").read_text())
    assert data["workers"] == 1 and data["recipe"] == "tiny"


def _record_reads(monkeypatch):
    paths = []
    real = comp.data.images.read_image

    def spy(path, reduce=1):
        paths.append((str(path), reduce))
        return real(path, reduce)

    monkeypatch.setattr(comp.data.images, "read_image", spy)
    return paths


def _record_cached_reads(monkeypatch):
    paths = []
    real = comp.data.dataset.read_cached
    monkeypatch.setattr(comp.data.dataset, "read_cached", lambda path, *size: paths.append(str(path)) or real(path, *size))
    return paths


@pytest.mark.parametrize("preprocess, size", [("none", 8), ("ben_graham", 32)])
def test_cache_is_read_instead_of_the_sources_with_the_same_tensors(recipe_file, competition, monkeypatch,
                                                                    preprocess, size):
    recipe = load_recipe(recipe_file, [f"augment.preprocess={preprocess}", f"augment.size={size}",
                                       "augment.rotate=30"])
    table, _ = load_train_table(recipe)
    train_tf = build_transform(recipe.augment, train=True)
    plain = ImageDataset(table, train_tf, preprocess)
    assert plain.cached is None
    expected = [plain[(i, 1000 + i)][0] for i in range(len(table))]
    expected_test = ImageDataset(load_test_table(recipe), build_transform(recipe.augment, train=False),
                                 preprocess)[0][0]

    summary = build_cache(recipe)
    folder = cache_folder(competition, size, preprocess)
    assert summary.folder == folder and summary.copies == 36 + 9 == summary.written
    assert (folder / MANIFEST).is_file() and (folder / "test" / "te000.png.npy").is_file()
    cached_image = np.load(folder / "train" / "tr000.png.npy")  # raw uint8: read with no decoding
    assert cached_image.shape == (size, size, 3) and cached_image.dtype == np.uint8  # pre-resized to [augment] size

    reads = _record_reads(monkeypatch)
    cached_reads = _record_cached_reads(monkeypatch)
    graham = []
    monkeypatch.setattr(comp.data.images, "ben_graham", lambda image: graham.append(1) or image)
    cached = ImageDataset(table, train_tf, preprocess)
    got = [cached[(i, 1000 + i)][0] for i in range(len(table))]
    assert cached_reads == [str(folder / "train" / f"tr{i:03d}.png.npy") for i in range(len(table))]
    assert reads == []  # no source decoded
    assert not graham  # preprocessed once, when cached
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=0)
    test_ds = ImageDataset(load_test_table(recipe), build_transform(recipe.augment, train=False), preprocess)
    torch.testing.assert_close(test_ds[0][0], expected_test, atol=1e-6, rtol=0)
    assert test_ds.source(0) == str(folder / "test" / "te000.png.npy")

    # A second run rewrites nothing.
    again = build_cache(recipe)
    assert again.written == 0 and again.copies == 45


def test_incomplete_or_stale_cache_is_ignored(recipe_file, competition, monkeypatch):
    recipe = load_recipe(recipe_file, ["augment.size=12"])
    table, _ = load_train_table(recipe)
    tf = build_transform(recipe.augment, train=False)
    build_cache(recipe)
    folder = cache_folder(competition, 12, "none")
    assert ImageDataset(table, tf).cached is not None

    # Another size or preprocessing has no cache.
    other = build_transform(AugmentConfig(size=10), train=False)
    assert ImageDataset(table, other).cached is None
    assert ImageDataset(table, tf, "ben_graham").cached is None
    assert ImageDataset(table, tf, cache=False).cached is None

    # A changed source is read from the source again, the others stay cached.
    source = competition / "train" / "tr001.png"
    stat = os.stat(source)
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    ds = ImageDataset(table, tf)
    assert ds.source(1) == str(source) and ds.source(0).startswith(str(folder))

    # No manifest (an interrupted `comp cache`): nothing is read from the folder.
    (folder / MANIFEST).unlink()
    reads = _record_reads(monkeypatch)
    ds = ImageDataset(table, tf)
    assert ds.cached is None
    ds[0]
    assert reads == [(str(competition / "train" / "tr000.png"), 1)]


def test_cache_command(tmp_path, recipe_file, competition):
    result = runner.invoke(app, ["cache", str(recipe_file), "--set", "augment.size=12"])
    assert result.exit_code == 0, result.output
    assert "45 images (45 written now)" in result.output
    assert (cache_folder(competition, 12, "none") / MANIFEST).is_file()


def test_fit_suggests_comp_cache_until_the_preprocessed_images_are_cached(tmp_path, recipe_file):
    sets = ["--set", "augment.preprocess=ben_graham", "--set", "train.epochs=1"]
    fit = ["fit", str(recipe_file), "--runs", str(tmp_path / "runs"), "--overwrite", "--no-report", *sets]
    first = runner.invoke(app, fit)
    assert first.exit_code == 0, first.output
    hint = f"`comp cache {recipe_file} --set augment.preprocess=ben_graham --set train.epochs=1` once"
    assert "preprocess 'ben_graham' runs on every image in every epoch" in first.output and hint in first.output
    cached = runner.invoke(app, ["cache", str(recipe_file), *sets])
    assert cached.exit_code == 0, cached.output
    second = runner.invoke(app, fit)
    assert second.exit_code == 0, second.output
    assert "comp cache" not in second.output
    plain = runner.invoke(app, ["fit", str(recipe_file), "--runs", str(tmp_path / "runs"), "--overwrite",
                                "--no-report", "--set", "train.epochs=1"])
    assert plain.exit_code == 0 and "comp cache" not in plain.output  # nothing to preprocess


def test_images_no_larger_than_the_target_are_not_copied(recipe_file, competition):
    # 16-px sources at 32 px without preprocessing: a copy would only be bigger to decode.
    recipe = load_recipe(recipe_file)
    summary = build_cache(recipe)
    assert (summary.copies, summary.direct) == (0, 45) and "read from the source" in summary.line()
    table, _ = load_train_table(recipe)
    assert ImageDataset(table, build_transform(recipe.augment, train=False)).cached is None
    assert build_cache(recipe).direct == 45  # remembered: nothing decoded again


def _jpeg(path, h, w, progressive=False):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    assert cv2.imwrite(str(path), image, params)
    return str(path)


def test_reduced_decoding_for_a_large_jpeg_and_a_small_target(tmp_path, monkeypatch):
    big = _jpeg(tmp_path / "big.jpg", 768, 1024)
    prog = _jpeg(tmp_path / "prog.jpeg", 300, 200, progressive=True)
    png = tmp_path / "big.png"
    cv2.imwrite(str(png), np.zeros((768, 1024, 3), np.uint8))
    assert jpeg_frame(big)[:2] == (768, 1024) and jpeg_frame(prog)[:2] == (300, 200)
    assert jpeg_frame(png) is None and jpeg_frame(tmp_path / "missing.jpg") is None

    table = ImageTable(ids=np.array(["big", "png"]), paths=np.array([big, str(png)], dtype=object))

    def dataset(size, preprocess="none", **kw):
        return ImageDataset(table, build_transform(AugmentConfig(size=size), train=False), preprocess, **kw)

    assert dataset(128).decode_reduce(big) == 4  # 768 / 4 = 192 >= 128 > 768 / 8
    assert dataset(128, "ben_graham").decode_reduce(big) == 2  # room for the crop to the eye
    assert dataset(400).decode_reduce(big) == 1  # less than twice the target: full size
    assert dataset(64).decode_reduce(str(png)) == 1  # only JPEG decodes reduced natively
    assert dataset(128, reduced_decode=False).decode_reduce(big) == 1

    reads = _record_reads(monkeypatch)
    image, _ = dataset(128)[0]
    assert reads == [(big, 4)] and image.shape == (128, 128, 3) and image.dtype == torch.uint8


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 4 workers on 2 cores: on purpose
def test_bench_data_rate_is_the_workers_not_the_prefetch_queue(tmp_path, recipe_file, monkeypatch):
    """Timing the first batches after an iterator starts would time the batches its queue
    (workers x prefetch_factor = 8) already holds: with 3 timed batches after 1 warm-up batch
    that is 3 batches in next to no time. Bench drains the queue first, so it reports the
    workers' rate: before (a)'s and (c)'s clocks start, at least the queue's batches have been
    taken from the fresh iterator.

    Counted, not timed: a bound on the rate from workers that sleep fails on a loaded machine,
    where the bench process, descheduled during the warm-up, finds the next batches ready (a
    0.6 s stall at the 8th warm-up batch measured 1021 images/s against workers bounded at 40).
    """
    workers = 4
    taken: list[int] = []  # batches taken so far from the iterator _epochs made last
    real_epochs = bench_module._epochs

    def counted(parts, state=None):
        taken.append(0)
        for batch in real_epochs(parts, state):
            taken[-1] += 1
            yield batch

    clock_starts: list[int] = []  # taken[-1] at each reading of bench's clock

    def perf_counter() -> float:
        clock_starts.append(taken[-1] if taken else -1)
        return time.perf_counter()

    monkeypatch.setattr(bench_module, "_epochs", counted)
    monkeypatch.setattr(bench_module, "time", SimpleNamespace(perf_counter=perf_counter))
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(recipe_file), "--steps", "3", "--warmup", "1", "--rounds", "1",
                                 "--epochs", "0", "--device", "cpu", "--out", str(out), "--set",
                                 f"train.workers={workers}", "--set", "train.batch_size=2", *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    queue = data["prefetch_batches"]
    assert data["workers"] == workers and queue == 2 * workers
    # Phases in order: (a) data, (b) bare step (no iterator), (c) train; each reads the clock at
    # its start and its end. (a) and (c) each made an iterator and took the queue before timing.
    assert len(taken) == 2, taken
    data_start, data_end, _, _, train_start, train_end = clock_starts[:6]
    assert data_start >= queue and data_end - data_start == 3, clock_starts
    assert train_start >= queue and train_end - train_start == 3, clock_starts
    assert data["phases"]["data"]["images"] == data["phases"]["train"]["images"] == 3 * 2


def test_bench_compares_the_augmentation_paths(tmp_path, recipe_file):
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(recipe_file), "--steps", "2", "--warmup", "0", "--rounds", "1",
                                 "--epochs", "1", "--augment-on", "both", "--device", "cpu", "--out", str(out),
                                 "--set", "augment.rotate=20", "--set", "augment.rotate_p=0.5", *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["by_augment"]) == {"cpu", "device"} and data["augment_on"] == "cpu"
    for path, p in data["by_augment"].items():
        assert {"data", "step", "train", "epoch"} <= set(p["phases"]) and p["efficiency"] > 0, path
        assert f"[{path}] efficiency" in result.output
    bad = runner.invoke(app, ["bench", str(recipe_file), "--augment-on", "gpu", "--device", "cpu"])
    assert bad.exit_code == 2 and "--augment-on must be cpu, device or both" in bad.output


def test_gpu_bench_script_dry_run_on_the_cpu(tmp_path):
    """benchmarks/gpu_bench.sh end to end with tiny sizes: the fundus folder from a RetinaMNIST-shaped
    .npz, `comp cache`, `comp bench --augment-on both` per row, and the table.

    The script's eight Python commands run as processes forked from one that has imported torch,
    comp and the packages the script checks for (conftest.forked_python): fresh interpreters
    importing them cost most of a minute here, the script's own work seconds."""
    rng = np.random.default_rng(0)
    counts = {"train": 10, "val": 5, "test": 6}
    npz = tmp_path / "retina.npz"
    np.savez(npz, **{f"{s}_images": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8) for s, n in counts.items()},
             **{f"{s}_labels": (np.arange(n) % 5).reshape(-1, 1) for s, n in counts.items()})
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_bench.sh"
    preload = ["albumentations", "torchvision", "cv2", "pandas", "comp.cli.bench", "comp.cli.cache",
               "comp.evaluate.bench", "comp.data.cache_build"]
    with forked_python(tmp_path / "py", preload) as python:
        env = {**os.environ, "PYTHON": str(python), "DEVICE": "cpu", "TRAIN": "20", "TEST": "6", "SIZE": "48",
               "STEPS": "1", "WARMUP": "0", "ROUNDS": "1", "EPOCHS": "0", "INFER": "4",
               "DATA": str(tmp_path / "data"), "RETINAMNIST_NPZ": str(npz), "ROWS": "r18_512 r50_scratch_cache",
               "EXTRA": "--set augment.size=32 --set train.batch_size=4 --set train.workers=0"}
        proc = subprocess.run(["bash", str(script), str(tmp_path / "out")], env=env, capture_output=True,
                              text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "data" / "train").glob("*.jpeg"))) == 20
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.count("| r18_512: timm:resnet18 @32") == 2  # the cpu and the device path
    assert "| r50_scratch_cache: hand:resnet50 @32, batch 4, ben_graham, cache | device |" in table
    for row in ("r18_512", "r50_scratch_cache"):
        data = json.loads((tmp_path / "out" / f"{row}.json").read_text())
        assert set(data["by_augment"]) == {"cpu", "device"}


def test_bench_measures_a_compiled_step_against_the_eager_one(tmp_path, recipe_file, monkeypatch):
    # torch.compile as fit calls it, with dynamo's eager backend: the bench's compile rows are what is
    # tested here, not inductor's C++ toolchain.
    compiled = []
    real = torch.compile

    def eager_compile(model, *args, **kwargs):
        compiled.append(model)
        return real(model, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", eager_compile)
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(recipe_file), "--steps", "2", "--warmup", "1", "--rounds", "1",
                                 "--epochs", "0", "--device", "cpu", "--out", str(out),
                                 "--set", "train.compile=true", *QUICK])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["compile"] is True and compiled  # the step's model went through torch.compile
    phases = data["phases"]
    assert phases["step_eager"]["images"] == phases["step"]["images"] == 16
    assert data["ratios"]["train_over_eager_step"] == pytest.approx(
        phases["train"]["images_per_s"] / phases["step_eager"]["images_per_s"])
    assert "(b) bare step, eager" in result.output and "(c)/eager bare step" in result.output
    assert "compiled" in result.output.splitlines()[0]
