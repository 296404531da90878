"""``comp recipe``: the recipe reference, generated from the schema."""

from __future__ import annotations

from typing import Annotated

import typer

from comp.cli import app, user_errors
from comp.errors import CompError


@app.command("recipe")
@user_errors
def recipe(
    defaults: Annotated[bool, typer.Option("--defaults", help="Print a complete recipe of the defaults, a comment per field.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="With --defaults: the same as a Markdown table (README's reference).")] = False,
) -> None:
    """Print every recipe field with its default and meaning."""
    from comp.recipe.reference import defaults_toml, reference_table

    if not defaults:
        raise CompError("comp recipe needs --defaults (a complete recipe with comments; add --markdown for a table)")
    typer.echo(reference_table() if markdown else defaults_toml(), nl=False)
