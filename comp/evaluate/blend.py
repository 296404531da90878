"""Blending runs (``comp blend``): non-negative weights fitted on the runs' out-of-fold predictions
for one metric, then the task's decision fitted on the blended OOF.

The weights come from greedy ensemble selection with replacement (Caruana et al., 2004): start
empty, add (again and again, a run may come back) the run whose addition gives the best metric
of the averaged predictions, for a fixed number of steps; the weights are the counts of the
best-scoring prefix over its length, so they are non-negative, sum to 1, and a run that never
helps gets 0. For an AUC the runs' rank scores can be averaged instead of their probabilities
(``mean = "rank"``); the labels then still come from the probability mean with the same weights.

The blend's honest figure is nested (:func:`cross_fit`): each fold's rows are blended and decided
with weights and a decision fitted on the other folds' rows only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comp.data.table import ClassMap
from comp.errors import CompError
from comp.evaluate.report import text_table
from comp.metrics import MONITOR_MODES, PROB_METRICS, Task
from comp.kinds import ARGMAX, Decision, DecisionRule, kind_of, rule_of
from comp.predict.predict import rank_scores
from comp.run.folder import BlendInfo, RunDir, check_blend_writable, oof_digest, write_blend
from comp.run.oof import Oof, read_oof

logger = logging.getLogger(__name__)

MEANS = ("probability", "rank")
RANK_METRICS = ("roc_auc", "pr_auc", "ovr_auc")  # the metrics of each class column's ordering alone


@dataclass(frozen=True)
class Members:
    """Runs' out-of-fold predictions on the same rows, in the same order."""

    names: list[str]
    probs: np.ndarray  # (runs, rows, classes)
    y_true: np.ndarray
    folds: np.ndarray
    ids: np.ndarray
    classes: ClassMap


def align(oofs: dict[str, Oof]) -> Members:
    """The runs' OOF aligned on the first run's row order; runs whose classes, rows (ids and their
    labels) or folds differ are refused, naming the runs and what differs."""
    (first_name, first), *others = oofs.items()
    ids = first.frame["id"].to_numpy()
    probs = [first.probs]
    for name, oof in others:
        pair = f"runs {first_name!r} and {name!r}"
        if oof.classes.labels != first.classes.labels:
            raise CompError(f"{pair} have different classes: {list(first.classes.labels)} vs "
                            f"{list(oof.classes.labels)}")
        theirs = oof.frame["id"].to_numpy()
        only_first, only_theirs = np.setdiff1d(ids, theirs), np.setdiff1d(theirs, ids)
        if len(only_first) or len(only_theirs) or len(theirs) != len(ids):
            raise CompError(f"{pair} have different OOF rows: {len(ids)} vs {len(theirs)} rows, "
                            f"{_some(only_first)} only in {first_name!r}, {_some(only_theirs)} only in {name!r}")
        order = _index_of(theirs, ids)
        differs = np.asarray(oof.y_true[order] != first.y_true).reshape(len(ids), -1).any(axis=1)  # (rows of labels)
        relabelled = ids[differs]
        if len(relabelled):
            raise CompError(f"{pair} have different labels on the same OOF rows: {_some(relabelled)}")
        moved = oof.folds[order] != first.folds
        if moved.any():
            at = np.flatnonzero(moved)[0]
            raise CompError(f"{pair} have different folds: {_some(ids[moved])} validated in other folds "
                            f"(e.g. {ids[at]}: fold {first.folds[at]} vs {oof.folds[order][at]}); blend runs "
                            f"fitted on the same folds")
        probs.append(oof.probs[order])
    return Members(list(oofs), np.stack(probs), first.y_true, first.folds, ids, first.classes)


def _index_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    where = {v: i for i, v in enumerate(ids)}
    return np.array([where[v] for v in wanted], dtype=np.int64)


def _some(ids: np.ndarray) -> str:
    shown = ", ".join(str(i) for i in ids[:3])
    return f"{len(ids)} row(s)" + (f" ({shown}{', ...' if len(ids) > 3 else ''})" if len(ids) else "")


# ------------------------------------------------------------------------------ fitting


def scorer(task: Task, metric: str, y_true: np.ndarray) -> Callable[[np.ndarray, np.ndarray | None], float]:
    """``score(scores, pred=None)``: ``metric`` of blended scores (and class predictions, argmax by
    default) against ``y_true``, made to grow as it improves (mae negated); NaN is -inf."""
    only = dataclasses.replace(task, metric_names=(metric,))
    sign = -1.0 if MONITOR_MODES[metric] == "min" else 1.0
    kind = kind_of(task)

    def score(scores: np.ndarray, pred: np.ndarray | None = None) -> float:
        value = kind.summarise(only, y_true, scores, pred)[metric]
        return -math.inf if math.isnan(value) else sign * value

    return score


def greedy_weights(members: np.ndarray, score: Callable[[np.ndarray], float], steps: int = 50) -> np.ndarray:
    """Greedy selection with replacement over ``members`` ``(runs, rows, classes)``: ``steps``
    times, add the member whose addition scores best (the first of ties); the weights are the
    counts of the best-scoring prefix (the shortest of equals) divided by its length. Equal
    weights when no mixture scores at all (every score -inf)."""
    counts = np.zeros(len(members), dtype=np.int64)
    total = np.zeros(members.shape[1:])
    best, best_counts = -math.inf, None
    for step in range(1, steps + 1):
        candidates = [score((total + m) / step) for m in members]
        pick = int(np.argmax(candidates))
        counts[pick] += 1
        total += members[pick]
        if candidates[pick] > best + 1e-12:
            best, best_counts = candidates[pick], counts.copy()
    if best_counts is None:
        return np.full(len(members), 1.0 / len(members))
    return best_counts / best_counts.sum()


def fit_decision(probs: np.ndarray, y_true: np.ndarray, task: Task, metric: str) -> Decision:
    """The task kind's decision fitted on these rows (its merge rule: an ordinal task's QWK cut
    points on the expected grade, a binary task's threshold tuned for ``metric`` when the decision
    moves it, else for ``task.decision_metric``); argmax for a kind that fits none."""
    rule = kind_of(task).merge_rule
    return Decision() if rule is None else rule.fit(probs, y_true, task, metric)


@dataclass(frozen=True)
class BlendFit:
    """Weights (one per run, non-negative, summing to 1) and the decision fitted on the blend."""

    weights: np.ndarray
    decision: Decision


def blend(probs: np.ndarray, weights: np.ndarray, mean: str = "probability") -> tuple[np.ndarray, np.ndarray]:
    """(scores the metric sees, probabilities the decision sees) of ``probs`` ``(runs, rows,
    classes)`` blended with ``weights``: the weighted mean, of the rank scores for the first with
    ``mean = "rank"`` (ranks among these rows, as the test set is ranked among its own)."""
    averaged = np.tensordot(weights, probs, axes=1)
    return (np.tensordot(weights, rank_scores(probs), axes=1) if mean == "rank" else averaged), averaged


def fit_blend(probs: np.ndarray, y_true: np.ndarray, task: Task, metric: str, *, mean: str = "probability",
              steps: int = 50) -> BlendFit:
    """Weights by :func:`greedy_weights` for ``metric`` (of the argmax, or of the scores for a
    metric of probabilities), then the task's decision fitted on the blended probabilities."""
    members = rank_scores(probs) if mean == "rank" else probs
    weights = greedy_weights(members, scorer(task, metric, y_true), steps)
    return BlendFit(weights, fit_decision(np.tensordot(weights, probs, axes=1), y_true, task, metric))


def cross_fit(probs: np.ndarray, folds: np.ndarray, fit: Callable[[np.ndarray], BlendFit],
              mean: str = "probability", plain: DecisionRule = ARGMAX) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Each fold's rows blended by ``fit(rows of the other folds)`` (indices into the rows): its
    scores, argmax and decided classes, so no held-out row was seen by the fit that predicts it.
    None with one fold (a holdout): there are no other rows to fit on."""
    folds = np.asarray(folds)
    if len(np.unique(folds)) < 2:
        return None
    scores, argmax, decided = np.empty(probs.shape[1:]), None, None
    for fold in np.unique(folds):
        held = folds == fold
        fitted = fit(np.flatnonzero(~held))
        scores[held], averaged = blend(probs[:, held], fitted.weights, mean)
        plainly, chosen = plain.apply(Decision(plain.name), averaged), fitted.decision.apply(averaged)
        if argmax is None:  # class indices; a regression task's values; a multilabel task's 0/1 rows
            argmax = np.empty((len(folds),) + plainly.shape[1:], dtype=plainly.dtype)
            decided = np.empty((len(folds),) + chosen.shape[1:], dtype=chosen.dtype)
        argmax[held], decided[held] = plainly, chosen
    return scores, argmax, decided


# ------------------------------------------------------------------------------ comp blend


def figure_columns(task: Task, metric: str) -> tuple[str, str | None]:
    """The table's columns: the metric under argmax, and under the task's fitted decision where
    that decision exists and moves the metric."""
    kind = kind_of(task)
    rule = kind.merge_rule
    return (f"{metric} {kind.plain_rule.name}",
            None if rule is None or metric in PROB_METRICS else f"{metric} {rule.label}")


def make_blend(run_dirs: list[Path], runs_root: Path, *, name: str, metric: str | None = None,
               mean: str = "probability", steps: int = 50, overwrite: bool = False) -> BlendInfo:
    """Fit a blend of ``run_dirs`` on their OOF, print each run's figure, the blend's in-sample
    and nested figures, and write it to ``runs_root`` (:func:`comp.run.folder.blend_path`)."""
    path = check_blend_writable(runs_root, name, overwrite)  # its name, a file comp did not make, a link
    if mean not in MEANS:
        raise CompError(f"the mean must be {' or '.join(MEANS)}, got {mean!r}")
    if steps < 1:
        raise CompError(f"--steps must be at least 1, got {steps}")
    names = [RunDir(d).name for d in run_dirs]
    if len(set(names)) < 2 or len(set(names)) != len(names):
        raise CompError(f"a blend needs two or more different runs, got {names}")
    pruned = [n for n, d in zip(names, run_dirs) if RunDir(d).info().status == "pruned"]
    if pruned:  # comp tune stopped it after its first fold's early epochs: no OOF worth blending
        raise CompError(f"run {pruned[0]!r} was pruned by comp tune (stopped early, its folds not trained): "
                        f"a pruned trial is never blended; blend finished trials")
    fitted_on = {n: oof_digest(d) for n, d in zip(names, run_dirs)}  # before reading: a later change is seen
    members = align({n: read_oof(d) for n, d in zip(names, run_dirs)})
    task = RunDir(run_dirs[0]).task()  # as the fit resolved it (run.json)
    kinds = {n: RunDir(d).task().kind for n, d in zip(names, run_dirs)}
    if len(set(kinds.values())) > 1:
        raise CompError(f"the runs' tasks differ: {', '.join(f'{n} {k}' for n, k in kinds.items())}")
    metric = metric or task.headline
    if metric not in task.metric_names:
        raise CompError(f"--metric {metric!r} is not computed for a {task.kind} task (its metrics: "
                        f"{', '.join(task.metric_names)})")
    if mean == "rank" and metric not in RANK_METRICS:
        raise CompError(f"--rank averages rank scores, for {', '.join(RANK_METRICS)}; --metric is {metric!r}")
    y, folds, probs = members.y_true, members.folds, members.probs
    score = scorer(task, metric, y)
    sign = -1.0 if MONITOR_MODES[metric] == "min" else 1.0
    plain, decided_col = figure_columns(task, metric)
    kind = kind_of(task)
    plain_rule = kind.plain_rule

    def plainly(p: np.ndarray) -> np.ndarray:
        return plain_rule.apply(Decision(plain_rule.name), p)

    def figures(scores: np.ndarray, argmax: np.ndarray, decided: np.ndarray | None) -> dict[str, float]:
        row = {plain: sign * score(scores, argmax)}
        if decided_col and decided is not None:
            row[decided_col] = sign * score(scores, decided)
        return row

    def fit(rows: np.ndarray) -> BlendFit:
        return fit_blend(probs[:, rows], y[rows], task, metric, mean=mean, steps=steps)

    table = {}
    for r, run_name in enumerate(names):  # each run alone: its decision fitted on the other folds
        one = np.eye(len(names))[r]
        nested = cross_fit(probs, folds,
                           lambda rows: BlendFit(one, fit_decision(probs[r][rows], y[rows], task, metric)),
                           plain=plain_rule)
        table[f"{run_name} OOF"] = figures(probs[r], plainly(probs[r]), None if nested is None else nested[2])
    whole = fit(np.arange(len(y)))
    scores, averaged = blend(probs, whole.weights, mean)
    table["blend in-sample"] = figures(scores, plainly(averaged), whole.decision.apply(averaged))
    nested = cross_fit(probs, folds, fit, mean, plain=plain_rule)
    if nested is not None:
        table["blend nested"] = figures(*nested)
    n_folds = len(np.unique(folds))
    logger.info(f"blend {name!r} of {len(names)} runs on {len(y)} OOF rows ({n_folds} fold{'s' * (n_folds > 1)}) "
                f"for {metric}: greedy selection with replacement, {steps} steps, {mean} mean")
    logger.info("weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(names, whole.weights)))
    logger.info(text_table(table))
    notes = ["runs: each alone" + (", its decision fitted on the other folds" if decided_col else ""),
             "in-sample: weights and decision fitted and scored on the same rows (optimistic)"]
    notes.append("nested: weights and decision fitted on the other folds, scored on each held-out fold"
                 if nested is not None else "nested: none, one fold has no other folds to fit on")
    logger.info("; ".join(notes))
    info = BlendInfo(name, names, [float(w) for w in whole.weights], metric, mean, list(members.classes.labels),
                     _decision_values(whole.decision, members.classes), {"rows": len(y), "folds": n_folds,
                                                                         "table": table}, fitted_on=fitted_on)
    write_blend(runs_root, info)
    logger.info(f"wrote {path}: `comp predict --blend {name} --out X.csv` predicts with it")
    return info


def _decision_values(decision: Decision, classes: ClassMap) -> dict:
    """The fitted decision as thresholds.json holds a run's (its rule's part; ``{}``: argmax)."""
    return rule_of(decision.rule).to_json(decision, list(classes.labels))
