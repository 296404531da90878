"""``comp export``: the runs' prediction bundle (weights, recipes, decisions), for offline notebooks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import CheckpointsOpt, RunListOpt, RunsOpt, WeightOpt, app, check_checkpoints, user_errors
from comp.errors import CompError


@app.command()
@user_errors
def export(
    out: Annotated[Path, typer.Option("--out", help="The bundle folder to write (new, or empty).")],
    run: RunListOpt = None,
    weight: WeightOpt = None,
    blend: Annotated[Optional[str], typer.Option("--blend", help="A blend (`comp blend --name NAME`): its runs, weights, mean and fitted decision instead of --run/--weight.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="The bundle predicts with the recipes' TTA views.")] = False,
    checkpoints: CheckpointsOpt = None,
    decision: Annotated[Optional[str], typer.Option("--decision", help="argmax, ordinal_thresholds or threshold (default: the first run's [predict] decision).")] = None,
    wheels: Annotated[bool, typer.Option("--wheels", help="Add comp's wheel and its dependencies' (pip download) for `pip install --no-index`.")] = False,
    no_torch: Annotated[bool, typer.Option("--no-torch", help="--wheels: leave out torch, torchvision and triton (the notebook's image has them).")] = False,
    python_version: Annotated[Optional[str], typer.Option("--python-version", help="--wheels: the notebook's Python, e.g. 3.11 (default: this one's).")] = None,
    platform: Annotated[Optional[list[str]], typer.Option("--platform", help="--wheels: the notebook's platform tag, e.g. manylinux_2_35_x86_64 (repeatable; default: this machine's).")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Each model also as ONNX (checked against torch on test images); comp predict --bundle then runs ONNX Runtime where it is installed.")] = False,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Write what `comp predict --bundle` needs, and nothing else: weights (safetensors), recipes, classes, decisions."""
    check_checkpoints(checkpoints)
    if not wheels and (no_torch or python_version or platform):
        raise CompError("--no-torch, --python-version and --platform go with --wheels")
    from comp.predict.bundle import (WheelSpec, default_platforms, default_python_version, describe_bundle,
                                     export_bundle)
    from comp.run.folder import blend_members, resolve_runs

    blended = None
    if blend is not None:
        if run or weight:
            raise CompError("--blend names its runs and weights: give --blend or --run/--weight, not both")
        blended, run_dirs, weight = blend_members(runs, blend)  # each run as the blend was fitted on it
    else:
        run_dirs = resolve_runs(runs, run)
    spec = None
    if wheels:
        spec = WheelSpec(python_version or default_python_version(), tuple(platform or default_platforms()), no_torch,
                         ("onnxruntime",) if onnx else ())
    bundle = export_bundle(run_dirs, out, weights=weight, tta=tta, checkpoints=checkpoints,
                           decision=decision, wheels=spec, blend=blended, onnx=onnx)
    for line in describe_bundle(bundle):
        typer.echo(line)
    typer.echo(f"predict with: comp predict --bundle {out} --data <competition folder> --out submission.csv")
