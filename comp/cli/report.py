"""``comp cv-report``: out-of-fold metrics, confusion matrices, curves and pictures; runs compared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, app, chosen_runs, user_errors


@app.command("cv-report")
@user_errors
def cv_report(
    run: Annotated[Optional[list[str]], typer.Option("--run", help="Run name (repeatable: runs of one competition compared); default: the latest run.")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="With several runs: compare only this validation metric (default: every metric they share).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="With several runs: the comparison figure's path (default: runs/compare_<run1>_vs_<run2>.png).")] = None,
    adapt_bn: Annotated[bool, typer.Option("--adapt-bn", help="Also predict each fold's validation rows again, as trained and with BatchNorm statistics re-estimated on them: would `comp predict --adapt-bn` help? (needs the images and models)")] = False,
    device: DeviceOpt = None,
    cam: Annotated[Optional[bool], typer.Option("--cam/--no-cam", help="Class activation maps (cam.jpg): per class the most confident right and worst wrong OOF image (default: on).")] = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Out-of-fold metrics, confusion matrices, curves, ROC/PR, calibration and image mosaics of
    a run (the latest without --run; a run without validation: its curves); several runs of one
    competition compared side by side, with the recipe keys that differ."""
    from comp.evaluate.report import CAM_DEFAULT
    from comp.evaluate.report import cv_report as run_report
    from comp.run.folder import check_output

    if out is not None:
        check_output(out)  # the comparison figure never replaces a file of a run
    chosen = chosen_runs(runs, run)
    run_report(chosen, runs, metric=metric, out=out, cam=CAM_DEFAULT if cam is None else cam)
    if adapt_bn:
        import logging

        from comp.console import log_to
        from comp.evaluate.adapt_bn import adapt_bn_figures
        from comp.evaluate.report import text_table
        from comp.run.folder import RunDir

        for run_dir in chosen:
            with log_to(RunDir(run_dir).report_log, replay=False):
                rows = adapt_bn_figures(run_dir, device)
                logging.getLogger(__name__).info(
                    f"\n{RunDir(run_dir).name}: --adapt-bn, nested (each fold's models on its own validation rows, "
                    f"identity view; adapt_bn: BatchNorm statistics re-estimated on those rows):\n{text_table(rows)}")
