"""Submission CSVs in exactly the leaderboard's format, validated before an atomic write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comp import atomic
from comp.data.table import ClassMap, SubmissionFormat, check_label_sample, label_layout, submission_format  # noqa: F401
from comp.errors import CompError
from comp.recipe import Recipe
from comp.run.folder import prob_column


def build_submission(recipe: Recipe, ids: np.ndarray, labels: np.ndarray, classes: ClassMap,
                     probs: np.ndarray | None = None, fmt: SubmissionFormat | None = None,
                     check_labels: bool = True) -> pd.DataFrame:
    """Predictions laid out in the leaderboard's format (``fmt``, else read from the recipe's
    competition folder).

    With sample_submission.csv: its columns and its id order, every sample id predicted exactly
    once. Without it: the id column and the label column in the order of ``ids`` (test.csv's).
    With ``probs`` a ``prob_<class>`` column per class follows. ``check_labels``: the labels
    must be classes (a regression task's values are not).
    """
    fmt = fmt if fmt is not None else submission_format(recipe)
    ids = np.array([str(i) for i in ids], dtype=object)
    predicted = pd.Series(np.asarray(labels, dtype=object), index=ids)
    if predicted.index.has_duplicates:
        raise CompError("predictions contain duplicate ids")
    if fmt.sample is None:
        sample = pd.DataFrame({fmt.id_col: ids})
    else:
        sample = fmt.sample
        missing = sorted(set(sample[fmt.id_col]) - set(ids))
        extra = sorted(set(ids) - set(sample[fmt.id_col]))
        if missing or extra:
            raise CompError(f"the test ids do not match {fmt.path}: {len(missing)} missing "
                            f"{missing[:5]}, {len(extra)} extra {extra[:5]}")
    out = sample.copy()
    out[fmt.label_col] = predicted.loc[sample[fmt.id_col]].to_numpy()
    if probs is not None:
        order = pd.Series(np.arange(len(ids)), index=ids).loc[sample[fmt.id_col]].to_numpy()
        for i, name in enumerate(classes.labels):
            out[prob_column(name)] = probs[order, i]
    validate_submission(out, sample, fmt.id_col, fmt.label_col, classes if check_labels else None)
    return out


def label_values(recipe: Recipe, fmt: SubmissionFormat, columns: list[str]) -> str:
    """What one-column-per-label cells hold: "probabilities" or "decisions" (0/1), as
    ``[submission] values`` says; "auto": probabilities for a ranking metric (mean_auc, map,
    log_loss) or a sample whose cells are not all 0/1, else decisions."""
    from comp.metrics import PROB_METRICS  # noqa: PLC0415

    chosen = recipe.submission.values
    if chosen != "auto":
        return chosen
    metric = recipe.submission.metric
    if metric:
        return "probabilities" if metric in PROB_METRICS else "decisions"
    if fmt.sample is not None and len(fmt.sample):
        cells = pd.to_numeric(fmt.sample[columns].stack(), errors="coerce")
        return "decisions" if cells.isin([0, 1]).all() else "probabilities"
    return "probabilities"


def build_label_submission(recipe: Recipe, ids: np.ndarray, pred: np.ndarray, probs: np.ndarray,
                           classes: ClassMap, fmt: SubmissionFormat | None = None,
                           proba: bool = False) -> pd.DataFrame:
    """A multilabel submission in the leaderboard's format: one column of tags joined by
    ``[data] tag_sep`` (a row with none: an empty cell), or one column per label holding
    probabilities or 0/1 decisions (:func:`label_values`); ids in sample_submission's order.
    ``proba``: a ``prob_<label>`` column per label follows a tags column."""
    fmt = fmt if fmt is not None else submission_format(recipe)
    ids = np.array([str(i) for i in ids], dtype=object)
    if len(set(ids)) != len(ids):
        raise CompError("predictions contain duplicate ids")
    sample = fmt.sample if fmt.sample is not None else pd.DataFrame({fmt.id_col: ids})
    missing = sorted(set(sample[fmt.id_col]) - set(ids))
    extra = sorted(set(ids) - set(sample[fmt.id_col]))
    if missing or extra:
        raise CompError(f"the test ids do not match {fmt.path}: {len(missing)} missing "
                        f"{missing[:5]}, {len(extra)} extra {extra[:5]}")
    order = pd.Series(np.arange(len(ids)), index=ids).loc[sample[fmt.id_col]].to_numpy()
    out = sample.copy()
    columns = label_layout(recipe, fmt, classes)
    names = [str(c) for c in classes.labels]
    if columns:
        values = probs if label_values(recipe, fmt, columns) == "probabilities" else np.asarray(pred, dtype=np.int64)
        for j, name in enumerate(columns):
            out[name] = values[order, j]
    else:
        sep = recipe.data.tag_sep
        out[fmt.label_col] = [sep.join(names[j] for j in np.flatnonzero(row)) for row in np.asarray(pred)[order]]
    if proba:
        for j, name in enumerate(names):
            out[prob_column(name)] = probs[order, j]
    if list(out[fmt.id_col]) != list(sample[fmt.id_col]):
        raise CompError("submission ids are not those of sample_submission.csv (or test.csv) in its order")
    return out


def validate_submission(out: pd.DataFrame, sample: pd.DataFrame, id_col: str, label_col: str,
                        classes: ClassMap | None) -> None:
    """Same ids in the same order as the sample, no missing values, labels within the class set
    (``classes``; None: values, not classes)."""
    if list(out[id_col]) != list(sample[id_col]):
        raise CompError("submission ids are not those of sample_submission.csv (or test.csv) in its order")
    if out[label_col].isna().any() or (out[label_col].astype(str) == "").any():
        raise CompError("submission has missing labels")
    if classes is None:
        return
    outside = sorted(set(out[label_col].astype(str)) - set(classes.labels))
    if outside:
        raise CompError(f"submission labels outside the class set {list(classes.labels)}: {outside[:10]}")


def write_submission(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically: the file is complete or absent, never half-written."""
    path = Path(path)
    atomic.write_csv(path, frame)
    return path
