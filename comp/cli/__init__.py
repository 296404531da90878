"""The ``comp`` command line: thin wrappers over the library, one module per command.

Every user error is a :class:`~comp.errors.CompError`: one line on stderr and exit code 2.
Heavy imports (torch, timm) happen inside the commands, so ``comp --help`` stays quick.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.errors import CompError

app = typer.Typer(
    name="comp",
    help="Kaggle-style image-classification competitions from a TOML recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
import_app = typer.Typer(help="Turn public data sets into competition folders.", no_args_is_help=True)
app.add_typer(import_app, name="import")



def user_errors(fn: Callable) -> Callable:
    """Turn a CompError into one line on stderr and its exit code (2), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CompError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


RunsOpt = Annotated[Path, typer.Option("--runs", help="Folder holding the run folders.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N (overrides [train] device).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field: section.key=value (repeatable).")]


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app()
    except CompError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)


# Each module registers its command on ``app``; imported last, in the order ``comp --help`` lists them.
from comp.cli import demo, fit, predict, report, check, score, bench, cache, imports, recipe  # noqa: E402,F401,I001
