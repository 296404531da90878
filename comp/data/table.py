"""The data table: a competition's CSVs read into ids, image paths, class indices and groups.

Everything is read as strings, so ids like ``00123`` and labels like ``ALL``/``hem`` survive
unchanged; labels are mapped to class indices by a :class:`ClassMap` and back at submission time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.labels import MAX_EXAMPLES, natural_sort  # noqa: F401 (also read from here)
from comp.kinds import KINDS
from comp.errors import CompError
from comp.recipe import Recipe

PROB_PREFIX = "prob_"  # a class's probability column in any CSV: oof.csv, submissions, extra rows


def prob_column(label: str) -> str:
    """The column holding the probability of class ``label`` (oof.csv, submissions, extra rows)."""
    return f"{PROB_PREFIX}{label}"


def prob_columns(labels: Iterable[str]) -> list[str]:
    return [prob_column(c) for c in labels]


@dataclass
class Problems:
    """Problems found in the data, grouped by kind, reported together as one error."""

    kinds: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.kinds.setdefault(kind, []).append(example)

    def extend(self, kind: str, examples: list[str]) -> None:
        for e in examples:
            self.add(kind, e)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def message(self) -> str:
        parts = []
        for kind, examples in self.kinds.items():
            shown = ", ".join(examples[:MAX_EXAMPLES])
            more = f", ... ({len(examples) - MAX_EXAMPLES} more)" if len(examples) > MAX_EXAMPLES else ""
            parts.append(f"{len(examples)} {kind}: {shown}{more}")
        return "; ".join(parts)

    def raise_if_any(self, prefix: str = "bad data") -> None:
        if self.kinds:
            raise CompError(f"{prefix}: {self.message()}")


@dataclass(frozen=True)
class ClassMap:
    """The ordered class set: label values as the competition writes them ↔ class indices."""

    labels: tuple[str, ...]

    @classmethod
    def from_labels(cls, values: np.ndarray | list[str], declared: list[str] | None = None) -> ClassMap:
        """Declared classes keep their order; found ones sort numerically when all are numbers."""
        if declared:
            return cls(tuple(str(v) for v in declared))
        return cls(tuple(natural_sort(set(str(v) for v in values))))

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, values: np.ndarray | list[str]) -> np.ndarray:
        """Label values → class indices; a value outside the class set is an error naming it."""
        lookup = {v: i for i, v in enumerate(self.labels)}
        unknown = sorted({str(v) for v in values if str(v) not in lookup})
        if unknown:
            raise CompError(f"labels outside the class set {list(self.labels)}: {unknown[:MAX_EXAMPLES]}")
        return np.array([lookup[str(v)] for v in values], dtype=np.int64)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """Class indices → label values."""
        return np.asarray(self.labels, dtype=object)[np.asarray(indices, dtype=np.int64)]



@dataclass(frozen=True)
class ImageTable:
    """Rows of one CSV: ids, image paths, and (for labelled data) class indices.

    ``targets``: the ``(N, num_classes)`` class probabilities the rows train on, when some rows
    have soft labels (``[data] extra_csv`` with ``prob_<class>`` columns); ``labels`` then hold
    each row's most probable class. None: the rows train on ``labels``.
    """

    ids: np.ndarray
    paths: np.ndarray
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None
    splits: np.ndarray | None = None
    targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: np.ndarray) -> ImageTable:
        take = lambda a: None if a is None else a[idx]  # noqa: E731
        return ImageTable(self.ids[idx], self.paths[idx], take(self.labels), take(self.groups),
                          take(self.splits), take(self.targets))


def read_csv(path: Path, columns: list[str] = (), problems: Problems | None = None) -> pd.DataFrame | None:
    """Read a CSV as strings; a missing file or column is an error naming it.

    With ``problems`` those are added to it instead of raised: the frame comes back without the
    missing columns, or ``None`` when the file itself cannot be read.
    """

    def fail(kind: str, example: str, message: str) -> None:
        if problems is None:
            raise CompError(message)
        problems.add(kind, example)

    if not path.is_file():
        if path.exists():  # a folder (or a FIFO) of that name: not a CSV to read
            fail("not files", str(path), f"{path} is not a file (a folder or a special file); name a CSV file")
        else:
            fail("missing files", str(path), f"file not found: {path}")
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0]
        fail("unreadable files", f"{path} ({reason})", f"cannot read {path}: {reason}")
        return None
    missing = [c for c in columns if c and c not in frame.columns]
    if missing and problems is None:
        raise CompError(f"{path}: missing column {', '.join(repr(c) for c in missing)} "
                        f"(columns: {', '.join(frame.columns)})")
    for c in missing:
        problems.add(f"missing column {c!r}", f"{path.name} (columns: {', '.join(frame.columns)})")
    return frame


def load_train_table(recipe: Recipe, problems: Problems | None = None) -> tuple[ImageTable, ClassMap]:
    """train.csv (plus valid.csv when the recipe names one) as one labelled table.

    Missing files and columns, empty and duplicate ids, empty labels and labels outside the class
    set are raised together as one error, or, when ``problems`` is given, added to it for the
    caller to report with others. The table then holds the rows that could be read: a file
    without its id (or path) column adds no rows, and unknown or absent labels become -1.
    """
    d, cv = recipe.data, recipe.cv
    root = Path(d.root)
    if not root.is_dir():
        raise CompError(f"[data] root {root} is a file, not the competition's folder" if root.exists()
                        else f"data folder not found: {root} ([data] root)")
    found = Problems() if problems is None else problems
    needed = [d.id_col, *(d.label_cols or [d.label_col]), d.path_col, cv.group_col, cv.split_col]
    files = [(d.train_csv, d.image_dir, needed, "train")]
    if d.valid_csv:  # its rows are the "valid" split, so it needs no split column of its own
        files.append((d.valid_csv, d.valid_image_dir or d.image_dir,
                      [c for c in needed if c != cv.split_col], "valid"))
    parts = []
    for csv, image_dir, columns, split in files:
        frame = read_csv(root / csv, columns, found)
        if frame is not None and split == "train" and frame.empty:
            found.add("training files without a single row (only a header)", str(root / csv))
        if frame is None or d.id_col not in frame or (d.path_col and d.path_col not in frame):
            continue  # reported; rows that cannot be identified or located cannot be checked
        _check_empty_ids(frame[d.id_col], csv, found)
        # None (not "") marks a label the file does not have, so it is not also an empty label.
        absent = {c: None for c in columns if c and c not in frame}
        frame = _with_paths(frame.assign(**absent), image_dir, recipe).assign(_split=split)
        if d.valid_csv and cv.split_col and split == "valid":
            frame[cv.split_col] = "valid"
        parts.append(frame)
    columns = list(dict.fromkeys([c for c in needed if c] + ["_path", "_split"]))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns, dtype=object)
    _check_duplicate_ids(frame[d.id_col], found)
    kind = KINDS.get(d.task)
    if kind is not None and kind.continuous:
        return _value_table(recipe, frame, found, problems is None, root)
    if kind is not None and kind.label_sets:
        return _label_set_table(recipe, frame, found, problems is None, root)
    ids, labels = frame[d.id_col], frame[d.label_col]
    known = labels.notna()
    if (known & (labels == "")).any():
        found.extend("empty labels", ids[known & (labels == "")].tolist())
    given = labels[known & (labels != "")]
    classes = ClassMap.from_labels(given.to_numpy(), d.classes)
    outside = natural_sort(set(given) - set(classes.labels))
    if outside:
        found.extend(f"labels outside the class set {list(classes.labels)}", outside)
    if problems is None:
        found.raise_if_any(f"bad data in {root}")
    splits = None
    if cv.split_col:
        splits = frame[cv.split_col].to_numpy()
    elif d.valid_csv:
        splits = frame["_split"].to_numpy()
    lookup = {v: i for i, v in enumerate(classes.labels)}
    table = ImageTable(
        ids=frame[d.id_col].to_numpy(),
        paths=frame["_path"].to_numpy(),
        labels=np.array([lookup.get(v, -1) for v in labels], dtype=np.int64),
        groups=frame[cv.group_col].to_numpy() if cv.group_col else None,
        splits=splits,
    )
    return table, classes


def _value_table(recipe: Recipe, frame: pd.DataFrame, found: Problems, raise_now: bool,
                 root: Path) -> tuple[ImageTable, ClassMap]:
    """A regression task's table: its one "class" is the label column; ``targets`` the values
    (``(N, 1)`` float32), ``labels`` their quantile bins (``[cv] bins``: what folds stratify on).
    A label that is not a finite number is exit 2 naming the row and the value."""
    from comp.data.labels import parse_numeric  # noqa: PLC0415
    from comp.data.splits import quantile_bins

    d = recipe.data
    known = frame[d.label_col].notna()  # (None: a file without the column, reported already)
    values = parse_numeric(frame[d.label_col][known].tolist(), frame[d.id_col][known].tolist(), d.label_col)
    if raise_now:
        found.raise_if_any(f"bad data in {root}")
    full = np.full(len(frame), np.nan)
    full[known.to_numpy()] = values
    finite = np.isfinite(full)
    bins = np.full(len(frame), -1, dtype=np.int64)
    bins[finite] = quantile_bins(full[finite], recipe.cv.bins)
    splits = None
    if recipe.cv.split_col:
        splits = frame[recipe.cv.split_col].to_numpy()
    elif d.valid_csv:
        splits = frame["_split"].to_numpy()
    table = ImageTable(ids=frame[d.id_col].to_numpy(), paths=frame["_path"].to_numpy(), labels=bins,
                       groups=frame[recipe.cv.group_col].to_numpy() if recipe.cv.group_col else None,
                       splits=splits, targets=full[:, None].astype(np.float32))
    return table, ClassMap((d.label_col,))


def _label_set_table(recipe: Recipe, frame: pd.DataFrame, found: Problems, raise_now: bool,
                     root: Path) -> tuple[ImageTable, ClassMap]:
    """A multilabel task's table: its "classes" are the labels (the tags found, in natural order,
    or ``[data] classes``; or ``[data] label_cols`` in their order), ``targets`` the ``(N, L)`` 0/1
    matrix (float32, what the loss trains on and folds are stratified on). An empty tag cell is a
    row with no label. A repeated tag, a cell of a label column that is not 0/1, a tag outside
    ``[data] classes``: exit 2 naming the row and the value."""
    from comp.data.labels import parse_label_columns, parse_tags  # noqa: PLC0415

    d = recipe.data
    known = frame[d.label_cols[0] if d.label_cols else d.label_col].notna().to_numpy()  # None: a file without it
    part = frame[known]
    names: list[str] = list(d.label_cols) if d.label_cols else list(d.classes or [])
    Y = np.zeros((len(part), len(names)), dtype=np.int8)
    try:
        if d.label_cols:
            Y = parse_label_columns(part, d.label_cols, part[d.id_col].tolist())
        else:
            names, Y = parse_tags(part[d.label_col].tolist(), part[d.id_col].tolist(), d.tag_sep,
                                  tags=d.classes or None)
    except CompError as err:
        found.add("bad labels", str(err))
    if raise_now:
        found.raise_if_any(f"bad data in {root}")
    full = np.zeros((len(frame), len(names)), dtype=np.float32)
    if Y.shape == (int(known.sum()), len(names)):
        full[known] = Y
    splits = None
    if recipe.cv.split_col:
        splits = frame[recipe.cv.split_col].to_numpy()
    elif d.valid_csv:
        splits = frame["_split"].to_numpy()
    table = ImageTable(ids=frame[d.id_col].to_numpy(), paths=frame["_path"].to_numpy(),
                       labels=np.where(known, 0, -1).astype(np.int64),
                       groups=frame[recipe.cv.group_col].to_numpy() if recipe.cv.group_col else None,
                       splits=splits, targets=full)
    return table, ClassMap(tuple(str(n) for n in names))


def load_test_table(recipe: Recipe, problems: Problems | None = None) -> ImageTable:
    """test.csv as an unlabelled table; its problems are raised together, or added to ``problems``."""
    d = recipe.data
    root = Path(d.root)
    if not root.is_dir():
        raise CompError(f"[data] root {root} is a file, not the competition's folder" if root.exists()
                        else f"data folder not found: {root} ([data] root)")
    found = Problems() if problems is None else problems
    frame = read_csv(root / d.test_csv, [d.id_col, d.path_col], found)
    if frame is None or d.id_col not in frame or (d.path_col and d.path_col not in frame):
        frame = pd.DataFrame({d.id_col: [], "_path": []}, dtype=object)
    else:
        _check_empty_ids(frame[d.id_col], d.test_csv, found)
        frame = _with_paths(frame, d.test_image_dir, recipe)
    _check_duplicate_ids(frame[d.id_col], found)
    if problems is None:
        found.raise_if_any(f"bad data in {root}")
    return ImageTable(ids=frame[d.id_col].to_numpy(), paths=frame["_path"].to_numpy())


def _with_paths(frame: pd.DataFrame, image_dir: str, recipe: Recipe, ext: str | None = None) -> pd.DataFrame:
    """``frame`` with ``_path``: root/<path column>, else root/image_dir/<id><ext> (default [data] ext)."""
    d = recipe.data
    root = Path(d.root)
    if d.path_col:
        paths = [str(root / p) for p in frame[d.path_col]]
    else:
        folder = root / image_dir
        paths = [str(folder / f"{i}{d.ext if ext is None else ext}") for i in frame[d.id_col]]
    return frame.assign(_path=paths)


def _check_empty_ids(ids: pd.Series, csv: str, problems: Problems) -> None:
    # CSV line numbers (the header is line 1), since an empty id names nothing else.
    problems.extend("empty ids", [f"{csv} line {i + 2}" for i in np.flatnonzero((ids == "").to_numpy())])


def _check_duplicate_ids(ids: pd.Series, problems: Problems) -> None:
    dup = ids[ids.duplicated() & (ids != "")].unique().tolist()
    if dup:
        problems.extend("duplicate ids", [str(v) for v in dup])


@dataclass(frozen=True)
class SubmissionFormat:
    """The columns and row order a submission must have.

    With sample_submission.csv (``sample``): its columns and its id order, copied exactly.
    Without it: test.csv's id column and the label column, in test.csv's order.
    """

    id_col: str
    label_col: str
    path: Path  # where sample_submission.csv is (or would be)
    sample: pd.DataFrame | None = None

    def describe(self) -> str:
        if self.sample is not None:
            return (f"submission format: {self.path.name} ({', '.join(self.sample.columns)}; "
                    f"{len(self.sample)} ids in its order)")
        return (f"no {self.path.name}: the submission has test.csv's {self.id_col!r} column and "
                f"{self.label_col!r}, in test.csv's order")


def submission_format(recipe: Recipe, test_ids: np.ndarray | None = None,
                      problems: Problems | None = None) -> SubmissionFormat:
    """The submission's format, checked: sample_submission.csv's columns must hold the id and
    label columns, and its ids must be test.csv's ids (``test_ids``), each once. Problems are
    raised together, or added to ``problems``; this needs no model, so it runs before inference.
    """
    d, s = recipe.data, recipe.submission
    path = Path(d.root) / d.sample_submission
    if not d.sample_submission or not path.is_file():
        return SubmissionFormat(s.id_col or d.id_col, s.label_col or d.label_col, path)
    found = Problems() if problems is None else problems
    sample = read_csv(path, problems=found)
    if sample is None:  # unreadable: reported
        if problems is None:
            found.raise_if_any(f"bad submission format in {d.root}")
        return SubmissionFormat(s.id_col or d.id_col, s.label_col or d.label_col, path)
    columns = list(sample.columns)
    id_col = s.id_col or (columns[0] if columns else d.id_col)
    label_col = s.label_col or (columns[1] if len(columns) > 1 else "")
    for role, col in (("id", id_col), ("label", label_col)):
        if not col or col not in columns:
            shown = f"{col!r}" if col else "(none: it needs an id column and a label column)"
            found.add(f"missing {role} column in {path.name}", f"{shown} (columns: {', '.join(columns)})")
    if id_col in columns:
        ids = sample[id_col]
        dup = ids[ids.duplicated()].unique().tolist()
        if dup:
            found.extend(f"duplicate ids in {path.name}", [str(v) for v in dup])
        if test_ids is not None:
            test = {str(i) for i in test_ids}
            missing = natural_sort(set(ids) - test)
            extra = natural_sort(test - set(ids))
            if missing:
                found.extend(f"ids of {path.name} not in {d.test_csv}", missing)
            if extra:
                found.extend(f"ids of {d.test_csv} not in {path.name}", extra)
    if problems is None:
        found.raise_if_any(f"bad submission format in {d.root}")
    return SubmissionFormat(id_col, label_col, path, sample)


def label_layout(recipe: Recipe, fmt: SubmissionFormat, classes: ClassMap) -> list[str]:
    """A multilabel submission's label columns: every label's own column when sample_submission
    has one per label (Plant Pathology, RANZCR; or, without a sample, ``[data] label_cols``),
    else the one column of tags (``[]``: Planet, HPA). A sample naming some labels as columns
    but not all is exit 2 naming them."""
    labels = [str(c) for c in classes.labels]
    if fmt.sample is None:
        return labels if recipe.data.label_cols else []
    columns = [str(c) for c in fmt.sample.columns if c != fmt.id_col]
    present = [c for c in labels if c in columns]
    if present and len(present) < len(labels):
        missing = [c for c in labels if c not in columns]
        raise CompError(f"{fmt.path.name} has columns for the labels {present[:10]} but none for {missing[:10]}: "
                        f"a submission with one column per label needs every label's")
    return labels if present else []


def check_label_sample(recipe: Recipe, fmt: SubmissionFormat, classes: ClassMap) -> None:
    """Before any model loads: the layout can be written, and a tag list in sample_submission
    names only the run's labels (an unknown tag: exit 2 naming it and its row)."""
    from comp.data.labels import parse_tags  # noqa: PLC0415

    if label_layout(recipe, fmt, classes) or fmt.sample is None:
        return
    sample = fmt.sample
    try:
        parse_tags(sample[fmt.label_col].tolist(), sample[fmt.id_col].tolist(), recipe.data.tag_sep,
                   tags=list(classes.labels))
    except CompError as err:
        raise CompError(f"{fmt.path.name}: {err}") from None
