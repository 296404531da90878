"""``comp blend``: fit ensemble weights and the decision on runs' out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import RunsOpt, app, user_errors


@app.command()
@user_errors
def blend(
    run: Annotated[list[str], typer.Option("--run", help="A run to blend (repeat: two or more).")],
    metric: Annotated[Optional[str], typer.Option("--metric", help="The metric the weights are fitted for (default: the first run's [submission] metric, else its monitor).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="The blend's name, for `comp predict --blend NAME` (default: the runs' names joined by '-', cut to 100 characters with a hash when longer).")] = None,
    rank: Annotated[bool, typer.Option("--rank", help="Average rank scores instead of probabilities (roc_auc, pr_auc, ovr_auc).")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Steps of greedy selection with replacement.")] = 50,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a blend of the same name.")] = False,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Fit non-negative weights for runs on their out-of-fold predictions (greedy selection with
    replacement), then the task's decision on the blend; print each run's figure and the blend's
    in-sample and nested figures, and write the blend for `comp predict --blend`."""
    from comp.evaluate.blend import make_blend
    from comp.run.folder import RunDir, default_blend_name, resolve_runs

    run_dirs = resolve_runs(runs, run)
    make_blend(run_dirs, runs, name=name or default_blend_name([RunDir(d).name for d in run_dirs]), metric=metric,
               mean="rank" if rank else "probability", steps=steps, overwrite=overwrite)
