"""Class activation maps: where a model looked for a class, drawn over the image (the ``grad-cam``
package, ``pytorch_grad_cam``).

Four methods: GradCAM, GradCAM++, EigenCAM and LayerCAM, all on one target layer chosen per backbone
family (:func:`target_layer`): the last block of a ResNet (comp's hand-built ones and timm's), the last
stage of a ConvNeXt-like model (``stages``), the head convolution of an EfficientNet-like one
(``conv_head``), the last block's first norm of a ViT (its tokens folded back into a map), else the
model's last 2-d convolution. A ResNet or ConvNeXt whose last stage sees too small a map at the
recipe's size (1 x 1 for a 32-px image) is read at the last stage that still sees 4 x 4.

``comp cv-report`` draws, per class, the most confident right and the worst wrong out-of-fold image,
each raw beside its overlay (:func:`write_cam_gallery`), every row through the weights of the fold that
predicted it out of fold (the run's ``[predict] checkpoints``, as in oof.csv). ``comp cam`` draws any
images with every fold's weights (:func:`cam_images`), the maps averaged over the folds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from comp.data.augment import build_transform
from comp.data.images import ImageReadError, ben_graham, read_image
from comp.data.mosaic import write_mosaic
from comp.data.prepare import BatchPrep
from comp.data.table import ClassMap, load_train_table
from comp.errors import CompError
from comp.kinds import activation_of, kind_of
from comp.model import build_model
from comp.predict.predict import model_state
from comp.recipe import Recipe
from comp.run.checkpoint import load_model_state
from comp.run.folder import RunDir

logger = logging.getLogger(__name__)

METHODS = ("gradcam", "gradcam++", "eigencam", "layercam")
OVERLAY_TILE = 112


def cam_class(method: str):
    """The ``pytorch_grad_cam`` class of a method name of :data:`METHODS`."""
    try:
        from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM
    except ImportError:
        raise CompError("class activation maps need the grad-cam package (pip install 'comp[cam]')") from None
    table = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM, "layercam": LayerCAM}
    if method not in table:
        raise CompError(f"--method {method!r}: choose {', '.join(METHODS)}")
    return table[method]


@dataclass(frozen=True)
class Target:
    """The layer a CAM is taken at, and how its output becomes an ``N x C x H x W`` map."""

    layer: nn.Module
    name: str
    reshape: object | None = None  # a token sequence -> a map (ViT); None for a conv feature map


MIN_SIDE = 4  # a map coarser than this says little (a 1 x 1 map is one number: no "where" at all)


def target_layer(model: nn.Module, size: int | None = None) -> Target:
    """The layer whose activations the CAM weighs, by backbone family (see the module). With the
    input ``size``, a staged backbone (ResNet, ConvNeXt) steps back from its last stage to the last
    one whose map is at least :data:`MIN_SIDE` pixels a side: a ResNet's last block sees 1 x 1 of a
    32-px digit, its second stage 4 x 4."""
    stages = _stage_ends(model)
    if stages:
        if size is not None and len(stages) > 1:
            sides = _map_sides(model, [layer for _, layer in stages], size)
            fine = [i for i, side in enumerate(sides) if side >= MIN_SIDE]
            pick = fine[-1] if fine else max(range(len(stages)), key=lambda i: sides[i])
            return Target(stages[pick][1], stages[pick][0])
        return Target(stages[-1][1], stages[-1][0])
    if isinstance(getattr(model, "conv_head", None), nn.Conv2d):
        return Target(model.conv_head, "conv_head")
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) and hasattr(blocks[-1], "norm1"):
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        return Target(blocks[-1].norm1, f"blocks.{len(blocks) - 1}.norm1", _tokens_to_map(prefix))
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CompError(f"{type(model).__name__} has no convolution or known block to take a CAM at")
    return Target(convs[-1][1], convs[-1][0])


def _stage_ends(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the last block of each stage, first to last: a ResNet's layer1..layer4,
    a ConvNeXt-like model's stages; [] for other families."""
    layers = [(f"layer{k}", getattr(model, f"layer{k}", None)) for k in range(1, 5)]
    if all(isinstance(layer, nn.Sequential) and len(layer) for _, layer in layers):
        return [(f"{name}.{len(layer) - 1}", layer[-1]) for name, layer in layers]
    stages = getattr(model, "stages", None)
    if isinstance(stages, (nn.Sequential, nn.ModuleList)) and len(stages):
        return [(f"stages.{i}", stage) for i, stage in enumerate(stages)]
    return []


def _map_sides(model: nn.Module, layers: list[nn.Module], size: int) -> list[int]:
    """The shorter side of each layer's output map for one ``size`` x ``size`` input."""
    sides = [0] * len(layers)

    def keep(i: int):
        def hook(_module, _args, out):
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                sides[i] = int(min(out.shape[-2:]))
        return hook

    hooks = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return sides


def _tokens_to_map(prefix: int):
    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim == 4:  # (N, H, W, C): a model that keeps its tokens on a grid
            return tokens.permute(0, 3, 1, 2)
        grid = tokens[:, prefix:, :]
        side = int(math.isqrt(grid.shape[1]))
        if side * side != grid.shape[1]:
            raise CompError(f"the model's {grid.shape[1]} patch tokens do not form a square grid")
        return grid.reshape(grid.shape[0], side, side, grid.shape[2]).permute(0, 3, 1, 2)
    return reshape


def compute_cams(models: Sequence[nn.Module], images: torch.Tensor, classes: Sequence[int],
                 method: str = "gradcam") -> np.ndarray:
    """``(N, H, W)`` maps in [0, 1] of ``images`` (normalised model input, N x 3 x H x W) for the
    class of each row, averaged over ``models`` (each on its own target layer)."""
    maker = cam_class(method)  # first: a missing package is one message
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    maps = []
    for model in models:
        model.eval()
        target = target_layer(model, int(min(images.shape[-2:])))
        with maker(model=model, target_layers=[target.layer], reshape_transform=target.reshape) as cam:
            with torch.enable_grad():
                maps.append(np.asarray(cam(input_tensor=images, targets=targets), dtype=np.float32))
    out = np.mean(maps, axis=0)
    top = out.reshape(len(out), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(top > 0, out / np.where(top > 0, top, 1), out)


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The map (resized to the image) as a heat map over the RGB uint8 image."""
    import cv2
    from pytorch_grad_cam.utils.image import show_cam_on_image

    h, w = image.shape[:2]
    mask = cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(image.astype(np.float32) / 255.0, np.clip(mask, 0, 1), use_rgb=True)


# --------------------------------------------------------------------------- a run's models and inputs


def fold_models(run: RunDir, recipe: Recipe, which: str, folds: Sequence[int] | None = None,
                device: torch.device | str = "cpu") -> dict[int, list[nn.Module]]:
    """fold → the models of its ``which`` checkpoints (best, last, swa, ema, top_k), on ``device``."""
    n = len(run.classes())
    cfg = dataclasses.replace(recipe.model, pretrained=False)
    out = {}
    for fold in run.completed_folds() if folds is None else folds:
        models = []
        for path in run.fold(fold).checkpoints(which):
            if not path.is_file():
                raise CompError(f"checkpoint not found: {path} (train with `comp fit`)")
            model = build_model(cfg, n)
            load_model_state(model, model_state(path), path, classes=n)
            models.append(model.to(device).eval())
        out[fold] = models
    if not out:
        raise CompError(f"{run.path}: no finished fold to take a CAM with")
    return out


def model_input(recipe: Recipe, images: Sequence[np.ndarray], device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The images (RGB uint8, as read) as the model takes them at prediction (preprocessed, resized,
    normalised), and each as resized, for the overlay."""
    transform = build_transform(recipe.augment, train=False)
    resized = []
    for image in images:
        if recipe.augment.preprocess == "ben_graham":
            image = ben_graham(image)
        resized.append(np.ascontiguousarray(transform(image=image)["image"]))
    batch = torch.from_numpy(np.stack(resized))
    return BatchPrep(recipe.augment, device=device)(batch), resized


def read_images(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Each image as RGB uint8; an unreadable or missing one is one CompError naming it."""
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise CompError(f"image not found: {p}")
        try:
            out.append(read_image(p))
        except ImageReadError as err:
            raise CompError(f"cannot read image {p}: {err}") from None
    return out


# --------------------------------------------------------------------------- comp cam


def cam_images(run_dir: Path, paths: Sequence[Path], out: Path, *, class_name: str | None = None,
               method: str = "gradcam", checkpoints: str | None = None, fold: int | None = None) -> list[Path]:
    """``comp cam``: for each image, ``<out>/<stem>_<method>.jpg``, the image beside its CAM for
    ``class_name`` (default: the class the run predicts), with every fold's weights (or ``fold``'s)."""
    from comp.model.inference import outputs_to_probs

    run = RunDir(run_dir)
    recipe = run.recipe()
    classes = ClassMap(tuple(run.classes()))
    cam_class(method)  # an unknown method stops here
    wanted = None
    if class_name is not None:
        if class_name not in classes.labels:
            raise CompError(f"--class {class_name!r} is not a class of {run.name} "
                            f"(its classes: {', '.join(classes.labels)})")
        wanted = classes.labels.index(class_name)
    if fold is not None and fold not in run.completed_folds():
        raise CompError(f"--fold {fold}: {run.name}'s finished folds are {run.completed_folds()}")
    images = read_images(paths)
    which = checkpoints or recipe.predict.checkpoints
    models = [m for ms in fold_models(run, recipe, which, None if fold is None else [fold]).values() for m in ms]
    x, resized = model_input(recipe, images)
    with torch.inference_mode():
        outputs = np.mean([m(x).float().numpy() for m in models], axis=0)
    probs = outputs_to_probs(outputs, activation_of(run.task(), recipe.model.head), len(classes))
    chosen = [wanted if wanted is not None else int(p.argmax()) for p in probs]
    cams = compute_cams(models, x, [0 if recipe.model.head == "regression" else c for c in chosen], method)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    names = _unique_names([Path(p) for p in paths], method)
    for path, image, small, cam, c, p, name in zip(paths, images, resized, cams, chosen, probs, names):
        caption = f"{Path(path).name}\npred {p.max():.2f} {classes.labels[int(p.argmax())]}"
        target = out / name
        write_mosaic(target, [small, overlay(small, cam)],
                     [caption, f"{method}\nof {classes.labels[c]}\nP {p[c]:.2f}"],
                     columns=2, name_first=True, tile=OVERLAY_TILE)
        written.append(target)
    return written


def _unique_names(paths: Sequence[Path], method: str) -> list[str]:
    """``<stem>_<method>.jpg`` per image (a stem cut to 100 characters, made safe; repeats numbered)."""
    tag = method.replace("+", "p")
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", p.stem)[:100] or "image"
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        out.append(f"{stem}{'' if k == 0 else f'-{k}'}_{tag}.jpg")
    return out


# --------------------------------------------------------------------------- cv-report's gallery


def gallery_rows(y_true: np.ndarray, probs: np.ndarray) -> list[tuple[int, int | None, int | None]]:
    """Per class: (class, the right row with the highest P(class) or None, the wrong row of that
    true class with the lowest P(class) or None)."""
    pred = probs.argmax(axis=1)
    out = []
    for c in range(probs.shape[1]):
        right = np.flatnonzero((y_true == c) & (pred == c))
        wrong = np.flatnonzero((y_true == c) & (pred != c))
        best = int(right[np.argmax(probs[right, c])]) if len(right) else None
        worst = int(wrong[np.argmin(probs[wrong, c])]) if len(wrong) else None
        out.append((c, best, worst))
    return out


def label_gallery_rows(y_true: np.ndarray, probs: np.ndarray) -> list[tuple[int, int | None, int | None]]:
    """A multilabel run's picks, per label: (label, the row that has it with the highest P(label)
    at or above 0.5 or None, the row that has it with the lowest P(label) below 0.5 (a miss) or None)."""
    out = []
    for c in range(probs.shape[1]):
        has = y_true[:, c] == 1
        right = np.flatnonzero(has & (probs[:, c] >= 0.5))
        wrong = np.flatnonzero(has & (probs[:, c] < 0.5))
        best = int(right[np.argmax(probs[right, c])]) if len(right) else None
        worst = int(wrong[np.argmin(probs[wrong, c])]) if len(wrong) else None
        out.append((c, best, worst))
    return out


def write_cam_gallery(run: RunDir, recipe: Recipe, classes: ClassMap, oof, y_true: np.ndarray,
                      probs: np.ndarray, path: Path, *, which: str, names: list[str] | None = None,
                      method: str = "gradcam") -> Path | None:
    """``path`` (cv-report's cam.jpg): per class a row of four tiles, the most confident right and
    the worst wrong out-of-fold image, each raw beside its CAM (of the class the model predicted),
    each row through the weights of its own fold. None when there is no row to draw."""
    from comp.evaluate.views import tile_caption

    names = names or list(classes.labels)
    table, _ = load_train_table(recipe)
    where = dict(zip(table.ids.astype(str), table.paths))
    ids = oof["id"].astype(str).to_numpy()
    folds = oof["fold"].to_numpy().astype(int)
    label_sets = kind_of(run.task()).label_sets  # per label: the map of that label, not of the argmax
    picks = label_gallery_rows(y_true, probs) if label_sets else gallery_rows(y_true, probs)
    rows = sorted({r for _, a, b in picks for r in (a, b) if r is not None})
    if not rows:
        return None
    missing = [ids[r] for r in rows if ids[r] not in where or not Path(str(where[ids[r]])).is_file()]
    if missing:
        raise CompError(f"image of OOF row {missing[0]} not found (moved or deleted)")
    models = fold_models(run, recipe, which, sorted({int(folds[r]) for r in rows}))
    cams: dict[tuple[int, int], np.ndarray] = {}
    small: dict[int, np.ndarray] = {}
    regression = recipe.model.head == "regression"

    def target(r: int, c: int) -> int:
        return c if label_sets else 0 if regression else int(probs[r].argmax())

    wanted = sorted({(r, target(r, c)) for c, a, b in picks for r in (a, b) if r is not None})
    for fold, pairs in _by_fold(wanted, folds).items():
        x, resized = model_input(recipe, read_images([where[ids[r]] for r, _ in pairs]))
        for (r, t), cam, img in zip(pairs, compute_cams(models[fold], x, [t for _, t in pairs], method), resized):
            cams[(r, t)], small[r] = cam, img
    tiles, captions, correct = [], [], []
    blank = np.full((OVERLAY_TILE, OVERLAY_TILE, 3), 255, dtype=np.uint8)
    for c, right, wrong in picks:
        for r, ok in ((right, True), (wrong, False)):
            if r is None:
                tiles += [blank, blank]
                captions += [f"no {'right' if ok else 'wrong'}\n{names[c]}", ""]
                correct += [None, None]
                continue
            pred = target(r, c)
            tiles += [small[r], overlay(small[r], cams[(r, pred)])]
            if label_sets:
                shown = " ".join(names[j] for j in np.flatnonzero(y_true[r])) or "-"
                captions += [f"{Path(str(ids[r])).name}\ntrue {shown}\nP({names[c]}) {probs[r, c]:.2f}",
                             f"{method} fold{folds[r]}\nof {names[c]}"]
            else:
                captions += [tile_caption(ids[r], names[c], names[pred], probs[r, c], probs[r, pred]),
                             f"{method} fold{folds[r]}\nof {names[pred]}"]
            correct += [ok, ok]
    write_mosaic(path, tiles, captions, correct=correct, columns=4, name_first=True, tile=OVERLAY_TILE,
                 max_tiles=len(tiles))
    return path


def _by_fold(pairs: Sequence[tuple[int, int]], folds: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """(row, target) pairs grouped by the row's fold."""
    out: dict[int, list[tuple[int, int]]] = {}
    for r, t in pairs:
        out.setdefault(int(folds[r]), []).append((r, t))
    return out
