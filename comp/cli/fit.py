"""``comp fit``: train a recipe (serially, one fold, under torchrun or folds in parallel), then merge."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, SetOpt, app, runs_flag, user_errors
from comp.errors import CompError


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
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Train every fold of a recipe into runs/<recipe name>/, then write its report (report.md)."""
    from comp.cli.merge import closing, merge_folds
    from comp.console import RunLog
    from comp.evaluate.oof import finish_run
    from comp.model.scheduler import schedule_warnings
    from comp.recipe import load_recipe
    from comp.train.distributed import env_world
    from comp.train.fit import FitRequest
    from comp.train.fit import fit as run_fit
    from comp.train.fold_processes import fit_folds_parallel
    from comp.run.folder import RunDir
    from comp.train.tensorboard import require

    if gpus > 1:
        _launch_torchrun(gpus)
    loaded = load_recipe(recipe, set_ or [])
    require(loaded)  # [log] tensorboard without the package: one message before any work
    request = FitRequest(runs_root=runs, fold=fold, resume=resume, overwrite=overwrite, device=device,
                         skip_bad=skip_bad)
    log = RunLog()  # what fit prints, also appended with timestamps to the run's fit.log
    for line in schedule_warnings(loaded):
        log(f"warning: {line}")
    if folds_parallel:
        run_dir = fit_folds_parallel(loaded, request, processes=procs, log=log)
        log.attach(RunDir(run_dir).fit_log)
    else:
        run_dir = run_fit(loaded, request, log=log)
    if env_world()[0] != 0:  # under torchrun, rank 0 merges and speaks for all
        return
    if folds_parallel:  # its last fold job merged the run, unless that merge failed
        merge_folds(run_dir, log, again=False)
    elif fold is None:
        finish_run(run_dir, log=log)
    else:  # a fold job: the last one to finish merges the run
        try:
            merged, missing = merge_folds(run_dir, log, again=False)
        except CompError as err:  # the fold is trained: a merge problem is not a failed fit
            log(f"fold {fold} is trained; the run was not merged ({err}); merge it with "
                f"`comp merge {loaded.name}{runs_flag(runs)}`")
            return
        if missing:
            log(f"fold {fold} is trained; folds {missing} are not yet: the last fold job to finish merges "
                f"the run (or `comp merge {loaded.name}{runs_flag(runs)}`)")
            return
        if not merged:
            log(f"fold {fold} is trained; another fold job merged the run")
            return
    closing(run_dir, runs, log, report=not no_report)


def _launch_torchrun(nproc: int) -> None:
    """Re-run this very command under torchrun with ``nproc`` processes, then exit with its code."""
    import subprocess

    args = sys.argv[1:]
    cleaned, skip = [], False
    for a in args:  # drop --gpus N / --gpus=N so the children train instead of relaunching
        if skip:
            skip = False
            continue
        if a == "--gpus":
            skip = True
            continue
        if not a.startswith("--gpus="):
            cleaned.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "comp", *cleaned]
    raise typer.Exit(subprocess.call(cmd))
