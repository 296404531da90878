"""``comp predict``: checkpoints × folds × runs × TTA views → one submission CSV.

Each run predicts with its own recipe (input size, normalisation, preprocessing), so runs of
different shapes ensemble correctly; their probabilities are averaged with the given weights.
All runs, folds, checkpoints and views share one pass over the test images, each decoded once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from comp import atomic
from comp.console import log_to
from comp.console import progress as progress_bar
from comp.data.check import check_data
from comp.data.table import ClassMap, ImageTable, load_test_table
from comp.decisions import combine_views, outputs_to_probs
from comp.errors import CompError
from comp.kinds import activation_of, kind_of, rule_of
from comp.predict.decision import Decision, check_decision_name, load_decision
from comp.predict.prediction import Prediction, predict_batch_size
from comp.predict.submission import build_label_submission, build_submission, check_label_sample, write_submission
from comp.predict.tta import validate_views, view_fn
from comp.recipe import Recipe, parse_override, recipe_from_dict, recipe_to_dict
from comp.recipe.task import check_decision
from comp.run.folder import BlendInfo, RunDir, check_output

# torch is imported where a model runs, not here: a bundle predicts through ONNX Runtime
# (comp.predict.onnx) where torch is not installed, with this module's orchestration.
if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from comp.model.runtime import Runtime

logger = logging.getLogger(__name__)


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


def model_state(path: Path) -> dict[str, torch.Tensor]:
    """The model weights in a checkpoint, or in a bundle's weights-only ``.safetensors`` file."""
    from comp.model.weights import read_state_dict
    from comp.run.checkpoint import load_checkpoint

    return read_state_dict(path) if path.suffix == ".safetensors" else load_checkpoint(path)["model"]


def load_run(run_dir: Path, runtime: Runtime, *, tta: bool, checkpoints: str | None = None,
             weight_files: list[Path] | None = None) -> RunModels:
    """A run's checkpoints (``checkpoints`` overrides its ``[predict] checkpoints``) loaded on the
    device; ``weight_files`` (a bundle's) are loaded instead of the run's checkpoints."""
    import torch

    from comp.model import build_model
    from comp.run.checkpoint import load_model_state

    run = RunDir(run_dir)
    recipe = run.recipe()
    classes = ClassMap(tuple(run.classes()))
    views = validate_views(recipe.predict.tta) if tta else ["identity"]
    # Weights come from the checkpoint; never fetch or read pretrained weights again.
    model_cfg = dataclasses.replace(recipe.model, pretrained=False)
    if weight_files is not None:
        paths = list(weight_files)
    else:
        paths = checkpoint_paths(run_dir, checkpoints or recipe.predict.checkpoints)
    models = []
    for path in paths:
        model = build_model(model_cfg, len(classes))
        load_model_state(model, model_state(path), path, classes=len(classes))
        model.to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        models.append(model.eval())
    return RunModels(Path(run_dir), recipe, classes, views, paths, models)


def predict_runs(run_dirs: list[Path], runtime: Runtime, *, tta: bool, table: ImageTable | None = None,
                 checkpoints: str | None = None, weight_files: list[list[Path]] | None = None,
                 adapt_bn: bool = False) -> list[Prediction]:
    """Each run's test-set probabilities (its checkpoints and TTA views averaged), from one pass
    over the test images: every image is decoded once (:func:`shared_loader`), and each batch
    goes through every run's every checkpoint on every view on the device (:func:`predict_pass`).

    ``checkpoints`` overrides the runs' ``[predict] checkpoints`` (best, top_k, last, swa);
    ``weight_files`` (per run: a bundle's weights) replace the runs' checkpoints. ``adapt_bn`` (or a
    run's ``[predict] adapt_bn``): its models' BatchNorm statistics are first re-estimated on
    ``table``'s images, in copies (:mod:`comp.predict.adapt`).
    """
    from comp.predict.adapt import adapt_runs

    runs = [load_run(d, runtime, tta=tta, checkpoints=checkpoints,
                     weight_files=None if weight_files is None else weight_files[i])
            for i, d in enumerate(run_dirs)]
    table = table if table is not None else load_test_table(runs[0].recipe)
    loader, spec_of = shared_loader([r.recipe for r in runs], table, runtime)
    adapt_runs(runs, adapt_bn, loader, spec_of, runtime)
    models = sum(len(r.models) for r in runs)
    views = sum(len(r.models) * len(r.views) for r in runs)
    desc = f"predict {len(runs)} run(s), {models} checkpoint(s), {views} forward pass(es) per image"
    outputs = predict_pass(runs, loader, spec_of, runtime, desc=desc)
    predictions = []
    for run, per_model in zip(runs, outputs):
        recipe = run.recipe
        head = activation_of(RunDir(run.run_dir).task(), recipe.model.head)
        per_checkpoint = [combine_views(outputs_to_probs(o, head, len(run.classes)),
                                        recipe.predict.tta_mean) for o in per_model]
        logger.info(f"{run.run_dir.name}: {len(per_checkpoint)} checkpoint(s) × {len(run.views)} view(s) "
                    f"({', '.join(run.views)}) on {len(table)} test images")
        predictions.append(Prediction(table.ids, combine_views(np.stack(per_checkpoint), recipe.predict.tta_mean),
                                      run.classes))
    return predictions


def predict_run(run_dir: Path, runtime: Runtime, *, tta: bool, table: ImageTable | None = None,
                checkpoints: str | None = None) -> Prediction:
    """Average a run's checkpoints (and TTA views) over the test set (:func:`predict_runs` of one run)."""
    return predict_runs([run_dir], runtime, tta=tta, table=table, checkpoints=checkpoints)[0]


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
    import torch

    from comp.data.pipeline import input_pipeline
    from comp.model.inference import forward_batch

    preps = [input_pipeline(r.recipe, runtime).eval_prep for r in runs]
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


def rank_scores(probs: np.ndarray) -> np.ndarray:
    """Each class column's values as their rank among the rows (ties averaged), scaled into (0, 1]:
    ``(..., rows, classes)`` in, the same shape out. What an AUC sees is unchanged."""
    from scipy.stats import rankdata

    return rankdata(probs, axis=-2) / max(probs.shape[-2], 1)


def ensemble(predictions: list[Prediction], weights: list[float], mean: str = "probability") -> Prediction:
    """Weighted mean of runs' probabilities (``mean = "rank"``: of their :func:`rank_scores`,
    for an AUC); runs must share the class set and test ids."""
    first = predictions[0]
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(predictions) or (w < 0).any() or w.sum() <= 0:
        raise CompError(f"need one non-negative --weight per run ({len(predictions)} runs, got {weights})")
    for p in predictions[1:]:
        if p.classes != first.classes:
            raise CompError(f"runs disagree on the classes: {first.classes.labels} vs {p.classes.labels}")
        if not np.array_equal(p.ids, first.ids):
            raise CompError("runs were predicted on different test ids")
    stack = np.stack([p.probs for p in predictions])
    probs = np.tensordot(w / w.sum(), rank_scores(stack) if mean == "rank" else stack, axes=1)
    return Prediction(first.ids, probs, first.classes)


def blend_decision(first: RunDir, blend: BlendInfo, decision: str | None = None) -> Decision:
    """A blend's decision: the rule ``decision`` (``--decision``) names, else the first run's
    ``[predict] decision``, checked against that run's task as its fit resolved it, with the
    values ``comp blend`` fitted on the blended OOF."""
    check_decision_name(decision)
    rule = kind_of(first.task()).rule_for(decision or first.recipe().predict.decision, first.recipe().predict.clip)
    check_decision(first.task(), rule, "--decision" if decision else "[predict] decision")
    chosen = rule_of(rule)
    if not chosen.fitted:
        return Decision(rule)
    try:  # kept as thresholds.json keeps a run's
        if chosen.owns(blend.decision):
            return chosen.from_json(blend.decision, list(blend.classes))
    except (KeyError, ValueError, TypeError):
        pass
    raise CompError(f"blend {blend.name!r} holds no fitted {rule} decision; make it again with `comp blend`")


def predict(run_dirs: list[Path], *, out: Path, tta: bool, weights: list[float] | None = None,
            device: str | None = None, proba: bool = False, checkpoints: str | None = None,
            decision: str | Decision | None = None, data: list[str] = (),
            weight_files: list[list[Path]] | None = None, run_logs: bool = True, blend: BlendInfo | None = None,
            logs_under: Path | None = None, adapt_bn: bool = False) -> Path:
    """Predict the test set with one or more runs and write the submission atomically.

    What it says, ending with the file written, is also appended, timestamped, to each run's
    predict.log (unless ``run_logs`` is false: a bundle's runs, which may be read-only, get
    nothing written; with ``logs_under``, only the runs in that folder: comp writes nothing
    outside --runs but ``--out``).

    ``data`` (``data.<key>=value``, :func:`point_data`) reads the test set elsewhere than the
    first run's recipe says; ``weight_files`` (per run) replace the runs' checkpoints.

    ``adapt_bn``: each run's BatchNorm statistics are re-estimated on the test images first (never
    saved; a run's ``[predict] adapt_bn`` asks the same for it alone).

    ``decision`` overrides the first run's ``[predict] decision`` (its thresholds are used; with
    ``blend``, the blend's, and a rank blend's probability columns are its weighted rank mean).
    Everything that can fail without a model is checked first: the decision and its fitted
    values, every test image, and the submission format (sample_submission.csv's columns and
    ids against test.csv's), so a bad setup stops before any checkpoint is loaded.
    """
    atomic.write_target(out)  # a folder, FIFO or device named by --out is refused before any work
    recipe = point_data(RunDir(run_dirs[0]).recipe(), data)
    if not Path(recipe.data.root).exists():  # the run was trained elsewhere, or its data moved
        raise CompError(f"data folder not found: {recipe.data.root} ([data] root); --data ROOT reads the test "
                        f"set from another folder")
    check_out(out, recipe)  # before the logs: a refused --out writes nothing
    with ExitStack() as logs:
        if run_logs:
            for d in run_dirs:
                if logs_under is None or Path(d).resolve().parent == Path(logs_under).resolve():
                    logs.enter_context(log_to(RunDir(d).predict_log))
        rule = (load_decision(recipe, run_dirs[0], decision) if blend is None
                else blend_decision(RunDir(run_dirs[0]), blend, decision))
        if rule.note:
            logger.info(rule.note)
        report = check_data(recipe, train=False, test=True)  # test images, submission format
        table = report.test_table  # parsed once, by the check
        kind = kind_of(RunDir(run_dirs[0]).task())
        if kind.label_sets:
            rule = dataclasses.replace(rule, at_least_one=recipe.predict.at_least_one)
            check_label_sample(recipe, report.submission, ClassMap(tuple(RunDir(run_dirs[0]).classes())))
        if weight_files is not None and all(Path(f).suffix == ".onnx" for files in weight_files for f in files):
            from comp.predict.onnx import predict_runs_onnx  # a bundle's ONNX models: ONNX Runtime, no torch

            if adapt_bn or any(RunDir(d).recipe().predict.adapt_bn for d in run_dirs):
                raise CompError("--adapt-bn re-estimates BatchNorm statistics in torch models: predict this bundle "
                                "with --engine torch")
            check_out(out, recipe, table)
            predictions = predict_runs_onnx(run_dirs, weight_files, tta=tta, table=table)
        else:
            from comp.model.runtime import resolve_runtime

            runtime = resolve_runtime(recipe.train, device)
            check_out(out, recipe, table)
            predictions = predict_runs(run_dirs, runtime, tta=tta, table=table, checkpoints=checkpoints,
                                       weight_files=weight_files, adapt_bn=adapt_bn)
        result = ensemble(predictions, weights or [1.0] * len(predictions))
        shown = result.probs if blend is None or blend.mean != "rank" else ensemble(predictions, weights, "rank").probs
        if kind.label_sets:  # a set of labels per row: tags, or a column per label
            frame = build_label_submission(recipe, result.ids, rule.apply(result.probs), shown, result.classes,
                                           fmt=report.submission, proba=proba)
        else:
            labels = kind.as_labels(rule.apply(result.probs), result.classes.labels)
            frame = build_submission(recipe, result.ids, labels, result.classes,
                                     probs=shown if proba else None, fmt=report.submission,
                                     check_labels=not kind.continuous)
        if report.submission.sample is None:
            logger.info(report.submission.describe())
        path = write_submission(frame, out)
        logger.info(f"wrote {path}")
        return path


def check_out(out: Path, recipe: Recipe, table: ImageTable | None = None) -> None:
    """``--out`` must be no file of a run (links followed) and none of predict's inputs: the
    competition's CSVs and (given ``table``) its test images."""
    check_output(out)
    d, real = recipe.data, os.path.realpath(out)
    inputs = [Path(d.root) / n for n in (d.train_csv, d.test_csv, d.valid_csv, d.extra_csv,
                                         d.sample_submission, d.solution_csv) if n]
    images = [] if table is None else [str(p) for p in table.paths]
    if any(os.path.realpath(f) == real for f in inputs) or real in set(map(os.path.abspath, images)):
        raise CompError(f"--out {out} is one of the competition's own files ({real}), an input of this "
                        f"command; write the submission elsewhere")


def shared_loader(recipes: list[Recipe], table: ImageTable, runtime: Runtime) -> tuple[DataLoader, list[int]]:
    """One loader over ``table`` for several runs: the evaluation transform (a resize) of each
    distinct input spec (size, preprocessing), every image decoded once for all of them
    (:class:`~comp.data.dataset.SharedDecodeDataset`), in order, with the first recipe's
    workers and batch size. Returns it and each recipe's spec index (its place in a batch's
    tuple; a single spec gives plain batches)."""
    from comp.data.dataset import SharedDecodeDataset, make_loader
    from comp.data.pipeline import input_pipeline

    specs: dict[tuple[int, str], int] = {}
    spec_of = [specs.setdefault((r.augment.size, r.augment.preprocess), len(specs)) for r in recipes]
    first_of = {spec: recipes[spec_of.index(spec)] for spec in specs.values()}
    datasets = [input_pipeline(first_of[i], runtime, table.paths).eval_dataset(table) for i in range(len(specs))]
    dataset = datasets[0] if len(datasets) == 1 else SharedDecodeDataset(datasets)
    loader = make_loader(dataset, predict_batch_size(recipes[0]), train_cfg=recipes[0].train, device=runtime.device)
    return loader, spec_of


# The [data] fields that say where the test set is: all `comp predict --data/--set` may change.
TEST_DATA_KEYS = ("root", "test_csv", "test_image_dir", "path_col", "sample_submission")


def point_data(recipe: Recipe, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """The recipe reading its test set where ``overrides`` say (``data.<key>=value``, a key of
    :data:`TEST_DATA_KEYS`; the value is always text): a run trained on one
    machine predicts a test set at another path, its model and preprocessing unchanged."""
    if not overrides:
        return recipe
    raw = recipe_to_dict(recipe)
    for item in overrides:
        keys, value = parse_override(item)
        if len(keys) != 2 or keys[0] != "data" or keys[1] not in TEST_DATA_KEYS:
            allowed = ", ".join(f"data.{k}" for k in TEST_DATA_KEYS)
            raise CompError(f"--set {item}: comp predict may only say where the test set is ({allowed})")
        # A path is text even when it reads as a TOML number or date ("2024"); quotes still work.
        raw["data"][keys[1]] = value if isinstance(value, str) else item.partition("=")[2].strip()
    return dataclasses.replace(recipe_from_dict(raw, where="--set"), source=recipe.source)
