"""The recipe reference, generated from the schema: every field with its default and meaning.

:func:`defaults_toml` is a complete recipe of the defaults with one comment a field (``comp
recipe --defaults``); :func:`reference_table` is the same as a Markdown table (README's recipe
reference, which a test keeps equal to it). The help text lives beside each field in
:mod:`comp.recipe.schema`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from comp.recipe.load import _toml_value
from comp.recipe.schema import Recipe

COMMENT_COLUMN = 40


def _fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("toml", True)]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _rows() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, help) for every field, top-level fields first."""
    hints = typing.get_type_hints(Recipe)
    top, sections = [], []
    for f in _fields(Recipe):
        if dataclasses.is_dataclass(hints[f.name]):
            sections += [(f.name, g.name, _default(g), g.metadata.get("help", "")) for g in _fields(hints[f.name])]
        else:
            top.append(("", f.name, _default(f), f.metadata.get("help", "")))
    return top + sections


def defaults_toml() -> str:
    """A complete recipe holding every default, a comment on each field saying what it does.

    ``name`` is left commented out: a recipe's name defaults to its file's stem.
    """
    lines = ["# Every recipe field at its default (`comp recipe --defaults`). A recipe only needs the",
             "# fields it changes; an unknown key, a wrong type or a bad value stops with exit code 2."]
    section = None
    for sec, key, value, help_ in _rows():
        if sec != section:
            lines += [""] + ([f"[{sec}]"] if sec else [])
            section = sec
        line = f"{key} = {_toml_value(value)}"
        if sec == "" and key == "name":
            line = "# " + line
        lines.append(f"{line:<{COMMENT_COLUMN - 1}} # {help_}" if help_ else line)
    return "\n".join(lines) + "\n"


def reference_table() -> str:
    """Every field as a Markdown table row: field, default, meaning."""
    out = ["| field | default | meaning |", "|---|---|---|"]
    for sec, key, value, help_ in _rows():
        name = f"[{sec}] {key}" if sec else key
        shown = _toml_value(value)
        out.append(f"| `{name}` | `{_cell(shown)}` | {_cell(help_)} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "\\<")
