"""``comp check``: check a recipe's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp.cli import SetOpt, app, user_errors


@app.command()
@user_errors
def check(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    set_: SetOpt = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Warn about unreadable images instead of failing.")] = False,
) -> None:
    """Check a recipe's data: columns, ids, labels, and that every image decodes."""
    from comp.data.check import check_data, format_report
    from comp.recipe import load_recipe

    report = check_data(load_recipe(recipe, set_ or []), skip_bad=skip_bad)
    typer.echo(format_report(report))
