"""``comp tune``: search a recipe's hyper-parameters with Optuna, every trial an ordinary run
under runs/<study>/; ``--report`` writes the study's table, pictures and best.toml."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, SetOpt, app, runs_flag, user_errors
from comp.errors import CompError

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1.5d`` as seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise CompError(f"--timeout {text!r}: give a positive duration such as 90s, 30m or 2h")
    return float(m.group(1)) * _UNIT[m.group(2)]


@app.command()
@user_errors
def tune(
    recipe: Annotated[Optional[Path], typer.Argument(help="The recipe TOML file (not needed with --report).")] = None,
    space: Annotated[Optional[Path], typer.Option("--space", help="The search space: a TOML file mirroring the recipe's tables, each searched key a table of low/high (log, step) or choices.")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Trials in the study, over every process that joins it.")] = 20,
    timeout: Annotated[Optional[str], typer.Option("--timeout", help="Start no new trial after this long (90s, 30m, 2h).")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="The study's name: its folder under --runs (default: <recipe name>-tune).")] = None,
    storage: Annotated[Optional[str], typer.Option("--storage", help="An Optuna storage URL (sqlite:///..., postgresql://..., mysql://...) or journal:PATH (shared file systems); default: runs/<study>/study.db.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Trials side by side on this machine (one process each; GPUs or CPU threads split between them).")] = 1,
    pruner: Annotated[str, typer.Option("--pruner", help="median (the first fold's epochs against the other trials'), hyperband, wilcoxon (over folds) or none.")] = "median",
    startup: Annotated[int, typer.Option("--startup", help="Trials finished before the median pruner prunes.")] = 5,
    heartbeat: Annotated[int, typer.Option("--heartbeat", help="Seconds between a trial's heartbeats; a trial silent for twice as long is failed and retried once.")] = 60,
    report: Annotated[bool, typer.Option("--report", help="Only write the study's report: trials table, history and importances, best.toml.")] = False,
    set_: SetOpt = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Drop unreadable training images (listed) instead of stopping.")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip each trial's run report and the study's (comp tune --report writes it).")] = False,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Search the recipe's hyper-parameters over --space: each trial is a run under
    runs/<study>/trial_NNNN/ on the study's fixed folds, scored on its OOF rows; processes started
    on one study (here, on other machines, a job array) share its trials. Ends with the study's
    report and runs/<study>/best.toml."""
    from comp.tune.folder import StudyDir

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise CompError("comp tune needs Optuna: pip install 'comp[tune]'") from None
    if report:
        _report_only(study, storage, runs, recipe)
        return
    if recipe is None or space is None:
        raise CompError("comp tune needs a recipe and --space (or --report --study NAME)")
    if jobs < 1:
        raise CompError(f"--jobs must be at least 1, got {jobs}")
    from comp.tune.study import TuneRequest, open_study, prepare

    request = TuneRequest(recipe=recipe, space=space, overrides=tuple(set_ or ()), study=study, storage=storage,
                          trials=trials, timeout=None if timeout is None else parse_duration(timeout),
                          pruner=pruner, startup=startup, heartbeat=heartbeat, runs_root=runs, device=device,
                          skip_bad=skip_bad)
    prep = prepare(request)
    opened = open_study(prep)
    folder: StudyDir = prep.folder
    logger.info(f"study {folder.name!r} ({folder.path}, storage {_shown(prep)}): {len(prep.space.params)} keys "
                f"({', '.join(p.key for p in prep.space.params)}), {prep.direction} the OOF figure, {trials} trials, "
                f"pruner {pruner}")
    again = _again(request)
    if jobs > 1:
        _run_jobs(jobs, request, device, no_report)
    else:
        _run_here(prep, opened, no_report, again)
    if no_report:
        logger.info(f"the study's report: comp tune --report --study {folder.name}{runs_flag(runs)}")
        return
    from comp.tune.report import write_study_report

    write_study_report(opened, folder, str(recipe))


def _run_here(prep, opened, no_report: bool, again: str) -> None:
    """Trials in this process; an interruption names the command that continues the study."""
    from comp.cli.merge import closing
    from comp.console import log_to
    from comp.run.folder import RunDir
    from comp.train.loop import Interrupted
    from comp.tune.study import run_trials

    def after_fit(path: Path) -> None:
        with log_to(RunDir(path).fit_log):
            closing(path, prep.folder.path, report=not no_report)

    try:
        run_trials(prep, opened, after_fit=after_fit)
    except Interrupted as err:
        stopped = str(err).split("; resume with:")[0]
        raise Interrupted(f"{stopped}; the trial is marked failed and its values are queued again: continue "
                          f"the study with: {again}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"stopped by Ctrl-C; continue the study with: {again}") from None


def _run_jobs(jobs: int, request, device: Optional[str], no_report: bool) -> None:
    """``jobs`` processes of this command (``--jobs 1``) on the same study, each with its share of
    the CPU threads, or its own GPU, as ``comp fit --folds-parallel`` splits them."""
    import torch

    gpus = torch.cuda.device_count() if device != "cpu" else 0
    threads = max(1, (os.cpu_count() or 2) // jobs)
    logger.info(f"{jobs} processes on the study, " + (f"over {gpus} GPUs" if gpus else f"{threads} CPU threads each"))
    procs = []
    for i in range(jobs):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        extra = ["--no-report"] if no_report else []
        procs.append(subprocess.Popen([sys.executable, "-m", "comp", *_args(request, jobs=1), *extra], env=env))
    codes = []
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # each child got the Ctrl-C too and stops its trial
        codes = [p.wait() for p in procs]
    bad = [c for c in codes if c != 0]
    if bad:
        raise CompError(f"{len(bad)} of the {jobs} processes stopped with an error (exit {bad[0]}, above); "
                        f"continue the study with: {_again(request)}")


def _args(request, *, jobs: int) -> list[str]:
    """The ``comp tune`` arguments (after ``comp``) of ``request``: the command that continues it,
    and the one each --jobs process runs."""
    args = ["tune", str(request.recipe), "--space", str(request.space), "--trials", str(request.trials)]
    args += [a for o in request.overrides for a in ("--set", o)]
    args += ["--study", request.study] if request.study else []
    args += ["--storage", request.storage] if request.storage else []
    args += ["--timeout", f"{request.timeout:g}s"] if request.timeout else []
    args += ["--pruner", request.pruner] if request.pruner != "median" else []
    args += ["--startup", str(request.startup)] if request.startup != 5 else []
    args += ["--heartbeat", str(request.heartbeat)] if request.heartbeat != 60 else []
    args += ["--jobs", str(jobs)] if jobs != 1 else []
    args += ["--skip-bad"] if request.skip_bad else []
    args += ["--device", request.device] if request.device else []
    args += ["--runs", str(request.runs_root)] if Path(request.runs_root) != Path("runs") else []
    return args


def _again(request) -> str:
    from comp.tune.storage import mask

    args = _args(request, jobs=1)
    if request.storage:
        args[args.index(request.storage)] = mask(request.storage)
    return "comp " + shlex.join(args)


def _shown(prep) -> str:
    from comp.tune.storage import mask

    return "SQLite study.db" if prep.default_storage else mask(prep.storage)


def _report_only(study: Optional[str], storage: Optional[str], runs: Path, recipe: Optional[Path]) -> None:
    """``comp tune --report --study NAME``: the study's storage from --storage, else its study.json."""
    import optuna

    from comp.recipe import load_recipe
    from comp.tune.folder import StudyDir
    from comp.tune.report import write_study_report
    from comp.tune.storage import open_storage
    from comp.tune.study import quiet_optuna

    if study is None:
        if recipe is None:
            raise CompError("comp tune --report needs --study NAME (or the recipe, whose study is <name>-tune)")
        study = f"{load_recipe(recipe).name}-tune"
    folder = StudyDir(runs, study)
    folder.check()
    if not folder.exists():
        raise CompError(f"no study {study!r} under {runs}/ (no {folder.info_path}); name it with --study"
                        f"{runs_flag(runs)}")
    url = storage or folder.read_info().get("storage") or folder.default_storage
    if "***" in url:
        raise CompError(f"study {study!r} keeps its trials in {url}: give --storage with its password")
    quiet_optuna()
    try:
        opened = optuna.load_study(study_name=study, storage=open_storage(url))
    except KeyError:
        raise CompError(f"no study {study!r} in the storage {url}") from None
    write_study_report(opened, folder, None if recipe is None else str(recipe))
