"""``comp score``: score a submission against the true labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import RunsOpt, app, user_errors


@app.command()
@user_errors
def score(
    submission: Annotated[Path, typer.Argument(help="The submission CSV.")],
    solution: Annotated[Path, typer.Option("--solution", help="CSV with the true labels.")],
    run: Annotated[Optional[str], typer.Option("--run", help="Score as this run's task: its classes, [data] task/positive and [submission] metric.")] = None,
    task: Annotated[str, typer.Option("--task", help="Without --run: auto, binary, multiclass or ordinal.")] = "auto",
    positive: Annotated[str, typer.Option("--positive", help="Without --run: a binary task's positive class (default: the second class).")] = "",
    metric: Annotated[str, typer.Option("--metric", help="The leaderboard's metric, printed first (default: the run's [submission] metric).")] = "",
    runs: RunsOpt = Path("runs"),
) -> None:
    """Score a submission against the true labels (the local leaderboard): the task's metrics,
    the leaderboard's metric first."""
    import dataclasses

    from comp.evaluate.score import format_scores, score_submission
    from comp.recipe import recipe_from_dict, recipe_to_dict
    from comp.train.rundir import RunDir, resolve_runs

    classes = None
    if run:
        source = RunDir(resolve_runs(runs, [run])[0])
        recipe, classes = source.recipe(), source.classes()
        if metric:
            recipe = dataclasses.replace(recipe, submission=dataclasses.replace(recipe.submission, metric=metric))
            recipe_from_dict(recipe_to_dict(recipe), "--metric")  # checked like a recipe field
    else:
        recipe = recipe_from_dict({"name": "score", "data": {"task": task, "positive": positive},
                                   "submission": {"metric": metric}}, "comp score")
    typer.echo(format_scores(score_submission(submission, solution, recipe=recipe, classes=classes)))
