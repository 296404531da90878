"""``comp bench``: measured images/s of each part of training and inference, against the model's
own ceiling, to tell what bounds a recipe.

On the recipe's own data and model (fold 0's training rows), in steady state:

(a) ``data``: the training DataLoader alone (decode, preprocess, augment on the "cpu" path,
    collate in the recipe's workers), built by :func:`comp.train.parts.build_parts` exactly as
    ``comp fit`` builds it;
(b) ``step``: the bare step, :func:`comp.train.loop.train_step` on synthetic tensors already on
    the device (model, loss, optimiser, AMP, memory format and ``[train] compile`` as in fit, no
    data): the anchor (c) is measured against; with ``compile = true`` also ``step_eager``, the
    same step uncompiled;
(c) ``train``: loader and step together, each batch through :func:`comp.train.loop.train_batch`
    as ``comp fit``'s epoch loop runs it (uint8 transfer, device preparation and augmentation,
    mixing, the step, the loss read back);
(e) ``epoch``: whole training epochs timed as fit runs them (:func:`comp.train.loop._train_epoch`:
    the epoch's start-up, its first batch's wait and its last batches included);
(f) ``forward``: the bare forward pass, the model in inference mode on synthetic device tensors
    of ``comp predict``'s batch size: the anchor (d) is measured against;
(d) ``infer`` / ``infer_tta``: :func:`comp.predict.predict.predict_pass` (what ``comp predict``
    runs) over a test-set loader built as predict builds it, cycling the test rows to at least
    ``infer_images`` images after the warm-up, with the identity view and with the recipe's views.

Steady state: the loader's prefetch queue holds ``workers x prefetch_factor`` batches, so timing
the first batches of an iterator measures the queue, not the workers. (a) and (c) therefore run
at least that many batches untimed after every (re)start of the loader, and (d) as many before
its clock starts. (a), (b) and (c) take turns in ``rounds``, so that drift in the machine's speed
hits all three alike.

Figures: efficiency (c) / min(a, b) (1.0: training runs as fast as its slower half allows), and
the ratios (c) / (b) and (d) / (f) (per view with TTA): how close training and inference come
to the model's own speed. ``augment_on`` ("cpu", "device" or "both") measures (a), (b), (c)
and (e) with ``[augment] on`` set so, each path with its own parts, to compare them in one run.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
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
from comp.console import muted
from comp.data.pipeline import resolve_augment_on
from comp.data.table import ClassMap, ImageTable, load_test_table, load_train_table
from comp.data.workers import resolve_workers
from comp.errors import CompError
from comp.metrics import Task
from comp.model import train_mode
from comp.model.runtime import Runtime, resolve_runtime
from comp.predict.predict import RunModels, predict_batch_size, predict_pass, shared_loader
from comp.predict.tta import validate_views
from comp.recipe import Recipe
from comp.recipe.task import resolve_task
from comp.run.checkpoint import unwrap
from comp.train.fit import assign_folds, fold_indices, fold_plan
from comp.train.hooks import FoldHooks
from comp.train.loop import FoldRun, StopFlag, TrainState, _train_epoch, train_batch, train_step
from comp.train.parts import FoldParts, FoldSplit, build_parts, seed_everything

logger = logging.getLogger(__name__)

PHASES = {  # key: label in the table
    "data": "(a) data pipeline",
    "step": "(b) bare train step",
    "step_eager": "(b) bare step, eager",
    "train": "(c) full train step",
    "epoch": "(e) whole epochs",
    "forward": "(f) bare forward",
    "infer": "(d) inference",
    "infer_tta": "(d) inference + TTA",
}
TRAIN_PHASES = ("data", "step", "step_eager", "train", "epoch")  # measured per augmentation path
AUGMENT_ON = ("cpu", "device", "both")
INFER_IMAGES = 2000


def bench(recipe: Recipe, *, steps: int = 20, warmup: int = 3, rounds: int = 4, device: str | None = None,
          augment_on: str | None = None, epochs: int = 1, infer_images: int = INFER_IMAGES) -> dict[str, Any]:
    """Measure the recipe's throughputs; returns what ``bench.json`` holds.

    (a), (b) and (c) each time ``steps`` batches in ``rounds`` turns, after at least ``warmup``
    untimed batches (and never fewer than the loader's prefetch queue holds); (e) times
    ``epochs`` whole epochs; (d) times at least ``infer_images`` test images after its warm-up.
    ``augment_on``: "cpu", "device" or "both" overrides ``[augment] on`` (None: the recipe's).
    """
    if steps < 1 or warmup < 0 or rounds < 1 or epochs < 0 or infer_images < 1:
        raise CompError(f"--steps, --rounds and --infer-images must be at least 1 and --warmup and --epochs "
                        f"not negative, got {steps}, {rounds}, {infer_images}, {warmup}, {epochs}")
    if augment_on not in (None, *AUGMENT_ON):
        raise CompError(f"--augment-on must be cpu, device or both, got {augment_on!r}")
    runtime = resolve_runtime(recipe.train, device)
    cuda = runtime.device.type == "cuda"
    paths = (["cpu", "device"] if augment_on == "both"
             else [augment_on or resolve_augment_on(recipe.augment.on, runtime.device, recipe.augment)])
    table, classes = load_train_table(recipe)
    folds = assign_folds(recipe, table)
    fold = fold_plan(recipe, folds)[0]
    train_index, _ = fold_indices(recipe, folds, fold)
    result: dict[str, Any] = {
        "recipe": recipe.name,
        "device": str(runtime.device) + (f" ({torch.cuda.get_device_name(runtime.device)})" if cuda else ""),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "image_size": recipe.augment.size,
        "preprocess": recipe.augment.preprocess,
        "model": f"{recipe.model.source}:{recipe.model.name}",
        "amp": str(runtime.amp_dtype).replace("torch.", "") if runtime.amp_dtype else "off",
        "channels_last": runtime.channels_last,
        "compile": recipe.train.compile,
        "augment_on": paths[0],
        "steps": steps,
        "warmup": warmup,
        "rounds": min(rounds, steps),
        "epochs": epochs,
        "loadavg_before": os.getloadavg()[0],  # other processes' load makes every figure lower
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "phases": {},
    }
    by_path: dict[str, dict[str, Any]] = {}
    parts = None
    for path in paths:
        parts = None
        gc.collect()  # the previous path's loader workers go before this path's start
        seed_everything(recipe.seed + fold, recipe.train.deterministic)
        path_recipe = dataclasses.replace(recipe, augment=dataclasses.replace(recipe.augment, on=path))
        # No validation loader: bench never validates, and its workers would only take memory.
        split = FoldSplit(fold, table, classes, train_index, train_index[:0], resolve_task(recipe, classes.labels))
        with muted():  # its set-up lines are not bench's figures
            parts = build_parts(path_recipe, split, runtime)
        by_path[path] = _bench_training(path_recipe, parts, runtime, split.task, steps=steps, warmup=warmup,
                                        rounds=rounds, epochs=epochs)
    train_ds = parts.train_loader.dataset
    result.update(workers=parts.train_loader.num_workers, prefetch_batches=_queue(parts.train_loader),
                  batch_size=parts.batch_size, accum_steps=parts.accum_steps, train_images=len(train_ds),
                  cache=train_ds.cached is not None, device_decode=bool(train_ds.raw))
    phases = result["phases"]
    phases.update(by_path[paths[0]]["phases"])
    if len(paths) > 1:
        result["by_augment"] = by_path

    # (f) and (d): inference, as comp predict runs it, against the bare forward pass.
    model = unwrap(parts.model)
    batch = predict_batch_size(recipe)
    phases["forward"] = _bare_forward(model, recipe, runtime, batch, steps=steps, warmup=max(warmup, 1))
    views = validate_views(recipe.predict.tta)
    for key, names in (("infer", ["identity"]), ("infer_tta", views)):
        phases[key] = _infer(recipe, model, classes, table, train_index, runtime, names, infer_images)
        phases[key]["views"] = list(names)
    del parts, train_ds, model

    for path, p in by_path.items():
        p["efficiency"] = _efficiency(p["phases"])
        p["bound"] = "data" if p["phases"]["data"]["images_per_s"] < p["phases"]["step"]["images_per_s"] else "compute"
    result["efficiency"] = by_path[paths[0]]["efficiency"]
    result["bound"] = by_path[paths[0]]["bound"]
    result["ratios"] = _ratios(phases)
    result["memory"] = _memory(runtime)
    return result


def _bench_training(recipe: Recipe, parts: FoldParts, runtime: Runtime, task: Task, *, steps: int, warmup: int,
                    rounds: int, epochs: int) -> dict[str, Any]:
    """(a), (b), (c) in rounds and (e) for one augmentation path: ``{"phases": {...}}``."""
    cuda = runtime.device.type == "cuda"
    if len(parts.train_loader) == 0:
        raise CompError(f"{len(parts.train_loader.dataset)} training images, fewer than a batch of "
                        f"{parts.batch_size}: nothing to measure")
    phases: dict[str, dict[str, Any]] = {}
    queue = _queue(parts.train_loader)

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
        _add(phases, name, images, time.perf_counter() - t0, n, runtime)

    train_mode(parts.model, recipe.model)
    state, run = TrainState(), FoldRun(recipe, parts, runtime, StopFlag(), task)
    # Synthetic model input for (b): normalised-like values, already where and as the model takes it.
    size = recipe.augment.size
    generator = torch.Generator().manual_seed(0)
    images = runtime.to_device(torch.randn((parts.batch_size, 3, size, size), generator=generator))
    targets = _targets(parts).to(runtime.device)

    def loader_alone() -> tuple[Callable[[], int], Callable[[], None]]:  # (a)
        batches = _epochs(parts)
        return (lambda: len(next(batches)[0])), batches.close

    def bare_step(step_parts: FoldParts) -> Callable[[], tuple[Callable[[], int], Callable[[], None]]]:  # (b)
        def phase() -> tuple[Callable[[], int], Callable[[], None]]:
            # The model's ceiling: no loss read back, so on CUDA nothing waits for the device.
            def one() -> int:
                state.updates += 1
                train_step(step_parts, images, targets, runtime, update=state.updates % parts.accum_steps == 0)
                return len(images)
            return one, _nothing
        return phase

    def fit_loop() -> tuple[Callable[[], int], Callable[[], None]]:  # (c)
        # Per batch exactly what fit's epoch loop runs: comp.train.loop.train_batch.
        batches = _epochs(parts, state)
        total = len(parts.train_loader)

        def one() -> int:
            batch, labels = next(batches)
            train_batch(run, state, batch, labels, total_steps=total)
            return len(labels)
        return one, batches.close

    order = [("data", loader_alone), ("step", bare_step(parts)), ("train", fit_loop)]
    if recipe.train.compile:
        order.append(("step_eager", bare_step(dataclasses.replace(parts, step_model=parts.model))))
    for r, n in enumerate(_split(steps, rounds)):
        for name, phase in order:
            one, close = phase()
            # Every round restarts (a)'s and (c)'s loader iterator: its queue fills again first.
            warm = warmup if r == 0 else min(warmup, 1)
            if name in ("data", "train"):
                warm = max(warm, queue)
            measure(name, one, n, warm)
            close()
    if epochs:
        state.step = 0
        t0 = time.perf_counter()
        done = 0
        with muted():  # no progress bar: the epochs are timed
            for e in range(epochs):
                state.epoch, state.step = e, 0
                _train_epoch(run, state, FoldHooks([], None), _nothing, desc="")
                done += state.step
        _sync(runtime)
        _add(phases, "epoch", done * parts.batch_size, time.perf_counter() - t0, done, runtime)
    for name in phases:
        logger.debug(f"{recipe.augment.on:>6} {PHASES[name]:<24} {phases[name]['images_per_s']:10.1f} images/s")
    return {"phases": phases}


def _targets(parts: FoldParts) -> torch.Tensor:
    """Labels for the synthetic batch: the training rows' first targets (a multilabel task's rows
    of labels, a regression task's values), else their class indices (their dtype and range)."""
    table = parts.train_loader.dataset.table
    if table.targets is not None:
        rows = np.resize(np.arange(len(table)), parts.batch_size)
        return torch.as_tensor(np.asarray(table.targets)[rows])
    labels = np.asarray(table.labels)
    return torch.as_tensor(np.resize(labels, parts.batch_size))


def _bare_forward(model: torch.nn.Module, recipe: Recipe, runtime: Runtime, batch: int, *, steps: int,
                  warmup: int) -> dict[str, Any]:
    """(f): the model's forward pass on synthetic device tensors of predict's batch size."""
    size = recipe.augment.size
    x = runtime.to_device(torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(1)))
    model.eval()
    phases: dict[str, dict[str, Any]] = {}
    with torch.inference_mode(), runtime.autocast():
        for _ in range(warmup):
            model(x)
        _sync(runtime)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        _sync(runtime)
    _add(phases, "forward", steps * batch, time.perf_counter() - t0, steps, runtime)
    return phases["forward"]


def _infer(recipe: Recipe, model: torch.nn.Module, classes: ClassMap, table: ImageTable, train_index: np.ndarray,
           runtime: Runtime, views: list[str], images: int) -> dict[str, Any]:
    """(d): :func:`predict_pass` over the test rows (the training rows when there is no test set),
    cycled to ``images`` images after a warm-up of the loader's queue (at least one batch)."""
    rows = None
    if (Path(recipe.data.root) / recipe.data.test_csv).is_file():
        rows = load_test_table(recipe)
    if rows is None or len(rows) == 0:
        rows = table.subset(train_index)
    batch = predict_batch_size(recipe)
    warm = max(1, _queue_of(resolve_workers(recipe.train.workers)))  # the workers make_loader starts
    total = images + warm * batch
    rows = rows.subset(np.resize(np.arange(len(rows)), total))
    loader, spec_of = shared_loader([recipe], rows, runtime)
    run = RunModels(Path("."), recipe, classes, list(views), [], [model])
    clock = {"batches": 0, "t0": None, "images": 0}

    def on_batch(n: int) -> None:
        clock["batches"] += 1
        if clock["batches"] == warm:
            _sync(runtime)
            clock["t0"] = time.perf_counter()
        elif clock["batches"] > warm:
            clock["images"] += n

    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    predict_pass([run], loader, spec_of, runtime, on_batch=on_batch)  # ends with the outputs copied back
    _sync(runtime)
    phases: dict[str, dict[str, Any]] = {}
    _add(phases, "infer", clock["images"], time.perf_counter() - clock["t0"], clock["batches"] - warm, runtime)
    phases["infer"]["warmup_batches"] = warm
    return phases["infer"]


def _add(phases: dict[str, dict[str, Any]], name: str, images: int, seconds: float, batches: int,
         runtime: Runtime) -> None:
    p = phases.setdefault(name, {"images": 0, "seconds": 0.0, "batches": 0, "rounds": []})
    p["images"] += images
    p["seconds"] += seconds
    p["batches"] += batches
    p["images_per_s"] = p["images"] / p["seconds"] if p["seconds"] > 0 else float("nan")
    p["rounds"].append(images / seconds if seconds > 0 else float("nan"))
    if runtime.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(runtime.device) / 2**20
        p["cuda_peak_mib"] = max(p.get("cuda_peak_mib", 0.0), peak)


def _queue(loader: torch.utils.data.DataLoader) -> int:
    """Batches the loader's workers prefetch (see :func:`_queue_of`)."""
    return _queue_of(loader.num_workers, loader.prefetch_factor)


def _queue_of(workers: int, prefetch_factor: int | None = None) -> int:
    """Batches ``workers`` prefetch: ``workers x prefetch_factor`` (torch's default 2; 0 without workers)."""
    return workers * (prefetch_factor or 2)


def _efficiency(phases: dict[str, dict[str, Any]]) -> float:
    a, b, c = (phases[k]["images_per_s"] for k in ("data", "step", "train"))
    return c / min(a, b)


def _ratios(phases: dict[str, dict[str, Any]]) -> dict[str, float]:
    """(c) / bare step, (d) / bare forward, (d) with TTA / (bare forward / views); with compile,
    (c) / the eager bare step."""
    rate = {k: p["images_per_s"] for k, p in phases.items()}
    out = {"train_over_step": rate["train"] / rate["step"],
           "infer_over_forward": rate["infer"] / rate["forward"],
           "infer_tta_over_forward_per_view": rate["infer_tta"] * len(phases["infer_tta"]["views"]) / rate["forward"]}
    if "epoch" in rate:
        out["epoch_over_step"] = rate["epoch"] / rate["step"]
    if "step_eager" in rate:
        out["train_over_eager_step"] = rate["train"] / rate["step_eager"]
    return out


def _split(steps: int, rounds: int) -> list[int]:
    """``steps`` as ``rounds`` near-equal positive parts."""
    rounds = min(rounds, steps)
    return [steps // rounds + (i < steps % rounds) for i in range(rounds)]


def _nothing() -> None:
    return None


def _epochs(parts: FoldParts, state: TrainState | None = None) -> Iterator[tuple[Any, torch.Tensor]]:
    """Training batches forever: epoch after epoch of the training loader (``state.step``
    counts the batches of the current epoch, as in fit)."""
    epoch = 0
    while True:
        parts.sampler.set_epoch(epoch)
        if state is not None:
            state.epoch, state.step = epoch, 0
        yield from parts.train_loader
        epoch += 1


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


def _row(label: str, p: dict[str, Any]) -> str:
    spread = f"{min(p['rounds']):.0f}-{max(p['rounds']):.0f}" if len(p["rounds"]) > 1 else ""
    return f"{label:<28} {p['images_per_s']:>10.1f} {p['images']:>8} {p['seconds']:>8.2f}  {spread:>13}"


def format_bench(result: dict[str, Any]) -> str:
    """The table ``comp bench`` prints."""
    phases = result["phases"]
    lines = [f"{result['recipe']}: {result['model']} at {result['image_size']} px, batch "
             f"{result['batch_size']}, {result['workers']} workers (queue {result['prefetch_batches']} batches), "
             f"{result['device']}, {result['cpu_cores']} cores, amp {result['amp']}"
             + (", compiled" if result.get("compile") else "")
             + (", image cache" if result["cache"] else "")
             + (", JPEGs decoded on the device" if result.get("device_decode") else ""),
             f"{'':<28} {'images/s':>10} {'images':>8} {'seconds':>8}  {'per round':>13}"]
    paths = result.get("by_augment") or {result["augment_on"]: {"phases": phases, "efficiency": result["efficiency"],
                                                               "bound": result["bound"]}}
    for path, p in paths.items():
        for key in TRAIN_PHASES:
            if key in p["phases"]:
                lines.append(_row(f"{PHASES[key]} [{path}]", p["phases"][key]))
    for key in ("forward", "infer", "infer_tta"):
        label = PHASES[key] + (f" x{len(phases[key]['views'])}" if key == "infer_tta" else "")
        lines.append(_row(label, phases[key]))
    for path, p in paths.items():
        a, b, c = (p["phases"][k]["images_per_s"] for k in ("data", "step", "train"))
        lines.append(f"[{path}] efficiency (c)/min(a,b) = {c:.1f}/{min(a, b):.1f} = {p['efficiency']:.2f} "
                     f"({p['bound']}-bound: the {'loader' if p['bound'] == 'data' else 'step'} is the slower half); "
                     f"(c)/bare step = {c / b:.2f}"
                     + (f"; (e)/bare step = {p['phases']['epoch']['images_per_s'] / b:.2f}" if "epoch" in p["phases"] else "")
                     + (f"; (c)/eager bare step = {c / p['phases']['step_eager']['images_per_s']:.2f}"
                        if "step_eager" in p["phases"] else ""))
    r = result["ratios"]
    lines.append(f"(d)/bare forward = {r['infer_over_forward']:.2f}; (d) TTA x{len(phases['infer_tta']['views'])} / "
                 f"(bare forward / views) = {r['infer_tta_over_forward_per_view']:.2f}")
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
