"""The search space of ``comp tune``: a TOML file that mirrors the recipe's tables, each searched
key a table giving its distribution::

    [optim.lr]
    low = 0.0003
    high = 0.01
    log = true          # or step = ...
    [model.name]
    choices = ["resnet18", "resnet34"]

Every key is checked against the recipe before anything trains: each candidate (both ends of a
range, every choice) is applied to the recipe the way ``--set`` applies a value and the recipe
loader validates the result, so an unknown key or a value the key refuses is one message naming
it. The keys that decide the folds (``seed``, ``[data]``, ``[cv]``) and ``name`` are not searched:
trials are compared on folds fixed for the whole study.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comp.errors import CompError
from comp.recipe import Recipe, apply_override, recipe_from_dict, recipe_to_dict
from comp.recipe.load import read_toml

Value = bool | int | float | str
_FIXED = ("name", "seed", "data", "cv")  # the run's name, and what decides the folds
_DIST_KEYS = {"low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class Param:
    """One searched recipe key (``"optim.lr"``) and its distribution."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Value, ...] = ()
    integer: bool = False  # the recipe field is an integer: suggest_int

    def suggest(self, trial: Any) -> Value:
        """The trial's value (an Optuna trial: the distribution named by the key)."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def override(self, value: Value) -> str:
        """``value`` as a ``--set`` override."""
        return f"{self.key}={_toml(value)}"

    def describe(self) -> dict[str, Any]:
        """The distribution as a plain table (what the study records, to compare on joining)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, False, ())}


@dataclass(frozen=True)
class Space:
    """The searched keys, in the file's order."""

    params: tuple[Param, ...]
    source: str

    def overrides(self, values: dict[str, Value]) -> list[str]:
        return [p.override(values[p.key]) for p in self.params]

    def fingerprint(self) -> str:
        """The space as canonical JSON: two processes join one study only with the same space."""
        return json.dumps([p.describe() for p in self.params], sort_keys=True)


def load_space(path: str | Path, recipe: Recipe) -> Space:
    """Read and check a space file against ``recipe`` (the study's recipe, its --set applied)."""
    path = Path(path)
    raw = read_toml(path, "space")
    where = f"space {path}"
    params = [_param(key, table, recipe, where) for key, table in _distributions(raw, "", where)]
    if not params:
        raise CompError(f"{where} searches nothing: give each searched key a table, e.g. [optim.lr] with "
                        f"low = 0.0003, high = 0.01, log = true, or [model.name] with choices = [...]")
    return Space(tuple(params), str(path))


def _distributions(table: dict, prefix: str, where: str) -> list[tuple[str, dict]]:
    """(dotted key, distribution table) of every distribution in the file, in order."""
    found = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if not isinstance(value, dict):
            raise CompError(f"{where}: {dotted} = {value!r} is not a distribution: give [{dotted}] a table "
                            f"with low/high (and log or step) or choices")
        if value.keys() & _DIST_KEYS:
            found.append((dotted, value))
        elif not value:
            raise CompError(f"{where}: [{dotted}] is empty: give it low/high (and log or step) or choices")
        else:
            found += _distributions(value, f"{dotted}.", where)
    return found


def _param(key: str, table: dict, recipe: Recipe, where: str) -> Param:
    name = f"[{key}]"
    if key.split(".")[0] in _FIXED:
        raise CompError(f"{where}: {name} cannot be searched: the study trains every trial on the same folds "
                        f"(seed, [data] and [cv] decide them) under its own name; set it with --set instead")
    extra = sorted(table.keys() - _DIST_KEYS)
    if extra:
        raise CompError(f"{where}: {name} has unknown field {extra[0]!r} (a distribution has low, high, log, "
                        f"step or choices)")
    hint = _hint(key)
    if "choices" in table:
        if table.keys() & {"low", "high", "log", "step"}:
            raise CompError(f"{where}: {name} gives choices and a range: give one")
        choices = table["choices"]
        if not isinstance(choices, list) or not choices:
            raise CompError(f"{where}: {name} choices must be a non-empty array of values")
        for value in choices:
            if not isinstance(value, (bool, int, float, str)):
                raise CompError(f"{where}: {name} choice {value!r} is not a plain value (a number, text or "
                                f"boolean)")
        if len(set(map(_toml, choices))) != len(choices):
            raise CompError(f"{where}: {name} lists a choice twice: {choices}")
        for value in choices:
            _check_value(key, value, recipe, where)
        return Param(key, choices=tuple(choices))
    if "low" not in table or "high" not in table:
        raise CompError(f"{where}: {name} needs both low and high (or choices)")
    low, high, log, step = table["low"], table["high"], table.get("log", False), table.get("step")
    for field, value in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CompError(f"{where}: {name} {field} must be a number, got {value!r}")
    if not isinstance(log, bool):
        raise CompError(f"{where}: {name} log must be true or false, got {log!r}")
    if low > high:
        raise CompError(f"{where}: {name} low ({low}) is above high ({high})")
    if log and step is not None:
        raise CompError(f"{where}: {name} takes log or step, not both")
    if log and low <= 0:
        raise CompError(f"{where}: {name} log = true needs low > 0, got {low}")
    if step is not None and step <= 0:
        raise CompError(f"{where}: {name} step must be positive, got {step}")
    integer = _is_int_field(hint)
    if integer and not all(isinstance(v, int) for v in (low, high, step or 1)):
        raise CompError(f"{where}: {name} is a whole number in the recipe: low, high and step must be integers")
    if not integer and not _is_float_field(hint) and hint is not None:
        raise CompError(f"{where}: {name} is not a number in the recipe: search it with choices = [...]")
    for value in (low, high):
        _check_value(key, value if integer else float(value), recipe, where)
    return Param(key, low=low, high=high, log=log, step=step, integer=integer)


def _check_value(key: str, value: Value, recipe: Recipe, where: str) -> None:
    """The recipe with ``key`` set to ``value`` as ``--set`` sets it, validated by the recipe loader."""
    raw = recipe_to_dict(recipe)
    try:
        apply_override(raw, f"{key}={_toml(value)}")
        recipe_from_dict(raw, where=f"{where}: {key} = {_toml(value)}")
    except CompError as err:
        raise CompError(str(err)) from None


def _hint(key: str) -> Any:
    """The type annotation of the recipe field at ``key``; None when there is none (the loader then
    names the unknown key)."""
    cls: Any = Recipe
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            return None
        cls = typing.get_type_hints(cls).get(part)
    return cls


def _options(hint: Any) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _is_int_field(hint: Any) -> bool:
    options = _options(hint)
    return int in options and float not in options


def _is_float_field(hint: Any) -> bool:
    return float in _options(hint)


def _toml(value: Value) -> str:
    """A plain value as TOML text (what ``--set`` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)
