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
from comp.recipe.task import check_decision
from comp.run.folder import RunDir


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


def inherit_decision(run_dir: Path, source_dir: Path) -> dict | None:
    """Copy the decision fitted in ``source_dir`` (thresholds.json) into ``run_dir``, marked with
    ``"from"`` (the source run's name) and ``"rule"`` (its ``[predict] decision``): a run with no
    validation rows (``[cv] scheme = "full"``) started from that run with ``[model] init_from``.
    Returns what was written, or None (and removes a stale file) when the source has none."""
    target, source = RunDir(Path(run_dir)).thresholds_path, RunDir(Path(source_dir))
    try:
        saved = json.loads(source.thresholds_path.read_text(encoding="utf-8"))
        saved = {**saved, "from": source.name, "rule": source.recipe().predict.decision} if isinstance(saved, dict) else None
    except (OSError, ValueError, CompError):
        saved = None
    if saved is None:
        target.unlink(missing_ok=True)
        return None
    atomic.write_text(target, json.dumps(saved) + "\n")
    return saved


def _saved(run_dir: Path) -> dict:
    """thresholds.json as a table ({} when missing or unreadable; the loaders say why)."""
    try:
        saved = json.loads(RunDir(Path(run_dir)).thresholds_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


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
                        f"out-of-fold predictions (run `comp fit` with validation rows), or name one: "
                        f"--decision-from RUN (a run with validation rows), --threshold P")
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
    note: str = ""  # one line for the log: which fitted values decide, and where they come from

    def apply(self, probs: np.ndarray) -> np.ndarray:
        if self.rule == "ordinal_thresholds":
            return apply_thresholds(expected_grade(probs), self.cuts)
        if self.rule == "threshold":
            return apply_binary_threshold(probs, self.positive, self.threshold)
        return probs.argmax(axis=1)


def check_decision_name(decision: str | None) -> None:
    """Refuse a ``--decision`` the schema does not offer (None: the recipe's own)."""
    if decision not in (None, *DECISIONS):
        raise CompError(f"--decision must be {', '.join(DECISIONS[:-1])} or {DECISIONS[-1]}, got {decision!r}")


def load_decision(recipe: Recipe, run_dir: Path, decision: str | Decision | None = None, *,
                  threshold: float | None = None, source: Path | None = None) -> Decision:
    """The decision ``decision`` (``--decision``), else the recipe's, checked against the run's
    task (ordinal thresholds only for ordinal tasks, a threshold only for binary ones) and with
    its fitted values read from the run: all before any inference. A :class:`Decision` passes
    through as it is.

    ``threshold`` (``--threshold P``, binary tasks) decides by that probability of the positive
    class instead of a fitted one. ``source`` (``--decision-from RUN``) reads the fitted values
    from another run of the same classes, and its fitted rule when ``decision`` names none. A run
    whose thresholds.json was inherited from its init_from run (:func:`inherit_decision`) uses
    that run's rule when its own recipe says "argmax" and ``decision`` names none; the
    Decision's ``note`` says so.
    """
    if isinstance(decision, Decision):
        return decision
    check_decision_name(decision)
    run = RunDir(run_dir)
    classes = run.classes()
    task = run.task()  # as the fit resolved it (run.json)
    name = task.name(task.positive) if task.kind == "binary" else ""
    if threshold is not None:
        if decision not in (None, "threshold") or source is not None:
            raise CompError("--threshold gives the decision itself: use it without --decision-from and "
                            "--decision (other than threshold)")
        check_decision(task, "threshold", "--threshold")
        if not (np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise CompError(f"--threshold is a probability in [0, 1], got {threshold}")
        return Decision("threshold", threshold=float(threshold), positive=task.positive,
                        note=f"decision: {name} when P({name}) >= {threshold:g}, by --threshold")
    fitted_in, what = run_dir, "[predict] decision"
    rule = decision or recipe.predict.decision
    if source is not None:
        other = RunDir(Path(source))
        if other.classes() != classes:
            raise CompError(f"--decision-from {other.name}: its classes {other.classes()} are not this "
                            f"run's {classes}")
        saved = _saved(source)
        fitted = "ordinal_thresholds" if "cuts" in saved else "threshold" if "threshold" in saved else None
        if fitted is None:
            raise CompError(f"--decision-from {other.name}: {other.thresholds_path} holds no fitted decision "
                            f"(it is fitted on a run's validation rows)")
        fitted_in, rule, what = source, decision or fitted, "--decision-from"
    inherited = _saved(run_dir).get("from") if source is None else None
    if inherited and not decision and rule == "argmax" and _saved(run_dir).get("rule", "argmax") != "argmax":
        rule, what = _saved(run_dir)["rule"], f"[predict] decision of {inherited} (init_from)"
    check_decision(task, rule, "--decision" if decision else what)
    origin = (f"fitted on {RunDir(Path(source)).name}'s rows (--decision-from)" if source is not None
              else f"fitted on {inherited}'s validation rows (init_from)" if inherited
              else "fitted on this run's out-of-fold rows")
    if rule == "ordinal_thresholds":
        cuts = load_thresholds(fitted_in)
        return Decision(rule, cuts=cuts, note=f"decision: ordinal thresholds {', '.join(f'{c:.2f}' for c in cuts)}, "
                                              f"{origin}")
    if rule == "threshold":
        value, positive = load_binary_threshold(fitted_in)
        if positive not in classes:
            raise CompError(f"{RunDir(Path(fitted_in)).thresholds_path}: its positive class {positive!r} is not "
                            f"one of the run's classes {classes}; re-run `comp fit`")
        pos = classes.index(positive)
        return Decision(rule, threshold=value, positive=pos,
                        note=f"decision: {task.name(pos)} when P({task.name(pos)}) >= {value:.3f}, {origin}")
    return Decision(rule)
