"""Run folders: ``runs/<recipe name>/`` with run.json, the resolved recipe, folds and outputs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from comp import atomic
from comp.errors import CompError
from comp.recipe import Recipe, load_recipe

RUN_INFO = "run.json"
RECIPE_FILE = "recipe.toml"
OOF_FILE = "oof.csv"
FOLD_OOF_FILE = "valid_predictions.csv"
RESULT_FILE = "result.json"


@dataclass
class RunInfo:
    """What a run records about itself beside its recipe."""

    name: str
    recipe_file: str
    overrides: list[str]
    classes: list[str]
    scheme: str
    folds: list[int]
    status: str = "running"  # running → complete, partial or interrupted
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    info.updated = time.time()
    atomic.write_text(run_dir / RUN_INFO, json.dumps(asdict(info), indent=2) + "\n")


def read_run_info(run_dir: Path) -> RunInfo:
    path = run_dir / RUN_INFO
    try:
        return RunInfo(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise CompError(f"not a run folder (no {RUN_INFO}): {run_dir}") from None
    except (json.JSONDecodeError, TypeError) as err:
        raise CompError(f"cannot read {path}: {err}") from None


def run_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe a run was trained with (overrides included)."""
    return load_recipe(run_dir / RECIPE_FILE)


def list_runs(root: Path) -> list[Path]:
    """Run folders under ``root``, oldest first by last update."""
    runs = [p.parent for p in root.glob(f"*/{RUN_INFO}")]
    return sorted(runs, key=lambda p: (read_run_info(p).updated, p.name))


def resolve_runs(root: Path, names: list[str] | None, *, default_all: bool = False) -> list[Path]:
    """Named runs (a name under ``root`` or a path); none named → the latest run (or all)."""
    if names:
        dirs = []
        for name in names:
            candidate = Path(name) if Path(name).is_dir() and (Path(name) / RUN_INFO).exists() else root / name
            if not (candidate / RUN_INFO).is_file():
                known = ", ".join(p.name for p in list_runs(root)) if root.is_dir() else ""
                raise CompError(f"no run named {name!r} under {root}/" + (f" (runs: {known})" if known else ""))
            dirs.append(candidate)
        return dirs
    runs = list_runs(root) if root.is_dir() else []
    if not runs:
        raise CompError(f"no runs under {root}/ yet: train one with `comp fit RECIPE`")
    return runs if default_all else [runs[-1]]


def completed_folds(run_dir: Path) -> list[int]:
    """Folds whose result.json exists: written last, so its presence means the fold finished."""
    return sorted(int(p.parent.name[4:]) for p in run_dir.glob(f"fold*/{RESULT_FILE}"))


def prob_column(label: str) -> str:
    return f"prob_{label}"
