"""``comp recipe``: the recipe reference, generated from the schema; a recipe as comp reads it; a preset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import SetOpt, app, user_errors
from comp.errors import CompError


@app.command("recipe")
@user_errors
def recipe(
    path: Annotated[Optional[Path], typer.Argument(help="A recipe to print as comp reads it: every field, its pipeline (a preset's, a file's) written out.")] = None,
    defaults: Annotated[bool, typer.Option("--defaults", help="Print a complete recipe of the defaults, a comment per field.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="With --defaults: the same as a Markdown table (README's reference).")] = False,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Print an [augment] preset's pipeline (fundus, microscopy, xray) as [[augment.pipeline]] tables to paste and edit.")] = None,
    size: Annotated[int, typer.Option("--size", help="With --preset: the [augment] size its crops are written for.")] = 224,
    set_: SetOpt = None,
) -> None:
    """Print every recipe field with its default and meaning, a recipe as comp reads it, or a preset."""
    from comp.recipe.reference import defaults_toml, reference_table

    given = [n for n, v in (("RECIPE", path is not None), ("--defaults", defaults), ("--preset", preset)) if v]
    if len(given) != 1:
        raise CompError("comp recipe needs one of --defaults (a complete recipe with comments; add --markdown "
                        "for a table), RECIPE (that recipe as comp reads it) or --preset NAME")
    if path is not None:
        from comp.recipe import load_recipe, recipe_to_toml

        typer.echo(recipe_to_toml(load_recipe(path, set_ or [])), nl=False)
    elif preset is not None:
        from comp.recipe import AugmentConfig
        from comp.recipe.augment_spec import check_pipeline, presets

        known = presets(size)
        if preset not in known:
            raise CompError(f"--preset must be one of {', '.join(known)}, got {preset!r}")
        if size <= 0:
            raise CompError(f"--size must be positive, got {size}")
        steps = check_pipeline(known[preset], size, "--preset")
        text = recipe_to_toml_section(AugmentConfig(size=size, pipeline=steps))
        typer.echo(f"# [augment] preset = \"{preset}\" at size {size}: paste into a recipe in place of "
                   f"preset and edit\n" + text, nl=False)
    else:
        typer.echo(reference_table() if markdown else defaults_toml(), nl=False)


def recipe_to_toml_section(augment) -> str:
    """Only the ``[augment]`` size and pipeline of a recipe's TOML."""
    from comp.recipe import Recipe, recipe_to_toml

    import re

    text = recipe_to_toml(Recipe(name="preset", augment=augment))
    start = text.index("[[augment.pipeline]]")
    end = re.compile(r"^\[[a-z]", re.M).search(text, start)
    tables = text[start:end.start() if end else len(text)].rstrip("\n")
    return f"[augment]\nsize = {augment.size}\n\n{tables}\n"
