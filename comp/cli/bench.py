"""``comp bench``: measure the pipeline's throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from comp.cli import DeviceOpt, RunsOpt, SetOpt, app, user_errors


@app.command()
@user_errors
def bench(
    recipe: Annotated[Path, typer.Argument(help="The recipe TOML file.")],
    steps: Annotated[int, typer.Option("--steps", help="Batches timed per measurement.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Batches run before timing.")] = 3,
    rounds: Annotated[int, typer.Option("--rounds", help="Turns the loader, step and full step take, to share drift.")] = 4,
    augment_on: Annotated[Optional[str], typer.Option(
        "--augment-on", help="Where training augmentation runs: cpu, device, or both (each measured); "
                             "default: the recipe's [augment] on.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Whole training epochs timed as fit runs them (0: none).")] = 1,
    infer_images: Annotated[int, typer.Option("--infer-images", help="Test images timed for inference after its "
                                                                     "warm-up (the test set cycled).")] = 2000,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write bench.json (default: runs/<name>/bench.json).")] = None,
    runs: RunsOpt = Path("runs"),
) -> None:
    """Measure images/s of the data pipeline, the bare and the full train step, whole epochs, the bare
    forward pass and inference, in steady state."""
    from comp.evaluate.bench import bench as run_bench
    from comp.evaluate.bench import format_bench, write_bench
    from comp.recipe import load_recipe
    from comp.run.folder import RunDir

    loaded = load_recipe(recipe, set_ or [])
    result = run_bench(loaded, steps=steps, warmup=warmup, rounds=rounds, device=device, augment_on=augment_on,
                       epochs=epochs, infer_images=infer_images)
    typer.echo(format_bench(result))
    typer.echo(f"wrote {write_bench(result, out or RunDir.under(runs, loaded.name).bench_json)}")
