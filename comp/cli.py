"""The ``comp`` command line: thin wrappers over the library, one command per job.

Every user error is a :class:`~comp.errors.CompError`: one line on stderr and exit code 2.
Heavy imports (torch, timm) happen inside the commands, so ``comp --help`` stays quick.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.errors import CompError

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


@app.command()
@user_errors
def demo(
    dest: Annotated[Path, typer.Option(help="Where to write the competition folder.")] = Path("data/digits"),
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
) -> None:
    """Build the demo competition from scikit-learn's bundled handwritten digits."""
    from comp.demo import build_demo

    s = build_demo(dest, seed=seed)
    typer.echo(f"wrote {s.dest}: {s.n_train} training and {s.n_test} test images, {s.num_classes} classes")


@app.command()
@user_errors
def fit(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    fold: Annotated[Optional[int], typer.Option("--fold", help="Train only this fold.")] = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run's unfinished folds from last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Drop unreadable training images (listed) instead of stopping.")] = False,
    gpus: Annotated[int, typer.Option("--gpus", help="Train each fold with DDP over N processes (launches torchrun).")] = 0,
    folds_parallel: Annotated[bool, typer.Option("--folds-parallel", help="Train folds as separate processes, one per GPU.")] = False,
    procs: Annotated[Optional[int], typer.Option("--procs", help="With --folds-parallel and no GPU: CPU processes.")] = None,
    no_merge: Annotated[bool, typer.Option("--no-merge", hidden=True)] = False,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Train every fold of a recipe into runs/<recipe name>/."""
    from comp.fit import fit as run_fit
    from comp.fold_processes import fit_folds_parallel
    from comp.recipe import load_recipe

    overrides = set_ or []
    if gpus > 1:
        _launch_torchrun(gpus)
    loaded = load_recipe(recipe, overrides)
    if folds_parallel:
        run_dir = fit_folds_parallel(str(recipe), overrides, runs, processes=procs,
                                     overwrite=overwrite, resume=resume, device=device)
    else:
        run_dir = run_fit(loaded, recipe_file=str(recipe), overrides=overrides, runs_root=runs,
                          only_fold=fold, resume=resume, overwrite=overwrite, device=device,
                          skip_bad=skip_bad, merge=not no_merge)
    from comp.distributed import env_world

    if env_world()[0] == 0:  # under torchrun, rank 0 speaks for all
        typer.echo(f"done: {run_dir} (next: comp predict --run {loaded.name} --out submissions/{loaded.name}.csv)")


@app.command()
@user_errors
def predict(
    out: Annotated[Path, typer.Option("--out", help="The submission CSV to write.")],
    run: Annotated[Optional[list[str]], typer.Option("--run", help="Run name (repeatable to ensemble); default: the latest run.")] = None,
    weight: Annotated[Optional[list[float]], typer.Option("--weight", help="Ensemble weight per --run, in order.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over the recipe's test-time augmentation views.")] = False,
    proba: Annotated[bool, typer.Option("--proba", help="Add a prob_<class> column per class.")] = False,
    checkpoints: Annotated[Optional[str], typer.Option("--checkpoints", help="best, top_k, last or swa (default: each run's [predict] checkpoints).")] = None,
    decision: Annotated[Optional[str], typer.Option("--decision", help="argmax or ordinal_thresholds (default: the run's [predict] decision).")] = None,
    device: DeviceOpt = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Predict test.csv with one or more runs and write a leaderboard-format CSV."""
    if checkpoints not in (None, "best", "top_k", "last", "swa"):
        raise CompError(f"--checkpoints must be best, top_k, last or swa, got {checkpoints!r}")
    from comp.predict import predict as run_predict
    from comp.runs import resolve_runs

    run_dirs = resolve_runs(runs, run)
    path = run_predict(run_dirs, out=out, tta=tta, weights=weight, device=device, proba=proba,
                       checkpoints=checkpoints, decision=decision)
    typer.echo(f"wrote {path}")


@app.command("cv-report")
@user_errors
def cv_report(
    run: Annotated[Optional[list[str]], typer.Option("--run", help="Run name (repeatable); default: every run.")] = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Out-of-fold metrics, confusion matrices and learning curves; runs side by side."""
    from comp.report import cv_report as run_report
    from comp.runs import resolve_runs

    run_report(resolve_runs(runs, run, default_all=True), runs)


@app.command()
@user_errors
def check(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    set_: SetOpt = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Warn about unreadable images instead of failing.")] = False,
) -> None:
    """Check a recipe's data: columns, ids, labels, and that every image decodes."""
    from comp.check import check_data, format_report
    from comp.recipe import load_recipe

    report = check_data(load_recipe(recipe, set_ or []), skip_bad=skip_bad)
    typer.echo(format_report(report))


@app.command()
@user_errors
def score(
    submission: Annotated[Path, typer.Argument(help="The submission CSV.")],
    solution: Annotated[Path, typer.Option("--solution", help="CSV with the true labels.")],
) -> None:
    """Score a submission against the true labels (the local leaderboard)."""
    from comp.score import format_scores, score_submission

    typer.echo(format_scores(score_submission(submission, solution)))


@app.command()
@user_errors
def bench(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    steps: Annotated[int, typer.Option("--steps", help="Batches timed per measurement.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Batches run before timing.")] = 3,
    rounds: Annotated[int, typer.Option("--rounds", help="Turns the loader, step and full step take, to share drift.")] = 4,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write bench.json (default: runs/<name>/bench.json).")] = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Measure images/s of the data pipeline, the train step, both together, and inference."""
    from comp.bench import bench as run_bench
    from comp.bench import format_bench, write_bench
    from comp.recipe import load_recipe

    loaded = load_recipe(recipe, set_ or [])
    result = run_bench(loaded, steps=steps, warmup=warmup, rounds=rounds, device=device, log=lambda _: None)
    typer.echo(format_bench(result))
    typer.echo(f"wrote {write_bench(result, out or runs / loaded.name / 'bench.json')}")


@app.command()
@user_errors
def cache(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    set_: SetOpt = None,
) -> None:
    """Write resized, preprocessed copies of the train and test images, read instead of them."""
    from comp.cache import build_cache
    from comp.recipe import load_recipe

    typer.echo(f"cached {build_cache(load_recipe(recipe, set_ or [])).line()}")


@import_app.command("medmnist")
@user_errors
def import_medmnist(
    npz: Annotated[Path, typer.Argument(help="A MedMNIST v2 .npz file.")],
    dest: Annotated[Path, typer.Argument(help="The competition folder to create.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = False,
) -> None:
    """Turn a MedMNIST .npz into a competition folder (train/valid/test, solution.csv)."""
    from comp.medmnist import import_medmnist as run_import

    summary = run_import(npz, dest, overwrite=overwrite)
    typer.echo(f"wrote {dest}: {summary}")


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


def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app()
    except CompError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
