"""How a prediction decides: argmax, or a decision fitted on out-of-fold predictions.

The rules are the task kinds' (:mod:`comp.kinds`: ordinal cut points on the expected grade, a
binary task's threshold on the positive class's probability). They are fitted when a run is
merged (the run's thresholds.json: :mod:`comp.run.thresholds`); prediction only reads and
applies them (:func:`load_decision` gives the run's :class:`Decision`, checked
against its task).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from comp.errors import CompError
from comp.kinds import RULES, Decision, kind_of, rule_of
from comp.recipe import PredictConfig, Recipe, choices
from comp.recipe.task import check_decision
from comp.run.folder import RunDir
from comp.run.thresholds import load_fitted, read_decision

__all__ = ["DECISIONS", "Decision", "check_decision_name", "load_decision"]

DECISIONS = choices(PredictConfig, "decision")  # from the schema's Literal


def check_decision_name(decision: str | None) -> None:
    """Refuse a ``--decision`` the schema does not offer (None: the recipe's own)."""
    if decision not in (None, *DECISIONS, *RULES):  # (a regression task's value and clip rules too)
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
    whose thresholds.json was inherited from its init_from run (:func:`comp.run.thresholds.inherit_decision`) uses
    that run's rule when its own recipe says "argmax" and ``decision`` names none; the
    Decision's ``note`` says so.
    """
    if isinstance(decision, Decision):
        return decision
    check_decision_name(decision)
    run = RunDir(run_dir)
    classes = run.classes()
    task = run.task()  # as the fit resolved it (run.json)
    name = task.name(task.positive) if kind_of(task).has_positive else ""
    if threshold is not None:
        if decision not in (None, "threshold") or source is not None:
            raise CompError("--threshold gives the decision itself: use it without --decision-from and "
                            "--decision (other than threshold)")
        check_decision(task, "threshold", "--threshold")
        if not (np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise CompError(f"--threshold is a probability in [0, 1], got {threshold}")
        rule = kind_of(task).rule_for("threshold", recipe.predict.clip)  # (a multilabel task: every label's)
        shown = f"{name} when P({name}) >= {threshold:g}" if name else f"each label at P >= {threshold:g}"
        return Decision(rule, threshold=float(threshold), positive=task.positive,
                        at_least_one=recipe.predict.at_least_one, note=f"decision: {shown}, by --threshold")
    fitted_in, what = run_dir, "[predict] decision"
    rule = decision or recipe.predict.decision
    if source is not None:
        other = RunDir(Path(source))
        if other.classes() != classes:
            raise CompError(f"--decision-from {other.name}: its classes {other.classes()} are not this "
                            f"run's {classes}")
        saved = read_decision(source)
        fitted = None if saved is None else saved.fitted_rule
        if fitted is None:
            raise CompError(f"--decision-from {other.name}: {other.thresholds_path} holds no fitted decision "
                            f"(it is fitted on a run's validation rows)")
        fitted_in, rule, what = source, decision or fitted, "--decision-from"
    own = read_decision(run_dir) if source is None else None
    inherited = own.inherited_from if own is not None else ""
    if inherited and not decision and rule == "argmax" and own.rule not in ("", "argmax"):
        rule, what = own.rule, f"[predict] decision of {inherited} (init_from)"
    rule = kind_of(task).rule_for(rule, recipe.predict.clip)
    check_decision(task, rule, "--decision" if decision else what)
    origin = (f"fitted on {RunDir(Path(source)).name}'s rows (--decision-from)" if source is not None
              else f"fitted on {inherited}'s validation rows (init_from)" if inherited
              else "fitted on this run's out-of-fold rows")
    chosen = rule_of(rule)
    if not chosen.fitted:
        return Decision(rule)
    fitted = load_fitted(fitted_in, chosen, classes)
    names = [task.name(i) for i in range(len(classes))]
    return dataclasses.replace(fitted, note=f"decision: {chosen.describe(fitted, names)}, {origin}")
