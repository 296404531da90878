"""``comp check``: check a recipe's data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from comp.cli import RunsOpt, SetOpt, app, user_errors
from comp.console import muted

logger = logging.getLogger(__name__)


@app.command()
@user_errors
def check(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    set_: SetOpt = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Warn about unreadable images instead of failing.")] = False,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Check a recipe's data (columns, ids, labels, that every image decodes) and make every
    set-up check of `comp fit` (model, weights, loss, optimiser, schedule, folds) on the CPU."""
    from comp.data.check import check_data, format_report
    from comp.recipe import load_recipe

    loaded = load_recipe(recipe, set_ or [])
    report = check_data(loaded, skip_bad=skip_bad)
    typer.echo(format_report(report))
    from comp.model.scheduler import schedule_warnings

    for line in schedule_warnings(loaded):
        logger.warning(f"warning: {line}")
    if report.train_rows:
        from comp.model.runtime import resolve_runtime
        from comp.train.fit import check_setup, plan_run

        plan = plan_run(loaded, report.readable_train_table(), report.classes, runs, task=report.task,
                        extra=report.readable_extra_table())
        with muted():  # the set-up's own lines (weights, batch size) are fit's to say
            check_setup(loaded, plan, resolve_runtime(loaded.train, "cpu"))
        typer.echo(f"set-up: {loaded.model.source}:{loaded.model.name}, loss, optimiser, schedule and "
                   f"folds {plan.plan} build")
