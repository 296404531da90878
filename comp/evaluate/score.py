"""``comp score``: a submission against the true labels, the local leaderboard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.table import MAX_EXAMPLES, ClassMap, natural_sort, read_csv
from comp.errors import CompError
from comp.kinds import KINDS, kind_of
from comp.data.labels import parse_label_columns, parse_numeric, parse_tags
from comp.recipe import Recipe
from comp.recipe.task import resolve_task
from comp.run.folder import prob_columns


def score_submission(submission: Path, solution: Path, id_col: str = "", label_col: str = "", *,
                     recipe: Recipe | None = None, classes: list[str] | None = None,
                     run: str = "") -> dict[str, float]:
    """The task's metrics of a submission against the true labels, the leaderboard's metric first.

    The task comes from ``recipe`` (``[data] task``/``positive``, ``[submission] metric``; a run's
    recipe, or one built from ``comp score``'s options), its classes from ``classes`` (a run's)
    or else the labels found; ``run`` names where the classes came from, for messages.
    Probability metrics (AUC, top-k) need ``prob_<class>`` columns. Columns default to the
    solution's first two; ids must match exactly.
    """
    kind = KINDS.get((recipe or Recipe(name="score")).data.task)
    if kind is not None and kind.label_sets:  # a set of labels per row
        return _score_label_sets(submission, solution, recipe, classes, id_col, label_col)
    truth = read_csv(solution)
    if len(truth.columns) < 2 and not (id_col and label_col):
        raise CompError(f"{solution}: expected an id column and a label column")
    id_col = id_col or truth.columns[0]
    label_col = label_col or truth.columns[1]
    truth = read_csv(solution, [id_col, label_col])
    sub = read_csv(submission, [id_col, label_col])
    sub = _aligned(sub, truth, id_col, submission, solution)
    kind = KINDS.get((recipe or Recipe(name="score")).data.task)
    if kind is not None and kind.continuous:  # values: scored as numbers
        return _score_values(truth, sub, id_col, label_col, solution, submission, recipe, classes)
    given = classes is not None
    classes = ClassMap.from_labels(list(truth[label_col]), classes)
    among = (f"the classes of {run or 'the run'}" if given else f"the classes of {solution}")
    for path, frame in ((solution, truth), (submission, sub)):
        unknown = natural_sort(set(frame[label_col]) - set(classes.labels))
        if unknown:  # a typo or another class set: scoring it would make it a class of its own
            raise CompError(f"{path}: labels outside {among} {list(classes.labels)}: "
                            f"{unknown[:MAX_EXAMPLES]}" + (f" ({len(unknown)} in all)" if len(unknown) > MAX_EXAMPLES else ""))
    y_true = classes.encode(truth[label_col].to_numpy())
    y_pred = classes.encode(sub[label_col].to_numpy())
    task = resolve_task(recipe or Recipe(name="score"), classes.labels)
    prob_cols = prob_columns(classes.labels)
    probs = sub[prob_cols].astype(float).to_numpy() if all(c in sub.columns for c in prob_cols) else None
    scores = kind_of(task).summarise(task, y_true, probs, y_pred)
    first = task.headline if task.headline in scores else next(iter(scores))
    return {first: scores[first], **scores, "rows": float(len(truth))}


def _score_values(truth, sub, id_col: str, label_col: str, solution: Path, submission: Path,
                  recipe: Recipe, classes: list[str] | None) -> dict[str, float]:
    """A regression task's metrics; a value that is not a number is exit 2 naming its row."""
    parsed = []
    for path, frame in ((solution, truth), (submission, sub)):
        try:
            parsed.append(parse_numeric(frame[label_col].tolist(), frame[id_col].tolist(), label_col))
        except CompError as err:
            raise CompError(f"{path}: {err}") from None
    task = resolve_task(recipe, classes or [label_col])
    scores = kind_of(task).summarise(task, parsed[0], pred=parsed[1])
    first = task.headline if task.headline in scores else next(iter(scores))
    return {first: scores[first], **scores, "rows": float(len(truth))}


def _aligned(sub, truth, id_col: str, submission: Path, solution: Path):
    """The submission's rows in the solution's id order; duplicate, missing or extra ids: exit 2."""
    if sub[id_col].duplicated().any():
        dup = sub[id_col][sub[id_col].duplicated()].unique().tolist()
        raise CompError(f"{submission}: duplicate ids {dup[:5]}")
    missing = sorted(set(truth[id_col]) - set(sub[id_col]))
    extra = sorted(set(sub[id_col]) - set(truth[id_col]))
    if missing or extra:
        raise CompError(f"{submission} does not match the ids of {solution}: {len(missing)} missing "
                        f"{missing[:5]}, {len(extra)} extra {extra[:5]}")
    return sub.set_index(id_col).loc[truth[id_col]].reset_index()


def _label_matrix(path: Path, frame, id_col: str, label_col: str, classes: list[str] | None, recipe: Recipe,
                  values: bool) -> tuple[list[str], np.ndarray | None, np.ndarray]:
    """(labels, probabilities or None, 0/1 decisions) of a multilabel CSV in either layout: one
    column per label (0/1 decisions, or probabilities when ``values`` and a cell is not 0/1), or
    one column of tags (with ``prob_<label>`` columns read as probabilities). Bad cells: exit 2
    naming the file, the row and the value."""
    ids = frame[id_col].tolist()
    columns = classes or list(recipe.data.label_cols)
    try:
        if columns and all(c in frame.columns for c in columns):
            cells = frame[columns].apply(lambda col: pd.to_numeric(col.astype(str).str.strip(), errors="coerce"))
            if values and cells.notna().all().all() and not cells.isin([0, 1]).all().all():
                probs = cells.to_numpy(dtype=np.float64)
                if ((probs < 0) | (probs > 1)).any():
                    raise CompError("probabilities must lie in [0, 1]")
                return columns, probs, (probs >= 0.5).astype(np.int8)
            return columns, None, parse_label_columns(frame, columns, ids)
        column = label_col or (frame.columns[1] if len(frame.columns) > 1 else "")
        if column not in frame.columns:
            raise CompError(f"no tag column {column!r} and no column per label (columns: {', '.join(frame.columns)})")
        names, Y = parse_tags(frame[column].tolist(), ids, recipe.data.tag_sep, tags=columns or None)
        prob_cols = prob_columns(names)
        probs = (frame[prob_cols].astype(float).to_numpy() if values and all(c in frame.columns for c in prob_cols)
                 else None)
        return names, probs, Y
    except CompError as err:
        raise CompError(f"{path}: {err}") from None


def _score_label_sets(submission: Path, solution: Path, recipe: Recipe, classes: list[str] | None,
                      id_col: str, label_col: str) -> dict[str, float]:
    """A multilabel task's metrics: the solution and the submission each as tags or a column per label."""
    truth = read_csv(solution)
    id_col = id_col or truth.columns[0]
    sub = read_csv(submission, [id_col])
    sub = _aligned(sub, truth, id_col, submission, solution)
    names, _, y_true = _label_matrix(solution, truth, id_col, label_col, classes, recipe, values=False)
    _, probs, pred = _label_matrix(submission, sub, id_col, label_col, names, recipe, values=True)
    task = resolve_task(recipe, names)
    scores = kind_of(task).summarise(task, y_true, probs, pred)
    first = task.headline if task.headline in scores else next(iter(scores))
    return {first: scores[first], **scores, "rows": float(len(truth))}


def format_scores(scores: dict[str, float]) -> str:
    """One ``name value`` line a figure, the leaderboard's metric first."""
    width = max(len(k) for k in scores) + 2
    rows = [f"{k:<{width}}{int(v) if k == 'rows' else f'{v:.4f}'}" for k, v in scores.items()]
    return "\n".join(rows)
