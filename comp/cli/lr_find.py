"""``comp lr-find``: the learning-rate range test on fold 0's training rows; a plot and a suggested ``--set optim.lr``."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, SetOpt, app, user_errors
from comp.errors import CompError

LR_FIND_DIR = ".lr_find"  # under --runs: hidden, so no command takes it for a run


def default_plot(runs: Path, recipe: Path) -> Path:
    """``<runs>/.lr_find/<recipe stem>.png`` (a long stem cut), refused when a link in it leads out of --runs."""
    folder = Path(runs) / LR_FIND_DIR
    path = folder / f"{recipe.stem[:120] or 'recipe'}.png"
    for p in (folder, path):
        if p.is_symlink():
            raise CompError(f"refusing to write {path}: {p} is a link comp did not make; remove it or give --out")
    if os.path.lexists(path) and not path.is_file():
        raise CompError(f"refusing to write {path}: it is not a file; remove it or give --out")
    return path


@app.command("lr-find")
@user_errors
def lr_find(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    set_: SetOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="Most optimiser steps (the test stops earlier once the loss diverges).")] = 100,
    start: Annotated[float, typer.Option("--start", help="The first learning rate.")] = 1e-7,
    end: Annotated[float, typer.Option("--end", help="The last learning rate.")] = 10.0,
    out: Annotated[Optional[Path], typer.Option("--out", help="The plot (PNG); default: <runs>/.lr_find/<recipe stem>.png.")] = None,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """The learning-rate range test: fold 0's training rows with an exponentially growing learning
    rate, the smoothed loss plotted, and the "valley" suggestion printed as a --set. No run is made."""
    from comp.recipe import load_recipe
    from comp.run.folder import check_output, check_runs_root
    from comp.train.lr_find import lr_range_test, plot_lr_find

    loaded = load_recipe(recipe, set_ or [])
    if out is None:
        check_runs_root(runs)
        plot = default_plot(runs, recipe)
    else:
        check_output(out)
        plot = out
    result = lr_range_test(loaded, device=device, start=start, end=end, steps=steps)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_lr_find(result, plot, f"{loaded.name}: lr range test ({len(result.lrs)} steps"
                 f"{', diverged' if result.diverged else ''})")
    sets = " ".join(f"--set {shlex.quote(o)}" for o in (set_ or []) if not o.startswith("optim.lr="))
    typer.echo(f"lr-find: {len(result.lrs)} steps, lr {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}"
               f"{' (stopped: the loss diverged)' if result.diverged else ''}; plot {plot}")
    typer.echo(f"suggested (valley): comp fit {shlex.quote(str(recipe))}{' ' + sets if sets else ''} "
               f"--set optim.lr={result.suggestion:.3g}")
