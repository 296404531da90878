"""``comp score``: a submission against the true labels, the local leaderboard."""

from __future__ import annotations

from pathlib import Path

from comp import metrics
from comp.data.table import MAX_EXAMPLES, ClassMap, natural_sort, read_csv
from comp.errors import CompError
from comp.kinds import KINDS, kind_of
from comp.data.labels import parse_numeric
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
    truth = read_csv(solution)
    if len(truth.columns) < 2 and not (id_col and label_col):
        raise CompError(f"{solution}: expected an id column and a label column")
    id_col = id_col or truth.columns[0]
    label_col = label_col or truth.columns[1]
    truth = read_csv(solution, [id_col, label_col])
    sub = read_csv(submission, [id_col, label_col])
    if sub[id_col].duplicated().any():
        dup = sub[id_col][sub[id_col].duplicated()].unique().tolist()
        raise CompError(f"{submission}: duplicate ids {dup[:5]}")
    missing = sorted(set(truth[id_col]) - set(sub[id_col]))
    extra = sorted(set(sub[id_col]) - set(truth[id_col]))
    if missing or extra:
        raise CompError(f"{submission} does not match the ids of {solution}: {len(missing)} missing "
                        f"{missing[:5]}, {len(extra)} extra {extra[:5]}")
    sub = sub.set_index(id_col).loc[truth[id_col]].reset_index()
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
    scores = metrics.summarise(task, y_true, probs, y_pred=y_pred)
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


def format_scores(scores: dict[str, float]) -> str:
    """One ``name value`` line a figure, the leaderboard's metric first."""
    width = max(len(k) for k in scores) + 2
    rows = [f"{k:<{width}}{int(v) if k == 'rows' else f'{v:.4f}'}" for k, v in scores.items()]
    return "\n".join(rows)
