"""The task a recipe describes, and per-class values given by class name.

``[data] task`` is resolved once the classes are known (:func:`resolve_task`) into a
:class:`comp.metrics.Task`, which is then passed explicitly to whatever computes metrics, picks
checkpoints or decides classes. What can be checked before the classes are known is checked when
the recipe loads (:func:`check_task_fields`), the rest as soon as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from comp.errors import CompError
from comp.metrics import TASK_KINDS, Task, make_task, metric_names
from comp.recipe.schema import Recipe, RecipeError


def check_task_fields(recipe: Recipe, where: str) -> None:
    """The task's fields that need no classes: a declared task's monitor, metric and decision,
    ``positive`` only for binary tasks, weights by name positive."""
    d = recipe.data
    kind = d.task
    if kind in ("multiclass", "ordinal") and d.positive:
        raise RecipeError(f"{where}: [data] positive is for binary tasks; [data] task is {kind!r}")
    if kind in TASK_KINDS:
        # The top-k accuracies are checked once the classes are known.
        _check_task_names(recipe, kind, metric_names(kind, 99), f"{where}: ", "")
    weights = recipe.loss.class_weights
    if isinstance(weights, dict):
        for name, w in weights.items():
            if not math.isfinite(w) or w <= 0:
                raise RecipeError(f"{where}: [loss] class_weights.{name} must be a positive number, got {w!r}")


def resolve_task(recipe: Recipe, labels: Sequence[str]) -> Task:
    """The recipe's task for these classes (in class order); an inconsistency is exit 2.

    ``auto`` is binary with two classes, else multiclass (numbers as labels are no evidence of
    order: ordinal only when declared). A binary task's positive class is ``[data] positive``,
    else the second class in class order.
    """
    d, n = recipe.data, len(labels)
    labels = [str(c) for c in labels]
    kind = d.task if d.task != "auto" else ("binary" if n == 2 else "multiclass")
    if kind == "binary" and n != 2:
        raise RecipeError(f'[data] task = "binary" needs two classes; the data has {n}: {labels[:10]}')
    if n < 2:
        raise RecipeError(f"a classification task needs at least two classes; the data has {n}: {labels}")
    positive = 1
    if d.positive:
        if kind != "binary":
            raise RecipeError(f"[data] positive is for binary tasks; this is a {kind} task with {n} classes")
        if d.positive not in labels:
            raise RecipeError(f"[data] positive {d.positive!r} is not a class; the classes are {labels}")
        positive = labels.index(d.positive)
    _check_task_names(recipe, kind, metric_names(kind, n), "", f" with {n} classes")
    return make_task(kind, n, positive=positive, monitor=recipe.train.monitor, metric=recipe.submission.metric)


def _check_task_names(recipe: Recipe, kind: str, names: Sequence[str], where: str, classes: str) -> None:
    """[submission] metric and [train] monitor among the task's metrics, [predict] decision one it
    has; messages start with ``where`` and say the task is ``kind`` + ``classes``."""
    metric, monitor = recipe.submission.metric, recipe.train.monitor
    if metric and metric not in names:
        raise RecipeError(f"{where}[submission] metric {metric!r} is not computed for a {kind} task{classes} "
                          f"(its metrics: {', '.join(names)})")
    if monitor not in ("auto", "val_loss") and monitor not in names:
        hint = ('; qwk and mae are for grades: declare [data] task = "ordinal" if the classes are ordered'
                if monitor in ("qwk", "mae") and kind == "multiclass" else "")
        raise RecipeError(f"{where}[train] monitor {monitor!r} is not computed for a {kind} task{classes}; "
                          f"allowed: auto, val_loss, {', '.join(names)}{hint}")
    _check_decision(kind, recipe.predict.decision, f"{where}[predict] decision")


def check_decision(task: Task, decision: str, what: str = "[predict] decision") -> None:
    """A decision rule the task has: ordinal thresholds for ordinal tasks, a probability
    threshold for binary ones, argmax for all (exit 2 otherwise)."""
    _check_decision(task.kind, decision, what)


def _check_decision(kind: str, decision: str, what: str) -> None:
    if decision == "ordinal_thresholds" and kind != "ordinal":
        raise RecipeError(f'{what} = "ordinal_thresholds" is for ordinal tasks (grades) and this is '
                          f'{_a(kind)} task; declare [data] task = "ordinal" if the classes are ordered')
    if decision == "threshold" and kind != "binary":
        raise RecipeError(f'{what} = "threshold" is for binary tasks and this is {_a(kind)} task '
                          f'(use "argmax"' + (' or "ordinal_thresholds")' if kind == "ordinal" else ")"))


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def describe_task(task: Task, labels: Sequence[str]) -> str:
    """One line: the task, its positive class, the monitor and the leaderboard metric."""
    parts = [f"task {task.kind} ({task.num_classes} classes"]
    if task.kind == "binary":
        parts[0] += f", positive class {labels[task.positive]!r}"
    parts[0] += ")"
    parts.append(f"monitor {task.monitor}")
    if task.metric:
        parts.append(f"leaderboard metric {task.metric}")
    return ", ".join(parts)


def by_class(value: list[Any] | dict[str, Any], labels: Sequence[str], name: str) -> list[Any]:
    """Per-class values in class order, from a list (already in class order) or a table by class
    name; a count that does not match, an unknown or a missing name is exit 2 naming it."""
    labels = [str(c) for c in labels]
    if isinstance(value, dict):
        unknown = [k for k in value if k not in labels]
        if unknown:
            raise CompError(f"{name} names {', '.join(repr(k) for k in unknown)}, which "
                            f"{'is not a class' if len(unknown) == 1 else 'are not classes'}; "
                            f"the classes are {labels}")
        missing = [c for c in labels if c not in value]
        if missing:
            raise CompError(f"{name} gives no value for class {', '.join(repr(c) for c in missing)} "
                            f"(a table by name needs every class: {labels})")
        return [value[c] for c in labels]
    values = list(value)
    if len(values) != len(labels):
        raise CompError(f"{name} has {len(values)} values but there are {len(labels)} classes "
                        f"{labels[:10]} (in class order; or give them by name)")
    return values


def class_weight_values(counts: Sequence[int], mode: str | list[float] | dict[str, float],
                        labels: Sequence[str] | None = None) -> list[float] | None:
    """Per-class loss weights from the training class counts, or None for unweighted.

    ``"balanced"``: proportional to 1/n_c; ``"sqrt"``: proportional to 1/sqrt(n_c); both
    normalised to mean 1 over the classes, so the loss keeps its usual scale. A list is taken
    as given (one positive weight per class, in class order), a table by class name likewise
    (``labels``, the class order, is then needed).
    """
    counts = [int(c) for c in counts]
    k = len(counts)
    if isinstance(mode, str):
        if mode == "none":
            return None
        if mode not in ("balanced", "sqrt"):
            raise CompError(f'[loss] class_weights must be "none", "balanced", "sqrt" or a list '
                            f"of weights, got {mode!r}")
        if k == 0:
            raise CompError(f'[loss] class_weights = "{mode}" needs at least one class')
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
        weights = by_class(mode, labels, "[loss] class_weights")
        where = [f".{c}" for c in labels]
    else:
        weights = list(mode)
        if len(weights) != k:
            raise CompError(f"[loss] class_weights has {len(weights)} values but there are {k} classes"
                            + (f" {list(labels)[:10]} (in class order; or give them by name)" if labels else ""))
        where = [f"[{i}]" for i in range(k)]
    for w, at in zip(weights, where):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise CompError(f"[loss] class_weights{at} must be a positive number, got {w!r}")
    return [float(w) for w in weights]


def class_table(labels: Sequence[str], counts: Sequence[int], weights: Sequence[float] | None) -> str:
    """The classes as one small table: index, class, training images, share, loss weight."""
    width = max(len(str(c)) for c in [*labels, "class"]) + 2
    total = max(sum(counts), 1)
    lines = [f"  {'index':>5}  {'class':<{width}}{'images':>7}  {'share':>6}  {'weight':>7}"]
    for i, (c, n) in enumerate(zip(labels, counts)):
        w = "1" if weights is None else f"{weights[i]:.4g}"
        lines.append(f"  {i:>5}  {str(c):<{width}}{n:>7}  {n / total:6.1%}  {w:>7}")
    return "\n".join(lines)
