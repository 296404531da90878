"""Out-of-fold predictions, in one place: merging the folds' validation predictions into oof.csv
when a run is merged (:func:`merge_oof`, which also fits the task's decision on them: ordinal cut
points, or a binary task's probability threshold), reading them back (:func:`read_oof`), and
scoring a fitted decision on them (:func:`ordinal_decisions`, :func:`binary_decisions`): argmax,
the decision on the rows it was fitted on, and each fold cut by a decision fitted on the other
folds. The merge (:meth:`comp.run.life.Run.merge`), ``comp cv-report``, ``comp blend`` and
benchmarks/retinamnist_oof.py all use these."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.table import ClassMap
from comp.decisions import (apply_binary_threshold, apply_thresholds, expected_grade, fit_binary_threshold,
                            fit_thresholds, nested_binary_predictions, nested_threshold_predictions)
from comp.metrics import Task, quadratic_weighted_kappa, summarise
from comp.run.folder import FOLD_COLUMN, LABEL_COLUMN, RunDir, find_run, prob_columns
from comp.run.thresholds import inherit_decision, save_binary_threshold, save_thresholds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Oof:
    """A run's out-of-fold predictions: oof.csv, its true class indices and probability matrix."""

    frame: pd.DataFrame
    y_true: np.ndarray
    probs: np.ndarray
    classes: ClassMap

    @property
    def folds(self) -> np.ndarray:
        return self.frame[FOLD_COLUMN].to_numpy()


def oof_from_frame(frame: pd.DataFrame, classes: ClassMap) -> Oof:
    return Oof(frame, classes.encode(frame[LABEL_COLUMN].to_numpy()),
               frame[prob_columns(classes.labels)].to_numpy(dtype=np.float64), classes)


def read_oof(run_dir: Path, classes: ClassMap | None = None) -> Oof:
    """A run's oof.csv, in the run's own class order unless ``classes`` is given."""
    run = RunDir(run_dir)
    return oof_from_frame(run.read_oof(), classes or ClassMap(tuple(run.classes())))


@dataclass(frozen=True)
class Decisions:
    """Class predictions of a fitted decision on the OOF rows, beside argmax."""

    argmax: np.ndarray
    in_sample: np.ndarray  # the decision fitted on all rows, applied to them (optimistic)
    nested: np.ndarray | None  # each fold cut by a decision fitted on the other folds; None: one fold

    def scored(self, score: Callable[[np.ndarray], float]) -> tuple[float, float, float | None]:
        """(argmax, in-sample, nested) by ``score(predictions)``."""
        return (score(self.argmax), score(self.in_sample),
                None if self.nested is None else score(self.nested))


def ordinal_decisions(oof: Oof, cuts: np.ndarray) -> Decisions:
    """Ordinal cut points on the expected grade: ``cuts`` (fitted on all rows) and, nested, cuts
    fitted on the other folds."""
    grade = expected_grade(oof.probs)
    n = len(oof.classes)
    return Decisions(oof.probs.argmax(1), apply_thresholds(grade, cuts),
                     nested_threshold_predictions(grade, oof.y_true, oof.folds, n))


def binary_decisions(oof: Oof, task: Task, threshold: float) -> Decisions:
    """A binary task's threshold on the positive class's probability (tuned for
    ``task.decision_metric``) and, nested, thresholds tuned on the other folds."""
    pos = task.positive
    nested = nested_binary_predictions(oof.probs[:, pos], oof.y_true == pos, oof.folds, task.decision_metric)
    return Decisions(oof.probs.argmax(1), apply_binary_threshold(oof.probs, pos, threshold),
                     None if nested is None else np.where(nested, pos, 1 - pos))


def merge_oof(run: RunDir) -> list[int]:
    """Merge the finished folds' OOF predictions into oof.csv and fit the task's decision on them
    (thresholds.json), logging how it compares with argmax; the folds merged.

    Ordinal tasks get QWK-maximising cut points, binary tasks a probability threshold tuned for
    ``task.decision_metric``; multiclass tasks decide by argmax, so nothing is fitted (and a
    stale thresholds.json is removed). A run without validation rows started from another
    (``[model] init_from``) takes that run's decision. The classes and the task are the run's
    own, as its fit recorded them in run.json.
    """
    done = run.completed_folds()
    frame = _write_oof(run, done)
    oof = None if frame is None else oof_from_frame(frame, ClassMap(tuple(run.classes())))
    task = run.task()  # as the fit resolved it (run.json), not anew from recipe.toml
    if oof is not None and task.kind == "ordinal":
        _fit_thresholds(run.path, oof)
    elif oof is not None and task.kind == "binary":
        _fit_binary_threshold(run.path, oof, task)
    elif oof is None and task.kind != "multiclass" and run.recipe().model.init_from:
        _inherit_decision(run, run.recipe().model.init_from, task)
    else:
        run.thresholds_path.unlink(missing_ok=True)
    return done


def _inherit_decision(run: RunDir, name: str, task: Task) -> None:
    """A run without validation rows started from another run (``[model] init_from`` ``name``,
    e.g. a "full" train_all step) takes that run's fitted decision, so it can decide as the run
    it started from did; the log says what it took and how to decide otherwise."""
    source = find_run(run.home.parent, name)
    saved = None if source is None else inherit_decision(run.path, source.path)
    if saved is None:
        return
    if saved.fitted_rule == "threshold":
        labels = run.classes()
        pos = task.name(labels.index(saved.positive)) if saved.positive in labels else saved.positive
        fitted = f"{pos} when P({pos}) >= {saved.threshold:.3f}"
    else:
        fitted = saved.describe()
    rule = run.recipe().predict.decision
    rule = rule if rule != "argmax" else saved.rule
    use = (f'comp predict decides by it ([predict] decision = "{rule}"; --decision argmax does not)'
           if rule != "argmax" else f"comp predict --decision {saved.fitted_rule} uses it")
    logger.info(f"decision: {fitted}, fitted on {source.name}'s validation rows (init_from; this run has none): "
                f"{use}")


def _write_oof(run: RunDir, folds: list[int]) -> pd.DataFrame | None:
    """Merge the finished folds' validation predictions into oof.csv."""
    parts = [frame for k in folds if (frame := run.fold(k).read_predictions()) is not None]
    if not parts:
        return None
    oof = pd.concat(parts, ignore_index=True)
    run.write_oof(oof)
    return oof


def _fit_thresholds(run_dir: Path, oof: Oof) -> None:
    """Fit ordinal cut points on the OOF expected grade, for ``decision = "ordinal_thresholds"``."""
    n = len(oof.classes)
    cuts = fit_thresholds(expected_grade(oof.probs), oof.y_true, n)
    save_thresholds(run_dir, cuts)
    argmax, in_sample, nested = ordinal_decisions(oof, cuts).scored(
        lambda pred: quadratic_weighted_kappa(oof.y_true, pred, n))
    logger.info(_decision_line("QWK", "ordinal thresholds", argmax, in_sample, nested,
                               "cuts " + ", ".join(f"{c:.2f}" for c in cuts)))


def _fit_binary_threshold(run_dir: Path, oof: Oof, task: Task) -> None:
    """Tune the positive class's probability threshold on the OOF for ``decision = "threshold"``."""
    pos, metric, labels = task.positive, task.decision_metric, oof.classes.labels
    threshold = fit_binary_threshold(oof.probs[:, pos], oof.y_true == pos, metric)
    save_binary_threshold(run_dir, threshold, labels[pos], metric)
    argmax, in_sample, nested = binary_decisions(oof, task, threshold).scored(
        lambda pred: summarise(task, oof.y_true, oof.probs, y_pred=pred)[metric])
    logger.info(_decision_line(metric, "threshold", argmax, in_sample, nested,
                               f"P({task.name(pos)}) >= {threshold:.3f}"))


def _decision_line(metric: str, rule: str, argmax: float, in_sample: float, nested: float | None,
                   fitted: str) -> str:
    """The log line comparing argmax with a fitted decision: its nested score (fitted on the
    other folds) when there is one, and the optimistic in-sample one."""
    if nested is None:  # one fold: only the in-sample figure exists
        return (f"OOF {metric}: argmax {argmax:.4f}, {rule} {in_sample:.4f} fitted and scored on the "
                f"same rows (optimistic; {fitted})")
    return (f"OOF {metric}: argmax {argmax:.4f}, {rule} {nested:.4f} fitted on the other folds "
            f"({in_sample:.4f} fitted and scored on the same rows; {fitted})")
