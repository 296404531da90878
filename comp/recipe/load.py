"""Recipes: TOML files loaded into typed, validated, frozen config objects.

A recipe is read with :mod:`tomllib`, command-line ``--set section.key=value`` overrides are
applied to the raw table, and the result is converted section by section into the dataclasses
of :mod:`comp.recipe.schema`. Every field has a type annotation and a default; the converter
checks each value against its annotation, so an unknown key or a wrong type is one message
naming ``[section] key``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from comp.kinds import KINDS
from comp.recipe.schema import Provenance, Recipe, RecipeError
from comp.recipe.task import check_task_fields

# A run's name is its folder under --runs: one plain path component, never ".", ".." or hidden.
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
# Its files (.<name>.new-<pid>, compare_<a>_vs_<b>_confusion.png) must fit a 255-byte file name.
MAX_NAME = 100
# TOML integers are unbounded in Python; no count in a recipe needs more than 64 bits.
MAX_INT = 2**63 - 1


# --------------------------------------------------------------------------- loading


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file, apply ``section.key=value`` overrides, and validate it."""
    path = Path(path)
    raw = read_toml(path, "recipe")
    if not raw:
        raise RecipeError(f"{path} is empty (no settings at all): a recipe names at least its data, "
                          f"[data] root; `comp recipe --defaults` prints a complete one")
    raw.setdefault("name", path.stem)
    for item in overrides:
        apply_override(raw, item)
    recipe = recipe_from_dict(raw, where=str(path), base=path.parent)
    return dataclasses.replace(recipe, source=Provenance(str(path), tuple(overrides)))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables (a recipe, a search space); missing, unreadable, mis-encoded or not
    TOML is a RecipeError naming ``what`` and the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{what} not found: {path}") from None
    except OSError as err:
        raise RecipeError(f"cannot read {what} {path}: {err.strerror}") from None
    try:
        return tomllib.loads(decode_recipe_text(data, path))
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML: {err}") from None


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def decode_recipe_text(data: bytes, path: str | Path) -> str:
    """A recipe's bytes as text: UTF-8, with or without a byte-order mark; anything else is
    one error naming the file (and UTF-16/32 when its byte-order mark or NUL bytes say so)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        guess = next((name for bom, name in _BOMS if data.startswith(bom)), None)
        if guess is None and data[:64].count(0) >= 8:
            guess = "UTF-16"
        line = data[:err.start].count(b"\n") + 1
        what = f"it looks like {guess}" if guess else f"byte 0x{data[err.start]:02x} on line {line}"
        raise RecipeError(f"{path} is not UTF-8 text ({what}); save it as UTF-8") from None


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe", base: Path | None = None) -> Recipe:
    """Validate a raw TOML table into a :class:`Recipe`; ``base``: the folder a pipeline file's
    relative path starts from (the recipe's)."""
    recipe = _build(Recipe, raw, where, "")
    recipe = _resolve_pipeline(recipe, where, base)
    if not recipe.name:
        raise RecipeError(f"{where}: the recipe needs a name")
    if not RUN_NAME.fullmatch(recipe.name):
        raise RecipeError(f"{where}: name {recipe.name!r} is not a plain folder name: the run folder "
                          f"is --runs/<name>, so use letters, digits, '-', '_' and '.', not starting "
                          f"with '.' (name defaults to the recipe's file name)")
    if len(recipe.name) > MAX_NAME:
        raise RecipeError(f"{where}: name {recipe.name[:20]!r}... is {len(recipe.name)} characters long; "
                          f"a run name has at most {MAX_NAME}")
    _check_values(recipe, where)
    return recipe


def _resolve_pipeline(recipe: Recipe, where: str, base: Path | None) -> Recipe:
    """``[augment] pipeline`` inlined (a file's transforms), from ``preset`` when empty, and checked
    (:mod:`comp.recipe.augment_spec`); ``auto_augment`` checked. The recipe a run keeps holds the
    transforms themselves, so it never depends on the file again."""
    a = recipe.augment
    if not a.pipeline and not a.preset and not a.auto_augment:
        return recipe  # albumentations is not even imported
    from comp.recipe import augment_spec

    steps = a.pipeline
    if isinstance(steps, str):
        steps = augment_spec.read_pipeline_file(steps, base, where) if steps else []
    if a.preset:
        preset = augment_spec.presets(a.size)[a.preset]
        if steps and augment_spec.check_pipeline(steps, a.size, where) != preset:
            raise RecipeError(f"{where}: [augment] preset = {a.preset!r} and a pipeline of your own: give one "
                              f"(`comp recipe --preset {a.preset}` prints the preset's pipeline to edit; "
                              f"then drop preset)")
        steps = preset
    steps = augment_spec.check_pipeline(steps, a.size, where)
    augment_spec.check_auto_augment(a.auto_augment, where)
    if a.on == "device":
        why = augment_spec.device_refusal(steps, a.auto_augment, a.hflip, a.vflip, a.rot90)
        if why:
            raise RecipeError(f'{where}: [augment] on = "device" cannot run this: {why}; '
                              f'use on = "cpu" or "auto" (auto picks the loader workers for it)')
    return dataclasses.replace(recipe, augment=dataclasses.replace(a, pipeline=steps))


def choices(section: type, key: str) -> tuple[str, ...]:
    """The values a ``Literal`` field of the schema accepts, e.g. ``choices(PredictConfig,
    "checkpoints")``: the one list the command-line options take their choices from."""
    hint = typing.get_type_hints(section)[key]
    if typing.get_origin(hint) is not Literal:
        raise TypeError(f"{section.__name__}.{key} is not a Literal field")
    return typing.get_args(hint)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into its key path and a TOML-parsed value.

    The value is read as a TOML value (numbers, booleans, lists, quoted strings); anything that
    is not valid TOML is taken as a bare string, so ``--set model.name=resnet50`` works unquoted.
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects section.key=value, got {item!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key.strip().split("."), parsed


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``--set`` override to a raw recipe table, in place.

    A bare number or boolean given to a text field is taken as the text it was typed as
    (``--set data.positive=1`` is ``"1"``), as are numbers in a list of texts."""
    keys, value = parse_override(item)
    value = _as_typed(_schema_hint(keys), value, item.partition("=")[2].strip())
    table = raw
    for k in keys[:-1]:
        sub = table.setdefault(k, {})
        if not isinstance(sub, dict):
            raise RecipeError(f"--set {item}: {k} is not a section")
        table = sub
    table[keys[-1]] = value


def _schema_hint(keys: list[str]) -> Any:
    """The type annotation of the recipe field at ``keys`` (e.g. ``["data", "positive"]``), or
    None when there is no such field."""
    cls: Any = Recipe
    for i, key in enumerate(keys):
        if not dataclasses.is_dataclass(cls):
            return None
        hint = typing.get_type_hints(cls).get(key)
        if hint is None or i == len(keys) - 1:
            return hint
        cls = hint
    return None


def _accepts(hint: Any, value: Any) -> bool:
    try:
        _convert(hint, value, "", "")
    except RecipeError:
        return False
    return True


def _as_typed(hint: Any, value: Any, text: str) -> Any:
    """``value`` as parsed, or the text a field of ``hint`` accepts instead: a bare number or
    boolean typed for a text field, numbers in a list of texts."""
    if hint is None or _accepts(hint, value):
        return value
    if isinstance(value, (bool, int, float)) and _accepts(hint, text):
        return text
    if isinstance(value, list):
        texts = [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        if _accepts(hint, texts):
            return texts
    return value


def _suggest(section: str, key: str) -> str:
    """" (did you mean train.epochs?)" for a key that lives in other sections, or a close spelling."""
    import difflib

    sections = {f.name: f.type for f in dataclasses.fields(Recipe) if f.metadata.get("toml", True)}
    hints = typing.get_type_hints(Recipe)
    owners = [f"{name}.{key}" for name in sections
              if dataclasses.is_dataclass(hints[name]) and name != section
              and key in {f.name for f in dataclasses.fields(hints[name])}]
    if owners:
        return f" (did you mean {' or '.join(owners)}?)"
    cls = hints[section] if section else Recipe
    names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("toml", True)]
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _build(cls: type, raw: Any, where: str, section: str) -> Any:
    label = f"[{section}]" if section else "top level"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: {label} must be a table, got {_type_name(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.metadata.get("toml", True)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        raise RecipeError(f"{where}: unknown key {_name(section, unknown[0])}{_suggest(section, unknown[0])} "
                          f"(known in {label}: {known})")
    kwargs = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, where, key)
        else:
            kwargs[key] = _convert(hint, value, where, _name(section, key))
    return cls(**kwargs)


def _convert(hint: Any, value: Any, where: str, name: str) -> Any:
    """Check ``value`` against a type annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if hint is Any:  # a pipeline step's arguments: albumentations checks them (comp.recipe.augment_spec)
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _convert(option, value, where, name)
            except RecipeError:
                continue
        raise _type_error(where, name, hint, value)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise RecipeError(f"{where}: {name} must be one of {options}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(where, name, hint, value)
        (item_hint,) = typing.get_args(hint)
        return [_convert(item_hint, v, where, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:  # an inline table by name, e.g. class_weights = { ALL = 1.2, hem = 1.0 }
        if not isinstance(value, dict):
            raise _type_error(where, name, hint, value)
        _, item_hint = typing.get_args(hint)
        return {str(k): _convert(item_hint, v, where, f"{name}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise RecipeError(f"{where}: {name} = {value} is out of range (at most {MAX_INT})")
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise _type_error(where, name, hint, value)


def _check_values(recipe: Recipe, where: str) -> None:
    """Range checks that types alone cannot express."""

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise RecipeError(f"{where}: {name} {what}")

    a, t, cv, m = recipe.augment, recipe.train, recipe.cv, recipe.model
    need(a.size > 0, "[augment] size", "must be positive")
    for key in ("hflip", "vflip", "rot90", "rotate_p", "brightness_contrast", "erasing", "mix_p"):
        need(0.0 <= getattr(a, key) <= 1.0, f"[augment] {key}", "is a probability in [0, 1]")
    need(0.0 <= a.scale < 1.0, "[augment] scale", "must be in [0, 1)")
    need(0.0 <= a.shift <= 0.5, "[augment] shift", "must be in [0, 0.5]")
    need(recipe.loss.sord_alpha > 0, "[loss] sord_alpha", "must be positive")
    need(0.0 <= recipe.data.extra_min_prob <= 1.0, "[data] extra_min_prob", "is a probability in [0, 1]")
    for key in ("mixup", "cutmix"):
        need(getattr(a, key) >= 0, f"[augment] {key}", "is the Beta distribution's alpha: >= 0 (0 = off)")
    need(len(a.mean) == 3 and len(a.std) == 3, "[augment] mean/std", "need 3 values each")
    need(all(s > 0 for s in a.std), "[augment] std", "must be positive")
    need(t.epochs > 0, "[train] epochs", "must be positive")
    need(t.batch_size == "auto" or (isinstance(t.batch_size, int) and t.batch_size > 0),
         "[train] batch_size", 'must be a positive integer or "auto"')
    need(t.accum_steps >= 1, "[train] accum_steps", "must be at least 1")
    need(t.effective_batch_size >= 0, "[train] effective_batch_size", "must not be negative")
    need(t.swa_epochs <= t.epochs, "[train] swa_epochs", "cannot exceed [train] epochs")
    need(t.keep_top_k >= 1, "[train] keep_top_k", "must be at least 1")
    need(recipe.predict.checkpoints != "swa" or t.swa_epochs > 0, "[predict] checkpoints",
         '= "swa" needs [train] swa_epochs > 0')
    need(recipe.predict.checkpoints != "top_k" or t.keep_top_k > 1, "[predict] checkpoints",
         '= "top_k" needs [train] keep_top_k > 1')
    need(0.0 <= t.ema_decay < 1.0, "[train] ema_decay", "must be in [0, 1) (0 = off)")
    need(recipe.predict.checkpoints != "ema" or t.ema_decay > 0, "[predict] checkpoints",
         '= "ema" needs [train] ema_decay > 0')
    need(t.patience >= 0, "[train] patience", "must not be negative (0 = off)")
    need(t.patience == 0 or cv.scheme != "full", "[train] patience",
         'needs validation rows to watch: [cv] scheme = "full" has none (set patience = 0)')
    need(t.patience == 0 or recipe.schedule.name != "plateau" or t.patience > recipe.schedule.patience,
         "[train] patience", f"({t.patience}) must exceed [schedule] patience ({recipe.schedule.patience}) "
         f'with name = "plateau", or the fold stops before the LR is ever lowered')
    need(cv.folds >= 2, "[cv] folds", "must be at least 2")
    need(0.0 < cv.valid_fraction < 1.0, "[cv] valid_fraction", "must be in (0, 1)")
    o, s, loss = recipe.optim, recipe.schedule, recipe.loss
    need(math.isfinite(o.lr) and o.lr > 0, "[optim] lr", "must be positive")
    need(o.weight_decay >= 0, "[optim] weight_decay", "must not be negative")
    need(o.momentum >= 0, "[optim] momentum", "must not be negative")
    need(not (o.name == "sgd" and o.nesterov and o.momentum == 0), "[optim] nesterov", "= true needs momentum > 0")
    need(len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas), "[optim] betas", "must be two numbers in [0, 1)")
    need(s.warmup_epochs >= 0, "[schedule] warmup_epochs", "must not be negative")
    need(s.name != "onecycle" or s.warmup_epochs == 0, "[schedule] warmup_epochs",
         'does not apply to name = "onecycle" (its warmup is pct_start); set it to 0')
    need(s.warmup_epochs == 0 or s.warmup_epochs < t.epochs, "[schedule] warmup_epochs",
         f"({s.warmup_epochs:g}) must be shorter than [train] epochs ({t.epochs})")
    need(0 <= s.min_lr <= o.lr, "[schedule] min_lr", f"must be in [0, [optim] lr = {o.lr:g}]")
    need(s.name not in ("step", "multistep", "plateau") or 0 < s.gamma <= 1, "[schedule] gamma",
         f'must be in (0, 1] for name = "{s.name}"')
    need(s.name != "step" or s.step_size >= 1, "[schedule] step_size", "must be at least 1")
    need(s.name != "multistep" or (s.milestones and min(s.milestones) >= 1), "[schedule] milestones",
         'must list at least one epoch (from 1) for name = "multistep"')
    need(s.name != "onecycle" or 0 < s.pct_start < 1, "[schedule] pct_start", "must be in (0, 1)")
    need(s.patience >= 0, "[schedule] patience", "must not be negative")
    need(loss.gamma >= 0, "[loss] gamma", "must not be negative")
    need(0.0 <= loss.label_smoothing < 1.0, "[loss] label_smoothing", "must be in [0, 1)")
    need(loss.name not in ("mse", "smooth_l1") or loss.label_smoothing == 0, "[loss] label_smoothing",
         f'does not apply to name = "{loss.name}" (a regression loss); set it to 0')
    need(0.0 <= m.drop_rate < 1.0, "[model] drop_rate", "must be in [0, 1)")
    need(0.0 <= m.drop_path_rate < 1.0, "[model] drop_path_rate", "must be in [0, 1)")
    need(m.backbone_lr_mult >= 0, "[model] backbone_lr_mult", "must not be negative")
    need(m.source != "hand" or m.pretrained is not True, "[model] pretrained",
         f'= true: the hand-built {m.name} has no hub weights; set pretrained to a weights file '
         '(.pth/.safetensors, torchvision or timm names) or use source = "timm"')
    need(isinstance(m.freeze, int) and m.freeze >= 0 or m.freeze in ("none", "backbone"),
         "[model] freeze", 'must be "none", "backbone" or a number of stages')
    need(isinstance(recipe.loss.class_weights, (list, dict))
         or recipe.loss.class_weights in ("none", "balanced", "sqrt"),
         "[loss] class_weights", 'must be "none", "balanced", "sqrt", a list of weights or a table by class name')
    check_task_fields(recipe, where)  # what can be checked before the classes are known
    need(recipe.cv.bins >= 1, "[cv] bins", "must be at least 1")
    d, kind = recipe.data, KINDS.get(recipe.data.task)
    multilabel = kind is not None and kind.label_sets
    need(not d.label_cols or d.label_col == "label", "[data] label_cols",
         f"and [data] label_col = {d.label_col!r} both name the labels: a multilabel task reads either one "
         f"column of tags (label_col) or one 0/1 column per label (label_cols)")
    need(not d.label_cols or multilabel, "[data] label_cols", 'is for [data] task = "multilabel"')
    need(len(set(d.label_cols)) == len(d.label_cols), "[data] label_cols", "names a column twice")
    need(d.tag_sep != "", "[data] tag_sep", "must not be empty")
    need(recipe.submission.beta > 0, "[submission] beta", "must be positive")
    continuous = kind is not None and kind.continuous
    need(recipe.loss.name != "asl" or multilabel, "[loss] name", '"asl" is for [data] task = "multilabel"')
    need(recipe.loss.name != "bce" or multilabel or continuous, "[loss] name",
         '"bce" is for [data] task = "multilabel" (or "regression": the target scaled to [0, 1])')
    need(recipe.loss.pos_weight == "none" or multilabel, "[loss] pos_weight", 'is for [data] task = "multilabel"')
    need(isinstance(recipe.loss.pos_weight, dict) or recipe.loss.pos_weight in ("none", "balanced", "sqrt"),
         "[loss] pos_weight", 'must be "none", "balanced", "sqrt" or a table by label name')
    need(not isinstance(recipe.loss.pos_weight, dict)
         or all(math.isfinite(w) and w > 0 for w in recipe.loss.pos_weight.values()),
         "[loss] pos_weight", "values must be positive numbers")
    if multilabel:
        need(recipe.loss.name in ("bce", "asl"), "[loss] name",
             f'{recipe.loss.name!r} is not a multilabel loss: "bce" or "asl"')
        need(m.head == "classification", "[model] head", '= "regression" is for ordinal tasks')
        need(recipe.loss.class_weights == "none", "[loss] class_weights",
             "is for classes; a multilabel task weights labels with [loss] pos_weight")
        need(recipe.train.sampler == "none", "[train] sampler", "balanced draws classes; a multilabel task has none")
        need(recipe.predict.tta_mean == "arithmetic", "[predict] tta_mean",
             '= "geometric" renormalises over classes; a multilabel task\'s labels are separate probabilities')
        return
    if kind is not None and kind.continuous:  # values, not classes: one output, a regression loss
        need(m.head == "classification", "[model] head",
             '= "regression" is the grade score of ordinal tasks; a regression task has one output already')
        need(recipe.loss.name in ("mse", "smooth_l1", "huber", "bce"), "[loss] name",
             f'{recipe.loss.name!r} is a classification loss; a regression task trains with "mse", "smooth_l1", '
             f'"huber" or "bce" (on the target scaled to [0, 1] by its training range)')
        need(recipe.loss.label_smoothing == 0, "[loss] label_smoothing", "is for classes; a regression task has none")
        need(recipe.loss.class_weights == "none", "[loss] class_weights", "is for classes; a regression task has none")
        need(recipe.train.sampler == "none", "[train] sampler", "balanced draws classes; a regression task has none")
        need(not recipe.data.extra_csv, "[data] extra_csv", "is not read for a regression task yet")
        return
    need(recipe.loss.name != "huber", "[loss] name", '"huber" is for [data] task = "regression"')
    need(m.head == "regression" or recipe.loss.name in ("ce", "focal", "sord"),
         "[loss] name", f"{recipe.loss.name!r} needs [model] head = \"regression\"")
    need(m.head == "classification" or recipe.loss.name in ("mse", "smooth_l1"),
         "[loss] name", 'must be "mse" or "smooth_l1" with a regression head')


def _name(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "array", dict: "table"}.get(type(value), type(value).__name__)


def _hint_name(hint: Any) -> str:
    if hint is Any:
        return "any value"
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_hint_name(h) for h in typing.get_args(hint))
    if origin is list:
        return f"array of {_hint_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return f"table of {_hint_name(typing.get_args(hint)[1])} by name"
    if origin is Literal:
        return " or ".join(repr(c) for c in typing.get_args(hint))
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))


def _type_error(where: str, name: str, hint: Any, value: Any) -> RecipeError:
    quote = ""
    if isinstance(value, (bool, int, float)) and _accepts(hint, _toml_value(value)):
        # The quoted form that works, in the recipe and on the command line.
        section, _, key = name.partition("] ")
        text = _toml_value(_toml_value(value))
        dotted = f"{section.lstrip('[')}.{key}" if key else name
        quote = f"; quote it: {key or name} = {text} (--set '{dotted}={text}')"
    return RecipeError(f"{where}: {name} must be {_hint_name(hint)}, got {_type_name(value)} {value!r}{quote}")


# --------------------------------------------------------------------------- saving


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a plain table (round-trips through :func:`recipe_from_dict`)."""
    table = dataclasses.asdict(recipe)
    for f in dataclasses.fields(recipe):
        if not f.metadata.get("toml", True):
            del table[f.name]  # provenance: where the recipe came from, not part of it
    return table


def recipe_to_toml(recipe: Recipe) -> str:
    """Serialise a recipe to TOML text (top-level scalars first, then one table a section)."""
    table = recipe_to_dict(recipe)
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in value.items() if not _tables(v)]
            for k, v in value.items():  # a list of tables ([augment] pipeline): one [[key.k]] each
                if _tables(v):
                    for item in v:
                        lines += ["", f"[[{key}.{k}]]"] + [f"{_toml_key(ik)} = {_toml_value(iv)}"
                                                           for ik, iv in item.items()]
    return "\n".join(lines) + "\n"


def _tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
