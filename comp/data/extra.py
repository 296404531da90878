"""Rows that only train (``[data] extra_csv``): pseudo-labelled test rows, or external data.

They join every fold's training rows (:func:`training_rows`) and nothing else: no fold validates
them, so they never reach oof.csv or a metric. Their labels are hard (the label column, class
values as in train.csv) or soft (a ``prob_<class>`` column per class, exactly what
``comp predict --proba`` writes; the label column is then ignored). Soft rows train with
cross-entropy against their probabilities (:mod:`comp.model.losses`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.table import (PROB_PREFIX, ClassMap, ImageTable, Problems, _check_empty_ids, _with_paths,
                             natural_sort, prob_column, read_csv)
from comp.errors import CompError
from comp.kinds import KINDS
from comp.recipe import Recipe


def load_extra_table(recipe: Recipe, classes: ClassMap, problems: Problems | None = None) -> ImageTable | None:
    """``[data] extra_csv`` as a table over the run's classes, or None when the recipe has none.

    Soft rows come back with ``targets`` (each row normalised to sum 1) and their most probable
    class as ``labels``; hard rows with ``labels`` only. ``[data] extra_min_prob`` drops the rows
    whose largest probability is below it. A label outside the class set, a set of ``prob_``
    columns that is not one per class, a probability that is not a number >= 0 (or a row of
    zeros), and soft rows for a regression head are problems (raised together, or added to
    ``problems``).
    """
    d = recipe.data
    if not d.extra_csv:
        return None
    found = Problems() if problems is None else problems
    root = Path(d.root)
    where = f"[data] extra_csv {d.extra_csv}"
    frame = read_csv(root / d.extra_csv, [d.id_col, d.path_col], found)
    if frame is None or d.id_col not in frame or (d.path_col and d.path_col not in frame):
        return _finish(found, problems, None)
    _check_empty_ids(frame[d.id_col], d.extra_csv, found)
    ids = frame[d.id_col]
    found.extend(f"duplicate ids in {d.extra_csv}", [str(v) for v in ids[ids.duplicated() & (ids != "")].unique()])
    columns = list(frame.columns)  # the user's own: _with_paths adds comp's
    frame = _with_paths(frame, d.extra_image_dir or d.image_dir, recipe, ext=d.extra_ext or d.ext)
    given = [c for c in frame.columns if c.startswith(PROB_PREFIX)]
    kind = KINDS.get(d.task)
    if kind is not None and kind.label_sets:
        return _finish(found, problems, _label_set_rows(recipe, frame, given, classes, where, found, ids, columns))
    if given:
        if recipe.model.head == "regression":
            raise CompError(f"{where} has soft labels (prob_ columns), and a regression head ([model] head = "
                            f"\"regression\") trains on hard labels only: give the label column "
                            f"{d.label_col!r} without prob_ columns")
        targets = _soft_targets(frame, given, classes, where, found, ids)
    elif d.label_col not in frame:
        found.add(f"missing label in {d.extra_csv}", f"neither the label column {d.label_col!r} nor prob_<class> "
                                                     f"columns (columns: {', '.join(columns)})")
        targets = None
    else:
        targets = _hard_targets(frame[d.label_col], classes, where, found, ids)
    if targets is None:
        return _finish(found, problems, None)
    keep = targets.max(axis=1) >= d.extra_min_prob
    table = ImageTable(ids=frame[d.id_col].to_numpy()[keep], paths=frame["_path"].to_numpy()[keep],
                       labels=targets[keep].argmax(axis=1).astype(np.int64),
                       targets=targets[keep] if given else None)
    return _finish(found, problems, table)


def _label_set_rows(recipe: Recipe, frame: pd.DataFrame, given: list[str], classes: ClassMap, where: str,
                    found: Problems, ids: pd.Series, columns: list[str]) -> ImageTable | None:
    """A multilabel task's extra rows: soft (a ``prob_<label>`` column per label, each in [0, 1],
    as ``comp predict --proba`` writes them; a row is kept when every label is at least
    ``[data] extra_min_prob`` sure, ``max(p, 1 - p)``) or hard (tags, or ``[data] label_cols``)."""
    from comp.data.labels import parse_label_columns, parse_tags  # noqa: PLC0415

    d = recipe.data
    if given:
        wanted = [prob_column(c) for c in classes.labels]
        if sorted(given) != sorted(wanted):
            found.add(f"prob_ columns in {where} that do not match the labels {list(classes.labels)}",
                      f"{', '.join(given)}")
            return None
        targets = frame[wanted].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(targets).all(axis=1) | (targets < 0).any(axis=1) | (targets > 1).any(axis=1)
        if bad.any():
            found.extend(f"rows of {where} whose prob_ values are not numbers in [0, 1]", ids[bad].astype(str).tolist())
            return None
        keep = KINDS[d.task].confidence(targets) >= d.extra_min_prob
    else:
        try:
            if d.label_cols:
                targets = parse_label_columns(frame, d.label_cols, ids.tolist()).astype(np.float64)
            elif d.label_col in frame:
                targets = parse_tags(frame[d.label_col].tolist(), ids.tolist(), d.tag_sep,
                                     tags=list(classes.labels))[1].astype(np.float64)
            else:
                found.add(f"missing label in {d.extra_csv}", f"neither the tag column {d.label_col!r} nor prob_<label> "
                                                             f"columns (columns: {', '.join(columns)})")
                return None
        except CompError as err:
            found.add(f"bad labels in {where}", str(err))
            return None
        keep = np.ones(len(frame), dtype=bool)
    return ImageTable(ids=frame[d.id_col].to_numpy()[keep], paths=frame["_path"].to_numpy()[keep],
                      labels=np.zeros(int(keep.sum()), dtype=np.int64), targets=targets[keep].astype(np.float32))


def _finish(found: Problems, problems: Problems | None, table: ImageTable | None) -> ImageTable | None:
    if problems is None:
        found.raise_if_any("bad extra rows")
    return table


def _hard_targets(labels: pd.Series, classes: ClassMap, where: str, found: Problems,
                  ids: pd.Series) -> np.ndarray | None:
    """One-hot rows of the label column; empty labels and labels outside the class set are problems."""
    empty = (labels == "").to_numpy()
    if empty.any():
        found.extend(f"empty labels in {where}", ids[empty].tolist())
    outside = natural_sort(set(labels[~empty]) - set(classes.labels))
    if outside:
        found.extend(f"labels in {where} outside the class set {list(classes.labels)}", outside)
    if empty.any() or outside:
        return None
    return np.eye(len(classes), dtype=np.float32)[classes.encode(labels.to_numpy())]


def _soft_targets(frame: pd.DataFrame, given: list[str], classes: ClassMap, where: str, found: Problems,
                  ids: pd.Series) -> np.ndarray | None:
    """The prob_ columns in class order, each row normalised to sum 1 (the CSV rounds them)."""
    wanted = [prob_column(c) for c in classes.labels]
    missing = [c for c in wanted if c not in given]
    unknown = [c for c in given if c not in wanted]
    if missing or unknown:
        found.add(f"prob_ columns in {where} that do not match the classes {list(classes.labels)}",
                  "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                          f"not a class: {', '.join(unknown)}" if unknown else ""])))
        return None
    values = frame[wanted].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (values.sum(axis=1) <= 0)
    if bad.any():
        found.extend(f"rows of {where} whose prob_ values are not numbers >= 0 with a positive sum",
                     ids[bad].astype(str).tolist())
        return None
    return (values / values.sum(axis=1, keepdims=True)).astype(np.float32)


def repeated_train_ids(train: ImageTable, extra: ImageTable) -> list[str]:
    """Extra rows' ids that are also training ids: such a row is validated in its fold while its
    copy trains there, so its label leaks into validation."""
    known = {str(i) for i in train.ids}
    return natural_sort({str(i) for i in extra.ids if str(i) in known})


def training_rows(table: ImageTable, index: np.ndarray, extra: ImageTable | None) -> ImageTable:
    """A fold's training rows: ``table``'s rows ``index`` followed by every extra row. When the
    extra rows are soft, every row gets ``targets`` (the labelled rows one-hot)."""
    rows = table.subset(np.asarray(index, dtype=np.int64))
    if extra is None or not len(extra):
        return rows
    if rows.labels is None:
        raise CompError("extra rows join labelled training rows only")
    targets = None
    if rows.targets is not None and extra.targets is not None:  # a multilabel task's rows of labels
        targets = np.concatenate([rows.targets, extra.targets]).astype(np.float32)
    elif extra.targets is not None:
        k = extra.targets.shape[1]
        targets = np.concatenate([np.eye(k, dtype=np.float32)[rows.labels], extra.targets.astype(np.float32)])
    return ImageTable(ids=np.concatenate([rows.ids, extra.ids]), paths=np.concatenate([rows.paths, extra.paths]),
                      labels=np.concatenate([rows.labels, extra.labels]), targets=targets)
