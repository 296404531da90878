"""``comp predict``: checkpoints × folds × runs × TTA views → one submission CSV.

Each run predicts with its own recipe (input size, normalisation, preprocessing), so runs of
different shapes ensemble correctly; their probabilities are averaged with the given weights.
All runs, folds, checkpoints and views share one pass over the test images, each decoded once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from comp import atomic
from comp.console import RunLog
from comp.console import progress as progress_bar
from comp.data.augment import build_transform
from comp.data.check import check_data
from comp.data.dataset import ImageDataset, SharedDecodeDataset, make_loader
from comp.data.prepare import BatchPrep, device_decode
from comp.data.table import ClassMap, ImageTable, load_test_table
from comp.errors import CompError
from comp.model import build_model
from comp.model.inference import combine_views, forward_batch, outputs_to_probs
from comp.model.runtime import Runtime, resolve_runtime
from comp.predict.decision import load_decision
from comp.predict.submission import build_submission, write_submission
from comp.predict.tta import validate_views, view_fn
from comp.recipe import Recipe
from comp.train.checkpoint import load_checkpoint
from comp.train.rundir import RunDir


@dataclass(frozen=True)
class Prediction:
    """Test-set probabilities of one run or an ensemble, with the ids they belong to."""

    ids: np.ndarray
    probs: np.ndarray  # (n_test, num_classes)
    classes: ClassMap


def checkpoint_paths(run_dir: Path, which: str) -> list[Path]:
    """The checkpoints a run ensembles: every fold's best, last or swa, or its kept top-k."""
    run = RunDir(run_dir)
    paths = [p for fold in run.completed_folds() for p in run.fold(fold).checkpoints(which)]
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        what = missing[0] if missing else f"no finished fold in {run_dir}"
        raise CompError(f"checkpoint not found: {what} (train with `comp fit`)")
    return paths


@dataclass
class RunModels:
    """One run as ``comp predict`` uses it: its recipe, classes, views, and every checkpoint's
    model on the device."""

    run_dir: Path
    recipe: Recipe
    classes: ClassMap
    views: list[str]
    paths: list[Path]
    models: list[nn.Module]


def load_run(run_dir: Path, runtime: Runtime, *, tta: bool, checkpoints: str | None = None) -> RunModels:
    """A run's checkpoints (``checkpoints`` overrides its ``[predict] checkpoints``) loaded on the device."""
    run = RunDir(run_dir)
    recipe = run.recipe()
    classes = ClassMap(tuple(run.classes()))
    views = validate_views(recipe.predict.tta) if tta else ["identity"]
    # Weights come from the checkpoint; never fetch or read pretrained weights again.
    model_cfg = dataclasses.replace(recipe.model, pretrained=False)
    paths = checkpoint_paths(run_dir, checkpoints or recipe.predict.checkpoints)
    models = []
    for path in paths:
        model = build_model(model_cfg, len(classes))
        model.load_state_dict(load_checkpoint(path)["model"])
        model.to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        models.append(model.eval())
    return RunModels(Path(run_dir), recipe, classes, views, paths, models)


def predict_runs(run_dirs: list[Path], runtime: Runtime, *, tta: bool, table: ImageTable | None = None,
                 checkpoints: str | None = None, log: Callable[[str], None] = print,
                 progress: bool = True) -> list[Prediction]:
    """Each run's test-set probabilities (its checkpoints and TTA views averaged), from one pass
    over the test images: every image is decoded once (:func:`shared_loader`), and each batch
    goes through every run's every checkpoint on every view on the device (:func:`predict_pass`).

    ``checkpoints`` overrides the runs' ``[predict] checkpoints`` (best, top_k, last, swa);
    ``progress`` shows the pass (images) as it goes.
    """
    runs = [load_run(d, runtime, tta=tta, checkpoints=checkpoints) for d in run_dirs]
    table = table if table is not None else load_test_table(runs[0].recipe)
    loader, spec_of = shared_loader([r.recipe for r in runs], table, runtime)
    models = sum(len(r.models) for r in runs)
    views = sum(len(r.models) * len(r.views) for r in runs)
    desc = f"predict {len(runs)} run(s), {models} checkpoint(s), {views} forward pass(es) per image"
    outputs = predict_pass(runs, loader, spec_of, runtime, desc=desc if progress else None)
    predictions = []
    for run, per_model in zip(runs, outputs):
        recipe = run.recipe
        per_checkpoint = [combine_views(outputs_to_probs(o, recipe.model.head, len(run.classes)),
                                        recipe.predict.tta_mean) for o in per_model]
        log(f"{run.run_dir.name}: {len(per_checkpoint)} checkpoint(s) × {len(run.views)} view(s) "
            f"({', '.join(run.views)}) on {len(table)} test images")
        predictions.append(Prediction(table.ids, combine_views(np.stack(per_checkpoint), recipe.predict.tta_mean),
                                      run.classes))
    return predictions


def predict_run(run_dir: Path, runtime: Runtime, *, tta: bool, table: ImageTable | None = None,
                checkpoints: str | None = None, log: Callable[[str], None] = print,
                progress: bool = True) -> Prediction:
    """Average a run's checkpoints (and TTA views) over the test set (:func:`predict_runs` of one run)."""
    return predict_runs([run_dir], runtime, tta=tta, table=table, checkpoints=checkpoints, log=log,
                        progress=progress)[0]


def predict_pass(runs: list[RunModels], loader: DataLoader, spec_of: list[int], runtime: Runtime, *,
                 desc: str | None = None,
                 on_batch: Callable[[int], None] | None = None) -> list[list[np.ndarray]]:
    """Raw outputs ``[run][checkpoint] -> (V, N, C)`` of every run's models on every view, in one
    pass over ``loader`` (:func:`shared_loader`; run ``r`` reads its input at ``spec_of[r]`` of
    each batch's tuple).

    Per batch, each input is copied to the device once (asynchronously, from pinned memory on
    CUDA, while the workers decode the next batches) and normalised once per distinct
    size/mean/std; outputs stay on the device until the pass ends, so nothing waits for a copy
    back. ``on_batch(images)`` is called after each batch is queued (``comp bench`` times with it).
    """
    preps = [BatchPrep(r.recipe.augment, device=runtime.device, channels_last=runtime.channels_last) for r in runs]
    fns = [[view_fn(v) for v in r.views] for r in runs]
    outputs: list[list[list[torch.Tensor]]] = [[[] for _ in r.models] for r in runs]
    bar = progress_bar(total=len(loader.dataset), desc=desc or "", enabled=desc is not None)
    with torch.inference_mode():
        for batch, targets in loader:
            batch = batch if isinstance(batch, tuple) else (batch,)
            on_device: dict[int, torch.Tensor] = {}
            normalised: dict[tuple, torch.Tensor] = {}
            for r, run in enumerate(runs):
                spec, a = spec_of[r], run.recipe.augment
                if spec not in on_device:
                    on_device[spec] = preps[r].to_device(batch[spec])
                key = (spec, a.size, tuple(a.mean), tuple(a.std))
                if key not in normalised:
                    normalised[key] = preps[r](on_device[spec])
                for m, model in enumerate(run.models):
                    outputs[r][m].append(forward_batch(model, normalised[key], runtime, fns[r]))
            bar.update(len(targets))
            if on_batch is not None:
                on_batch(len(targets))
    bar.close()
    return [[torch.cat(o, dim=1).cpu().numpy() for o in per_model] for per_model in outputs]


def ensemble(predictions: list[Prediction], weights: list[float]) -> Prediction:
    """Weighted mean of runs' probabilities; runs must share the class set and test ids."""
    first = predictions[0]
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(predictions) or (w < 0).any() or w.sum() <= 0:
        raise CompError(f"need one non-negative --weight per run ({len(predictions)} runs, got {weights})")
    for p in predictions[1:]:
        if p.classes != first.classes:
            raise CompError(f"runs disagree on the classes: {first.classes.labels} vs {p.classes.labels}")
        if not np.array_equal(p.ids, first.ids):
            raise CompError("runs were predicted on different test ids")
    probs = np.tensordot(w / w.sum(), np.stack([p.probs for p in predictions]), axes=1)
    return Prediction(first.ids, probs, first.classes)


def predict(run_dirs: list[Path], *, out: Path, tta: bool, weights: list[float] | None = None,
            device: str | None = None, proba: bool = False, checkpoints: str | None = None,
            decision: str | None = None, log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Predict the test set with one or more runs and write the submission atomically.

    What it prints is also appended, timestamped, to each run's predict.log.

    ``decision`` overrides the first run's ``[predict] decision`` (its thresholds are used).
    Everything that can fail without a model is checked first: the decision and its fitted
    values, every test image, and the submission format (sample_submission.csv's columns and
    ids against test.csv's), so a bad setup stops before any checkpoint is loaded.
    """
    atomic.write_target(out)  # a folder, FIFO or device named by --out is refused before any work
    if not isinstance(log, RunLog):
        log = RunLog(log)
    for d in run_dirs:
        log.attach(RunDir(d).predict_log)
    recipe = RunDir(run_dirs[0]).recipe()
    rule = load_decision(recipe, run_dirs[0], decision)
    report = check_data(recipe, train=False, test=True, log=log, progress=progress)  # test images, submission format
    runtime = resolve_runtime(recipe.train, device)
    table = report.test_table  # parsed once, by the check
    predictions = predict_runs(run_dirs, runtime, tta=tta, table=table, checkpoints=checkpoints, log=log,
                               progress=progress)
    result = ensemble(predictions, weights or [1.0] * len(predictions))
    labels = result.classes.decode(rule.apply(result.probs))
    frame = build_submission(recipe, result.ids, labels, result.classes,
                             probs=result.probs if proba else None, fmt=report.submission)
    if report.submission.sample is None:
        log(report.submission.describe())
    return write_submission(frame, out)


def predict_batch_size(recipe: Recipe) -> int:
    """``[predict] batch_size``, else twice the training batch (64 when it is "auto")."""
    b = recipe.train.batch_size
    return recipe.predict.batch_size or 2 * (b if isinstance(b, int) else 64)


def shared_loader(recipes: list[Recipe], table: ImageTable, runtime: Runtime) -> tuple[DataLoader, list[int]]:
    """One loader over ``table`` for several runs: the evaluation transform (a resize) of each
    distinct input spec (size, preprocessing), every image decoded once for all of them
    (:class:`~comp.data.dataset.SharedDecodeDataset`), in order, with the first recipe's
    workers and batch size. Returns it and each recipe's spec index (its place in a batch's
    tuple; a single spec gives plain batches)."""
    specs: dict[tuple[int, str], int] = {}
    spec_of = [specs.setdefault((r.augment.size, r.augment.preprocess), len(specs)) for r in recipes]
    first_of = {spec: recipes[spec_of.index(spec)] for spec in specs.values()}
    datasets = [ImageDataset(table, build_transform(first_of[i].augment, train=False), first_of[i].augment.preprocess,
                             raw=device_decode(first_of[i].augment, runtime.device, table.paths))
                for i in range(len(specs))]
    dataset = datasets[0] if len(datasets) == 1 else SharedDecodeDataset(datasets)
    loader = make_loader(dataset, predict_batch_size(recipes[0]), train_cfg=recipes[0].train, device=runtime.device)
    return loader, spec_of
