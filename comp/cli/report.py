"""``comp cv-report``: out-of-fold metrics, confusion matrices and learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import RunsOpt, app, user_errors


@app.command("cv-report")
@user_errors
def cv_report(
    run: Annotated[Optional[list[str]], typer.Option("--run", help="Run name (repeatable); default: every run.")] = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Out-of-fold metrics, confusion matrices and learning curves; runs side by side."""
    from comp.evaluate.report import cv_report as run_report
    from comp.train.rundir import resolve_runs

    run_report(resolve_runs(runs, run, default_all=True), runs)
