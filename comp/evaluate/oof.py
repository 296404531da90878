"""The end of a fit: merge the folds' validation predictions into oof.csv, fit the task's decision
on them (ordinal cut points, or a binary task's probability threshold), and mark the run complete
(or partial)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.table import ClassMap
from comp.evaluate.thresholds import (fit_binary_threshold, fit_thresholds, nested_binary_predictions,
                                      nested_threshold_predictions)
from comp.metrics import Task, quadratic_weighted_kappa, summarise
from comp.predict.decision import (apply_binary_threshold, apply_thresholds, expected_grade, save_binary_threshold,
                                   save_thresholds)
from comp.recipe.task import resolve_task
from comp.train.rundir import RunDir, prob_columns


def finish_run(run_dir: Path, log: Callable[[str], None] = print) -> None:
    """Merge the finished folds' OOF predictions, fit the task's decision, set the status.

    Ordinal tasks get QWK-maximising cut points, binary tasks a probability threshold tuned for
    ``task.decision_metric``; multiclass tasks decide by argmax, so nothing is fitted (and a
    stale thresholds.json is removed).

    Called once a fit's folds are trained (on rank 0 only under DDP, by the parent with
    ``--folds-parallel``); the classes are the run's own, from run.json.
    """
    run = RunDir(run_dir)
    info = run.info()
    classes = ClassMap(tuple(info.classes))
    done = run.completed_folds()
    oof = _write_oof(run, done)
    task = resolve_task(run.recipe(), classes.labels)
    if oof is not None and task.kind == "ordinal":
        _fit_thresholds(run_dir, oof, classes, log)
    elif oof is not None and task.kind == "binary":
        _fit_binary_threshold(run_dir, oof, classes, task, log)
    else:
        run.thresholds_path.unlink(missing_ok=True)
    info.status = "complete" if set(done) >= set(info.folds) else "partial"
    run.write_info(info)


def _write_oof(run: RunDir, folds: list[int]) -> pd.DataFrame | None:
    """Merge the finished folds' validation predictions into oof.csv."""
    parts = [frame for k in folds if (frame := run.fold(k).read_predictions()) is not None]
    if not parts:
        return None
    oof = pd.concat(parts, ignore_index=True)
    run.write_oof(oof)
    return oof


def _fit_thresholds(run_dir: Path, oof: pd.DataFrame, classes: ClassMap,
                    log: Callable[[str], None]) -> None:
    """Fit ordinal cut points on the OOF expected grade, for ``decision = "ordinal_thresholds"``."""
    y_true = classes.encode(oof["label"].to_numpy())
    probs = oof[prob_columns(classes.labels)].to_numpy(dtype=np.float64)
    grade = expected_grade(probs)
    cuts = fit_thresholds(grade, y_true, len(classes))
    save_thresholds(run_dir, cuts)
    n = len(classes)
    argmax_qwk = quadratic_weighted_kappa(y_true, probs.argmax(1), n)
    cut_qwk = quadratic_weighted_kappa(y_true, apply_thresholds(grade, cuts), n)
    shown = ", ".join(f"{c:.2f}" for c in cuts)
    nested = nested_threshold_predictions(grade, y_true, oof["fold"].to_numpy(), n)
    if nested is None:  # one fold: only the in-sample figure exists
        log(f"OOF QWK: argmax {argmax_qwk:.4f}, ordinal thresholds {cut_qwk:.4f} fitted and scored on "
            f"the same rows (optimistic; cuts {shown})")
        return
    log(f"OOF QWK: argmax {argmax_qwk:.4f}, ordinal thresholds "
        f"{quadratic_weighted_kappa(y_true, nested, n):.4f} fitted on the other folds "
        f"({cut_qwk:.4f} fitted and scored on the same rows; cuts {shown})")


def _fit_binary_threshold(run_dir: Path, oof: pd.DataFrame, classes: ClassMap, task: Task,
                          log: Callable[[str], None]) -> None:
    """Tune the positive class's probability threshold on the OOF for ``decision = "threshold"``."""
    y_true = classes.encode(oof["label"].to_numpy())
    probs = oof[prob_columns(classes.labels)].to_numpy(dtype=np.float64)
    pos, metric = task.positive, task.decision_metric
    threshold = fit_binary_threshold(probs[:, pos], y_true == pos, metric)
    save_binary_threshold(run_dir, threshold, classes.labels[pos], metric)
    argmax = summarise(task, y_true, probs)[metric]
    tuned = summarise(task, y_true, probs, y_pred=apply_binary_threshold(probs, pos, threshold))[metric]
    what = f"P({classes.labels[pos]}) >= {threshold:.3f}"
    nested = nested_binary_predictions(probs[:, pos], y_true == pos, oof["fold"].to_numpy(), metric)
    if nested is None:  # one fold: only the in-sample figure exists
        log(f"OOF {metric}: argmax {argmax:.4f}, threshold {tuned:.4f} tuned and scored on the same rows "
            f"(optimistic; {what})")
        return
    honest = summarise(task, y_true, probs, y_pred=np.where(nested, pos, 1 - pos))[metric]
    log(f"OOF {metric}: argmax {argmax:.4f}, threshold {honest:.4f} tuned on the other folds "
        f"({tuned:.4f} tuned and scored on the same rows; {what})")
