"""``[augment] pipeline``, ``preset`` and ``auto_augment`` checked at recipe load.

A pipeline is a list of albumentations transforms in the form ``A.to_dict`` writes them (each a
table: ``__class_fullname__`` and the transform's arguments; compositions such as ``OneOf`` hold
theirs under ``transforms``), or the path of a YAML/JSON file that ``A.to_dict``/``A.save``
wrote. Loading inlines the file, drops the ``null`` arguments whose default is ``None`` (TOML has
no null) and builds every transform once, so a bad pipeline is one :class:`RecipeError` naming the
transform and the albumentations version, before any work. The pipeline itself is built for the
loader workers by :mod:`comp.data.augment`.

albumentations is imported only when a recipe holds a pipeline: most recipes never pay for it.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from comp.recipe.schema import RecipeError

CLASS_KEY = "__class_fullname__"
# Compositions hold child transforms under "transforms".
_COMPOSITIONS = ("OneOf", "SomeOf", "Sequential", "OneOrOther", "SelectiveChannelTransform",
                 "RandomOrder", "Compose")
# What comp does itself, after the pipeline: the workers ship uint8 at [augment] size.
_REFUSED = {"Normalize": "comp normalises on the device by [augment] mean/std",
            "ToTensorV2": "comp makes tensors itself", "ToFloat": "the workers ship uint8 images",
            "FromFloat": "the workers ship uint8 images"}
# The pipeline transforms the device path runs, as the [augment] key it runs them with.
DEVICE_KEYS = {"HorizontalFlip": "hflip", "VerticalFlip": "vflip", "RandomRotate90": "rot90"}
MAX_PIPELINE_FILE = 1 << 20  # bytes: a pipeline file is a few kilobytes
# timm's own strings, and TrivialAugment (torchvision's TrivialAugmentWide: timm spells none).
AUTO_AUGMENT = re.compile(r"(rand|augmix|original|originalr|v0|v0r|3a)(-[A-Za-z0-9.]+)*|trivialaugment")


def _albumentations():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI check at import
    import albumentations as A

    return A


def albumentations_version() -> str:
    return _albumentations().__version__


# --------------------------------------------------------------------------- presets


def presets(size: int) -> dict[str, list[dict[str, Any]]]:
    """The documented starting points for ``[augment] preset``, at ``size`` x ``size``: each a
    pipeline in ``A.to_dict``'s form (only the arguments that differ from albumentations' defaults
    are written); ``comp recipe --preset NAME`` prints one to paste and edit."""
    crop = {CLASS_KEY: "RandomResizedCrop", "size": [size, size], "p": 1.0}
    return {
        # Colour fundus photographs: any orientation, framing and exposure vary by camera and
        # operator, colour by camera, focus and compression by clinic.
        "fundus": [
            {**crop, "scale": [0.85, 1.0], "ratio": [0.9, 1.1]},
            {CLASS_KEY: "Rotate", "limit": [-180, 180], "border_mode": 0, "p": 0.75},
            {CLASS_KEY: "RandomBrightnessContrast", "brightness_limit": [-0.3, 0.3],
             "contrast_limit": [-0.3, 0.3], "p": 0.75},
            {CLASS_KEY: "HueSaturationValue", "hue_shift_limit": [-5, 5], "sat_shift_limit": [-15, 15],
             "val_shift_limit": [-10, 10], "p": 0.3},
            {CLASS_KEY: "CLAHE", "clip_limit": [1.0, 2.0], "p": 0.2},
            {CLASS_KEY: "GaussianBlur", "sigma_limit": [0.1, 1.5], "p": 0.3},
            {CLASS_KEY: "ImageCompression", "quality_range": [40, 95], "p": 0.3},
        ],
        # Stained slides / cells: no orientation at all; stain colour, focus and sensor noise vary.
        "microscopy": [
            {CLASS_KEY: "VerticalFlip", "p": 0.5},
            {CLASS_KEY: "RandomRotate90", "p": 1.0},
            {CLASS_KEY: "HueSaturationValue", "hue_shift_limit": [-10, 10], "sat_shift_limit": [-25, 25],
             "val_shift_limit": [-15, 15], "p": 0.5},
            {CLASS_KEY: "RandomBrightnessContrast", "p": 0.5},
            {CLASS_KEY: "OneOf", "p": 0.3, "transforms": [
                {CLASS_KEY: "GaussianBlur", "sigma_limit": [0.1, 1.2], "p": 1.0},
                {CLASS_KEY: "GaussNoise", "std_range": [0.02, 0.08], "p": 1.0}]},
            {CLASS_KEY: "ElasticTransform", "alpha": 1.0, "sigma": 10.0, "p": 0.2},
        ],
        # Radiographs: laterality matters (no flips), small pose changes, exposure and processing
        # vary by scanner; burnt-in text and markers are dropped out.
        "xray": [
            {CLASS_KEY: "Affine", "scale": [0.9, 1.1], "translate_percent": [-0.05, 0.05],
             "rotate": [-10, 10], "border_mode": 0, "p": 0.7},
            {CLASS_KEY: "RandomBrightnessContrast", "brightness_limit": [-0.2, 0.2],
             "contrast_limit": [-0.2, 0.2], "p": 0.5},
            {CLASS_KEY: "RandomGamma", "gamma_limit": [80, 120], "p": 0.3},
            {CLASS_KEY: "CLAHE", "clip_limit": [1.0, 3.0], "p": 0.3},
            {CLASS_KEY: "OneOf", "p": 0.3, "transforms": [
                {CLASS_KEY: "GaussianBlur", "sigma_limit": [0.1, 1.0], "p": 1.0},
                {CLASS_KEY: "Sharpen", "p": 1.0}]},
            {CLASS_KEY: "GaussNoise", "std_range": [0.01, 0.05], "p": 0.2},
            {CLASS_KEY: "CoarseDropout", "num_holes_range": [1, 4], "hole_height_range": [0.05, 0.1],
             "hole_width_range": [0.05, 0.1], "p": 0.2},
        ],
    }


# --------------------------------------------------------------------------- files


def read_pipeline_file(text: str, base: Path | None, where: str) -> list[dict[str, Any]]:
    """The transforms of a file ``A.to_dict``/``A.save`` wrote (JSON or YAML; ``{"__version__",
    "transform": Compose}``, a single transform, or a bare list), ``text`` relative to ``base``
    (the recipe's folder). A missing, linked, unreadable, oversized or unparsable file is refused."""
    path = Path(text)
    if base is not None and not path.is_absolute():
        path = base / path
    name = f"[augment] pipeline = {text[:80]!r}" + ("..." if len(text) > 80 else "")
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise RecipeError(f"{where}: {name}: a pipeline file is .json, .yaml or .yml (what A.to_dict/A.save "
                          f"write), or write the transforms in the recipe as [[augment.pipeline]] tables")
    if "\0" in text:
        raise RecipeError(f"{where}: [augment] pipeline holds a NUL character: not a file name")
    try:
        if path.is_symlink():
            raise RecipeError(f"{where}: {name}: {path} is a link; name the file itself")
        if not path.is_file():
            raise RecipeError(f"{where}: {name}: {path} " + ("is not a file" if path.exists() else "not found"))
        if path.stat().st_size > MAX_PIPELINE_FILE:
            raise RecipeError(f"{where}: {name}: {path} is larger than {MAX_PIPELINE_FILE >> 10} KiB: "
                              f"not a pipeline A.save wrote")
        data = path.read_bytes()
    except OSError as err:
        raise RecipeError(f"{where}: {name}: cannot read {path}: {err.strerror}") from None
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RecipeError(f"{where}: {name}: {path} is not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(decoded)
        else:
            import yaml  # albumentations' own dependency; safe_load builds no Python objects

            doc = yaml.safe_load(decoded)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError: both say where
        raise RecipeError(f"{where}: {name}: {path} is not valid {path.suffix[1:].upper()}: "
                          f"{' '.join(str(err).split())[:200]}") from None
    if isinstance(doc, dict) and "transform" in doc:
        doc = doc["transform"]
    if isinstance(doc, dict) and doc.get(CLASS_KEY) == "Compose":
        doc = doc.get("transforms")
    elif isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise RecipeError(f"{where}: {name}: {path} holds no list of transforms (A.to_dict's "
                          f"{{'transform': {{'__class_fullname__': 'Compose', 'transforms': [...]}}}})")
    return doc


# --------------------------------------------------------------------------- checking


def check_pipeline(steps: list[dict[str, Any]], size: int, where: str) -> list[dict[str, Any]]:
    """The pipeline checked and normalised: every transform known to this albumentations, every
    argument one it takes, ``null`` arguments dropped (only where ``None`` is the default), every
    transform built, and each one, applied with certainty to a ``size`` x ``size`` uint8 image,
    leaving a ``size`` x ``size`` uint8 image. Raises one :class:`RecipeError` naming the step."""
    A = _albumentations()
    return [_check_step(A, step, size, where, f"[augment] pipeline[{i}]") for i, step in enumerate(steps)]


def _check_step(A: Any, step: Any, size: int, where: str, name: str) -> dict[str, Any]:
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY

    version = f"albumentations {A.__version__}"
    if not isinstance(step, dict):
        raise RecipeError(f"{where}: {name} must be a table (a transform as A.to_dict writes it), got {step!r}")
    cls_name = step.get(CLASS_KEY)
    if not isinstance(cls_name, str):
        raise RecipeError(f"{where}: {name} needs {CLASS_KEY} = \"<transform class>\" (as A.to_dict writes it)")
    label = f"{name} {cls_name}"
    short = cls_name.rsplit(".", 1)[-1]  # "albumentations.augmentations...Blur" in older files
    cls = SERIALIZABLE_REGISTRY.get(short)
    if cls is None:
        import difflib

        close = difflib.get_close_matches(short, list(SERIALIZABLE_REGISTRY), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise RecipeError(f"{where}: {label}: no such transform in {version}{hint}")
    if short in _REFUSED:
        raise RecipeError(f"{where}: {label}: not in a pipeline: {_REFUSED[short]}")
    params = inspect.signature(cls.__init__).parameters
    takes = {k for k, p in params.items() if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    out: dict[str, Any] = {CLASS_KEY: short}
    for key, value in step.items():
        if key == CLASS_KEY:
            continue
        if key not in takes:
            raise RecipeError(f"{where}: {label}: unknown argument {key!r} in {version} "
                              f"(it takes {', '.join(sorted(takes))})")
        if value is None:
            default = params[key].default
            if default is None:
                continue  # TOML has no null: left out, the default
            raise RecipeError(f"{where}: {label}: {key} = null, which a recipe cannot hold and is not "
                              f"the default ({default!r}); give a value")
        out[key] = value
    if short in _COMPOSITIONS:
        children = out.get("transforms")
        if not isinstance(children, list) or not children:
            raise RecipeError(f"{where}: {label}: a composition needs transforms = [ ... ] (a list of tables)")
        out["transforms"] = [_check_step(A, c, size, where, f"{name}.transforms[{j}]")
                             for j, c in enumerate(children)]
    built = _build_step(A, out, where, label, version)
    if short not in _COMPOSITIONS:
        _dry_run(A, out, built, size, where, label, version)
    return out


def _build_step(A: Any, step: dict[str, Any], where: str, label: str, version: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecations: the step still builds
            return A.from_dict({"transform": copy.deepcopy(step)})
    except Exception as err:  # pydantic's ValidationError, TypeError, ValueError: the message says which
        lines = [ln.strip() for ln in str(err).splitlines()
                 if ln.strip() and not ln.strip().startswith("For further information")]
        raise RecipeError(f"{where}: {label}: {'; '.join(lines)[:300]} ({version})") from None


def _dry_run(A: Any, step: dict[str, Any], built: Any, size: int, where: str, label: str, version: str) -> None:
    """Apply the step for certain (p = 1) to a size x size grey image: it must return one alike."""
    import numpy as np

    sure = A.from_dict({"transform": {**copy.deepcopy(step), "p": 1.0}})
    image = np.full((size, size, 3), 128, dtype=np.uint8)
    try:
        sure.set_random_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sure(image=image)["image"]
    except Exception as err:
        raise RecipeError(f"{where}: {label} fails on a {size}x{size} RGB image: "
                          f"{' '.join(str(err).split())[:200]} ({version})") from None
    shape = getattr(result, "shape", None)
    if shape != image.shape or getattr(result, "dtype", None) != np.uint8:
        raise RecipeError(f"{where}: {label} turns a {size}x{size} uint8 image into "
                          f"{'x'.join(map(str, shape or ()))} {getattr(result, 'dtype', type(result).__name__)}: "
                          f"the pipeline must keep [augment] size ({size}; a crop's size = [{size}, {size}]) "
                          f"and uint8")


def check_auto_augment(text: str, where: str) -> None:
    """``[augment] auto_augment``: a timm string (``rand-m9-mstd0.5``, ``augmix-m5``,
    ``original``, ...) that timm parses, or ``trivialaugment``."""
    if not text:
        return
    if not AUTO_AUGMENT.fullmatch(text):
        raise RecipeError(f"{where}: [augment] auto_augment = {text!r}: a timm auto-augment string "
                          f"(\"rand-m9-mstd0.5\", \"augmix-m5\", \"original\") or \"trivialaugment\"")
    try:
        auto_augment_fn(text)
    except Exception as err:  # timm asserts on an unknown section
        raise RecipeError(f"{where}: [augment] auto_augment = {text!r}: timm cannot read it "
                          f"({err or type(err).__name__})") from None


def auto_augment_fn(text: str, size: int = 224, mean: tuple[float, ...] = (0.485, 0.456, 0.406)) -> Any:
    """The PIL-image transform ``[augment] auto_augment`` names (see :func:`check_auto_augment`), with
    timm's image-size-dependent settings for ``size`` x ``size`` images (translation up to 45% of
    the size, the fill colour the normalisation mean), as ``timm.data.create_transform`` sets them."""
    if text == "trivialaugment":
        from torchvision.transforms import TrivialAugmentWide

        return TrivialAugmentWide()
    from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform

    hparams = {"translate_const": int(size * 0.45), "img_mean": tuple(min(255, round(255 * m)) for m in mean)}
    if text.startswith("rand"):
        return rand_augment_transform(text, hparams)
    if text.startswith("augmix"):
        return augment_and_mix_transform(text, hparams)
    return auto_augment_transform(text, hparams)


def device_refusal(steps: list[dict[str, Any]], auto_augment: str, hflip: float, vflip: float,
                   rot90: float) -> str | None:
    """Why the device path cannot run this pipeline (naming the transform), or None: it runs the
    transforms of :data:`DEVICE_KEYS` with their ``p`` only, each not also set by its own key."""
    if auto_augment:
        return f"[augment] auto_augment = {auto_augment!r} runs on PIL images in the loader workers"
    own = {"hflip": hflip, "vflip": vflip, "rot90": rot90}
    seen: set[str] = set()
    for i, step in enumerate(steps):
        name = step.get(CLASS_KEY)
        key = DEVICE_KEYS.get(name)
        if key is None:
            return f"[augment] pipeline[{i}] {name} has no device implementation"
        extra = set(step) - {CLASS_KEY, "p"}
        if extra:
            return f"[augment] pipeline[{i}] {name} with {', '.join(sorted(extra))} has no device implementation"
        if own[key] > 0 or key in seen:
            return f"[augment] pipeline[{i}] {name} repeats [augment] {key}"
        seen.add(key)
    return None


def device_keys(steps: list[dict[str, Any]]) -> dict[str, float]:
    """The ``[augment]`` keys the device path runs a pipeline of :data:`DEVICE_KEYS` transforms
    with: each transform's ``p`` (its class's default where not given)."""
    if not steps:
        return {}
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY

    def p(step: dict[str, Any]) -> float:
        if "p" in step:
            return float(step["p"])
        return float(inspect.signature(SERIALIZABLE_REGISTRY[step[CLASS_KEY]].__init__).parameters["p"].default)

    _albumentations()
    return {DEVICE_KEYS[s[CLASS_KEY]]: p(s) for s in steps}


__all__ = ["CLASS_KEY", "DEVICE_KEYS", "albumentations_version", "auto_augment_fn", "check_auto_augment",
           "check_pipeline", "device_keys", "device_refusal", "presets", "read_pipeline_file"]
