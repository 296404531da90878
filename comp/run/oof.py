"""Out-of-fold predictions, in one place: merging the folds' validation predictions into oof.csv
when a run is merged (:func:`merge_oof`, which also fits the task kind's decision on them: ordinal
cut points, a binary task's probability threshold), reading them back (:func:`read_oof`), and
scoring a fitted decision on them (:func:`oof_decisions`): argmax, the decision on the rows it was
fitted on, and each fold decided by values fitted on the other folds. The merge (:meth:`comp.run.life.Run.merge`), ``comp cv-report``, ``comp blend`` and
benchmarks/retinamnist_oof.py all use these."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.table import ClassMap
from comp.kinds import Decided, Decision, DecisionRule, kind_of, make_task, rule_of
from comp.kinds.multiclass import MULTICLASS
from comp.metrics import Task
from comp.run.folder import FOLD_COLUMN, LABEL_COLUMN, RunDir, find_run, prob_columns
from comp.run.thresholds import inherit_decision, save_fitted

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


def oof_from_frame(frame: pd.DataFrame, classes: ClassMap, task: Task | None = None) -> Oof:
    """oof.csv's rows: the true values as the task's kind reads its labels (class indices; a
    regression task's values), and the probability (value) matrix."""
    kind = kind_of(task) if task is not None else MULTICLASS
    return Oof(frame, kind.truth(frame[LABEL_COLUMN].to_numpy(), classes.labels),
               frame[prob_columns(classes.labels)].to_numpy(dtype=np.float64), classes)


def read_oof(run_dir: Path, classes: ClassMap | None = None) -> Oof:
    """A run's oof.csv, in the run's own class order unless ``classes`` is given."""
    run = RunDir(run_dir)
    return oof_from_frame(run.read_oof(), classes or ClassMap(tuple(run.classes())), run.task())


Decisions = Decided  # (the name benchmarks/retinamnist_oof.py reads)


def oof_decisions(oof: Oof, task: Task, decision: Decision) -> Decided:
    """``decision`` (fitted on all the OOF rows) on them and, nested, the same rule fitted on the
    other folds, beside argmax."""
    return rule_of(decision.rule).decided(oof.probs, oof.y_true, oof.folds, task, decision)


def ordinal_decisions(oof: Oof, cuts: np.ndarray) -> Decided:
    """Ordinal cut points on the expected grade: ``cuts`` (fitted on all rows) and, nested, cuts
    fitted on the other folds."""
    task = make_task("ordinal", len(oof.classes))
    return oof_decisions(oof, task, Decision("ordinal_thresholds", cuts=cuts))


def merge_oof(run: RunDir) -> list[int]:
    """Merge the finished folds' OOF predictions into oof.csv and fit the task's decision on them
    (thresholds.json), logging how it compares with argmax; the folds merged.

    The task kind's merge rule is fitted (:attr:`comp.kinds.base.Kind.merge_rule`: ordinal
    tasks QWK-maximising cut points, binary tasks a probability threshold tuned for
    ``task.decision_metric``); a kind that decides by argmax fits nothing (and a stale
    thresholds.json is removed). A run without validation rows started from another
    (``[model] init_from``) takes that run's decision. The classes and the task are the run's
    own, as its fit recorded them in run.json.
    """
    done = run.completed_folds()
    frame = _write_oof(run, done)
    task = run.task()  # as the fit resolved it (run.json), not anew from recipe.toml
    oof = None if frame is None else oof_from_frame(frame, ClassMap(tuple(run.classes())), task)
    rule = kind_of(task).merge_rule
    if oof is not None and rule is not None:
        _fit_decision(run.path, oof, task, rule)
    elif oof is None and rule is not None and run.recipe().model.init_from:
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
    labels = run.classes()
    try:
        chosen = rule_of(saved.fitted_rule)
        fitted = chosen.describe(chosen.from_json(saved.to_json(), labels), [task.name(i) for i in range(len(labels))])
    except (KeyError, ValueError, TypeError):  # values of classes the run does not have
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


def _fit_decision(run_dir: Path, oof: Oof, task: Task, rule: DecisionRule) -> None:
    """Fit the task kind's decision on the OOF (thresholds.json) and log how it compares with argmax."""
    decision = rule.fit(oof.probs, oof.y_true, task)
    names = [task.name(i) for i in range(len(oof.classes))]
    save_fitted(run_dir, rule, decision, list(oof.classes.labels), rule.fitted_for(task))
    shown, score = rule.figure(task)
    argmax, in_sample, nested = rule.decided(oof.probs, oof.y_true, oof.folds, task, decision).scored(
        lambda pred: score(oof.y_true, oof.probs, pred))
    logger.info(_decision_line(shown, rule.label, argmax, in_sample, nested, rule.values(decision, names),
                               kind_of(task).plain_rule.name))


def _decision_line(metric: str, rule: str, argmax: float, in_sample: float, nested: float | None,
                   fitted: str, plain: str = "argmax") -> str:
    """The log line comparing argmax with a fitted decision: its nested score (fitted on the
    other folds) when there is one, and the optimistic in-sample one."""
    if nested is None:  # one fold: only the in-sample figure exists
        return (f"OOF {metric}: {plain} {argmax:.4f}, {rule} {in_sample:.4f} fitted and scored on the "
                f"same rows (optimistic; {fitted})")
    return (f"OOF {metric}: {plain} {argmax:.4f}, {rule} {nested:.4f} fitted on the other folds "
            f"({in_sample:.4f} fitted and scored on the same rows; {fitted})")
