"""ONNX models in a bundle: ``comp export --onnx`` writes them, ``comp predict --bundle`` runs them
with ONNX Runtime on the CPU, without torch.

Export (torch): each fold's model, in eval mode, becomes ``fold<K>/<which>.onnx`` beside its
safetensors: input ``input`` (N x 3 x H x W, normalised), output ``logits``, the batch and the
image sides dynamic (a scale TTA view feeds another size), opset :data:`OPSET`. The TorchScript
exporter (``dynamo=False``) goes first: on this torch it exports a ResNet18 in under a second where
the dynamo exporter (``dynamo=True``, onnxscript; torch's default now) takes some 20 s, and the
convolutional backbones comp trains trace without data-dependent control flow. A model it cannot
take, and every model once torch drops that exporter (it warns that it will), goes through the
dynamo exporter; a model neither takes fails naming the layer that cannot be exported
(:func:`failing_layer`). Either way every model is then checked: its probabilities under ONNX
Runtime against torch's on real test images (up to :data:`CHECK_IMAGES`), the largest absolute
difference below :data:`TOLERANCE`, or the export fails naming the fold.

Prediction (numpy and onnxruntime only; this part never imports torch): the test images are
decoded, preprocessed and resized as the torch loaders do it (the same OpenCV calls: reduced JPEG
decoding, ``ben_graham``, an ``INTER_AREA`` resize), normalised in float32 as
:class:`comp.data.prepare.BatchPrep` does, and the TTA views are the numpy forms of
:mod:`comp.predict.tta`; probabilities, view and checkpoint means are :mod:`comp.decisions`' and the
rest of ``comp predict`` (decision, submission) is shared (:func:`comp.predict.predict.predict`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from comp.console import progress as progress_bar
from comp.data.images import decode_preprocessed, decode_reduction
from comp.data.table import ClassMap, ImageTable, load_test_table
from comp.data.workers import resolve_workers
from comp.decisions import combine_views, outputs_to_probs
from comp.errors import CompError, first_line
from comp.kinds import activation_of
from comp.predict.prediction import Prediction, predict_batch_size
from comp.predict.tta import numpy_view_fn, validate_views
from comp.recipe import AugmentConfig, Recipe
from comp.run.folder import RunDir

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

OPSET = 18
ONNX_SUFFIX = ".onnx"
CHECK_IMAGES = 8
TOLERANCE = 1e-4
INPUT, OUTPUT = "input", "logits"
EXPORTERS = ("torchscript", "dynamo")  # tried in this order (see the module)


def onnxruntime_installed() -> bool:
    """Whether ``onnxruntime`` can be imported here (without importing it)."""
    return importlib.util.find_spec("onnxruntime") is not None


# --------------------------------------------------------------------------- export (torch)


def export_onnx(model: nn.Module, path: Path, size: int, *, opset: int = OPSET) -> str:
    """``model`` (eval mode, CPU) as an ONNX file at ``path`` with a dynamic batch; returns the
    exporter that made it (the first of :data:`EXPORTERS` that can). A model neither exporter takes is one
    CompError naming its first layer that cannot be exported."""
    import torch

    from comp import atomic

    model = model.cpu().eval()
    dummy = torch.zeros(2, 3, size, size)
    errors = []
    for exporter in EXPORTERS:
        try:
            with atomic.atomic_path(path) as tmp:
                _export(model, dummy, tmp, exporter, opset)
            return exporter
        except CompError:
            raise
        except Exception as err:  # noqa: BLE001 - any exporter failure: try the other, then name the layer
            errors.append(f"{exporter}: {first_line(err)}")
    layer = failing_layer(model, dummy, opset)
    where = f"layer {layer[0]} ({layer[1]}) cannot be exported" if layer else "it cannot be exported"
    raise CompError(f"ONNX export of {type(model).__name__}: {where} ({errors[-1]})")


def _export(model: nn.Module, dummy: torch.Tensor, path: Path | Any, exporter: str, opset: int) -> None:
    import warnings

    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation warning, tracer warnings
        if exporter == "dynamo":
            # Batch, height and width dynamic: a scale TTA view feeds another size.
            dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
            program = torch.onnx.export(model, (dummy,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=(dims,), opset_version=opset, verbose=False,
                                        external_data=False, optimize=True, report=False)
            program.save(str(path), external_data=False)
        elif exporter == "torchscript":
            torch.onnx.export(model, (dummy,), path if not isinstance(path, Path) else str(path), dynamo=False,
                              input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
                              dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch"}})
        else:
            raise ValueError(f"no ONNX exporter {exporter!r}")


def failing_layer(model: nn.Module, dummy: torch.Tensor, opset: int = OPSET) -> tuple[str, str] | None:
    """(name, type) of the first leaf module, in the order the forward pass calls them, that the
    TorchScript exporter cannot export on the input it gets; None when each exports on its own."""
    import io

    import torch

    calls: list[tuple[str, Any, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: calls.append((name, mod, args)))
             for name, m in model.named_modules() if name and not list(m.children())]
    try:
        with torch.no_grad():
            model(dummy)
    except Exception:  # noqa: BLE001 - a forward that fails: the last layer reached is the one
        if calls:
            return calls[-1][0], type(calls[-1][1]).__name__
        return None
    finally:
        for h in hooks:
            h.remove()
    for name, module, args in calls:
        if not args or not all(isinstance(a, torch.Tensor) for a in args):
            continue
        try:
            _export(module, args[0] if len(args) == 1 else args, io.BytesIO(), "torchscript", opset)
        except Exception:  # noqa: BLE001
            return name, type(module).__name__
    return None


def check_inputs(recipe: Recipe, n: int = CHECK_IMAGES) -> torch.Tensor:
    """The first ``n`` test images of ``recipe``'s competition as the model takes them at prediction
    (the torch loaders' evaluation pipeline, on the CPU)."""
    import torch

    from comp.data.pipeline import input_pipeline
    from comp.model.runtime import Runtime

    try:
        table = load_test_table(recipe)
    except CompError as err:
        raise CompError(f"--onnx checks each model on real test images, and the test set cannot be read: {err}") from None
    if not len(table):
        raise CompError(f"--onnx checks each model on real test images: {recipe.data.test_csv} has none")
    rows = table.subset(np.arange(min(n, len(table))))
    pipeline = input_pipeline(recipe, Runtime(torch.device("cpu")), rows.paths)
    dataset = pipeline.eval_dataset(rows)
    return pipeline.eval_batch(torch.stack([dataset[i][0] for i in range(len(dataset))]))


def check_onnx(model: nn.Module, path: Path, images: torch.Tensor, head: str, num_classes: int, what: str) -> float:
    """The largest absolute difference between torch's and ONNX Runtime's probabilities on
    ``images``; at least :data:`TOLERANCE` is a CompError naming ``what`` (the fold)."""
    import torch

    with torch.no_grad():
        expected = outputs_to_probs(model.cpu().eval()(images).float().numpy(), head, num_classes)
    got = outputs_to_probs(session(path).run([OUTPUT], {INPUT: images.numpy()})[0], head, num_classes)
    diff = float(np.abs(expected - got).max())
    if not diff < TOLERANCE:
        raise CompError(f"{what}: ONNX Runtime's probabilities differ from torch's by {diff:.2g} on {len(images)} "
                        f"test images (the limit is {TOLERANCE:g}); the export is refused")
    return diff


def export_fold(model: nn.Module, path: Path, recipe: Recipe, num_classes: int, images: torch.Tensor,
                what: str, activation: str = "") -> dict[str, Any]:
    """Export one fold's model to ``path`` and check it (:func:`check_onnx`); what the manifest
    records of it: the exporter, the opset and the difference measured."""
    if not onnxruntime_installed():
        raise CompError("--onnx checks every model with ONNX Runtime: install onnxruntime (pip install onnxruntime)")
    try:
        exporter = export_onnx(model, path, recipe.augment.size)
    except CompError as err:
        raise CompError(f"{what}: {err}") from None
    diff = check_onnx(model, path, images, activation or recipe.model.head, num_classes, what)
    logger.info(f"{what}: ONNX ({exporter} exporter, opset {OPSET}), max |P_onnx - P_torch| = {diff:.1e} "
                f"on {len(images)} test images")
    return {"exporter": exporter, "opset": OPSET, "max_abs_diff": diff, "check_images": len(images)}


# --------------------------------------------------------------------------- predict (no torch)


def session(path: Path):
    """An ONNX Runtime session of ``path`` on the CPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CompError("this bundle's ONNX models need onnxruntime (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = thread_count()
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
        raise CompError(f"ONNX Runtime cannot load {path}: {first_line(err)}") from None


def load_resized(path: str | Path, cfg: AugmentConfig) -> np.ndarray:
    """An image as the torch loaders ship it for prediction (uint8 ``size x size x 3``): a large
    JPEG decoded reduced, ``ben_graham`` when the recipe preprocesses, an ``INTER_AREA`` resize
    (:class:`comp.data.dataset.ImageDataset` with :func:`comp.data.augment.build_transform`)."""
    image = decode_preprocessed(path, decode_reduction(path, cfg.size, cfg.preprocess), cfg.preprocess)
    if image.shape[:2] != (cfg.size, cfg.size):
        image = cv2.resize(image, (cfg.size, cfg.size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def normalise(batch: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """A uint8 ``(N, H, W, 3)`` batch as float32 ``(N, 3, H, W)``, ``(x - 255 mean) / (255 std)`` in
    float32 as :meth:`comp.data.device_augment.DeviceAugment.normalize` computes it."""
    x = batch.transpose(0, 3, 1, 2).astype(np.float32)
    mean = (np.asarray(cfg.mean, dtype=np.float32) * np.float32(255.0)).reshape(1, -1, 1, 1)
    inv = (np.float32(1.0) / (np.asarray(cfg.std, dtype=np.float32) * np.float32(255.0))).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) * inv)


def predict_runs_onnx(run_dirs: Sequence[Path], model_files: Sequence[Sequence[Path]], *, tta: bool,
                      table: ImageTable | None = None) -> list[Prediction]:
    """Each run's test-set probabilities from its ONNX models (``model_files``, per run) under ONNX
    Runtime: every image decoded once per input spec (size, preprocessing), every model on every
    TTA view, then averaged as :func:`comp.predict.predict.predict_runs` averages."""
    runs = []
    for run_dir, files in zip(run_dirs, model_files):
        run = RunDir(run_dir)
        recipe = run.recipe()
        views = validate_views(recipe.predict.tta) if tta else ["identity"]
        runs.append((run_dir, recipe, ClassMap(tuple(run.classes())), views, [session(f) for f in files]))
    table = table if table is not None else load_test_table(runs[0][1])
    batch_size = predict_batch_size(runs[0][1])
    specs = list(dict.fromkeys((r[1].augment.size, r[1].augment.preprocess) for r in runs))
    cfg_of = {spec: next(r[1].augment for r in runs if (r[1].augment.size, r[1].augment.preprocess) == spec)
              for spec in specs}
    outputs: list[list[list[np.ndarray]]] = [[[] for _ in r[4]] for r in runs]
    passes = sum(len(r[4]) * len(r[3]) for r in runs)
    bar = progress_bar(total=len(table), desc=f"predict (ONNX Runtime) {len(runs)} run(s), "
                                              f"{sum(len(r[4]) for r in runs)} model(s), {passes} forward pass(es) per image")
    workers = max(1, resolve_workers(runs[0][1].train.workers) or 1)
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(table), batch_size):
            paths = [str(p) for p in table.paths[start:start + batch_size]]
            inputs = {}
            for spec in specs:
                cfg = cfg_of[spec]
                images = list(pool.map(lambda p, c=cfg: load_resized(p, c), paths))
                inputs[spec] = np.stack(images)
            normalised: dict[tuple, np.ndarray] = {}
            for r, (_, recipe, _, views, sessions) in enumerate(runs):
                a = recipe.augment
                key = (a.size, a.preprocess, tuple(a.mean), tuple(a.std))
                if key not in normalised:
                    normalised[key] = normalise(inputs[(a.size, a.preprocess)], a)
                x = normalised[key]
                viewed = [numpy_view_fn(v)(x) for v in views]
                for m, sess in enumerate(sessions):
                    outputs[r][m].append(np.stack([sess.run([OUTPUT], {INPUT: v})[0] for v in viewed]))
            bar.update(len(paths))
    bar.close()
    predictions = []
    for (run_dir, recipe, classes, views, sessions), per_model in zip(runs, outputs):
        head = activation_of(RunDir(run_dir).task(), recipe.model.head)
        per_checkpoint = [combine_views(outputs_to_probs(np.concatenate(o, axis=1).astype(np.float32), head,
                                                         len(classes)), recipe.predict.tta_mean) for o in per_model]
        logger.info(f"{Path(run_dir).name}: {len(per_checkpoint)} ONNX model(s) × {len(views)} view(s) "
                    f"({', '.join(views)}) on {len(table)} test images (ONNX Runtime)")
        predictions.append(Prediction(table.ids, combine_views(np.stack(per_checkpoint), recipe.predict.tta_mean),
                                      classes))
    return predictions


def thread_count() -> int:
    """ONNX Runtime's intra-op threads: its default (one per core) unless OMP_NUM_THREADS says."""
    return int(os.environ.get("OMP_NUM_THREADS", "0") or 0)


def choose_files(runs: Sequence[Any], engine: str = "auto", device: str | None = None) -> list[list[Path]]:
    """Which files a bundle's runs (:class:`comp.predict.bundle.BundleRun`) predict with: their ONNX
    models under ONNX Runtime (``engine`` "onnx", or "auto" when every run has them, onnxruntime is
    installed and no CUDA ``--device`` is asked for), else their safetensors weights under torch."""
    have = all(r.onnx_files for r in runs)
    if engine == "onnx":
        if not have:
            raise CompError("--engine onnx: this bundle has no ONNX models (export it with comp export --onnx)")
        if not onnxruntime_installed():
            raise CompError("--engine onnx needs onnxruntime (pip install onnxruntime)")
        if device not in (None, "auto", "cpu"):
            raise CompError(f"--engine onnx runs on the CPU; --device {device} is for torch")
    use = engine == "onnx" or (engine == "auto" and have and onnxruntime_installed()
                               and device in (None, "auto", "cpu") and not (device != "cpu" and _cuda()))
    if use:
        logger.info("predicting with the bundle's ONNX models (ONNX Runtime, CPU)")
    elif importlib.util.find_spec("torch") is None:
        why = ("--engine torch" if engine == "torch" else "this bundle has no ONNX models" if not have
               else "onnxruntime is not installed" if not onnxruntime_installed() else f"--device {device}")
        raise CompError(f"torch is not installed, and {why}: install torch, or export the bundle with --onnx and "
                        "install onnxruntime")
    return [list(r.onnx_files) if use else list(r.weight_files) for r in runs]


def _cuda() -> bool:
    """Whether torch is installed and sees a CUDA device (torch on a GPU beats ONNX Runtime on the CPU)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()
