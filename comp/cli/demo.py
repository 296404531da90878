"""``comp demo``: build a bundled demo competition."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp.cli import app, user_errors


@app.command()
@user_errors
def demo(
    dest: Annotated[Path | None, typer.Option(
        help="Where to write the competition folder; default: data/digits, or data/digits_<kind> for "
             "another --kind.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --dest.")] = False,
    kind: Annotated[str, typer.Option(
        help="multiclass (the digits), multilabel (2x2 mosaics tagged with their digits, Planet's "
             "image_name,tags), multilabel_cols (the same, one 0/1 column per digit, Plant Pathology's "
             "layout) or regression (the mosaics' digit sum, Pawpularity's Id,target).")] = "multiclass",
) -> None:
    """Build a demo competition from scikit-learn's bundled handwritten digits."""
    from comp.data.demo import build_demo, demo_kind

    s = build_demo(dest or demo_kind(kind).folder, seed=seed, overwrite=overwrite, kind=kind)
    typer.echo(f"wrote {s.dest}: {s.n_train} training and {s.n_test} test images, {s.what}")
