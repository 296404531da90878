"""``comp check``: the data pass that runs before any training or prediction.

Missing files and columns, empty and duplicate ids and labels outside the class set are found by
the table loaders; here every referenced image is also opened and decoded (in threads: OpenCV
releases the GIL), and all problems are reported together in one error, so a bad data set fails
in seconds, before any run folder exists, rather than an hour into a fit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from comp.kinds import KINDS
from comp.console import progress as progress_bar
from comp.data.extra import load_extra_table, repeated_train_ids
from comp.data.images import ImageReadError, jpeg_frame, read_image
from comp.data.table import (MAX_EXAMPLES, ClassMap, ImageTable, Problems, SubmissionFormat, check_label_sample,
                             load_test_table, load_train_table, submission_format)
from comp.data.workers import resolve_workers
from comp.errors import CompError
from comp.metrics import Task
from comp.recipe import Recipe
from comp.recipe.task import class_names, class_table, class_weight_values, describe_task, resolve_task

MISSING, UNDECODABLE, NOT_FILE = "missing", "undecodable", "not a file"
logger = logging.getLogger(__name__)

_KINDS = {MISSING: "missing image files", UNDECODABLE: "undecodable images",
          NOT_FILE: "image paths that are not files (a folder, a FIFO or a device; never opened)"}


@dataclass(frozen=True)
class BadImage:
    """An image the check could not read: ``reason`` is "missing" or "undecodable"."""

    id: str
    path: str
    reason: str
    detail: str = ""  # the reader's message


@dataclass
class DataReport:
    """What the check found: row counts, classes, image sizes and the unreadable images.

    ``class_counts`` counts the readable training rows, i.e. what a fit that drops ``bad`` trains on.
    """

    train_rows: int
    test_rows: int
    classes: ClassMap
    declared: bool  # classes come from [data] classes rather than the labels found
    class_counts: dict[str, int]
    heights: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    channels: set[int] = field(default_factory=set)
    bad: list[BadImage] = field(default_factory=list)
    # The task, resolved here once the classes are known, for everything after (fit, its run.json).
    # Always set by a check of the training set (too few classes fail it); None only without one.
    task: Task | None = None
    weights: list[float] | None = None  # [loss] class_weights over the readable training rows
    submission: SubmissionFormat | None = None  # checked against test.csv's ids
    # The tables the check parsed, handed on so that fit and predict do not parse the CSVs again.
    train_table: ImageTable | None = None
    test_table: ImageTable | None = None
    extra_table: ImageTable | None = None  # [data] extra_csv: rows that only train
    extra_line: str = ""  # what the extra rows are, for the summary
    target_line: str = ""  # a regression task's values: their range and quantiles, for the summary

    def readable_train_table(self) -> ImageTable:
        """The training table without the rows whose image could not be read (``--skip-bad``)."""
        return drop_bad(self.train_table, self) if self.bad else self.train_table

    def readable_extra_table(self) -> ImageTable | None:
        """The extra rows without those whose image could not be read; None without extra_csv."""
        if self.extra_table is None or not self.bad:
            return self.extra_table
        return drop_bad(self.extra_table, self)

    @property
    def imbalance(self) -> float:
        """Largest over smallest class count (classes with no rows left out); nan without classes."""
        counts = [c for c in self.class_counts.values() if c]
        return max(counts) / min(counts) if counts else float("nan")


def check_data(recipe: Recipe, *, train: bool = True, test: bool = True, skip_bad: bool = False,
               workers: int = -1) -> DataReport:
    """Check the competition a recipe points at; one CompError lists every problem found in
    train (and valid) and test together: files, columns, ids, labels, images.

    With ``skip_bad``, missing or undecodable images are listed in a warning (and in
    ``report.bad``, for :func:`drop_bad`) instead of failing the check. ``workers`` threads
    decode the images (-1: one per core). Notes and warnings go to the module's logger.
    """
    problems = Problems()
    tables: list[ImageTable] = []
    classes = ClassMap(tuple(recipe.data.classes))
    train_table = test_table = extra_table = None
    if train:
        train_table, classes = load_train_table(recipe, problems)
        tables.append(train_table)
        if len(classes):
            extra_table = load_extra_table(recipe, classes, problems)
    if test:
        test_table = load_test_table(recipe, problems)
        if len(test_table) == 0 and (Path(recipe.data.root) / recipe.data.test_csv).is_file():
            problems.add("test sets with no rows (nothing to predict)", recipe.data.test_csv)
        tables.append(test_table)
        submission = submission_format(recipe, test_table.ids, problems)

    # Each file once (duplicate ids share one), and none for an empty id: that is reported
    # already, and its path would only be the image folder plus the extension.
    first_id: dict[str, str] = {}
    for t in tables + ([extra_table] if extra_table is not None else []):
        for i, p in zip(t.ids, t.paths):
            if recipe.data.path_col or i != "":
                first_id.setdefault(str(p), str(i))
    paths = list(first_id)
    with ThreadPoolExecutor(max_workers=max(1, resolve_workers(workers))) as pool:
        results = list(progress_bar(pool.map(_probe, paths), total=len(paths), desc="checking images"))

    report = DataReport(train_rows=len(train_table) if train_table else 0,
                        test_rows=len(test_table) if test_table else 0,
                        classes=classes, declared=bool(recipe.data.classes), class_counts={},
                        submission=submission if test else None, train_table=train_table, extra_table=extra_table,
                        test_table=test_table)
    for path, result in zip(paths, results):
        if isinstance(result, BadImage):
            report.bad.append(BadImage(first_id[path], path, result.reason, result.detail))
        else:
            report.heights.append(result[0])
            report.widths.append(result[1])
            report.channels.add(result[2])

    bad_paths = {b.path for b in report.bad}
    if train_table is not None:
        readable = np.array([str(p) not in bad_paths for p in train_table.paths], dtype=bool)
        labels = train_table.labels[readable]
        kind = KINDS.get(recipe.data.task)
        known = labels >= 0
        label_sets = kind is not None and kind.label_sets  # multilabel: a row of labels each
        if label_sets and test and not problems:  # the sample's tags must be the training rows' labels
            try:
                check_label_sample(recipe, submission, classes)
            except CompError as err:
                problems.add("bad submission formats", str(err))
        if label_sets:  # counts per label
            counts = kind.class_counts(labels[known], train_table.targets[readable][known], len(classes))
            report.target_line = label_lines(train_table.targets[readable][known], classes.labels)
        else:
            counts = np.bincount(labels[known], minlength=len(classes))
        if kind is not None and kind.continuous:  # values: the one "class" is the label column
            values = train_table.targets[readable, 0]
            values = values[np.isfinite(values)]
            report.class_counts = {classes.labels[0]: len(values)}
            if not problems:
                report.task = resolve_task(recipe, classes.labels)
                report.target_line = kind.summary(values, classes.labels[0])
                if recipe.loss.name == "bce" and len(values):  # trained on the target scaled to [0, 1]
                    if values.min() == values.max():
                        problems.add("targets with one value (nothing to scale to [0, 1] for [loss] name = \"bce\")",
                                     f"{values.min():g}")
                    # (float32 targets: their shortest decimal, as the CSV wrote them)
                    low, high = (float(str(np.float32(v))) for v in (values.min(), values.max()))
                    report.task = dataclasses.replace(report.task, scale=(low, high))
                    report.target_line += (f"; [loss] bce trains on (target - {values.min():g}) / "
                                           f"{values.max() - values.min():g}, predictions in that range")
        else:
            report.class_counts = {c: int(n) for c, n in zip(classes.labels, counts)}
        if report.task is not None or kind is not None and kind.continuous:
            pass
        elif label_sets:
            if not problems:  # (one label is enough)
                report.task = resolve_task(recipe, classes.labels, counts.tolist())
        elif len(classes) < 2 and not problems:
            problems.add("training sets with fewer than two classes (nothing to classify)",
                         f"{recipe.data.train_csv}: {list(classes.labels)}")
        elif len(classes) >= 2:
            report.task = resolve_task(recipe, classes.labels, counts.tolist())
            report.weights = class_weight_values(counts.tolist(), recipe.loss.class_weights, classes.labels,
                                                 report.task.names)
            note = class_names(recipe, classes.labels)[1]
            if note:
                logger.info(f"note: {note}")
        if skip_bad and len(train_table) and not readable.any():
            problems.add("training sets with no readable image", recipe.data.train_csv)

    unreadable = Problems()
    for b in report.bad:
        unreadable.add(_KINDS[b.reason], f"{b.id} ({b.path})")
    if unreadable and skip_bad:
        logger.warning(f"warning: skipping {len(report.bad)} unreadable images: {unreadable.message()}")
    elif unreadable:
        for kind, examples in unreadable.kinds.items():
            problems.extend(kind, examples)
    if problems:
        bad_train = any(str(p) in bad_paths for t in (train_table, extra_table) if t is not None for p in t.paths)
        hint = (" (--skip-bad drops unreadable images)" if bad_train and not skip_bad
                else " (every test image must be readable: fix or replace it)" if unreadable and not skip_bad
                else "")
        raise CompError(f"bad data in {recipe.data.root}: {problems.message()}{hint}")
    empty = [c for c, n in report.class_counts.items() if n == 0]
    if empty:
        logger.warning(f"warning: declared classes with no training rows: {empty}")
    if extra_table is not None:
        report.extra_line = extra_summary(recipe, report.readable_extra_table(), classes)
    for line in (label_warnings(report) + fold_warnings(recipe, report) + path_warnings(recipe, tables)
                 + extra_warnings(recipe, report)):
        logger.warning(f"warning: {line}")
    return report


def label_lines(Y: np.ndarray, labels: tuple[str, ...]) -> str:
    """A multilabel training set in a few lines: each label's rows and share, the labels seen
    together most, the rows without a label."""
    from comp.data.labels import label_summary  # noqa: PLC0415

    return "\n".join(label_summary(np.asarray(Y) >= 0.5, list(labels)))


# Label values that usually mean "no label" (a spreadsheet's or pandas' missing value), compared
# stripped and case-folded.
NAN_LIKE = {"", "nan", "none", "null", "na", "n/a", "<na>", "nat", "missing"}


def label_warnings(report: DataReport) -> list[str]:
    """Found (not declared) labels that look like mistakes, each of which would train as a class of
    its own: labels differing from another only by case or whitespace, and missing-value words."""
    if report.declared or not report.class_counts:
        return []
    counts = report.class_counts

    def shown(labels: list[str]) -> str:
        return ", ".join(f"{c!r} ({counts.get(c, 0)} rows)" for c in labels)

    found: list[str] = []
    alike: dict[str, list[str]] = {}
    for c in report.classes.labels:
        alike.setdefault(" ".join(c.split()).casefold(), []).append(c)
    groups = [g for g in alike.values() if len(g) > 1]
    if groups:
        found.append("labels that differ only by case or whitespace, each a class of its own: "
                     + "; ".join(shown(g) for g in groups)
                     + " (fix the labels, or declare [data] classes)")
    missing = [c for c in report.classes.labels if c.strip().casefold() in NAN_LIKE]
    if missing:
        found.append(f"labels that look like a missing value, each a class of its own: {shown(missing)} "
                     f"(fix the labels, or declare [data] classes if it is a real class)")
    return found


def fold_warnings(recipe: Recipe, report: DataReport) -> list[str]:
    """k-fold: classes with fewer rows than folds are absent from some folds' validation."""
    folds = recipe.cv.folds
    if recipe.cv.scheme != "kfold":
        return []
    few = [f"{c!r} ({n} rows)" for c, n in report.class_counts.items() if 0 < n < folds]
    if not few:
        return []
    return [f"classes with fewer rows than [cv] folds = {folds}: {', '.join(few)}; some folds "
            f"validate none of them (their per-fold scores leave those classes out)"]


def path_warnings(recipe: Recipe, tables: list[ImageTable]) -> list[str]:
    """Image paths (from a path column, or ids with ``..``/absolute parts) that lie outside the
    competition folder ``[data] root``. Checked on the path as written, normalised (a folder
    inside the root that is a link to another disk is the data set's own business)."""
    root = os.path.normpath(os.path.abspath(recipe.data.root))
    outside: list[str] = []
    for t in tables:
        for p in dict.fromkeys(str(p) for p in t.paths):
            full = os.path.normpath(os.path.abspath(p))
            if os.path.commonpath([root, full]) != root:
                outside.append(full)
    if not outside:
        return []
    more = f", ... ({len(outside) - MAX_EXAMPLES} more)" if len(outside) > MAX_EXAMPLES else ""
    return [f"{len(outside)} image paths outside the competition folder {root}: "
            f"{', '.join(outside[:MAX_EXAMPLES])}{more}"]


def extra_summary(recipe: Recipe, extra: ImageTable, classes: ClassMap) -> str:
    """One line: how many extra rows train, their kind of label, and their count per class."""
    d = recipe.data
    kind = "soft labels (prob_ columns)" if extra.targets is not None else f"hard labels ({d.label_col!r})"
    kept = f", those with a class probability >= {d.extra_min_prob:g}" if d.extra_min_prob > 0 else ""
    counts = np.bincount(extra.labels, minlength=len(classes))
    per_class = ", ".join(f"{c} {n}" for c, n in zip(classes.labels, counts.tolist()))
    return (f"extra rows (train only, in every fold; never validated or scored): {len(extra)} from "
            f"{d.extra_csv}{kept}, {kind}; by {'most probable ' if extra.targets is not None else ''}"
            f"class: {per_class}")


def extra_warnings(recipe: Recipe, report: DataReport) -> list[str]:
    """Extra rows whose ids are training ids: each is validated in its fold while its copy trains
    there, so the fold's validation sees a row it trained on."""
    if report.extra_table is None or report.train_table is None:
        return []
    repeated = repeated_train_ids(report.train_table, report.extra_table)
    if not repeated:
        return []
    more = f", ... ({len(repeated) - MAX_EXAMPLES} more)" if len(repeated) > MAX_EXAMPLES else ""
    return [f"{len(repeated)} extra rows ({recipe.data.extra_csv}) repeat train ids: "
            f"{', '.join(repeated[:MAX_EXAMPLES])}{more}; each trains in every fold, including the one that "
            f"validates it, which leaks into validation (pseudo-label the test set, not train.csv)"]


def drop_bad(table: ImageTable, report: DataReport) -> ImageTable:
    """The table without the rows whose image the check could not read."""
    bad = {b.path for b in report.bad}
    return table.subset(np.flatnonzero([str(p) not in bad for p in table.paths]))


def format_report(report: DataReport) -> str:
    """The summary as a few lines of text for the terminal."""
    lines = [f"train rows {report.train_rows}, test rows {report.test_rows}"]
    if report.target_line:  # values, not classes
        lines.append(report.target_line)
        if report.task is not None:
            lines.append(describe_task(report.task, report.classes.labels))
    elif report.class_counts:
        lines.append(("classes" if report.declared else "classes found") + f": {list(report.classes.labels)}")
        lines.append(class_table(list(report.class_counts), list(report.class_counts.values()), report.weights,
                                 report.task.names if report.task is not None else None))
        lines.append(f"imbalance ratio (largest / smallest class): {report.imbalance:.2f}")
        if report.task is not None:
            lines.append(describe_task(report.task, report.classes.labels))
    if report.heights:
        lines.append(f"  {'image size':<12}{'min':>7}{'median':>8}{'max':>7}")
        for name, values in (("height", report.heights), ("width", report.widths)):
            v = np.asarray(values)
            lines.append(f"  {name:<12}{v.min():>7}{np.median(v):>8g}{v.max():>7}")
        lines.append(f"channels as stored: {sorted(report.channels)}")
    if report.submission is not None:
        lines.append(report.submission.describe())
    if report.extra_line:
        lines.append(report.extra_line)
    if report.bad:
        lines.append(f"unreadable images skipped: {len(report.bad)} (not counted above)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- images


def probe_image(path: str | Path) -> tuple[int, int, int]:
    """(height, width, channels as stored) of an image; raises ImageReadError as reading would.

    The image is decoded by :func:`comp.data.images.read_image`, the very reader training and
    prediction use, so whatever passes here loads there; height and width are the decoded ones.
    The channel count is the file's own (grey 1, grey+alpha 2, colour 3, with alpha 4), read
    from the header for PNG and JPEG and by a second, unconverted decode for other formats.
    """
    image = read_image(path)
    channels = stored_channels(path)
    if channels is None:
        stored = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        channels = 1 if stored.ndim == 2 else stored.shape[2]
    return image.shape[0], image.shape[1], channels


def _probe(path: str) -> tuple[int, int, int] | BadImage:
    try:
        return probe_image(path)
    except ImageReadError as err:
        reason = (MISSING if not Path(path).exists() else NOT_FILE if not Path(path).is_file()
                  else UNDECODABLE)
        return BadImage("", path, reason, str(err))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels; a palette (3) holds colours, so it counts as colour.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def stored_channels(path: str | Path) -> int | None:
    """The channel count a PNG or JPEG file declares in its header; None for other formats."""
    with open(path, "rb") as f:
        head = f.read(26)
        if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) == 26:
            return _PNG_CHANNELS.get(head[25])
    if head.startswith(b"\xff\xd8"):
        frame = jpeg_frame(path)
        return None if frame is None else frame.components
    return None
