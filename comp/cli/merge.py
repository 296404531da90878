"""``comp merge``: merge a run whose folds were trained as separate jobs (``comp fit RECIPE --fold K``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from comp.cli import RunsOpt, app, runs_flag, user_errors
from comp.errors import CompError


def merge_folds(run_dir: Path, log: Callable[[str], None], *, partial: bool = False,
                again: bool = True) -> tuple[bool, list[int]]:
    """(merged, missing folds): under the run's brief lock, merge the trained folds into oof.csv
    and fit the decision (:func:`comp.evaluate.oof.finish_run`) once every fold is trained (or,
    ``partial``, whatever is). ``again=False`` (a fold job that just finished): a run another
    job has already merged complete is not merged twice. The one merge of ``comp merge``, of
    the last fold job to finish and of ``--folds-parallel``."""
    from comp.evaluate.oof import finish_run
    from comp.run.folder import RunDir
    from comp.run.lock import RunLock

    run = RunDir(run_dir)
    lock = RunLock(run, brief=True)
    lock.acquire()
    try:
        info = run.info()
        missing = sorted(set(info.folds) - set(run.completed_folds()))
        if (missing and not partial) or (not again and not missing and info.status == "complete"):
            return False, missing
        finish_run(run_dir, log=log)
        return True, missing
    finally:
        lock.release()


def closing(run_dir: Path, runs: Path, log: Callable[[str], None], *, report: bool = True) -> None:
    """What ``comp fit`` and ``comp merge`` print once a run is merged: the next command and its report."""
    from comp.evaluate.report import report_one
    from comp.run.folder import RunDir

    run = RunDir(run_dir)
    log(f"done: {run_dir} (next: comp predict --run {run.name}{runs_flag(runs)} --out submissions/{run.name}.csv)")
    if not report:
        return
    try:  # a run without validation (the full scheme) gets its curves
        report_one(run_dir, log)
    except CompError as err:  # the run is trained and merged: a report problem is not a failed fit
        log(f"the report was not written ({err}); try `comp cv-report --run {run.name}{runs_flag(runs)}`")
        return
    log(f"report: {run.report_md}")


@app.command()
@user_errors
def merge(
    run: Annotated[str, typer.Argument(help="The run's name under --runs (or its folder).")],
    partial: Annotated[bool, typer.Option("--partial", help="Merge the folds trained so far (the run is marked partial).")] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the run's report.")] = False,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Merge a run whose folds were trained as separate jobs (comp fit RECIPE --fold K) into
    oof.csv, fit its decision and write its report; the last fold job to finish does this itself.
    Exits 2 naming the folds not trained yet (--partial merges those that are)."""
    from comp.console import RunLog
    from comp.run.folder import RunDir, resolve_runs

    run_dir = resolve_runs(runs, [run])[0]
    log = RunLog()
    log.attach(RunDir(run_dir).fit_log)
    merged, missing = merge_folds(run_dir, log, partial=partial)
    if not merged:
        info = RunDir(run_dir).info()
        raise CompError(f"run {info.name!r}: fold{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                        f"of {info.folds} not trained yet: train each with `comp fit {info.recipe_file} --fold K"
                        f"{runs_flag(runs)}`, or merge the trained ones with `comp merge {run}{runs_flag(runs)} --partial`")
    if missing:
        log(f"merged folds {sorted(set(RunDir(run_dir).info().folds) - set(missing))}; "
            f"not trained yet: {missing} (the run is partial)")
    closing(run_dir, runs, log, report=not no_report)
