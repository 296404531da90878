"""``comp import ...``: turn public data sets into competition folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp.cli import import_app, user_errors


@import_app.command("medmnist")
@user_errors
def import_medmnist(
    npz: Annotated[Path, typer.Argument(help="A MedMNIST v2 .npz file.")],
    dest: Annotated[Path, typer.Argument(help="The competition folder to create.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = False,
) -> None:
    """Turn a MedMNIST .npz into a competition folder (train/valid/test, solution.csv)."""
    from comp.data.medmnist import import_medmnist as run_import

    summary = run_import(npz, dest, overwrite=overwrite)
    typer.echo(f"wrote {dest}: {summary}")
