"""The task a recipe describes, the classes' display names, and per-class values given by label
or class name.

``[data] task`` is resolved once the classes are known (:func:`resolve_task`) into a
:class:`comp.metrics.Task`, which is then passed explicitly to whatever computes metrics, picks
checkpoints or decides classes. What can be checked before the classes are known is checked when
the recipe loads (:func:`check_task_fields`), the rest as soon as they are.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any

from comp.errors import CompError
from comp.kinds import KINDS, RULES, a_kind, auto_kind, kind_of, make_task, rule_of
from comp.metrics import Task
from comp.recipe.schema import Recipe, RecipeError


def check_task_fields(recipe: Recipe, where: str) -> None:
    """The task's fields that need no classes: a declared task's monitor, metric and decision,
    ``positive`` only for binary tasks, class weights (a list or by name) positive."""
    d = recipe.data
    kind = KINDS.get(d.task)  # None: "auto", known once the classes are
    if kind is not None and not kind.has_positive and d.positive:
        raise RecipeError(f"{where}: [data] positive is for binary tasks; [data] task is {d.task!r}")
    if kind is not None:
        # The top-k accuracies are checked once the classes are known.
        _check_task_names(recipe, kind.name, kind.metric_names(99), f"{where}: ", "")
    weights = recipe.loss.class_weights
    given = ([(f".{name}", w) for name, w in weights.items()] if isinstance(weights, dict) else
             [(f"[{i}]", w) for i, w in enumerate(weights)] if isinstance(weights, list) else [])
    for at, w in given:
        if not math.isfinite(w) or w <= 0:
            raise RecipeError(f"{where}: [loss] class_weights{at} must be a positive number, got {w!r}")


def class_names(recipe: Recipe, labels: Sequence[str]) -> tuple[list[str], str]:
    """Each class's display name in class order, and a note for the log ("" when none).

    ``[data] class_names`` maps labels (as the CSVs write them) to names; a class it leaves out
    is shown by its label. A table none of whose keys is a label but whose names are exactly the
    labels (a folder already labelled ALL/hem, read with a recipe written for 0/1) is taken as
    the identity, and the note says so. Keys that are not labels, empty or repeated names, and a
    name that is another class's label (which would make "by name" ambiguous) are exit 2.
    """
    table, labels = recipe.data.class_names, [str(c) for c in labels]
    if not table:
        return labels, ""
    if not any(k in labels for k in table) and sorted(table.values()) == sorted(labels):
        return labels, (f"the labels are already the class names ({', '.join(labels)}): "
                        f"[data] class_names is not needed and not used")
    unknown = [k for k in table if k not in labels]
    if unknown:
        raise RecipeError(f"[data] class_names names {_labels_word(unknown)} {', '.join(repr(k) for k in unknown)}, "
                          f"which the data does not have; its labels are {labels} "
                          f"(--set 'data.class_names={{}}' shows the labels as they are)")
    names = [table.get(c, c) for c in labels]
    for i, name in enumerate(names):
        if not name.strip():
            raise RecipeError(f"[data] class_names.{labels[i]} is empty")
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise RecipeError(f"[data] class_names.{labels[i]} = {name!r} holds a control character (a newline, "
                              f"a tab): a class name is shown on one line of a table; remove it")
        if name in labels and labels.index(name) != i:
            raise RecipeError(f"[data] class_names names label {labels[i]!r} {name!r}, which is another "
                              f"class's label: a value given by name would be ambiguous")
        if names.count(name) > 1:
            raise RecipeError(f"[data] class_names gives the name {name!r} to more than one class")
    return names, ""


def _labels_word(keys: Sequence[str]) -> str:
    return "label" if len(keys) == 1 else "labels"


def shown_classes(labels: Sequence[str], names: Sequence[str] | None = None) -> str:
    """The classes for a message: ``['0', '1']``, or with names ``['hem' (label '0'), ...]``."""
    labels = [str(c) for c in labels]
    if not names or list(names) == labels:
        return str(labels[:10])
    return "[" + ", ".join(f"{n!r} (label {c!r})" for c, n in list(zip(labels, names))[:10]) + "]"


def resolve_task(recipe: Recipe, labels: Sequence[str], counts: Sequence[int] | None = None) -> Task:
    """The recipe's task for these classes (in class order); an inconsistency is exit 2.

    ``auto`` is binary with two classes, else multiclass (:func:`comp.kinds.auto_kind`). A binary task's positive class is ``[data] positive``
    (a label or a class name), else the second class in class order. The task carries the
    classes' display names (:func:`class_names`). Given the training ``counts`` per class,
    labels that look like a continuous target (:func:`looks_continuous`) are never a multiclass
    task: "auto" stops, and a declared "multiclass" too unless ``[data] numeric_classes``.
    """
    d, n = recipe.data, len(labels)
    labels = [str(c) for c in labels]
    names, _ = class_names(recipe, labels)
    kind = kind_of(d.task) if d.task != "auto" else auto_kind(n)
    if kind.unordered_numbers and counts is not None and looks_continuous(labels, counts):
        if d.task == "auto" or not d.numeric_classes:
            raise RecipeError(_continuous_message(labels, counts, declared=d.task != "auto"))
    wrong = kind.check_classes(labels)
    if wrong:
        raise RecipeError(wrong)
    positive = 1
    if d.positive:
        # A declared kind was checked when the recipe loaded; "auto" is only known now.
        if not kind.has_positive:
            raise RecipeError(f"[data] positive is for binary tasks; this is a {kind.name} task with {n} classes")
        positive = class_index(d.positive, labels, names, "[data] positive")
    # The load checked a declared kind's names against all its metrics; the class count (top-k
    # accuracies) and an "auto" kind are known only now.
    _check_task_names(recipe, kind.name, kind.metric_names(n), "", f" with {n} classes")
    return make_task(kind.name, n, positive=positive, monitor=recipe.train.monitor, metric=recipe.submission.metric,
                     class_names=tuple(names), beta=recipe.submission.beta)


def class_index(key: str, labels: Sequence[str], names: Sequence[str] | None, what: str) -> int:
    """The index of the class ``key`` names: a label, else a display name; exit 2 otherwise."""
    labels = [str(c) for c in labels]
    if key in labels:
        return labels.index(key)
    if names and key in names:
        return list(names).index(key)
    raise CompError(f"{what} {key!r} is not a class; the classes are {shown_classes(labels, names)}")


def _check_task_names(recipe: Recipe, kind: str, names: Sequence[str], where: str, classes: str) -> None:
    """[submission] metric and [train] monitor among the task's metrics, [predict] decision one it
    has; messages start with ``where`` and say the task is ``kind`` + ``classes``."""
    metric, monitor = recipe.submission.metric, recipe.train.monitor
    if metric and metric not in names:
        raise RecipeError(f"{where}[submission] metric {metric!r} is not computed for a {kind} task{classes} "
                          f"(its metrics: {', '.join(names)})")
    if monitor not in ("auto", "val_loss") and monitor not in names:
        hint = kind_of(kind).monitor_hint(monitor)
        raise RecipeError(f"{where}[train] monitor {monitor!r} is not computed for a {kind} task{classes}; "
                          f"allowed: auto, val_loss, {', '.join(names)}{hint}")
    _check_decision(kind, recipe.predict.decision, f"{where}[predict] decision")


def check_decision(task: Task, decision: str, what: str = "[predict] decision") -> None:
    """A decision rule the task's kind has (argmax for all; exit 2 otherwise)."""
    _check_decision(task.kind, decision, what)


def _check_decision(kind: str, decision: str, what: str) -> None:
    k = kind_of(kind)
    decision = k.rule_for(decision, True)
    if decision not in k.rule_names():
        if decision not in RULES:  # a rule of a kind not wired yet
            raise RecipeError(f'{what} = "{decision}" is not a decision of {a_kind(k.name)} task '
                              f'(its decisions: {", ".join(k.rule_names())})')
        raise RecipeError(rule_of(decision).misuse(what, k))


def describe_task(task: Task, labels: Sequence[str]) -> str:
    """One line: the task, its positive class, the monitor and the leaderboard metric."""
    parts = [kind_of(task).describe(task, labels)]
    parts.append(f"monitor {task.monitor}")
    if task.metric:
        parts.append(f"leaderboard metric {task.metric}")
    return ", ".join(parts)


def by_class(value: list[Any] | dict[str, Any], labels: Sequence[str], name: str,
             names: Sequence[str] | None = None) -> list[Any]:
    """Per-class values in class order, from a list (already in class order) or a table keyed by
    label or by display name (``names``, in class order: :func:`class_names`); a count that does
    not match, an unknown key, a class given twice or missing is exit 2 naming it."""
    labels = [str(c) for c in labels]
    shown = shown_classes(labels, names)
    if isinstance(value, dict):
        index: dict[str, int] = {c: i for i, c in enumerate(labels)}
        for i, n in enumerate(names or ()):
            index.setdefault(str(n), i)
        unknown = [k for k in value if k not in index]
        if unknown:
            raise CompError(f"{name} names {', '.join(repr(k) for k in unknown)}, which "
                            f"{'is not a class' if len(unknown) == 1 else 'are not classes'}; "
                            f"the classes are {shown}")
        given: dict[int, str] = {}
        for k in value:
            if index[k] in given:
                raise CompError(f"{name} gives class {labels[index[k]]!r} twice ({given[index[k]]!r} and {k!r})")
            given[index[k]] = k
        missing = [(names[i] if names else c) for i, c in enumerate(labels) if i not in given]
        if missing:
            raise CompError(f"{name} gives no value for class {', '.join(repr(c) for c in missing)} "
                            f"(a table by name needs every class: {shown})")
        return [value[given[i]] for i in range(len(labels))]
    values = list(value)
    if len(values) != len(labels):
        raise CompError(f"{name} has {len(values)} values but there are {len(labels)} classes "
                        f"{shown} (in class order; or give them by name)")
    return values


def class_weight_values(counts: Sequence[int], mode: str | list[float] | dict[str, float],
                        labels: Sequence[str] | None = None,
                        names: Sequence[str] | None = None) -> list[float] | None:
    """Per-class loss weights from the training class counts, or None for unweighted.

    ``"balanced"``: proportional to 1/n_c; ``"sqrt"``: proportional to 1/sqrt(n_c); both
    normalised to mean 1 over the classes, so the loss keeps its usual scale. A list is taken
    as given (one weight per class, in class order), a table by label or class name likewise
    (``labels``, the class order, is then needed; ``names``, their display names). The mode and
    the weights' values were checked when the recipe loaded (:func:`check_task_fields`); what is
    checked here needs the classes: their number, their names, a class without samples.
    """
    counts = [int(c) for c in counts]
    k = len(counts)
    if isinstance(mode, str):
        if mode == "none":
            return None
        empty = [i for i, c in enumerate(counts) if c <= 0]
        if empty:
            raise CompError(f'[loss] class_weights = "{mode}": class {empty[0]} has no training '
                            f"samples (its weight would be infinite); use explicit weights or \"none\"")
        power = 1.0 if mode == "balanced" else 0.5
        raw = [c ** -power for c in counts]
        mean = math.fsum(raw) / k
        return [w / mean for w in raw]
    if isinstance(mode, dict):
        if labels is None or len(labels) != k:
            raise CompError(f"[loss] class_weights by name needs the class names ({k} classes)")
        weights = by_class(mode, labels, "[loss] class_weights", names)
    else:
        weights = list(mode)
        if len(weights) != k:
            raise CompError(f"[loss] class_weights has {len(weights)} values but there are {k} classes"
                            + (f" {list(labels)[:10]} (in class order; or give them by name)" if labels else ""))
    return [float(w) for w in weights]


def class_table(labels: Sequence[str], counts: Sequence[int], weights: Sequence[float] | None,
                names: Sequence[str] | None = None) -> str:
    """The classes as one small table: index, class (and its display name when it has one),
    training images, share, loss weight."""
    labels = [str(c) for c in labels]
    named = bool(names) and list(names) != labels
    width = max(len(c) for c in [*labels, "class"]) + 2
    nwidth = max(len(str(c)) for c in [*(names or ()), "name"]) + 2
    total = max(sum(counts), 1)
    head = f"{'name':<{nwidth}}" if named else ""
    lines = [f"  {'index':>5}  {'class':<{width}}{head}{'images':>7}  {'share':>6}  {'weight':>7}"]
    for i, (c, n) in enumerate(zip(labels, counts)):
        w = "1" if weights is None else f"{weights[i]:.4g}"
        shown = f"{str(names[i]):<{nwidth}}" if named else ""
        lines.append(f"  {i:>5}  {c:<{width}}{shown}{n:>7}  {n / total:6.1%}  {w:>7}")
    return "\n".join(lines)


# Labels that look like a measured value (a score, a price) rather than classes: every label a
# finite number, at least this many distinct ones, and most of them held by one or two images.
CONTINUOUS_MIN_LABELS = 20
CONTINUOUS_FEW_IMAGES = 2


def looks_continuous(labels: Sequence[str], counts: Sequence[int]) -> bool:
    """Whether class labels (with their training image counts, in the same order) look like a
    continuous target: all numbers, at least :data:`CONTINUOUS_MIN_LABELS` of them, and more
    than half held by at most :data:`CONTINUOUS_FEW_IMAGES` images. Digits, grades and other
    numbered classes hold many images each; a column like Pawpularity's 65.13 holds one or two."""
    if len(labels) < CONTINUOUS_MIN_LABELS or len(labels) != len(counts):
        return False
    for label in labels:
        try:
            if not math.isfinite(float(label)):
                return False
        except ValueError:
            return False
    few = sum(1 for c in counts if c <= CONTINUOUS_FEW_IMAGES)
    return few * 2 > len(labels)


def _continuous_message(labels: Sequence[str], counts: Sequence[int], *, declared: bool) -> str:
    few = sum(1 for c in counts if c <= CONTINUOUS_FEW_IMAGES)
    shown = ", ".join(list(labels)[:5]) + (", ..." if len(labels) > 5 else "")
    what = ('[data] task = "multiclass" with' if declared else "[data] task = \"auto\" found")
    fix = ('for class ids, keep task = "multiclass" and set [data] numeric_classes = true' if declared else
           'for class ids, declare [data] task = "multiclass" and [data] numeric_classes = true')
    return (f"{what} {len(labels)} numeric labels ({shown}), {few} of them held by one or two images: they look "
            f"like a continuous target, not classes (a classifier would learn {len(labels)} classes of one or "
            f"two images each); for a measured value, declare [data] task = \"regression\"; {fix}")
