"""``comp bench``: measured images/s of each part of training, to tell what bounds a recipe.

On the recipe's own data and model (fold 0's training rows), four throughputs, each after a
warm-up and over ``steps`` batches:

(a) ``data``: the training DataLoader alone (decode, preprocess, augment, collate in the
    recipe's workers), built by :func:`comp.train.parts.build_parts` exactly as ``comp fit`` builds it;
(b) ``step``: :func:`comp.train.loop.train_step` on one batch already on the device: model, loss,
    optimiser, AMP and memory format as in ``comp fit``, no data loading;
(c) ``train``: loader and step together, each batch through :func:`comp.train.loop.train_batch` as
    ``comp fit``'s epoch loop runs it;
(d) ``infer`` / ``infer_tta``: :func:`comp.model.inference.forward_views` over a test-set loader
    built as ``comp predict`` builds it, with the identity view and with the recipe's TTA views.

Efficiency is (c) / min(a, b): 1.0 means training runs as fast as its slower half allows; less
means the loader and the step get in each other's way (cores shared, a stall at each epoch's
start, a synchronisation per step).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from comp import atomic
from comp.data.table import ImageTable, load_test_table, load_train_table
from comp.errors import CompError
from comp.model import train_mode
from comp.model.inference import forward_views
from comp.model.runtime import Runtime, resolve_runtime
from comp.predict.predict import predict_batch_size, predict_loader
from comp.predict.tta import validate_views, view_fn
from comp.recipe import Recipe
from comp.train.checkpoint import unwrap
from comp.train.fit import assign_folds, fold_indices, fold_plan
from comp.train.loop import FoldRun, StopFlag, TrainState, train_batch, train_step
from comp.train.parts import FoldParts, FoldSplit, build_parts, seed_everything

PHASES = {  # key: label in the table
    "data": "(a) data pipeline",
    "step": "(b) train step",
    "train": "(c) full train step",
    "infer": "(d) inference",
    "infer_tta": "(d) inference + TTA",
}


def bench(recipe: Recipe, *, steps: int = 20, warmup: int = 3, rounds: int = 4, device: str | None = None,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the recipe's throughputs; returns what ``bench.json`` holds.

    (a), (b) and (c) each time ``steps`` batches, in ``rounds`` turns, after ``warmup``
    untimed batches; (d) times one pass over up to ``steps`` batches of test images.
    """
    if steps < 1 or warmup < 0 or rounds < 1:
        raise CompError(f"--steps and --rounds must be at least 1 and --warmup not negative, got "
                        f"{steps}, {rounds}, {warmup}")
    runtime = resolve_runtime(recipe.train, device)
    cuda = runtime.device.type == "cuda"
    table, classes = load_train_table(recipe)
    folds = assign_folds(recipe, table)
    fold = fold_plan(recipe, folds)[0]
    train_index, _ = fold_indices(recipe, folds, fold)
    seed_everything(recipe.seed + fold, recipe.train.deterministic)
    # No validation loader: bench never validates, and its workers would only take memory.
    parts = build_parts(recipe, FoldSplit(fold, table, classes, train_index, train_index[:0]), runtime,
                        seed=recipe.seed + fold, log=log)
    train_ds = parts.train_loader.dataset
    result: dict[str, Any] = {
        "recipe": recipe.name,
        "device": str(runtime.device) + (f" ({torch.cuda.get_device_name(runtime.device)})" if cuda else ""),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "workers": parts.train_loader.num_workers,
        "batch_size": parts.batch_size,
        "accum_steps": parts.accum_steps,
        "image_size": recipe.augment.size,
        "preprocess": recipe.augment.preprocess,
        "model": f"{recipe.model.source}:{recipe.model.name}",
        "amp": str(runtime.amp_dtype).replace("torch.", "") if runtime.amp_dtype else "off",
        "channels_last": runtime.channels_last,
        "train_images": len(train_ds),
        "cache": train_ds.cached is not None,
        "steps": steps,
        "warmup": warmup,
        "rounds": min(rounds, steps),
        "loadavg_before": os.getloadavg()[0],  # other processes' load makes every figure lower
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "phases": {},
    }
    phases = result["phases"]
    if len(parts.train_loader) == 0:
        raise CompError(f"fold {fold} has {len(train_ds)} training images, fewer than a batch of "
                        f"{parts.batch_size}: nothing to measure")

    def measure(name: str, one: Callable[[], int], n: int, warm: int) -> None:
        """Run ``warm`` untimed then ``n`` timed batches; add them to the phase's totals."""
        if cuda:
            torch.cuda.reset_peak_memory_stats(runtime.device)
        for _ in range(warm):
            one()
        _sync(runtime)
        t0, images = time.perf_counter(), 0
        for _ in range(n):
            images += one()
        _sync(runtime)
        seconds = time.perf_counter() - t0
        p = phases.setdefault(name, {"images": 0, "seconds": 0.0, "batches": 0, "rounds": []})
        p["images"] += images
        p["seconds"] += seconds
        p["batches"] += n
        p["images_per_s"] = p["images"] / p["seconds"]
        p["rounds"].append(images / seconds)
        if cuda:
            peak = torch.cuda.max_memory_allocated(runtime.device) / 2**20
            p["cuda_peak_mib"] = max(p.get("cuda_peak_mib", 0.0), peak)

    # One batch for (b), already where the model is.
    train_mode(parts.model, recipe.model)
    first = _epochs(parts)
    images, targets = next(first)
    first.close()
    images, targets = runtime.to_device(images), targets.to(runtime.device)
    state, run = TrainState(), FoldRun(recipe, parts, runtime, StopFlag())

    def loader_alone() -> tuple[Callable[[], int], Callable[[], None]]:  # (a)
        batches = _epochs(parts)
        return (lambda: len(next(batches)[0])), batches.close

    def step_alone() -> tuple[Callable[[], int], Callable[[], None]]:  # (b)
        # The model's ceiling: no loss read back, so on CUDA nothing waits for the device.
        def one() -> int:
            state.updates += 1
            train_step(parts, images, targets, runtime, update=state.updates % parts.accum_steps == 0)
            return len(images)
        return one, _nothing

    def fit_loop() -> tuple[Callable[[], int], Callable[[], None]]:  # (c)
        # Per batch exactly what fit's epoch loop runs: comp.train.loop.train_batch.
        batches = _epochs(parts, state)
        total = len(parts.train_loader)

        def one() -> int:
            images, targets = next(batches)
            train_batch(run, state, images, targets, total_steps=total)
            return len(images)
        return one, batches.close

    # (a), (b), (c) take turns in rounds, so that a change in the machine's speed while bench
    # runs (another process, a noisy neighbour) shifts all three alike instead of one. Each
    # round of (a) and (c) starts a fresh epoch iterator and waits out its first batch untimed.
    for r, n in enumerate(_split(steps, rounds)):
        for name, phase in (("data", loader_alone), ("step", step_alone), ("train", fit_loop)):
            one, close = phase()
            measure(name, one, n, warmup if r == 0 else min(warmup, 1))
            close()
    for name in ("data", "step", "train"):
        log(f"{PHASES[name]:<24} {phases[name]['images_per_s']:10.1f} images/s")
    del images, targets

    # (d) inference as comp predict runs it, on (up to) `steps` batches of test images.
    loader, views = _infer_loader(recipe, table, train_index, runtime, steps)
    model = unwrap(parts.model)

    def infer(views: list[str]) -> int:  # one pass over the loader: its images
        return forward_views(model, loader, runtime, [view_fn(v) for v in views])[0].shape[1]

    measure("infer", lambda: infer(["identity"]), n=1, warm=1)  # warm: the workers' first pass
    measure("infer_tta", lambda: infer(views), n=1, warm=0)
    for key in ("infer", "infer_tta"):
        phases[key]["batches"] = len(loader)
        log(f"{PHASES[key]:<24} {phases[key]['images_per_s']:10.1f} images/s")
    phases["infer_tta"]["views"] = list(views)
    del loader, parts, train_ds, model

    a, b, c = (phases[k]["images_per_s"] for k in ("data", "step", "train"))
    result["efficiency"] = c / min(a, b)
    result["bound"] = "data" if a < b else "compute"
    result["memory"] = _memory(runtime)
    return result


def _split(steps: int, rounds: int) -> list[int]:
    """``steps`` as ``rounds`` near-equal positive parts."""
    rounds = min(rounds, steps)
    return [steps // rounds + (i < steps % rounds) for i in range(rounds)]


def _nothing() -> None:
    return None


def _epochs(parts: FoldParts, state: TrainState | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches forever: epoch after epoch of the training loader (``state.step``
    counts the batches of the current epoch, as in fit)."""
    epoch = 0
    while True:
        parts.sampler.set_epoch(epoch)
        if state is not None:
            state.step = 0
        yield from parts.train_loader
        epoch += 1


def _infer_loader(recipe: Recipe, table: ImageTable, train_index: np.ndarray, runtime: Runtime,
                  steps: int) -> tuple[torch.utils.data.DataLoader, list[str]]:
    """A test-set loader as comp predict builds it, cut to ``steps`` batches (training rows
    when there is no test set), and the recipe's TTA views."""
    rows = None
    if (Path(recipe.data.root) / recipe.data.test_csv).is_file():
        rows = load_test_table(recipe)
    if rows is None or len(rows) == 0:
        rows = table.subset(train_index)
    rows = rows.subset(np.arange(min(len(rows), steps * predict_batch_size(recipe))))
    return predict_loader(recipe, rows, runtime), validate_views(recipe.predict.tta)


def _sync(runtime: Runtime) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)


def _memory(runtime: Runtime) -> dict[str, float | None]:
    """Peak resident memory of this process and of its largest finished child (a loader
    worker; workers are shut down by now, so they count), and peak CUDA memory."""
    gc.collect()  # drops the last loader iterators, whose workers then exit and are reaped
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20
    cuda = None
    if runtime.device.type == "cuda":
        cuda = torch.cuda.max_memory_allocated(runtime.device) / 2**20
    return {"rss_peak_mib": own, "children_rss_peak_mib": children, "cuda_peak_mib": cuda}


def format_bench(result: dict[str, Any]) -> str:
    """The table ``comp bench`` prints."""
    phases = result["phases"]
    lines = [f"{result['recipe']}: {result['model']} at {result['image_size']} px, batch "
             f"{result['batch_size']}, {result['workers']} workers, {result['device']}, "
             f"{result['cpu_cores']} cores, amp {result['amp']}"
             + (", image cache" if result["cache"] else ""),
             f"{'':<24} {'images/s':>10} {'images':>8} {'seconds':>8}  {'per round':>13}"]
    for key, label in PHASES.items():
        p = phases[key]
        if key == "infer_tta":
            label = f"(d) inference + TTA x{len(p['views'])}"
        spread = f"{min(p['rounds']):.0f}-{max(p['rounds']):.0f}" if len(p["rounds"]) > 1 else ""
        lines.append(f"{label:<24} {p['images_per_s']:>10.1f} {p['images']:>8} {p['seconds']:>8.2f}  "
                     f"{spread:>13}")
    a, b, c = (phases[k]["images_per_s"] for k in ("data", "step", "train"))
    lines.append(f"efficiency (c)/min(a,b) = {c:.1f}/{min(a, b):.1f} = {result['efficiency']:.2f} "
                 f"({result['bound']}-bound: the {'loader' if result['bound'] == 'data' else 'step'} "
                 f"is the slower half)")
    m = result["memory"]
    mem = (f"peak memory: process {m['rss_peak_mib']:.0f} MiB RSS, largest worker "
           f"{m['children_rss_peak_mib']:.0f} MiB")
    if m["cuda_peak_mib"] is not None:
        mem += f", CUDA {m['cuda_peak_mib']:.0f} MiB allocated"
    lines.append(mem)
    return "\n".join(lines)


def write_bench(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``bench.json`` atomically."""
    path = Path(path)
    atomic.write_text(path, json.dumps(result, indent=2) + "\n")
    return path


