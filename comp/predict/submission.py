"""Submission CSVs in exactly the leaderboard's format, validated before an atomic write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comp import atomic
from comp.data.table import ClassMap, read_csv
from comp.errors import CompError
from comp.recipe import Recipe
from comp.train.rundir import prob_column


def submission_columns(recipe: Recipe, sample: pd.DataFrame, path: Path) -> tuple[str, str]:
    """(id column, label column): the recipe's, else sample_submission's first two."""
    if len(sample.columns) < 2 and not (recipe.submission.id_col and recipe.submission.label_col):
        raise CompError(f"{path}: expected an id column and a label column")
    id_col = recipe.submission.id_col or sample.columns[0]
    label_col = recipe.submission.label_col or sample.columns[1]
    for col in (id_col, label_col):
        if col not in sample.columns:
            raise CompError(f"{path}: missing column {col!r} (columns: {', '.join(sample.columns)})")
    return id_col, label_col


def build_submission(recipe: Recipe, ids: np.ndarray, labels: np.ndarray, classes: ClassMap,
                     probs: np.ndarray | None = None) -> pd.DataFrame:
    """Predictions laid out like sample_submission.csv: its columns, its id order.

    Every sample id must have exactly one prediction; with ``probs`` a ``prob_<class>`` column
    per class follows the sample's own columns.
    """
    path = Path(recipe.data.root) / recipe.data.sample_submission
    sample = read_csv(path)
    id_col, label_col = submission_columns(recipe, sample, path)
    ids = np.array([str(i) for i in ids], dtype=object)
    predicted = pd.Series(np.asarray(labels, dtype=object), index=ids)
    if predicted.index.has_duplicates:
        raise CompError("predictions contain duplicate ids")
    missing = sorted(set(sample[id_col]) - set(ids))
    extra = sorted(set(ids) - set(sample[id_col]))
    if missing or extra:
        raise CompError(f"the test ids do not match {path}: {len(missing)} missing "
                        f"{missing[:5]}, {len(extra)} extra {extra[:5]}")
    out = sample.copy()
    out[label_col] = predicted.loc[sample[id_col]].to_numpy()
    if probs is not None:
        order = pd.Series(np.arange(len(ids)), index=ids).loc[sample[id_col]].to_numpy()
        for i, name in enumerate(classes.labels):
            out[prob_column(name)] = probs[order, i]
    validate_submission(out, sample, id_col, label_col, classes)
    return out


def validate_submission(out: pd.DataFrame, sample: pd.DataFrame, id_col: str, label_col: str,
                        classes: ClassMap) -> None:
    """Same ids in the same order as the sample, no missing values, labels within the class set."""
    if list(out[id_col]) != list(sample[id_col]):
        raise CompError("submission ids are not those of sample_submission.csv in its order")
    if out[label_col].isna().any() or (out[label_col].astype(str) == "").any():
        raise CompError("submission has missing labels")
    outside = sorted(set(out[label_col].astype(str)) - set(classes.labels))
    if outside:
        raise CompError(f"submission labels outside the class set {list(classes.labels)}: {outside[:10]}")


def write_submission(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically: the file is complete or absent, never half-written."""
    path = Path(path)
    atomic.write_csv(path, frame)
    return path
