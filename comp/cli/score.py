"""``comp score``: score a submission against the true labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp.cli import app, user_errors


@app.command()
@user_errors
def score(
    submission: Annotated[Path, typer.Argument(help="The submission CSV.")],
    solution: Annotated[Path, typer.Option("--solution", help="CSV with the true labels.")],
) -> None:
    """Score a submission against the true labels (the local leaderboard)."""
    from comp.evaluate.score import format_scores, score_submission

    typer.echo(format_scores(score_submission(submission, solution)))
