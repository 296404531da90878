"""thresholds.json: the decision a run fitted on its out-of-fold predictions. The one place its
format is spelled, read and written.

    {"cuts": [c1, c2, ...]}                                    ordinal tasks: cut points on the expected grade
    {"threshold": t, "positive": label, "metric": name}       binary tasks: P(positive) >= t decides positive
                                                               (each rule reads and writes its own part:
                                                               :mod:`comp.kinds`)
    ... , "from": run, "rule": decision                        copied from the ``[model] init_from`` run
                                                               (:func:`inherit_decision`) and that run's
                                                               ``[predict] decision``

The values are fitted by :mod:`comp.decisions` when a run is merged (:mod:`comp.run.oof`);
prediction reads them (:mod:`comp.predict.decision`). A blend (``comp blend``) keeps the decision
fitted on its blended OOF in the same form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comp import atomic
from comp.errors import CompError
from comp.kinds import RULES, Decision, DecisionRule, Mismatch
from comp.run.folder import RunDir


@dataclass(frozen=True)
class FittedDecision:
    """thresholds.json as read: ordinal cut points or a binary threshold, and where they came from."""

    cuts: tuple[float, ...] = ()  # ordinal: the cut points on the expected grade
    threshold: float | None = None  # binary: the positive class's probability threshold
    positive: str = ""  # binary: the positive class's label
    metric: str = ""  # binary: what the threshold was tuned for
    inherited_from: str = ""  # the init_from run it was copied from ("from")
    rule: str = ""  # that run's [predict] decision ("rule")

    def to_json(self) -> dict[str, Any]:
        """The table thresholds.json holds (a blend's decision is kept in the same form)."""
        saved: dict[str, Any] = {}
        if self.cuts:
            saved["cuts"] = [float(c) for c in self.cuts]
        if self.threshold is not None:
            saved.update(threshold=float(self.threshold), positive=str(self.positive))
            if self.metric:  # a blend's threshold records none
                saved["metric"] = self.metric
        if self.inherited_from:
            saved.update({"from": self.inherited_from, "rule": self.rule})
        return saved

    @classmethod
    def from_json(cls, saved: Any) -> FittedDecision:
        """A FittedDecision from thresholds.json's table; ValueError, TypeError or KeyError when damaged."""
        if not isinstance(saved, dict):
            raise TypeError("not a table")
        threshold = saved.get("threshold")
        return cls(cuts=tuple(float(c) for c in saved.get("cuts", ())),
                   threshold=None if threshold is None else float(threshold),
                   positive=str(saved["positive"]) if threshold is not None else "",
                   metric=str(saved.get("metric", "")), inherited_from=str(saved.get("from", "")),
                   rule=str(saved.get("rule", "")))

    @property
    def fitted_rule(self) -> str | None:
        """The ``[predict] decision`` these values serve ("ordinal_thresholds", "threshold"), or None."""
        saved = self.to_json()
        return next((r.name for r in RULES.values() if r.owns(saved)), None)

    def describe(self) -> str:
        """"ordinal thresholds 0.52, 1.48" or "P(<positive>) >= 0.300" for a log line."""
        if self.fitted_rule == "threshold":
            return f"P({self.positive}) >= {self.threshold:.3f}"
        return "ordinal thresholds " + ", ".join(f"{c:.2f}" for c in self.cuts)


def write_decision(run_dir: Path, decision: FittedDecision) -> None:
    atomic.write_text(RunDir(Path(run_dir)).thresholds_path, json.dumps(decision.to_json()) + "\n")


def save_fitted(run_dir: Path, rule: DecisionRule, decision: Decision, labels: list[str], metric: str = "") -> None:
    """Write ``rule``'s fitted values (its part of thresholds.json) into a run, atomically."""
    atomic.write_text(RunDir(Path(run_dir)).thresholds_path,
                      json.dumps(rule.to_json(decision, labels, metric)) + "\n")


def load_fitted(run_dir: Path, rule: DecisionRule, labels: list[str]) -> Decision:
    """``rule``'s values fitted in ``run_dir`` (classes ``labels``); a missing or damaged file, or
    values that cannot decide, are a CompError naming the file."""
    path = RunDir(Path(run_dir)).thresholds_path
    if not path.is_file():
        raise CompError(f'{path} not found: [predict] decision = "{rule.name}" {rule.needs}')
    try:
        decision = rule.from_json(json.loads(path.read_text(encoding="utf-8")), labels)
    except Mismatch as err:
        raise CompError(f"{path}: {err}; re-run `comp fit`") from None
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise CompError(f"{path} " + rule.damaged.format(error=type(err).__name__)) from None
    wrong = rule.invalid(decision)
    if wrong:
        raise CompError(f"{path}: {wrong}")
    return decision


def save_thresholds(run_dir: Path, cuts: np.ndarray) -> None:
    """Write ordinal cut points into a run's thresholds.json, atomically."""
    write_decision(run_dir, FittedDecision(cuts=tuple(float(c) for c in cuts)))


def save_binary_threshold(run_dir: Path, threshold: float, positive: str, metric: str) -> None:
    """Write a binary task's tuned threshold on ``positive``'s probability into thresholds.json."""
    write_decision(run_dir, FittedDecision(threshold=float(threshold), positive=str(positive), metric=metric))


def read_decision(run_dir: Path) -> FittedDecision | None:
    """The run's fitted decision; None when thresholds.json is missing or unreadable (the strict
    loaders below say why)."""
    try:
        return FittedDecision.from_json(json.loads(RunDir(Path(run_dir)).thresholds_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_thresholds(run_dir: Path) -> np.ndarray:
    """The cuts saved by :func:`save_thresholds`; a missing or damaged file is a CompError."""
    return load_fitted(run_dir, RULES["ordinal_thresholds"], []).cuts


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


def inherit_decision(run_dir: Path, source_dir: Path) -> FittedDecision | None:
    """Copy the decision fitted in ``source_dir`` into ``run_dir``, marked with the source run's
    name and its ``[predict] decision``: a run with no validation rows (``[cv] scheme = "full"``)
    started from that run with ``[model] init_from``. Returns what was written, or None (and
    removes a stale file) when the source has none."""
    target, source = RunDir(Path(run_dir)).thresholds_path, RunDir(Path(source_dir))
    saved = read_decision(source.path)
    if saved is not None:
        try:
            rule = source.recipe().predict.decision
        except CompError:
            saved = None
    if saved is None or saved.fitted_rule is None:
        target.unlink(missing_ok=True)
        return None
    inherited = FittedDecision(saved.cuts, saved.threshold, saved.positive, saved.metric, source.name, rule)
    write_decision(run_dir, inherited)
    return inherited
