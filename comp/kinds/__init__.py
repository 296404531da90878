"""Task kinds, each one object (:class:`comp.kinds.base.Kind`): what a competition of that kind
is scored by and how it decides. Whatever depends on the kind asks the task's kind
(:func:`kind_of`) instead of testing its name; adding a kind is a module here and a line in
:data:`KINDS`.
"""

from __future__ import annotations

from comp.kinds.base import ARGMAX, Decided, Decision, DecisionRule, Kind, Mismatch, a_kind
from comp.kinds.binary import BINARY
from comp.kinds.multiclass import MULTICLASS
from comp.kinds.ordinal import ORDINAL
from comp.kinds.multilabel import MULTILABEL
from comp.kinds.regression import REGRESSION
from comp.metrics import MONITOR_MODES, Task

KINDS: dict[str, Kind] = {k.name: k for k in (BINARY, MULTICLASS, ORDINAL, MULTILABEL, REGRESSION)}
TASK_KINDS = tuple(KINDS)
RULES: dict[str, DecisionRule] = {r.name: r for k in KINDS.values() for r in (k.plain_rule, *k.rules)}

__all__ = ["ARGMAX", "KINDS", "TASK_KINDS", "RULES", "Decided", "Decision", "DecisionRule", "Kind", "Mismatch", "a_kind", "activation_of", "kind_of",
           "rule_of", "auto_kind", "metric_names", "make_task"]


def kind_of(task: Task | str) -> Kind:
    """The kind of a task (or of a kind's name)."""
    name = task if isinstance(task, str) else task.kind
    if name not in KINDS:
        raise ValueError(f"unknown task kind {name!r} (one of {', '.join(TASK_KINDS)})")
    return KINDS[name]


def activation_of(task: Task, head: str) -> str:
    """How a run of ``task`` with ``[model] head`` turns outputs into its matrix (its kind's)."""
    return kind_of(task).activation(head, task)


def rule_of(name: str) -> DecisionRule:
    """The decision rule named ``name`` (``[predict] decision``)."""
    if name not in RULES:
        raise ValueError(f"unknown decision {name!r} (one of {', '.join(RULES)})")
    return RULES[name]


def auto_kind(num_classes: int) -> Kind:
    """``[data] task = "auto"``: binary with two classes, else multiclass (numbers as labels are
    no evidence of order: ordinal only when declared)."""
    return BINARY if num_classes == 2 else MULTICLASS


def metric_names(kind: str, num_classes: int) -> tuple[str, ...]:
    """The metrics a task of ``kind`` with ``num_classes`` classes is reported with."""
    return kind_of(kind).metric_names(num_classes)


def make_task(kind: str, num_classes: int, *, positive: int = 1, monitor: str = "auto",
              metric: str = "", class_names: tuple[str, ...] = (), beta: float = 2.0) -> Task:
    """A :class:`Task` of a resolved ``kind`` (one of :data:`TASK_KINDS`); ``monitor = "auto"`` is
    the leaderboard ``metric``, else the kind's default. The arguments are trusted:
    :func:`comp.recipe.task.resolve_task` resolves ``[data] task = "auto"`` and checks the rest
    against the recipe and the classes first."""
    k = kind_of(kind)
    if monitor == "auto":
        monitor = metric or k.default_monitor
    return Task(k.name, int(num_classes), k.metric_names(num_classes), monitor, MONITOR_MODES[monitor],
                positive if k.has_positive else -1, metric, tuple(str(c) for c in class_names), float(beta))
