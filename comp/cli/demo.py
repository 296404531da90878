"""``comp demo``: build the bundled demo competition."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp.cli import app, user_errors


@app.command()
@user_errors
def demo(
    dest: Annotated[Path, typer.Option(help="Where to write the competition folder.")] = Path("data/digits"),
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --dest.")] = False,
) -> None:
    """Build the demo competition from scikit-learn's bundled handwritten digits."""
    from comp.data.demo import build_demo

    s = build_demo(dest, seed=seed, overwrite=overwrite)
    typer.echo(f"wrote {s.dest}: {s.n_train} training and {s.n_test} test images, {s.num_classes} classes")
