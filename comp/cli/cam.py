"""``comp cam``: class activation maps of a run's model on any images, each beside its overlay."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import CheckpointsOpt, RunsOpt, app, check_checkpoints, user_errors
from comp.errors import CompError


@app.command()
@user_errors
def cam(
    image: Annotated[list[Path], typer.Option("--image", help="An image to explain (repeatable).")],
    run: Annotated[Optional[str], typer.Option("--run", help="Run name or folder; default: the latest run.")] = None,
    class_: Annotated[Optional[str], typer.Option("--class", help="The class whose map is drawn (default: the class predicted).")] = None,
    method: Annotated[str, typer.Option("--method", help="gradcam, gradcam++, eigencam or layercam.")] = "gradcam",
    fold: Annotated[Optional[int], typer.Option("--fold", help="Only this fold's weights (default: every fold's, the maps averaged).")] = None,
    checkpoints: CheckpointsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="The folder the pictures go to (<image stem>_<method>.jpg).")] = Path("cam"),
    runs: RunsOpt = Path("runs"),
) -> None:
    """Where the model looked: each image beside its class activation map (GradCAM, GradCAM++,
    EigenCAM or LayerCAM at the backbone's last block)."""
    check_checkpoints(checkpoints)
    from comp.cli import chosen_runs
    from comp.evaluate.cam import METHODS, cam_images
    from comp.run.folder import check_output

    if method not in METHODS:
        raise CompError(f"--method {method!r}: choose {', '.join(METHODS)}")
    if os.path.lexists(out) and not Path(out).is_dir():
        raise CompError(f"--out {out} is not a folder")
    check_output(out / "x.jpg")  # never into a run folder
    run_dir = chosen_runs(runs, [run] if run else None)[0]
    for path in cam_images(run_dir, image, out, class_name=class_, method=method, checkpoints=checkpoints,
                           fold=fold):
        typer.echo(f"wrote {path}")
