"""``comp predict``: predict the test set with one or more runs into a submission CSV."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import (CheckpointsOpt, DeviceOpt, RunListOpt, RunsOpt, WeightOpt, app, check_checkpoints, chosen_runs,
                      user_errors)
from comp.errors import CompError
from comp.recipe import PredictConfig, choices

DECISIONS = choices(PredictConfig, "decision")
logger = logging.getLogger(__name__)


@app.command()
@user_errors
def predict(
    out: Annotated[Path, typer.Option("--out", help="The submission CSV to write.")],
    run: RunListOpt = None,
    weight: WeightOpt = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over the recipe's test-time augmentation views.")] = False,
    proba: Annotated[bool, typer.Option("--proba", help="Add a prob_<class> column per class.")] = False,
    checkpoints: CheckpointsOpt = None,
    blend: Annotated[Optional[str], typer.Option("--blend", help="A blend (`comp blend --name NAME`): its runs, weights and fitted decision instead of --run/--weight.")] = None,
    decision: Annotated[Optional[str], typer.Option("--decision", help=f"{', '.join(DECISIONS)} (ordinal_thresholds: ordinal tasks, threshold: binary tasks); default: the run's [predict] decision.")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Binary tasks: the positive class when its probability is at least P (instead of a tuned threshold).")] = None,
    decision_from: Annotated[Optional[str], typer.Option("--decision-from", help="Decide with the values fitted on another run of the same classes (its thresholds.json), by its rule unless --decision names one.")] = None,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="Predict from a `comp export` bundle instead of runs (nothing is written inside it).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="The competition folder holding the test set ([data] root), instead of the run's.")] = None,
    adapt_bn: Annotated[bool, typer.Option("--adapt-bn", help="Re-estimate each model's BatchNorm statistics on the test images first (no labels; the run is not changed).")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Where the test set is: data.root, data.test_csv, data.test_image_dir, data.path_col or data.sample_submission=VALUE (repeatable).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="--bundle: auto (ONNX Runtime when the bundle has ONNX models and onnxruntime is installed, else torch), onnx or torch.")] = "auto",
) -> None:
    """Predict test.csv with one or more runs and write a leaderboard-format CSV."""
    check_checkpoints(checkpoints)
    if engine not in ("auto", "onnx", "torch") or (engine != "auto" and bundle is None):
        raise CompError(f"--engine {engine!r}: auto, onnx or torch, with --bundle")
    from comp.predict.predict import predict as run_predict
    from comp.run.folder import resolve_runs

    where = [f"data.root={data}"] if data is not None else []  # the test set's place (point_data)
    where += list(set_ or [])
    if bundle is not None:
        from comp.predict.bundle import open_bundle

        given = [o for o, v in (("--run", run), ("--weight", weight), ("--checkpoints", checkpoints),
                                ("--blend", blend), ("--decision-from", decision_from)) if v]
        if given:
            raise CompError(f"--bundle fixes the runs, their weights and checkpoints: leave out "
                            f"{', '.join(given)} (or export the bundle again)")
        found = open_bundle(bundle)  # every file's checksum, before anything is read
        if Path(out).resolve().is_relative_to(Path(bundle).resolve()):
            raise CompError(f"--out {out} is inside the bundle {bundle}: comp writes nothing there")
        rule = decision or found.decision
        if threshold is not None:
            from comp.predict.decision import load_decision
            from comp.run.folder import RunDir

            if found.blend is not None:
                raise CompError("--threshold is for runs: a blend's bundle decides with the values `comp blend` "
                                "fitted (or --decision argmax)")
            rule = load_decision(RunDir(found.run_dirs[0]).recipe(), found.run_dirs[0], decision, threshold=threshold)
        from comp.predict.onnx import choose_files

        # The console only (no predict.log): the bundle may be read-only.
        run_predict(found.run_dirs, out=out, tta=tta or found.tta, weights=found.weights, device=device,
                    proba=proba, decision=rule, data=where, weight_files=choose_files(found.runs, engine, device),
                    run_logs=False, blend=found.blend, adapt_bn=adapt_bn)
        return
    blended = None
    if blend is not None:
        from comp.run.folder import RunDir, blend_members

        if run or weight:
            raise CompError("--blend names its runs and weights: give --blend or --run/--weight, not both")
        blended, run_dirs, weight = blend_members(runs, blend)  # each run as the blend was fitted on it
        run = [RunDir(d).name for d in run_dirs]
    else:
        run_dirs = chosen_runs(runs, run)  # without --run: the latest, said with its task
    if threshold is not None or decision_from:
        from comp.predict.decision import load_decision
        from comp.run.folder import RunDir

        if blended is not None:
            raise CompError("--threshold and --decision-from are for runs: a blend decides with the values "
                            "`comp blend` fitted (or --decision argmax)")
        source = resolve_runs(runs, [decision_from])[0] if decision_from else None
        decision = load_decision(RunDir(run_dirs[0]).recipe(), run_dirs[0], decision, threshold=threshold,
                                 source=source)
    if blended is not None:
        logger.info(f"blend {blended.name}: " + ", ".join(f"{r} {w:.3f}" for r, w in zip(run, weight)))
    # Each run's predict.log gets what this command said, ending with the file written (a --run PATH
    # outside --runs gets none).
    run_predict(run_dirs, out=out, tta=tta, weights=weight, device=device, proba=proba, checkpoints=checkpoints,
                decision=decision, blend=blended, data=where, logs_under=runs, adapt_bn=adapt_bn)
    if len(run_dirs) == 1:  # a tracked run's submission goes with its tracker run (one warning if it fails)
        from comp.run.folder import RunDir
        from comp.run.track import reopen

        reopen(RunDir(run_dirs[0])).artifacts([Path(out)])
