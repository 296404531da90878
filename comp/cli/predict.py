"""``comp predict``: predict the test set with one or more runs into a submission CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, app, user_errors
from comp.errors import CompError
from comp.recipe import PredictConfig, choices

CHECKPOINTS = choices(PredictConfig, "checkpoints")  # the schema's choices, not restated here
DECISIONS = choices(PredictConfig, "decision")


@app.command()
@user_errors
def predict(
    out: Annotated[Path, typer.Option("--out", help="The submission CSV to write.")],
    run: Annotated[Optional[list[str]], typer.Option("--run", help="Run name (repeatable to ensemble); default: the latest run.")] = None,
    weight: Annotated[Optional[list[float]], typer.Option("--weight", help="Ensemble weight per --run, in order.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over the recipe's test-time augmentation views.")] = False,
    proba: Annotated[bool, typer.Option("--proba", help="Add a prob_<class> column per class.")] = False,
    checkpoints: Annotated[Optional[str], typer.Option("--checkpoints", help=f"{', '.join(CHECKPOINTS)} (default: each run's [predict] checkpoints).")] = None,
    decision: Annotated[Optional[str], typer.Option("--decision", help=f"{', '.join(DECISIONS)} (ordinal_thresholds: ordinal tasks, threshold: binary tasks); default: the run's [predict] decision.")] = None,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Predict test.csv with one or more runs and write a leaderboard-format CSV."""
    if checkpoints not in (None, *CHECKPOINTS):
        raise CompError(f"--checkpoints must be {', '.join(CHECKPOINTS[:-1])} or {CHECKPOINTS[-1]}, got {checkpoints!r}")
    from comp.console import RunLog
    from comp.predict.predict import predict as run_predict
    from comp.train.rundir import resolve_runs

    run_dirs = resolve_runs(runs, run)
    log = RunLog()  # also appended to each run's predict.log
    path = run_predict(run_dirs, out=out, tta=tta, weights=weight, device=device, proba=proba,
                       checkpoints=checkpoints, decision=decision, log=log)
    log(f"wrote {path}")
