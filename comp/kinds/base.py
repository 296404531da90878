"""What every task kind is, and what every decision rule is.

A :class:`Kind` says how a competition of that kind is scored and decided: its metrics (the
default monitor first among them), the decision rules it offers beside argmax (the first is the
one a merge fits on the out-of-fold rows), whether it has a positive class, how its report
orders the mistakes. A :class:`DecisionRule` is one way of turning probabilities into
predictions with values fitted on rows: it fits, applies, scores itself nested (each fold
decided by values fitted on the other folds), and reads and writes its part of thresholds.json.
The kinds themselves are :mod:`comp.kinds.binary`, :mod:`comp.kinds.multiclass`,
:mod:`comp.kinds.ordinal`; :mod:`comp.kinds` holds the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from comp.metrics import Task


@dataclass(frozen=True)
class Decision:
    """How probabilities become predictions: a rule's name and the values fitted for it (read
    from a run, a blend or given on the command line), ready to apply."""

    rule: str = "argmax"
    cuts: np.ndarray | None = None  # ordinal_thresholds: cut points on the expected grade
    threshold: float = 0.5  # threshold: on the positive class's probability
    positive: int = 1  # threshold: the positive class's index
    at_least_one: bool = False  # multilabel: a row with no label decided gets its most probable one
    note: str = ""  # one line for the log: which fitted values decide, and where they come from

    def apply(self, probs: np.ndarray) -> np.ndarray:
        from comp.kinds import rule_of

        return rule_of(self.rule).apply(self, probs)


@dataclass(frozen=True)
class Decided:
    """Predictions of a fitted decision on the OOF rows, beside argmax."""

    argmax: np.ndarray
    in_sample: np.ndarray  # the decision fitted on all rows, applied to them (optimistic)
    nested: np.ndarray | None  # each fold decided by values fitted on the other folds; None: one fold

    def scored(self, score: Callable[[np.ndarray], float]) -> tuple[float, float, float | None]:
        """(argmax, in-sample, nested) by ``score(predictions)``."""
        return (score(self.argmax), score(self.in_sample),
                None if self.nested is None else score(self.nested))


class Mismatch(ValueError):
    """Fitted values that do not fit the run they are read for (its message says why)."""


class DecisionRule:
    """Argmax; the base of the rules with fitted values (``[predict] decision``)."""

    name = "argmax"
    label = ""  # how tables name it: "threshold", "ordinal thresholds"
    fitted = False  # whether it has values fitted on rows (thresholds.json)
    needs = ""  # what a missing thresholds.json lacks, after '[predict] decision = "<name>"'
    damaged = "is damaged ({error}); re-run `comp fit` to refit it"  # after the file's path

    def invalid(self, decision: Decision) -> str:
        """Why values read from a file cannot decide ("" when they can)."""
        return ""

    def fit(self, probs: np.ndarray, y: np.ndarray, task: Task, metric: str = "") -> Decision:
        """The rule with its values fitted on these rows (``metric``: what a blend fits for; "":
        the task's own)."""
        return Decision(self.name)

    def apply(self, decision: Decision, probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs).argmax(axis=1)

    def nested(self, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, task: Task,
               metric: str = "") -> np.ndarray | None:
        """Each fold's rows decided by values fitted on the other folds' rows only; None with a
        single fold (a holdout), which has no other rows to fit on."""
        folds = np.asarray(folds).reshape(-1)
        if len(np.unique(folds)) < 2:
            return None
        out = None
        for fold in np.unique(folds):
            held = folds == fold
            pred = self.apply(self.fit(probs[~held], y[~held], task, metric), probs[held])
            if out is None:
                out = np.empty((len(folds),) + pred.shape[1:], dtype=pred.dtype)
            out[held] = pred
        return out

    def decided(self, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, task: Task,
                decision: Decision) -> Decided:
        """``decision`` (fitted on all these rows) and the nested decision, beside the kind's
        plain rule (argmax)."""
        from comp.kinds import kind_of

        plain = kind_of(task).plain_rule
        return Decided(plain.apply(Decision(plain.name), probs), self.apply(decision, probs),
                       self.nested(probs, y, folds, task))

    def figure(self, task: Task) -> tuple[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]]:
        """(the metric a merge reports the rule by, ``score(y, probs, pred)``)."""
        from comp.metrics import summarise

        metric = task.headline
        return metric, lambda y, probs, pred: summarise(task, y, probs, y_pred=pred)[metric]

    def to_json(self, decision: Decision, labels: Sequence[str], metric: str = "") -> dict[str, Any]:
        """Its part of thresholds.json (a blend keeps the same table)."""
        return {}

    def from_json(self, saved: dict[str, Any], labels: Sequence[str]) -> Decision:
        """The decision from its part of thresholds.json; KeyError, ValueError or TypeError when
        the part is missing or damaged."""
        return Decision(self.name)

    def owns(self, saved: dict[str, Any]) -> bool:
        """Whether thresholds.json's table holds this rule's values."""
        return False

    def describe(self, decision: Decision, names: Sequence[str]) -> str:
        """The decision for a log line ("ordinal thresholds 0.52, 1.48"; ``names``: the classes')."""
        return self.name

    def values(self, decision: Decision, names: Sequence[str]) -> str:
        """Its fitted values alone, as the merge's log line shows them ("cuts 0.52, 1.48")."""
        return self.describe(decision, names)

    def fitted_values(self, decision: Decision) -> list[float]:
        """The fitted numbers report.json lists ("thresholds")."""
        return []

    def fitted_for(self, task: Task) -> str:
        """The metric a run's values are fitted for, recorded in thresholds.json ("": none)."""
        return ""

    def misuse(self, what: str, kind: "Kind") -> str:
        """The message when ``kind`` has no such rule (``what`` names the setting)."""
        return f'{what} = "{self.name}" is not a decision of {_a(kind.name)} task'

    def report(self, probs: np.ndarray, y: np.ndarray, folds: np.ndarray, task: Task, decision: Decision,
               labels: Sequence[str]) -> tuple[dict[str, float], str]:
        """cv-report's figures of the fitted decision (in-sample, nested) and its note."""
        return {}, ""


ARGMAX = DecisionRule()


class Kind:
    """A task kind. Subclasses set the class attributes and override what differs."""

    name = ""
    metrics: tuple[str, ...] = ()  # in the order they are shown
    default_monitor = "accuracy"
    rules: tuple[DecisionRule, ...] = ()  # beside argmax; the first is fitted when a run merges
    has_positive = False  # a positive class ([data] positive)
    graded = False  # ordered classes: mistakes farthest from the true grade first
    plain_rule: DecisionRule = ARGMAX  # what decides without fitted values
    continuous = False  # values, not classes: the one "class" is the label column
    label_sets = False  # each row holds a set of labels (0/1 per label), not one class
    unordered_numbers = False  # numeric labels taken as unordered classes: refused when they look continuous
    default_loss = "ce"  # the [loss] name a recipe of this kind starts from

    @property
    def merge_rule(self) -> DecisionRule | None:
        """The rule whose values a merge fits on the OOF rows (None: nothing to fit)."""
        return self.rules[0] if self.rules else None

    def rule_names(self) -> tuple[str, ...]:
        return (self.plain_rule.name,) + tuple(r.name for r in self.rules)

    def activation(self, head: str, task: Task | None = None) -> str:
        """How the model's outputs become the run's matrix (:func:`comp.decisions.outputs_to_probs`):
        the ``[model] head``'s own (softmax; a grade score split between grades)."""
        return head

    def metric_names(self, num_classes: int) -> tuple[str, ...]:
        """The metrics a task of this kind with ``num_classes`` classes is reported with."""
        return self.metrics

    def check_classes(self, labels: Sequence[str]) -> str:
        """Why the data's classes do not fit the kind ("" when they do)."""
        if len(labels) < 2:
            return f"a classification task needs at least two classes; the data has {len(labels)}: {list(labels)}"
        return ""

    def monitor_hint(self, monitor: str) -> str:
        """A hint for a monitor this kind does not compute ("" when none)."""
        return ""

    def describe(self, task: Task, labels: Sequence[str]) -> str:
        """The task's first words in a log line: "task multiclass (10 classes)"."""
        return f"task {task.kind} ({task.num_classes} classes)"

    def rule_for(self, decision: str, clip: bool) -> str:
        """The rule a prediction decides by, given ``[predict] decision`` and ``clip``."""
        return decision

    def summarise(self, task: Task, y: np.ndarray, probs: np.ndarray | None = None,
                  pred: np.ndarray | None = None) -> dict[str, float]:
        """The task's metrics of these predictions (:func:`comp.metrics.summarise`)."""
        from comp.metrics import summarise

        return summarise(task, y, probs, y_pred=pred)

    def truth(self, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        """The true values of labels as the CSVs write them: class indices."""
        from comp.errors import CompError

        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in labels if str(v) not in lookup})
        if unknown:
            raise CompError(f"labels outside the class set {list(classes)}: {unknown[:10]}")
        return np.array([lookup[str(v)] for v in labels], dtype=np.int64)

    def row_labels(self, labels: np.ndarray, targets: np.ndarray | None, classes: Sequence[str]) -> np.ndarray:
        """A table's rows' true labels as the CSVs write them (``labels``/``targets``: the
        :class:`comp.data.table.ImageTable`'s)."""
        return self.as_labels(labels, classes)

    def as_labels(self, pred: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Predictions (class indices) as the submission writes them."""
        return np.asarray(classes, dtype=object)[np.asarray(pred, dtype=np.int64)]

    def class_counts(self, labels: np.ndarray, targets: np.ndarray | None, num_classes: int) -> np.ndarray:
        """Training rows per class (a multilabel task: positive rows per label), for loss weights."""
        return np.bincount(np.asarray(labels), minlength=num_classes)

    def confidence(self, probs: np.ndarray) -> np.ndarray:
        """How sure each row's prediction is (pseudo-labels keep the sure rows): its largest
        probability."""
        return np.asarray(probs).max(axis=1)

    def decided_counts(self, probs: np.ndarray) -> np.ndarray:
        """Rows per class (a multilabel task: per label) the probabilities decide, at argmax (0.5)."""
        probs = np.asarray(probs)
        return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) if len(probs) else np.zeros(probs.shape[1])

    def strata(self, labels: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
        """What folds are stratified on: the class of each row (a regression task: its quantile
        bin); a 2-D 0/1 matrix (a multilabel task's labels) is stratified iteratively."""
        return labels

    def mistakes(self, y: np.ndarray, probs: np.ndarray, limit: int) -> np.ndarray:
        """The worst rows first, for the report's gallery (by argmax; graded kinds farthest
        from the true grade first)."""
        pred = probs.argmax(axis=1)
        wrong = np.flatnonzero(pred != y)
        confidence = probs[wrong, pred[wrong]]
        if self.graded:
            order = np.lexsort((-confidence, -np.abs(pred[wrong] - y[wrong])))  # last key sorts first
        else:
            order = np.argsort(-confidence, kind="stable")
        return wrong[order][:limit]


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def a_kind(kind: str) -> str:
    """"a binary", "an ordinal"."""
    return _a(kind)
