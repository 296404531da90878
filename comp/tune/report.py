"""``comp tune --report``: a study's trials table (values, OOF figure, state, time), the
optimisation history and parameter importances as pictures, and the best trial's recipe as
``runs/<study>/best.toml``, ready for ``comp fit``."""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from comp import atomic
from comp.errors import CompError
from comp.evaluate.report import markdown_grid, text_grid
from comp.recipe import load_recipe, recipe_to_toml
from comp.recipe.load import MAX_NAME
from comp.run.folder import RunDir
from comp.tune.folder import StudyDir, trial_name

logger = logging.getLogger(__name__)


def trials_frame(study: Any) -> pd.DataFrame:
    """One row a trial: number, state, the OOF figure, its values, run, seconds, what it retried."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        retry = t.system_attrs.get("failed_trial", t.user_attrs.get("retry_of"))
        row = {"trial": t.number, "state": t.state.name.lower(), "value": t.value,
               "metric": t.user_attrs.get("metric", ""), **t.params,
               "pruned_at": max(t.intermediate_values) if t.state.name == "PRUNED" and t.intermediate_values else None,
               "seconds": t.user_attrs.get("seconds"), "run": t.user_attrs.get("run", trial_name(t.number)),
               "retry_of": retry}
        rows.append(row)
    return pd.DataFrame(rows)


def best_trial(study: Any) -> Any | None:
    """The best finished trial, or None while no trial has finished."""
    try:
        return study.best_trial
    except ValueError:
        return None


def write_study_report(study: Any, folder: StudyDir, recipe_file: str | None = None) -> list[Path]:
    """trials.csv, report.md, history.png, importances.png and best.toml in the study's folder;
    the table and the best trial are logged. The files written."""
    frame = trials_frame(study)
    if frame.empty:
        raise CompError(f"study {folder.name!r} has no trials yet")
    written = [folder.trials_csv]
    atomic.write_csv(folder.trials_csv, frame)
    rows = {str(r["trial"]): {c: _cell(r[c]) for c in frame.columns if c != "trial"} for _, r in frame.iterrows()}
    columns = [c for c in frame.columns if c != "trial"]
    logger.info(f"study {folder.name!r}: {len(frame)} trials\n" + text_grid(rows, columns))
    pictures = [p for p in (_picture(study, folder.history_png, "history"),
                            _picture(study, folder.importances_png, "importances")) if p is not None]
    written += pictures
    best = best_trial(study)
    lines = [f"# Study {folder.name}", "", f"{len(frame)} trials, direction {study.direction.name.lower()}; "
             f"states: " + ", ".join(f"{n} {s}" for s, n in frame["state"].value_counts().items()), ""]
    if best is not None:
        path = write_best(study, best, folder, recipe_file)
        written.append(path)
        metric = best.user_attrs.get("metric", "value")
        logger.info(f"best: trial {best.number} ({best.user_attrs.get('run', '')}), OOF {metric} {best.value:.4f}: "
                    f"{', '.join(f'{k} {v}' for k, v in best.params.items())}; `comp fit {path}` trains it")
        lines += [f"Best: trial {best.number}, OOF {metric} {best.value:.4f} "
                  f"({best.user_attrs.get('decided', 'argmax')}); its recipe: `{path.name}`.", ""]
    lines += [markdown_grid(rows, columns), ""]
    lines += [f"![{p.stem}]({p.name})" for p in pictures]
    atomic.write_text(folder.report_md, "\n".join(lines) + "\n")
    written.append(folder.report_md)
    logger.info(f"report: {folder.report_md}")
    return written


def write_best(study: Any, best: Any, folder: StudyDir, recipe_file: str | None) -> Path:
    """The best trial's resolved recipe as best.toml, named ``<study>-best``: its run's own
    recipe.toml when the run is here, else the study's recipe file with the trial's overrides."""
    run = RunDir(folder.path / best.user_attrs.get("run", trial_name(best.number)))
    if run.exists():
        recipe = run.recipe()
    elif recipe_file is not None and best.user_attrs.get("overrides"):
        recipe = load_recipe(recipe_file, best.user_attrs["overrides"])
    else:
        raise CompError(f"the best trial's run {run.path} is not here (trained on another machine?); "
                        f"run the report where --runs holds it, or give the recipe")
    recipe = dataclasses.replace(recipe, name=f"{folder.name[:MAX_NAME - 5]}-best")
    header = (f"# comp tune: study {folder.name}, trial {best.number}, OOF "
              f"{best.user_attrs.get('metric', 'value')} {best.value:.4f}\n")
    atomic.write_text(folder.best_toml, header + recipe_to_toml(recipe))
    return folder.best_toml


def _picture(study: Any, path: Path, which: str) -> Path | None:
    """Optuna's optimisation history or parameter importances, drawn with matplotlib; None when
    the study cannot draw it yet (importances need two finished trials with different values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    draw = vis.plot_optimization_history if which == "history" else vis.plot_param_importances
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = draw(study)
    except Exception as err:  # noqa: BLE001 - a picture the study cannot draw yet is said, not fatal
        logger.info(f"{path.name}: not drawn ({err})")
        return None
    fig = ax.figure
    try:
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
