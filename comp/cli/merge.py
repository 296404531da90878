"""``comp merge``: merge a run whose folds were trained as separate jobs (``comp fit RECIPE --fold K``)
with :meth:`comp.run.life.Run.merge`, then write its report; :func:`closing` is ``comp fit``'s end too."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Annotated

import typer

from comp.cli import RunsOpt, app, runs_flag, user_errors
from comp.errors import CompError

logger = logging.getLogger(__name__)


def closing(run_dir: Path, runs: Path, *, report: bool = True) -> None:
    """What ``comp fit`` and ``comp merge`` print once a run is merged: the next command and its report."""
    from comp.evaluate.report import report_one
    from comp.run.folder import RunDir

    run = RunDir(run_dir)
    logger.info(f"done: {run_dir} (next: comp predict --run {run.name}{runs_flag(runs)} "
                f"--out submissions/{run.name}.csv)")
    if not report:
        return
    try:  # a run without validation (the full scheme) gets its curves
        report_one(run_dir)
    except CompError as err:  # the run is trained and merged: a report problem is not a failed fit
        logger.info(f"the report was not written ({err}); try `comp cv-report --run {run.name}{runs_flag(runs)}`")
        return
    logger.info(f"report: {run.report_md}")
    track_report(run)


def track_report(run) -> None:
    """The report's pictures and tables (and oof.csv) as artifacts of the run's tracker run, when
    the fit recorded one in run.json (a tracker failing here is one warning)."""
    from comp.run.track import reopen

    if not run.info().tracking:
        return
    files = [run.report_md, run.oof_path, *sorted(run.path.glob("*.png")), *sorted(run.path.glob("confusion*.csv"))]
    reopen(run).artifacts([f for f in files if f.is_file()])


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
    from comp.console import log_to
    from comp.run.folder import resolve_runs
    from comp.run.life import FitRequest, Run, fit_command, merge_command

    life = Run.at(resolve_runs(runs, [run])[0])
    with log_to(life.folder.fit_log):
        with life.session(partial=partial, hold=False) as session:
            pass  # nothing to train: the session locks, merges and closes the run
        merged = session.merged
        info, missing = life.folder.info(), merged.missing
        if not merged.merged:
            train = "comp " + shlex.join(fit_command(life.folder.recipe().source, FitRequest(runs_root=runs)))
            raise CompError(f"run {info.name!r}: fold{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(map(str, missing))} of {info.folds} not trained yet: train each with "
                            f"`{train} --fold K`, or merge the trained ones with "
                            f"`{merge_command(run, runs)} --partial`")
        if missing:
            logger.info(f"merged folds {sorted(set(info.folds) - set(missing))}; not trained yet: {missing} "
                        f"(the run is partial)")
        closing(life.folder.path, runs, report=not no_report)
