"""``comp score``: score a submission against the true labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import RunsOpt, app, chosen_runs, user_errors
from comp.errors import CompError
from comp.recipe import DataConfig, choices

TASKS = choices(DataConfig, "task")  # the schema's [data] task choices, not restated here


@app.command()
@user_errors
def score(
    submission: Annotated[Path, typer.Argument(help="The submission CSV.")],
    solution: Annotated[Path, typer.Option("--solution", help="CSV with the true labels.")],
    run: Annotated[Optional[str], typer.Option("--run", help="Score as this run's task: its classes, [data] task/positive and [submission] metric; default: the latest run (unless --task or --positive).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help=f"Instead of a run's task: {', '.join(TASKS)} (as [data] task).")] = None,
    positive: Annotated[str, typer.Option("--positive", help="With --task: a binary task's positive class (default: the second class).")] = "",
    metric: Annotated[str, typer.Option("--metric", help="The leaderboard's metric, printed first (default: the run's [submission] metric).")] = "",
    runs: RunsOpt = Path("runs"),
) -> None:
    """Score a submission against the true labels (the local leaderboard): the task's metrics,
    the leaderboard's metric first."""
    import dataclasses

    from comp.evaluate.score import format_scores, score_submission
    from comp.recipe import recipe_from_dict, recipe_to_dict
    from comp.run.folder import RunDir, list_runs

    if run and (task or positive):
        raise CompError("--task and --positive are for scoring without a run: --run scores as the run's task")
    classes, name = None, ""
    # One rule with predict: --run, else the latest run; --task/--positive (or no run at all)
    # score by the options and the solution's labels instead.
    if run or not (task or positive) and Path(runs).is_dir() and list_runs(runs):
        source = RunDir(chosen_runs(runs, [run] if run else None)[0])
        recipe, classes = source.recipe(), source.classes()
        name = f"run {source.name}" + ("" if run else " (the latest run; --run or --task chooses another)")
        if metric:
            recipe = dataclasses.replace(recipe, submission=dataclasses.replace(recipe.submission, metric=metric))
            recipe_from_dict(recipe_to_dict(recipe), "--metric")  # checked like a recipe field
    else:
        from comp.kinds import KINDS

        loss = KINDS[task].default_loss if task in KINDS else "ce"  # (scoring trains nothing)
        recipe = recipe_from_dict({"name": "score", "data": {"task": task or "auto", "positive": positive},
                                   "loss": {"name": loss}, "submission": {"metric": metric}}, "comp score")
    typer.echo(format_scores(score_submission(submission, solution, recipe=recipe, classes=classes, run=name)))
