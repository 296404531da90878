"""Label cells parsed into targets for the multi-label and continuous-target competitions.

Multi-label labels come as one column of separated tags (Planet's ``image_name,tags``: ``"clear
primary water"``; Human Protein Atlas's ``Id,Target``: ``"0 5 25"``; an empty cell is no label)
or as one 0/1 column per label (Plant Pathology, RANZCR); either way they become an ``(n, L)``
0/1 matrix. A continuous target is one numeric column. Bad cells are a :class:`CompError`
naming the row's id and the value. :func:`label_stats` and :func:`label_summary` describe such a
matrix (counts, pairs, rows without a label) for ``comp check`` and the report. Pure functions of
the cells: no image or torch import here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from comp.errors import CompError

MAX_EXAMPLES = 10  # examples a message shows of a problem


def natural_sort(values: set[str] | list[str]) -> list[str]:
    """Sort numerically when every value is a number (so "10" follows "9"), else as text."""
    values = list(values)
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _tokens(cell: object, sep: str) -> list[str]:
    """The tags of one cell: split on ``sep`` (any run of whitespace when it is a space), blanks
    dropped; a missing or empty cell has none."""
    if _missing(cell):
        return []
    text = str(cell)
    parts = text.split() if sep == " " else text.split(sep)
    return [p.strip() for p in parts if p.strip()]


def _more(count: int, total: int) -> str:
    return f" ({count} of {total} rows are like it)" if count > 1 else ""


def parse_tags(values: Sequence, ids: Sequence, sep: str = " ",
               tags: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(tag names, ``(n, L)`` int8 matrix) of a column of ``sep``-separated tags.

    Without ``tags`` the names are every tag found, sorted as :func:`~comp.data.table.natural_sort`
    sorts classes (numerically when all are numbers: HPA's "2" before "10"); with ``tags`` (the
    training rows' names, at test time) the names are ``tags`` in their order and a tag outside
    them is a :class:`CompError` naming it and its row. A tag repeated within a row is a
    :class:`CompError` naming the row's id and the tag. An empty (or NaN) cell is a row with no label.
    """
    values, ids = list(values), list(ids)
    if len(values) != len(ids):
        raise ValueError(f"values has {len(values)} rows but ids has {len(ids)}")
    rows = [_tokens(v, sep) for v in values]
    for row_id, cell, row in zip(ids, values, rows):
        if len(set(row)) != len(row):
            tag = next(t for i, t in enumerate(row) if t in row[:i])
            bad = sum(len(set(r)) != len(r) for r in rows)
            raise CompError(f"row {row_id!r}: tag {tag!r} appears more than once in {str(cell)!r}"
                            f"{_more(bad, len(rows))}")
    found = {t for row in rows for t in row}
    if tags is None:
        names = natural_sort(found)
    else:
        names = [str(t) for t in tags]
        unknown = found - set(names)
        if unknown:
            tag = natural_sort(unknown)[0]
            row_id = next(i for i, row in zip(ids, rows) if tag in row)
            shown = ", ".join(repr(t) for t in natural_sort(unknown)[:MAX_EXAMPLES])
            raise CompError(f"row {row_id!r}: tag {tag!r} is not one of the {len(names)} known tags "
                            f"(unknown: {shown}; known: {', '.join(names[:MAX_EXAMPLES])}"
                            f"{', ...' if len(names) > MAX_EXAMPLES else ''})")
    index = {name: j for j, name in enumerate(names)}
    Y = np.zeros((len(rows), len(names)), dtype=np.int8)
    for i, row in enumerate(rows):
        Y[i, [index[t] for t in row]] = 1
    return names, Y


def parse_label_columns(frame: pd.DataFrame, cols: Sequence[str], ids: Sequence) -> np.ndarray:
    """The ``(n, L)`` int8 matrix of one 0/1 column per label (``[data] label_cols``, in that order).

    A cell is 0 or 1 as a number or as text (``1``, ``"1"``, ``1.0``, ``" 0 "``); anything else (a
    blank, ``"yes"``, ``0.5``, NaN) is a :class:`CompError` naming the column, the row's id and the
    value, as is a column missing from the frame.
    """
    cols, ids = [str(c) for c in cols], list(ids)
    if not cols:
        raise CompError("no label columns given ([data] label_cols is empty)")
    if len(ids) != len(frame):
        raise ValueError(f"frame has {len(frame)} rows but ids has {len(ids)}")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise CompError(f"missing label column {', '.join(repr(c) for c in missing)} "
                        f"(the columns are {', '.join(map(str, frame.columns))})")
    Y = np.zeros((len(frame), len(cols)), dtype=np.int8)
    for j, col in enumerate(cols):
        cells = frame[col].to_numpy(dtype=object)
        numbers = pd.to_numeric(pd.Series([str(v).strip() if not _missing(v) else "" for v in cells],
                                          dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isin(numbers, (0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CompError(f"label column {col!r}: row {ids[i]!r} has {cells[i]!r}, not 0 or 1"
                            f"{_more(int(bad.sum()), len(cells))}")
        Y[:, j] = numbers.astype(np.int8)
    return Y


def format_tags(Y: np.ndarray, names: Sequence[str], sep: str = " ") -> list[str]:
    """Each row's tags joined by ``sep``, in the order of ``names`` ("" for a row with none)."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] != len(names):
        raise ValueError(f"Y has shape {Y.shape} but there are {len(names)} names")
    names = [str(n) for n in names]
    return [sep.join(names[j] for j in np.flatnonzero(row)) for row in Y]


def parse_numeric(values: Sequence, ids: Sequence, column: str) -> np.ndarray:
    """A continuous target's cells as float64 (``"7"``, ``" 3.5"``, ``1e2``). A cell that is not a
    finite number (``"abc"``, a blank, NaN, ``inf``) is a :class:`CompError` naming ``column``, the
    row's id and the value."""
    values, ids = list(values), list(ids)
    if len(values) != len(ids):
        raise ValueError(f"values has {len(values)} rows but ids has {len(ids)}")
    text = pd.Series([str(v).strip() if not _missing(v) else "" for v in values], dtype=object)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CompError(f"label column {column!r}: row {ids[i]!r} has {values[i]!r}, not a number"
                        f"{_more(int(bad.sum()), len(values))}")
    return numbers


# --------------------------------------------------------------------------- a label matrix described


def _matrix(Y: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (rows, labels), got shape {Y.shape}")
    if Y.size and not np.isin(Y, (0, 1)).all():
        raise ValueError("Y must hold 0/1 values")
    if names is not None and len(names) != Y.shape[1]:
        raise ValueError(f"Y has shape {Y.shape} but there are {len(names)} names")
    return Y.astype(np.int64)


def cooccurrence(Y: np.ndarray) -> np.ndarray:
    """The ``(L, L)`` int64 matrix of rows holding both label i and label j; the diagonal is each
    label's row count."""
    Y = _matrix(Y)
    return Y.T @ Y


@dataclass(frozen=True)
class LabelStats:
    """A 0/1 label matrix in numbers: per label (in column order) its rows and share of the rows;
    the pairs of labels found together, most rows first; the rows without a label; the labels per row."""

    names: tuple[str, ...]
    rows: int
    counts: tuple[int, ...]
    shares: tuple[float, ...]  # counts / rows (NaN without rows)
    pairs: tuple[tuple[str, str, int], ...]  # (a, b, rows with both), a before b in column order; none of 0
    no_label: int  # rows without any label
    mean_per_row: float  # labels per row on average (NaN without rows)
    max_per_row: int

    @property
    def no_label_share(self) -> float:
        return self.no_label / self.rows if self.rows else math.nan


def label_stats(Y: np.ndarray, names: Sequence[str]) -> LabelStats:
    """The numbers of :class:`LabelStats` of ``Y`` (``(n, L)`` 0/1) whose columns are ``names``.
    Pairs are sorted by rows descending, ties in column order; a pair never found together is left out."""
    Y = _matrix(Y, names)
    names = tuple(str(n) for n in names)
    n = len(Y)
    co = cooccurrence(Y)
    counts = tuple(int(c) for c in np.diag(co))
    shares = tuple(c / n if n else math.nan for c in counts)
    upper = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if co[i, j] > 0]
    upper.sort(key=lambda ij: -co[ij])  # (a stable sort: ties stay in column order)
    per_row = Y.sum(axis=1)
    return LabelStats(names=names, rows=n, counts=counts, shares=shares,
                      pairs=tuple((names[i], names[j], int(co[i, j])) for i, j in upper),
                      no_label=int((per_row == 0).sum()), mean_per_row=float(per_row.mean()) if n else math.nan,
                      max_per_row=int(per_row.max(initial=0)))


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _rows(count: int, width: int = 0, noun: str = "row") -> str:
    return f"{count:>{width}} {noun}" + ("" if count == 1 else "s")


def label_summary(Y: np.ndarray, names: Sequence[str], top_pairs: int = 5) -> list[str]:
    """Lines describing a multi-label training set (:func:`label_stats`): the rows and labels per row;
    one line per label with its rows and share (most rows first, column order on ties); the
    ``top_pairs`` pairs found together most often, each with its share of either label's rows (no
    line with ``top_pairs`` 0, unless to say that no row has two labels); the rows without a label."""
    stats = label_stats(Y, names)
    lines = [f"{_rows(stats.rows)}, {_rows(len(stats.names), noun='label')}: "
             + (f"{stats.mean_per_row:.2f} labels per row on average (at most {stats.max_per_row})"
                if stats.rows else "no row")]
    order = sorted(range(len(stats.names)), key=lambda j: -stats.counts[j])
    width = max((len(n) for n in stats.names), default=0)
    digits = len(str(max(stats.counts, default=0)))
    lines += [f"  {stats.names[j]:<{width}}  {_rows(stats.counts[j], digits)} ({_percent(stats.counts[j], stats.rows)})"
              for j in order]
    count = dict(zip(stats.names, stats.counts))
    shown = [f"{a} + {b}: {_rows(k)} ({k / count[a]:.0%} of {a}, {k / count[b]:.0%} of {b})"
             for a, b, k in stats.pairs[:max(top_pairs, 0)]]
    if not stats.pairs:
        lines.append("labels found together: none (no row has two labels)")
    elif shown:
        lines.append("labels found together most often: " + "; ".join(shown))
    lines.append(f"rows without a label: {_rows(stats.no_label)} ({_percent(stats.no_label, stats.rows)})")
    return lines
