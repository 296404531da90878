"""The ``comp`` command line: thin wrappers over the library, one module per command.

Every user error is a :class:`~comp.errors.CompError`: one line on stderr and exit code 2.
Heavy imports (torch, timm) happen inside the commands, so ``comp --help`` stays quick.
"""

from __future__ import annotations

import functools
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.console import setup_console
from comp.errors import CompError
from comp.recipe import PredictConfig, choices

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="comp",
    help="Kaggle-style image-classification competitions from a TOML recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
import_app = typer.Typer(help="Turn public data sets into competition folders.", no_args_is_help=True)
app.add_typer(import_app, name="import")



def user_errors(fn: Callable) -> Callable:
    """Turn a CompError into one line on stderr and its exit code (2), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CompError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None

    return wrapper


RunsOpt = Annotated[Path, typer.Option("--runs", help="Folder holding the run folders.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N (overrides [train] device).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe field: section.key=value (repeatable).")]
# The options that choose what predicts, shared by `comp predict` and `comp export`.
RunListOpt = Annotated[Optional[list[str]], typer.Option("--run", help="Run name (repeatable to ensemble); default: the latest run.")]
WeightOpt = Annotated[Optional[list[float]], typer.Option("--weight", help="Ensemble weight per --run, in order.")]
CHECKPOINTS = choices(PredictConfig, "checkpoints")  # the schema's choices, not restated here
CheckpointsOpt = Annotated[Optional[str], typer.Option("--checkpoints", help=f"{', '.join(CHECKPOINTS)} (default: each run's [predict] checkpoints).")]


def check_checkpoints(checkpoints: Optional[str]) -> None:
    """Refuse a --checkpoints value the schema does not offer, before anything is loaded."""
    if checkpoints not in (None, *CHECKPOINTS):
        raise CompError(f"--checkpoints must be {', '.join(CHECKPOINTS[:-1])} or {CHECKPOINTS[-1]}, got {checkpoints!r}")


def _print_version(value: bool) -> None:
    if value:
        from comp import __version__

        typer.echo(f"comp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print comp's version and exit.")] = False,
) -> None:
    """Kaggle-style image-classification competitions from a TOML recipe."""
    # Every command: comp's messages and progress on the console, undone when the command ends.
    ctx.call_on_close(setup_console())


def chosen_runs(runs: Path, names: Optional[list[str]]) -> list[Path]:
    """The runs ``--run`` names, else the latest run under ``--runs``: the one rule of every
    command without --run. A run chosen by default is said, with its task, in one line."""
    from comp.recipe.task import describe_task
    from comp.run.folder import RunDir, resolve_runs

    dirs = resolve_runs(runs, names)
    if not names:
        run = RunDir(dirs[0])
        task = describe_task(run.task(), run.classes())
        logger.info(f"no --run: the latest run under {runs}/, {run.name} ({task})")
    return dirs


def runs_flag(runs: Path) -> str:
    """`` --runs DIR`` for a printed command when --runs is not the default, else ""."""
    return "" if Path(runs) == Path("runs") else f" --runs {shlex.quote(str(runs))}"


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app()
    except CompError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)


# Each module registers its command on ``app``; imported last, in the order ``comp --help`` lists them.
from comp.cli import demo, fit, merge, predict, export, report, blend, check, score, bench, cache, imports, recipe, tune, lr_find, cam  # noqa: E402,F401,I001
