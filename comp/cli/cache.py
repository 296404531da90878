"""``comp cache``: write the resized, preprocessed image cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp.cli import SetOpt, app, user_errors


@app.command()
@user_errors
def cache(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    set_: SetOpt = None,
) -> None:
    """Write resized, preprocessed copies of the train and test images, read instead of them."""
    from comp.data.cache_build import build_cache
    from comp.recipe import load_recipe

    typer.echo(f"cached {build_cache(load_recipe(recipe, set_ or [])).line()}")
