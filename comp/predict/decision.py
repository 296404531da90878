"""Decisions beyond argmax, and thresholds.json that holds them.

Ordinal tasks: the expected grade cut by fitted thresholds (``{"cuts": [...]}``). Binary tasks:
the positive class's probability against a tuned threshold (``{"threshold": t, "positive":
label, "metric": name}``). Both are fitted on out-of-fold predictions by
:mod:`comp.evaluate.thresholds`; prediction only reads and applies them (:func:`load_decision`
gives the run's :class:`Decision`, checked against its task).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comp import atomic
from comp.errors import CompError
from comp.recipe import PredictConfig, Recipe, choices
from comp.recipe.task import check_decision, resolve_task
from comp.train.rundir import RunDir


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """Σ_k k·p_k for each row of an ``(n, num_classes)`` probability matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def apply_thresholds(scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Class k for ``cuts[k-1] <= score < cuts[k]`` (``np.digitize``; a score on a cut goes up)."""
    cuts = np.asarray(cuts, dtype=np.float64)
    return np.digitize(np.asarray(scores, dtype=np.float64), cuts).astype(np.int64)


def save_thresholds(run_dir: Path, cuts: np.ndarray) -> None:
    """Write ``thresholds.json`` ({"cuts": [...]}) into a run folder, atomically."""
    atomic.write_text(RunDir(Path(run_dir)).thresholds_path,
                      json.dumps({"cuts": [float(c) for c in cuts]}) + "\n")


def load_thresholds(run_dir: Path) -> np.ndarray:
    """The cuts saved by :func:`save_thresholds`; a missing or damaged file is a CompError."""
    path = RunDir(Path(run_dir)).thresholds_path
    if not path.is_file():
        raise CompError(f'{path} not found: [predict] decision = "ordinal_thresholds" needs thresholds '
                        f"fitted on out-of-fold predictions (run `comp fit` with validation folds)")
    try:
        cuts = np.asarray(json.loads(path.read_text(encoding="utf-8"))["cuts"], dtype=np.float64)
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise CompError(f"{path} is damaged ({type(err).__name__}); re-run `comp fit` to refit it") from None
    if cuts.ndim != 1 or not np.isfinite(cuts).all() or np.any(np.diff(cuts) <= 0):
        raise CompError(f"{path}: cuts must be a list of increasing numbers, got {cuts.tolist()}")
    return cuts


def save_binary_threshold(run_dir: Path, threshold: float, positive: str, metric: str) -> None:
    """Write a binary task's tuned threshold on ``positive``'s probability into thresholds.json."""
    atomic.write_text(RunDir(Path(run_dir)).thresholds_path, json.dumps(
        {"threshold": float(threshold), "positive": str(positive), "metric": metric}) + "\n")


def load_binary_threshold(run_dir: Path) -> tuple[float, str]:
    """(threshold, positive class label) saved by :func:`save_binary_threshold`; CompError when
    missing or damaged."""
    path = RunDir(Path(run_dir)).thresholds_path
    if not path.is_file():
        raise CompError(f'{path} not found: [predict] decision = "threshold" needs a threshold tuned on '
                        f"out-of-fold predictions (run `comp fit` with validation rows)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        threshold, positive = float(saved["threshold"]), str(saved["positive"])
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise CompError(f"{path} holds no binary threshold ({type(err).__name__}); re-run `comp fit` "
                        f"to tune it") from None
    if not np.isfinite(threshold):
        raise CompError(f"{path}: the threshold must be a number, got {threshold}")
    return threshold, positive


def apply_binary_threshold(probs: np.ndarray, positive: int, threshold: float) -> np.ndarray:
    """Class ``positive`` where its probability is at or above ``threshold``, else the other class."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive).astype(np.int64)


DECISIONS = choices(PredictConfig, "decision")  # from the schema's Literal


@dataclass(frozen=True)
class Decision:
    """How probabilities become classes: argmax, ordinal cut points on the expected grade, or a
    binary task's threshold on the positive class's probability (read from the run up front)."""

    rule: str = "argmax"
    cuts: np.ndarray | None = None  # ordinal_thresholds
    threshold: float = 0.5  # threshold
    positive: int = 1  # threshold: the positive class's index

    def apply(self, probs: np.ndarray) -> np.ndarray:
        if self.rule == "ordinal_thresholds":
            return apply_thresholds(expected_grade(probs), self.cuts)
        if self.rule == "threshold":
            return apply_binary_threshold(probs, self.positive, self.threshold)
        return probs.argmax(axis=1)


def load_decision(recipe: Recipe, run_dir: Path, decision: str | None = None) -> Decision:
    """The decision ``decision`` (``--decision``), else the recipe's, checked against the run's
    task (ordinal thresholds only for ordinal tasks, a threshold only for binary ones) and with
    its fitted values read from the run: all before any inference."""
    if decision not in (None, *DECISIONS):
        raise CompError(f"--decision must be {', '.join(DECISIONS[:-1])} or {DECISIONS[-1]}, got {decision!r}")
    rule = decision or recipe.predict.decision
    run = RunDir(run_dir)
    classes = run.classes()
    task = resolve_task(recipe, classes)
    check_decision(task, rule, "--decision" if decision else "[predict] decision")
    if rule == "ordinal_thresholds":
        return Decision(rule, cuts=load_thresholds(run_dir))
    if rule == "threshold":
        threshold, positive = load_binary_threshold(run_dir)
        if positive not in classes:
            raise CompError(f"{run.thresholds_path}: its positive class {positive!r} is not one of the "
                            f"run's classes {classes}; re-run `comp fit`")
        return Decision(rule, threshold=threshold, positive=classes.index(positive))
    return Decision(rule)
