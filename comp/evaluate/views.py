"""The pictures of a run's report: learning curves, ROC and PR curves, the reliability diagram,
and image mosaics of its out-of-fold predictions (the most confident mistakes, a sample).

Everything is drawn from files the run holds (history.csv, oof.csv) and the competition's
images; :func:`write_run_views` is called by ``comp cv-report`` and at the end of ``comp fit``.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.images import read_image
from comp.data.mosaic import write_mosaic
from comp.data.table import ClassMap, load_train_table
from comp.errors import CompError
from comp.kinds import kind_of
from comp.evaluate import plots
from comp.metrics import MONITOR_MODES, Task
from comp.recipe import Recipe
from comp.run.folder import RunDir

logger = logging.getLogger(__name__)

MOSAIC_TILES = 32
MOSAIC_TILE = 148  # pixels: wide enough for a C-NMC file name (UID_H10_43_1_hem.bmp) in the caption


def write_run_views(run: RunDir, recipe: Recipe, task: Task, classes: ClassMap, oof: pd.DataFrame,
                    y_true: np.ndarray, probs: np.ndarray, histories: dict[str, pd.DataFrame]) -> list[Path]:
    """curves.png, roc.png, pr.png, calibration.png, oof_mistakes.jpg and val_predictions.jpg;
    returns the files written. The mosaics need the training images: without them (moved,
    deleted) they are skipped with a note."""
    labels = display_names(task, classes.labels)
    if kind_of(task).continuous:
        return write_value_views(run, recipe, task, oof, y_true, probs, histories)
    if kind_of(task).label_sets:
        return write_label_views(run, recipe, task, classes, oof, y_true, probs, histories)
    written = learning_curves(run, task, histories)
    if len(y_true):
        positive = task.positive if len(labels) == 2 else None
        rocs, prs = plots.roc_pr_curves(y_true, probs, labels, positive=positive)
        kind = "" if len(labels) == 2 else " (one vs rest)"
        plots.plot_roc(rocs, run.roc_png, f"{run.name}: out-of-fold ROC{kind}")
        plots.plot_pr(prs, run.pr_png, f"{run.name}: out-of-fold precision-recall{kind}")
        cal = plots.calibration_data(y_true, probs, positive=positive, class_names=labels)
        plots.plot_calibration(cal, run.calibration_png, f"{run.name}: out-of-fold calibration, ECE {cal.ece:.3f}")
        written += [run.roc_png, run.pr_png, run.calibration_png]
        try:
            written += write_oof_mosaics(run, recipe, classes, oof, y_true, probs, ordinal=kind_of(task).graded,
                                         names=labels)
        except CompError as err:
            logger.info(f"no image mosaics: {err}")
    return written


def learning_curves(run: RunDir, task: Task, histories: dict[str, pd.DataFrame]) -> list[Path]:
    """curves.png (every fold, the best epoch by the monitor marked) when there are histories."""
    if not histories:
        return []
    plots.plot_learning_curves(histories, task.monitor, run.curves_png, title=f"{run.name}: learning curves",
                               mode=task.mode if task.monitor != "val_loss" else MONITOR_MODES["val_loss"])
    return [run.curves_png]


def write_value_views(run: RunDir, recipe: Recipe, task: Task, oof: pd.DataFrame, y_true: np.ndarray,
                      probs: np.ndarray, histories: dict[str, pd.DataFrame]) -> list[Path]:
    """A regression run's pictures: curves.png, values.png (predicted against true, the identity
    line), residuals.png (by range of the true value) and oof_mistakes.jpg (the rows farthest
    from their true value, captioned with both)."""
    written = learning_curves(run, task, histories)
    if not len(y_true):
        return written
    values = probs[:, 0]
    plots.plot_values(y_true, values, run.values_png, f"{run.name}: out-of-fold predictions")
    plots.plot_residuals(plots.residuals_by_range(y_true, values), run.residuals_png,
                         f"{run.name}: out-of-fold residuals by true value")
    written += [run.values_png, run.residuals_png]
    try:
        table, _ = load_train_table(recipe)
        where = dict(zip(table.ids.astype(str), table.paths))
        ids = oof["id"].astype(str).to_numpy()
        worst = kind_of(task).mistakes(y_true, probs, MOSAIC_TILES)
        images, captions = [], []
        for r in worst:
            path = Path(str(where.get(ids[r], "")))
            if ids[r] not in where or not path.is_file():
                raise CompError(f"image not found for OOF row {ids[r]}")
            images.append(read_image(path))
            name = re.split(r"[\\/]", ids[r].rstrip("\\/"))[-1] or ids[r]
            captions.append(f"{name}\ntrue {y_true[r]:.4g}\npred {values[r]:.4g}\nerror {values[r] - y_true[r]:+.3g}")
        write_mosaic(run.oof_mistakes_jpg, images, captions, correct=[False] * len(images), name_first=True,
                     tile=MOSAIC_TILE)
        written.append(run.oof_mistakes_jpg)
    except CompError as err:
        logger.info(f"no image mosaic: {err}")
    return written


def label_decision(run: RunDir, task: Task, classes: ClassMap):
    """The decision a multilabel run's pictures and per-label table show: its fitted label
    thresholds when it has them (with its recipe's ``at_least_one``), else 0.5 per label."""
    import dataclasses  # noqa: PLC0415

    from comp.kinds import Decision  # noqa: PLC0415
    from comp.run.thresholds import load_fitted  # noqa: PLC0415

    kind = kind_of(task)
    at_least_one = run.recipe().predict.at_least_one
    rule = kind.merge_rule
    if rule is not None and run.thresholds_path.is_file():
        try:
            return dataclasses.replace(load_fitted(run.path, rule, list(classes.labels)), at_least_one=at_least_one)
        except CompError as err:
            logger.info(f"label thresholds not used: {err}")
    return Decision(kind.plain_rule.name, at_least_one=at_least_one)


def write_label_views(run: RunDir, recipe: Recipe, task: Task, classes: ClassMap, oof: pd.DataFrame,
                      y_true: np.ndarray, probs: np.ndarray, histories: dict[str, pd.DataFrame]) -> list[Path]:
    """A multilabel run's pictures: curves.png, roc.png and pr.png (one curve per label),
    cooccurrence.png (how often labels are true together), oof_mistakes.jpg (the rows of largest
    loss summed over their labels) and val_predictions.jpg (a sample), each tile captioned with
    its true and predicted labels (at the run's fitted thresholds)."""
    written = learning_curves(run, task, histories)
    names = display_names(task, classes.labels)
    if not len(y_true):
        return written
    plots.plot_label_curves(y_true, probs, names, run.roc_png, run.pr_png, f"{run.name}: out-of-fold")
    plots.plot_cooccurrence(y_true, names, run.cooccurrence_png, f"{run.name}: labels true together (training rows)")
    written += [run.roc_png, run.pr_png, run.cooccurrence_png]
    decision = label_decision(run, task, classes)
    pred = decision.apply(probs)
    try:
        table, _ = load_train_table(recipe)
        where = dict(zip(table.ids.astype(str), table.paths))
        ids = oof["id"].astype(str).to_numpy()
        kind = kind_of(task)
        for path, rows in ((run.oof_mistakes_jpg, kind.mistakes(y_true, probs, MOSAIC_TILES)),
                           (run.val_predictions_jpg, sample_rows(len(ids), seed=recipe.seed))):
            images, captions, correct = [], [], []
            for r in rows:
                image = Path(str(where.get(ids[r], "")))
                if ids[r] not in where or not image.is_file():
                    raise CompError(f"image not found for OOF row {ids[r]}")
                images.append(read_image(image))
                captions.append(label_caption(ids[r], y_true[r], pred[r], probs[r], names))
                correct.append(bool((pred[r] == y_true[r]).all()))
            write_mosaic(path, images, captions, correct=correct, name_first=True, tile=MOSAIC_TILE)
            written.append(path)
    except CompError as err:
        logger.info(f"no image mosaics: {err}")
    return written


def label_caption(row_id: object, true: np.ndarray, pred: np.ndarray, probs: np.ndarray, names: list[str]) -> str:
    """A multilabel tile's caption: the file name, the true labels, the predicted ones and the
    row's loss (binary cross-entropy summed over its labels)."""
    name = re.split(r"[\\/]", str(row_id).rstrip("\\/"))[-1] or str(row_id)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(true, dtype=np.float64)
    loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())

    def shown(row: np.ndarray) -> str:
        return " ".join(names[j] for j in np.flatnonzero(row)) or "-"

    return f"{name}\ntrue {shown(true)}\npred {shown(pred)}\nloss {loss:.2f}"


def display_names(task: Task, labels: tuple[str, ...] | list[str]) -> list[str]:
    """The classes as figures and tables show them: their ``[data] class_names`` when the recipe
    gives them (the task holds them), else the labels."""
    names = getattr(task, "names", ())  # (a Task of a run made before class names has none)
    return [str(n) for n in names] if names else [str(c) for c in labels]


def mistakes(y_true: np.ndarray, probs: np.ndarray, limit: int = MOSAIC_TILES, *, ordinal: bool = False) -> np.ndarray:
    """Rows predicted wrongly (by argmax), the most confident first: the probability given to the
    wrong class, descending. ``ordinal``: the farthest from the true grade first, then by that
    confidence."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = probs[wrong, pred[wrong]]
    if ordinal:
        order = np.lexsort((-confidence, -np.abs(pred[wrong] - y_true[wrong])))  # last key sorts first
    else:
        order = np.argsort(-confidence, kind="stable")
    return wrong[order][:limit]


def tile_caption(row_id: object, true: str, pred: str, p_true: float, p_pred: float) -> str:
    """A mosaic tile's caption: the file name (a path id's last part), the true class with its
    probability, the predicted one with its probability, and the row's loss (-log P(true))."""
    name = re.split(r"[\\/]", str(row_id).rstrip("\\/"))[-1] or str(row_id)
    loss = max(0.0, -math.log(min(max(float(p_true), 1e-12), 1.0)))  # (never "-0.00")
    # The probability before the class name: a long name is cut at its end, never the figure.
    return f"{name}\ntrue {p_true:.2f} {true}\npred {p_pred:.2f} {pred}\nloss {loss:.2f}"


def sample_rows(n: int, limit: int = MOSAIC_TILES, seed: int = 0) -> np.ndarray:
    """A fixed random sample of up to ``limit`` of ``n`` rows, in row order."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def write_oof_mosaics(run: RunDir, recipe: Recipe, classes: ClassMap, oof: pd.DataFrame, y_true: np.ndarray,
                      probs: np.ndarray, *, ordinal: bool = False, names: list[str] | None = None) -> list[Path]:
    """oof_mistakes.jpg (the most confident wrong predictions) and val_predictions.jpg (a sample
    of validation rows), each tile captioned by :func:`tile_caption`; green strip right, red
    wrong. An ordinal task's mistakes come farthest from the true grade first."""
    table, _ = load_train_table(recipe)
    where = dict(zip(table.ids.astype(str), table.paths))
    ids = oof["id"].astype(str).to_numpy()
    missing = [i for i in ids if i not in where]
    if missing:
        raise CompError(f"{len(missing)} OOF ids are no longer in {recipe.data.train_csv} (e.g. {missing[0]})")
    names = names or list(classes.labels)
    written = []
    wrong = mistakes(y_true, probs, ordinal=ordinal)
    if len(wrong):
        _rows_mosaic(run.oof_mistakes_jpg, wrong, ids, where, names, y_true, probs)
        written.append(run.oof_mistakes_jpg)
    else:
        run.oof_mistakes_jpg.unlink(missing_ok=True)  # an old run's mistakes would mislead
    _rows_mosaic(run.val_predictions_jpg, sample_rows(len(ids), seed=recipe.seed), ids, where, names,
                 y_true, probs)
    return written + [run.val_predictions_jpg]


def _rows_mosaic(path: Path, rows: np.ndarray, ids: np.ndarray, where: dict, names: list[str],
                 y_true: np.ndarray, probs: np.ndarray) -> int:
    images, captions, correct = [], [], []
    for r in rows:
        image_path = Path(str(where[ids[r]]))
        if not image_path.is_file():
            raise CompError(f"image not found: {image_path}")
        pred, true = int(probs[r].argmax()), int(y_true[r])
        images.append(read_image(image_path))
        captions.append(tile_caption(ids[r], names[true], names[pred], probs[r, true], probs[r, pred]))
        correct.append(pred == true)
    return write_mosaic(path, images, captions, correct=correct, name_first=True, tile=MOSAIC_TILE)
