"""``comp fit``: train a recipe (serially, one fold, under torchrun or folds in parallel); the library
fit merges the run; this writes the report afterwards."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, SetOpt, app, user_errors
from comp.errors import CompError

if TYPE_CHECKING:
    from comp.recipe import Recipe
    from comp.run.life import FitRequest

logger = logging.getLogger(__name__)


@app.command()
@user_errors
def fit(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    fold: Annotated[Optional[int], typer.Option("--fold", help="Train only this fold (a fold job: jobs of other folds may run at once; the last merges).")] = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run's unfinished folds from last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Drop unreadable training images (listed) instead of stopping.")] = False,
    gpus: Annotated[int, typer.Option("--gpus", help="Train each fold with DDP over N processes (launches torchrun).")] = 0,
    folds_parallel: Annotated[bool, typer.Option("--folds-parallel", help="Train folds as separate processes, one per GPU.")] = False,
    procs: Annotated[Optional[int], typer.Option("--procs", help="With --folds-parallel and no GPU: CPU processes.")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the run's report (cv-report's tables and pictures) at the end.")] = False,
    pseudo_from: Annotated[Optional[str], typer.Option("--pseudo-from", help="One pseudo-labelling round: RUN predicts the test set (its TTA and decision), the confident rows train as extra rows (kept in the new run's folder).")] = None,
    min_prob: Annotated[float, typer.Option("--min-prob", help="With --pseudo-from: keep the test rows whose largest probability is at least this.")] = 0.9,
    adapt_bn: Annotated[bool, typer.Option("--adapt-bn", help="With --pseudo-from: RUN predicts with BatchNorm statistics re-estimated on the test images.")] = False,
    track: Annotated[Optional[str], typer.Option("--track", help="Report to an experiment tracker: mlflow, wandb or none (sets [track] tracker).")] = None,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Train every fold of a recipe into runs/<recipe name>/, merge it, then write its report (report.md)."""
    from comp.cli.merge import closing
    from comp.console import log_to
    from comp.model.scheduler import schedule_warnings
    from comp.recipe import load_recipe
    from comp.run.folder import RunDir
    from comp.run.life import FitRequest
    from comp.train.distributed import env_world
    from comp.train.fit import fit as run_fit
    from comp.train.fold_processes import fit_folds_parallel
    from comp.train.tensorboard import require

    loaded = load_recipe(recipe, [*(set_ or []), *([f"track.tracker={track}"] if track is not None else [])])
    require(loaded)  # [log] tensorboard without the package: one message before any work
    request = FitRequest(runs_root=runs, fold=fold, resume=resume, overwrite=overwrite, device=device,
                         skip_bad=skip_bad)
    if gpus > 1 and folds_parallel:
        raise CompError("--gpus with --folds-parallel: choose one: --gpus N trains each fold over N GPUs "
                        "together (DDP), --folds-parallel trains the folds side by side, one per GPU")
    if gpus > 1:
        _launch_torchrun(gpus, loaded, request, no_report=no_report)
    for line in schedule_warnings(loaded):
        logger.warning(f"warning: {line}")
    if pseudo_from is None and adapt_bn:
        raise CompError("--adapt-bn in comp fit is for --pseudo-from RUN (how RUN predicts the test set)")
    if pseudo_from is not None:
        from comp.cli.pseudo import fit_pseudo

        if gpus > 1 or folds_parallel:
            raise CompError("--pseudo-from trains serially: leave out --gpus/--folds-parallel (or run the five "
                            "commands of README's pseudo-labelling loop)")
        fitted = fit_pseudo(loaded, request, source_name=pseudo_from, min_prob=min_prob, adapt_bn=adapt_bn)
    elif folds_parallel:
        fitted = fit_folds_parallel(loaded, request, processes=procs)
    else:
        fitted = run_fit(loaded, request)  # it keeps what it says in the run's fit.log
    if env_world()[0] == 0:  # under torchrun, rank 0 speaks for all
        # fit.log goes on (--folds-parallel: this command's lines come after its fold jobs').
        with log_to(RunDir(fitted.path).fit_log):
            if fitted.merged:
                closing(fitted.path, runs, report=not no_report)


def _launch_torchrun(nproc: int, recipe: Recipe, request: FitRequest, *, no_report: bool) -> None:
    """Run this fit under torchrun with ``nproc`` processes (the command rebuilt by
    :func:`comp.run.life.fit_command`), then exit with its code."""
    import subprocess

    from comp.run.life import fit_command

    extra = ("--no-report",) if no_report else ()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "comp", *fit_command(recipe.source, request, extra=extra)]
    raise typer.Exit(subprocess.call(cmd))
