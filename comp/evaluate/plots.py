"""Report figures: confusion matrices, learning curves, ROC/PR curves (per class, and per label of
a multi-label run), label co-occurrence, reliability diagrams, and runs compared.

Figures are built as ``Figure`` objects on an Agg canvas rather than through pyplot, so no
global figure state or GUI backend is involved and they are freed like any other object.
Each file is written atomically.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from comp.atomic import atomic_path
from comp.data.labels import cooccurrence
from comp.metrics import MONITOR_MODES, row_normalise

_DPI = 120


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str,
                   normalised: bool) -> None:
    """A confusion-matrix heatmap: true class on y, predicted on x, every cell annotated.

    With ``normalised`` each row is divided by its total (a row with none stays 0) and cells
    read ``0.00``; otherwise cells are integer counts.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = len(class_names)
    if cm.ndim != 2 or cm.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not match {n} class names")
    if normalised:
        cm = row_normalise(cm)
        vmax, fmt = 1.0, "{:.2f}"
    else:
        vmax, fmt = max(float(cm.max(initial=0.0)), 1.0), "{:.0f}"

    # Grow the figure with the class count so 20 classes stay legible, within page size.
    side = min(max(4.5, 0.55 * n + 2.5), 14.0)
    fig = _figure((side + 1.2, side))
    ax = fig.add_subplot()
    _draw_confusion(fig, ax, cm, class_names, title, vmax, fmt)
    _save(fig, path)


def _draw_confusion(fig: Figure, ax: Axes, cm: np.ndarray, class_names: Sequence[str], title: str,
                    vmax: float, fmt: str) -> None:
    """One confusion heatmap on ``ax``: true class on y, predicted on x, every cell annotated."""
    n = len(class_names)
    mesh = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=[str(c) for c in class_names], rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(ticks, labels=[str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fontsize = min(12.0, max(8.0, 160.0 / n))
    for i in range(n):
        for j in range(n):
            value = cm[i, j]
            # White on dark cells, black on light ones, so every number stays readable.
            colour = "white" if value > 0.5 * vmax else "black"
            ax.text(j, i, fmt.format(value), ha="center", va="center", color=colour,
                    fontsize=fontsize)


def plot_learning_curves(histories: dict[str, pd.DataFrame], monitor: str, path: str | Path,
                         title: str = "", *, mode: str | None = None) -> None:
    """Every fold's training in up to four panels: train and val loss, train and val accuracy,
    the ``monitor`` metric (when it is neither), and the learning rate.

    Each history (history.csv) has ``epoch`` and some of ``train_loss``, ``val_loss``,
    ``train_accuracy``, ``accuracy``, ``lr`` and ``monitor``; a column that is absent or all
    NaN (a run without validation) is not drawn. Each fold's best epoch by ``monitor`` (``mode``
    "max" or "min"; by default the metric's own) is marked with a star and a dotted line.
    """
    mode = mode or MONITOR_MODES.get(monitor, "max")
    best = best_epochs(histories, monitor, mode)
    panels = [("loss", [("train_loss", "train", "--"), ("val_loss", "val", "-")])]
    if any(_has(f, c) for f in histories.values() for c in ("train_accuracy", "accuracy")):
        panels.append(("accuracy", [("train_accuracy", "train", "--"), ("accuracy", "val", "-")]))
    if monitor not in ("val_loss", "accuracy") and any(_has(f, monitor) for f in histories.values()):
        panels.append((monitor, [(monitor, "", "-")]))  # (a run without validation has none)
    if any(_has(f, "lr") for f in histories.values()):
        panels.append(("learning rate", [("lr", "", "-")]))
    rows, cols = (2, 2) if len(panels) == 4 else (1, len(panels))
    fig = _figure((6.0 * cols, 4.2 * rows + 0.3))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colours = _colours(len(histories))
    for ax, (panel, columns) in zip(axes, panels):
        for colour, (name, frame) in zip(colours, histories.items()):
            for column, kind, style in columns:
                _line(ax, frame, column, f"{name} {kind}".strip(), colour, style)
            if name in best:
                epoch, value = best[name]
                ax.axvline(epoch, color=colour, linestyle=":", linewidth=1.0, alpha=0.7)
                if monitor in [c for c, _, _ in columns]:
                    ax.plot([epoch], [value], marker="*", markersize=13, color=colour,
                            markeredgecolor="black", linestyle="none")
        marked = bool(best) and (panel == monitor or (monitor == "val_loss" and panel == "loss"))  # (none unvalidated)
        heading = f"{panel} (monitor, {mode}; \u2605 best epoch)" if marked else panel
        _finish_axis(ax, panel, heading)
        if panel == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if title:
        fig.suptitle(title)
    _save(fig, path, tight=False)


def best_epochs(histories: dict[str, pd.DataFrame], monitor: str, mode: str) -> dict[str, tuple[int, float]]:
    """Each history's best epoch by ``monitor`` (the first of ties): name → (epoch, value)."""
    out = {}
    for name, frame in histories.items():
        if not _has(frame, monitor):
            continue
        values = pd.to_numeric(frame[monitor], errors="coerce").to_numpy(dtype=float)
        i = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
        epochs = frame["epoch"].to_numpy() if "epoch" in frame.columns else np.arange(len(frame))
        out[name] = (int(epochs[i]), float(values[i]))
    return out


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and pd.to_numeric(frame[column], errors="coerce").notna().any()


# --------------------------------------------------------------------------- ROC, PR, calibration


@dataclass(frozen=True)
class Curve:
    """One ROC or PR curve of one class against the rest: ``x``/``y`` are (FPR, TPR) or
    (recall, precision) as scikit-learn returns them; ``area`` is ROC AUC or average precision."""

    label: str
    x: np.ndarray
    y: np.ndarray
    area: float
    prevalence: float  # the class's share of the rows: a PR curve's chance level


def roc_pr_curves(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], *,
                  positive: int | None = None) -> tuple[list[Curve], list[Curve]]:
    """(ROC curves, PR curves) from out-of-fold probabilities, with scikit-learn's ``roc_curve``,
    ``roc_auc_score``, ``precision_recall_curve`` and ``average_precision_score``.

    Two classes: one curve, of the ``positive`` class (default the second). More: one per class,
    one-vs-rest. A class that is absent from ``y_true`` (or is every row) has no curve.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    targets = [1 if positive is None else positive] if k == 2 else list(range(k))
    rocs, prs = [], []
    for c in targets:
        hit = (y_true == c).astype(int)
        if hit.all() or not hit.any():
            continue
        score = probs[:, c]
        name = str(class_names[c]) if k == 2 else f"{class_names[c]} vs rest"
        fpr, tpr, _ = roc_curve(hit, score)
        precision, recall, _ = precision_recall_curve(hit, score)
        prevalence = float(hit.mean())
        rocs.append(Curve(name, fpr, tpr, float(roc_auc_score(hit, score)), prevalence))
        prs.append(Curve(name, recall, precision, float(average_precision_score(hit, score)), prevalence))
    return rocs, prs


def plot_roc(curves: Sequence[Curve], path: str | Path, title: str = "ROC") -> None:
    """ROC curves with their AUC in the legend, and the chance diagonal."""
    fig = _figure((6.2, 5.6))
    _draw_roc(fig.add_subplot(), curves, title)
    _save(fig, path, tight=False)


def _draw_roc(ax: Axes, curves: Sequence[Curve], title: str, empty: str = "no class with both outcomes") -> None:
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance (AUC 0.5)")
    for colour, c in zip(_colours(len(curves)), curves):
        ax.plot(c.x, c.y, color=colour, linewidth=1.6, label=f"{c.label} (AUC {c.area:.3f})")
    _finish_curve_axis(ax, "false positive rate", "true positive rate", title, curves, empty)


def plot_pr(curves: Sequence[Curve], path: str | Path, title: str = "precision-recall") -> None:
    """Precision-recall curves with their average precision (AP) in the legend; a dotted line
    at each class's prevalence, where a model without skill lies."""
    fig = _figure((6.2, 5.6))
    _draw_pr(fig.add_subplot(), curves, title)
    _save(fig, path, tight=False)


def _draw_pr(ax: Axes, curves: Sequence[Curve], title: str, empty: str = "no class with both outcomes") -> None:
    for colour, c in zip(_colours(len(curves)), curves):
        ax.plot(c.x, c.y, color=colour, linewidth=1.6, label=f"{c.label} (AP {c.area:.3f})",
                drawstyle="steps-post")
        ax.axhline(c.prevalence, color=colour, linestyle=":", linewidth=0.9, alpha=0.7)
    _finish_curve_axis(ax, "recall", "precision", title, curves, empty)


def _finish_curve_axis(ax: Axes, xlabel: str, ylabel: str, title: str, curves: Sequence[Curve],
                       empty: str = "no class with both outcomes") -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize="small", loc="lower right" if "false" in xlabel else "lower left")
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="grey")


# --------------------------------------------------------------------------- multi-label

MOST_LABEL_CURVES = 12  # more lines than this are a tangle: only the labels with the most rows are drawn
_NAMES_SHOWN = 8  # label names a figure's note lists before "and N more"


@dataclass(frozen=True)
class LabelCurves:
    """A multi-label run's per-label ROC and PR curves as drawn: ``rocs``/``prs`` of the labels with
    both outcomes, most positive rows first (column order on ties), at most the ``most`` asked for;
    ``one_class``: the labels on no row or on every row (no curve); ``left_out``: the labels with a
    curve that were not drawn (fewer rows than the drawn ones)."""

    rocs: tuple[Curve, ...]
    prs: tuple[Curve, ...]
    one_class: tuple[str, ...]
    left_out: tuple[str, ...]


def label_curves(y: np.ndarray, probs: np.ndarray, names: Sequence[str], *,
                 most: int = MOST_LABEL_CURVES) -> LabelCurves:
    """Each label's column of ``probs`` against its column of ``y`` (both ``(n, L)``): scikit-learn's
    ``roc_curve`` with ``roc_auc_score`` and ``precision_recall_curve`` with
    ``average_precision_score``, as :func:`roc_pr_curves` does for a class; see :class:`LabelCurves`."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or probs.shape != y.shape or len(names) != y.shape[1]:
        raise ValueError(f"y has shape {y.shape}, probs {probs.shape}, and there are {len(names)} names")
    support = y.sum(axis=0)
    both = [j for j in range(y.shape[1]) if 0 < support[j] < len(y)]
    both.sort(key=lambda j: -support[j])  # (stable: ties stay in column order)
    drawn = both[:max(most, 0)]
    rocs, prs = [], []
    for j in drawn:
        hit, score, name = y[:, j].astype(int), probs[:, j], str(names[j])
        fpr, tpr, _ = roc_curve(hit, score)
        precision, recall, _ = precision_recall_curve(hit, score)
        prevalence = float(hit.mean())
        rocs.append(Curve(name, fpr, tpr, float(roc_auc_score(hit, score)), prevalence))
        prs.append(Curve(name, recall, precision, float(average_precision_score(hit, score)), prevalence))
    return LabelCurves(tuple(rocs), tuple(prs),
                       one_class=tuple(str(names[j]) for j in range(y.shape[1]) if j not in both),
                       left_out=tuple(str(names[j]) for j in both[len(drawn):]))


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


def _label_curve_note(curves: LabelCurves) -> str:
    """What the per-label figures do not show, in a line or two (empty when they show every label)."""
    parts = []
    if curves.left_out:
        parts.append(f"the {len(curves.rocs)} labels with the most rows; {len(curves.left_out)} left out")
    if curves.one_class:
        parts.append(f"no curve (every row or none): {_listed(curves.one_class)}")
    return textwrap.fill("; ".join(parts), width=80)


def plot_label_curves(y: np.ndarray, probs: np.ndarray, names: Sequence[str], path_roc: str | Path,
                      path_pr: str | Path, title: str = "", *, most: int = MOST_LABEL_CURVES) -> LabelCurves:
    """A multi-label run's per-label ROC curves (``path_roc``) and precision-recall curves
    (``path_pr``) from out-of-fold ``y`` (``(n, L)`` 0/1) and sigmoid ``probs``: one line per label
    with its AUC / AP in the legend (at most ``most``, those with the most rows), a note under the
    heading naming what is not drawn. Returns the curves drawn (:func:`label_curves`)."""
    curves = label_curves(y, probs, names, most=most)
    note = _label_curve_note(curves)
    empty = "no label with both outcomes"
    for heading, path, draw, drawn in (("ROC per label", path_roc, _draw_roc, curves.rocs),
                                       ("precision-recall per label", path_pr, _draw_pr, curves.prs)):
        fig = _figure((6.4, 6.2))
        ax = fig.add_subplot()
        draw(ax, drawn, note, empty)
        ax.title.set_fontsize("small")
        fig.suptitle(f"{title}: {heading}" if title else heading)
        _save(fig, path, tight=False)
    return curves


def plot_cooccurrence(Y: np.ndarray, names: Sequence[str], path: str | Path, title: str = "") -> None:
    """The label co-occurrence heat map of a 0/1 ``(n, L)`` matrix: cell (i, j) is the rows with both
    labels, the diagonal each label's rows (:func:`~comp.data.labels.cooccurrence`); every cell
    annotated up to 15 labels.

    The colour scale ends at the largest pair count, so pairs are not washed out by the diagonal,
    which is larger (its cells, outlined, are then beyond the scale: darkest, their numbers exact)."""
    Y = np.asarray(Y)
    n = len(names)
    if Y.ndim != 2 or Y.shape[1] != n:
        raise ValueError(f"Y has shape {Y.shape} but there are {n} names")
    co = cooccurrence(Y).astype(np.float64)
    side = min(max(4.5, 0.5 * n + 2.5), 14.0)
    fig = _figure((side + 1.2, side))
    ax = fig.add_subplot()
    ax.set_title(title or "labels found together")
    if n == 0:
        ax.axis("off")
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes, color="grey")
        _save(fig, path)
        return
    pairs = co[~np.eye(n, dtype=bool)]
    vmax = max(float(pairs.max(initial=0.0)), 1.0)
    mesh = ax.imshow(co, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    bar = fig.colorbar(mesh, ax=ax, fraction=0.046, pad=0.04, extend="max" if co.max() > vmax else "neither")
    bar.set_label("rows with both labels (outlined diagonal: the label's rows)")
    for i in range(n):  # (without numbers a saturated pair would look like a diagonal cell)
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:orange",
                               linewidth=min(2.0, max(1.0, 20.0 / n)), clip_on=False))
    ticks = np.arange(n)
    tick_size = min(10.0, max(4.0, 360.0 / n))
    ax.set_xticks(ticks, labels=[str(c) for c in names], rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=tick_size)
    ax.set_yticks(ticks, labels=[str(c) for c in names], fontsize=tick_size)
    if n <= 15:  # beyond that the numbers no longer fit their cells
        fontsize = min(12.0, max(7.0, 140.0 / n))
        for i in range(n):
            for j in range(n):
                value = co[i, j]
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=fontsize,
                        color="white" if value > 0.5 * vmax else "black")
    _save(fig, path)


@dataclass(frozen=True)
class Calibration:
    """A reliability diagram's data: per non-empty bin, the observed accuracy (``prob_true``),
    the mean confidence (``prob_pred``) and the row count; and the expected calibration error."""

    prob_true: np.ndarray
    prob_pred: np.ndarray
    counts: np.ndarray
    ece: float
    confidence: str  # what the confidence is: "top-label confidence" or "P(<positive class>)"


def calibration_data(y_true: np.ndarray, probs: np.ndarray, bins: int = 10, *,
                     positive: int | None = None, class_names: Sequence[str] | None = None) -> Calibration:
    """Bins of equal width over [0, 1], by scikit-learn's ``calibration_curve``.

    ``probs`` 1-D: the positive class's probability, ``y_true`` 0/1. Two columns: the
    ``positive`` class's probability (default the second) against ``y_true == positive``. More:
    the top-label confidence (the largest probability) against whether the argmax is right.
    ECE = sum over bins of |accuracy - confidence| weighted by the bin's share of the rows.
    """
    from sklearn.calibration import calibration_curve

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        conf, hit, what = probs, y_true.astype(int), "P(positive)"
    elif probs.shape[1] == 2:
        p = 1 if positive is None else positive
        conf, hit = probs[:, p], (y_true == p).astype(int)
        what = f"P({class_names[p] if class_names is not None else p})"
    else:
        conf, hit, what = probs.max(axis=1), (probs.argmax(axis=1) == y_true).astype(int), "top-label confidence"
    conf = np.clip(conf, 0.0, 1.0)
    if len(conf) == 0:
        empty = np.zeros(0)
        return Calibration(empty, empty, empty.astype(int), math.nan, what)
    prob_true, prob_pred = calibration_curve(hit, conf, n_bins=bins, strategy="uniform")
    # The same bins as calibration_curve: edges linspace(0, 1, bins + 1), searchsorted on the inner ones.
    ids = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], conf)
    counts = np.bincount(ids, minlength=bins)
    counts = counts[counts > 0]
    ece = float(np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred)))
    return Calibration(prob_true, prob_pred, counts, ece, what)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 10, *,
                               positive: int | None = None) -> float:
    """ECE of :func:`calibration_data`: sum over bins of |accuracy - confidence| × bin share."""
    return calibration_data(y_true, probs, bins, positive=positive).ece


def plot_calibration(cal: Calibration, path: str | Path, title: str = "calibration") -> None:
    """A reliability diagram (accuracy against confidence per bin, the diagonal is perfect
    calibration) over a histogram of the rows per bin; the ECE in the legend."""
    fig = _figure((6.0, 6.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    if len(cal.prob_pred):
        top.plot(cal.prob_pred, cal.prob_true, marker="o", color="tab:blue", linewidth=1.6,
                 label=f"model (ECE {cal.ece:.3f})")
        for x, y in zip(cal.prob_pred, cal.prob_true):
            top.plot([x, x], [x, y], color="tab:red", linewidth=1.0, alpha=0.6)
        bottom.bar(cal.prob_pred, cal.counts, width=0.06, color="tab:blue", alpha=0.7)
    top.set_xlim(-0.01, 1.01)
    top.set_ylim(-0.01, 1.01)
    top.set_ylabel("observed accuracy" if "top" in cal.confidence else "observed frequency")
    top.set_title(title)
    top.grid(True, alpha=0.3)
    top.legend(fontsize="small", loc="upper left")
    bottom.set_xlabel(cal.confidence)
    bottom.set_ylabel("rows")
    bottom.grid(True, alpha=0.3)
    _save(fig, path, tight=False)


# --------------------------------------------------------------------------- runs compared


def comparison_path(runs_root: str | Path, names: Sequence[str], suffix: str = "") -> Path:
    """``runs/compare_<run1>_vs_<run2>[...]<suffix>.png``: the file says which runs it compares
    (past four runs or 150 characters: the first three and how many more)."""
    clean = [re.sub(r"[^A-Za-z0-9._-]+", "-", str(n)) for n in names]
    stem = "_vs_".join(clean)
    if len(clean) > 4 or len(stem) > 150:
        stem = "_vs_".join(c[:40] for c in clean[:3]) + f"_and_{len(clean) - 3}_more"
    return Path(runs_root) / f"compare_{stem}{suffix}.png"


def metric_limits(name: str, values: Sequence[float] | np.ndarray) -> tuple[float, float] | None:
    """Y-limits that show a difference at its true size: losses and errors start at 0; a [0, 1]
    metric spans at least 0.05 within [0, 1] (qwk within [-1, 1]), so a 0.0075 change stays a
    small step instead of filling the plot. The span is then padded by 4 % each side, so a line
    at exactly 0 or 1 lies inside the frame, not on it. None without a finite value."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    if name.endswith("loss") or name == "mae":
        return _padded(0.0, max(hi * 1.04, 1e-6))
    bounds = (-1.0, 1.0) if name.startswith("qwk") else (0.0, 1.0) if lo >= 0 and hi <= 1 else None
    min_span = 0.05 if bounds else max(0.1 * max(abs(lo), abs(hi)), 1e-6)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    if bounds:
        if lo < bounds[0]:
            lo, hi = bounds[0], min(bounds[1], hi + bounds[0] - lo)
        if hi > bounds[1]:
            lo, hi = max(bounds[0], lo - (hi - bounds[1])), bounds[1]
    return _padded(lo, hi)


def _padded(lo: float, hi: float, share: float = 0.04) -> tuple[float, float]:
    pad = share * (hi - lo)
    return lo - pad, hi + pad


def shared_metrics(histories: dict[str, dict[str, pd.DataFrame]]) -> list[str]:
    """The numeric validation-metric columns every run's histories have (in the first run's
    order): history.csv columns apart from epoch, losses, train accuracy, LR and seconds."""
    skip = {"epoch", "train_loss", "val_loss", "train_accuracy", "lr", "seconds"}
    shared: list[str] | None = None
    for folds in histories.values():
        cols = [c for f in folds.values() for c in f.columns
                if c not in skip and pd.api.types.is_numeric_dtype(f[c]) and f[c].notna().any()]
        cols = list(dict.fromkeys(cols))
        shared = cols if shared is None else [c for c in shared if c in cols]
    return shared or []


_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]


def plot_comparison(histories: dict[str, dict[str, pd.DataFrame]], path: str | Path, *,
                    summaries: dict[str, dict[str, float]] | None = None, metric: str | None = None,
                    title: str = "", differences: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Runs side by side: a loss panel, one panel per validation metric the runs share (or only
    ``metric``), each run's mean over its folds by epoch (the band: its folds' range), a bar
    panel of the runs' out-of-fold ``summaries``, and a table of the recipe keys that differ
    between the runs (``differences``: key → run → value; an empty dict says none does).
    Returns the metrics drawn.

    ``histories``: run → fold → history.csv frame; y-limits by :func:`metric_limits`. Each run
    has its colour and a hollow marker of its own shape, drawn a little smaller than the run
    before it, so runs with the same figures stay visible on top of each other; one legend
    below the panels names them.
    """
    shared = shared_metrics(histories)
    metrics = [metric] if metric else shared
    summary_metrics = [m for m in metrics if summaries and all(m in s for s in summaries.values())]
    n_panels = 1 + len(metrics) + (1 if summary_metrics else 0)
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    runs = list(histories)
    table_rows = len(differences) if differences else 1
    table_height = 0.0 if differences is None else 0.5 + 0.24 * (table_rows + 1)
    legend_height = 0.35 * math.ceil(len(runs) / 4) + 0.35
    fig = _figure((max(5.2 * cols, 9.0), 3.9 * rows + 0.4 + legend_height + table_height))
    if differences is not None:
        panels_fig, table_fig = fig.subfigures(2, 1, height_ratios=[3.9 * rows + 0.4 + legend_height,
                                                                    table_height])
    else:
        panels_fig, table_fig = fig, None
    axes = np.atleast_1d(panels_fig.subplots(rows, cols)).ravel()
    colours = dict(zip(runs, _colours(len(runs))))
    # Each run thinner, with a smaller marker, than the one drawn before it: a run under another
    # with the same figures still shows as an outline around it.
    style = {run: dict(color=colours[run], marker=_MARKERS[i % len(_MARKERS)], markerfacecolor="none",
                       markersize=max(3.5, 9.0 - 2.0 * i), linewidth=max(1.0, 3.2 - 0.9 * i))
             for i, run in enumerate(runs)}
    same = _same_curves(histories, ["train_loss", "val_loss"] + metrics)
    for i, name in enumerate(["loss"] + metrics):
        ax, seen = axes[i], []
        for run, folds in histories.items():
            columns = ([("train_loss", "--"), ("val_loss", "-")] if name == "loss" else [(name, "-")])
            for column, linestyle in columns:
                epochs, mean, low, high = _fold_mean(folds, column)
                if epochs is None:
                    continue
                ax.plot(epochs, mean, linestyle=linestyle, markevery=max(1, len(epochs) // 12), **style[run])
                if len(folds) > 1 and linestyle == "-":
                    ax.fill_between(epochs, low, high, color=colours[run], alpha=0.12, linewidth=0)
                seen += list(mean) + list(low) + list(high)
        limits = metric_limits("loss" if name == "loss" else name, seen)
        if limits:
            ax.set_ylim(*limits)
        _finish_axis(ax, name, f"validation {name}" if name != "loss" else "loss (train dashed, val solid)",
                     legend=False)
    if summary_metrics:
        _summary_bars(axes[1 + len(metrics)], summaries, summary_metrics, colours)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    handles = [Line2D([], [], linestyle="-", **style[run]) for run in runs]
    labels = [f"{run} (same curves as {same[run]})" if run in same else run for run in runs]
    panels_fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(runs)), fontsize="small",
                      title="runs: fold mean (band: the folds' range)", title_fontsize="small")
    if table_fig is not None:
        _differences_table(table_fig, differences, runs)
    fig.suptitle(title or "runs compared: " + " vs ".join(runs))
    _save(fig, path, tight=False)
    return metrics


def _same_curves(histories: dict[str, dict[str, pd.DataFrame]], columns: list[str]) -> dict[str, str]:
    """run → the earlier run whose fold means of ``columns`` are the same (the lines coincide)."""
    def curves(folds):
        return [_fold_mean(folds, c)[:2] for c in columns]

    def equal(a, b):
        return all((x[0] is None and y[0] is None) or (
            x[0] is not None and y[0] is not None and len(x[0]) == len(y[0]) and np.array_equal(x[0], y[0])
            and np.allclose(x[1], y[1], equal_nan=True)) for x, y in zip(a, b))

    drawn = {run: curves(folds) for run, folds in histories.items()}
    found: dict[str, str] = {}
    names = list(drawn)
    for i, run in enumerate(names):
        for earlier in names[:i]:
            if earlier not in found and equal(drawn[run], drawn[earlier]):
                found[run] = earlier
                break
    return found


def _summary_bars(ax: Axes, summaries: dict[str, dict[str, float]], names: list[str], colours: dict) -> None:
    """The runs' out-of-fold figures as grouped bars, each bar labelled with its value (upright
    text above it: labels of neighbouring bars never overlap) while the bars are wide enough."""
    width = 0.8 / len(summaries)
    x = np.arange(len(names))
    values = []
    label = len(summaries) * len(names) <= 40
    for j, (run, summary) in enumerate(summaries.items()):
        heights = [summary[m] for m in names]
        values += heights
        bars = ax.bar(x + (j - (len(summaries) - 1) / 2) * width, heights, width, color=colours.get(run),
                      edgecolor="black", linewidth=0.4)
        if label:
            ax.bar_label(bars, labels=[_fmt_bar(h) for h in heights], fontsize=6.5, rotation=90, padding=2)
    ax.set_xticks(x, labels=names, rotation=30, ha="right")
    finite = [v for v in values if np.isfinite(v)]
    bounded = all(0 <= v <= 1 for v in finite) and "mae" not in names
    # Room above the bars for their labels; the ticks stay within the metric's range.
    ax.set_ylim(0, 1.3 if bounded else max(finite + [1e-6]) * 1.3)
    if bounded:
        ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title("out-of-fold")
    ax.grid(True, axis="y", alpha=0.3)


def _fmt_bar(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.4f}"


def _differences_table(fig, differences: dict[str, dict[str, str]], runs: list[str]) -> None:
    """The recipe keys whose values differ, one row each, a column per run."""
    ax = fig.subplots()
    ax.axis("off")
    if not differences:
        ax.text(0.5, 0.5, "no recipe key differs between these runs (their names aside)", ha="center",
                va="center", transform=ax.transAxes, fontsize="small")
        return
    cells = [[key] + [_clip(values.get(run, "-"), 40) for run in runs] for key, values in differences.items()]
    table = ax.table(cellText=cells, colLabels=["recipe key (differing)"] + runs, loc="center", cellLoc="left",
                     colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(runs) + 1)))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _fold_mean(folds: dict[str, pd.DataFrame], column: str):
    """(epochs, mean, min, max) of ``column`` over the folds by epoch; Nones when no fold has it."""
    parts = [f.set_index("epoch")[column] for f in folds.values() if _has(f, column) and "epoch" in f.columns]
    if not parts:
        return None, None, None, None
    table = pd.concat([pd.to_numeric(p, errors="coerce") for p in parts], axis=1).sort_index()
    table = table[table.notna().any(axis=1)]
    return (table.index.to_numpy(), table.mean(axis=1).to_numpy(), table.min(axis=1).to_numpy(),
            table.max(axis=1).to_numpy())


def plot_confusions(cms: dict[str, np.ndarray], class_names: Sequence[str], path: str | Path, *,
                    normalised: bool = True, title: str = "") -> None:
    """The confusion matrices of several runs side by side, on one colour scale."""
    n, k = len(cms), len(class_names)
    side = min(max(4.0, 0.5 * k + 2.4), 10.0)
    fig = _figure(((side + 1.0) * n, side + 0.5))
    axes = np.atleast_1d(fig.subplots(1, n)).ravel()
    matrices = {name: row_normalise(cm) if normalised else np.asarray(cm, dtype=np.float64)
                for name, cm in cms.items()}
    if normalised:
        vmax, fmt = 1.0, "{:.2f}"
    else:
        vmax, fmt = max([float(cm.max(initial=0.0)) for cm in matrices.values()] + [1.0]), "{:.0f}"
    for ax, (name, cm) in zip(axes, matrices.items()):
        if cm.shape != (k, k):
            raise ValueError(f"confusion matrix of {name} has shape {cm.shape}, not {k} classes")
        _draw_confusion(fig, ax, cm, class_names, name, vmax, fmt)
    fig.suptitle(title or ("row-normalised" if normalised else "counts") + " out-of-fold confusion")
    _save(fig, path)


def _figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colours(n: int) -> list:
    """Distinct colours: tab10 up to ten runs, tab20 up to twenty, then an evenly spaced map."""
    if n <= 10:
        return list(colormaps["tab10"].colors[:n])
    if n <= 20:
        return list(colormaps["tab20"].colors[:n])
    cmap = colormaps["turbo"]
    return [cmap(i / (n - 1)) for i in range(n)]


def _line(ax: Axes, frame: pd.DataFrame, column: str, label: str, colour, style: str) -> None:
    """Plot ``column`` against epoch, skipping NaN rows so sparse validation still connects."""
    if column not in frame.columns:
        return
    x = frame["epoch"] if "epoch" in frame.columns else pd.Series(np.arange(len(frame)))
    y = pd.to_numeric(frame[column], errors="coerce")
    keep = y.notna().to_numpy() & pd.to_numeric(x, errors="coerce").notna().to_numpy()
    if not keep.any():
        return
    # A lone point would be an invisible zero-length line without a marker.
    marker = "o" if keep.sum() == 1 else None
    ax.plot(x.to_numpy()[keep], y.to_numpy()[keep], linestyle=style, color=colour, label=label,
            marker=marker, linewidth=1.6)


def _finish_axis(ax: Axes, ylabel: str, title: str, *, legend: bool = True) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = ax.get_xlim()
    if hi - lo < 2:  # one epoch: whole epochs around it, not fractions
        mid = round((lo + hi) / 2)
        ax.set_xlim(mid - 1, mid + 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    drawn = bool(handles) if legend else bool(ax.lines)  # (with a legend: marker lines alone are no data)
    if drawn and legend:
        ncol = max(1, math.ceil(len(handles) / 12))
        ax.legend(fontsize="small", ncol=ncol)
    elif not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                color="grey")


def _save(fig: Figure, path: str | Path, *, tight: bool = True) -> None:
    """Save by the path's extension (PNG when it has none), atomically. ``tight`` (a second
    layout pass) only where the constrained layout alone is not enough."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        # "tight" as well as the constrained layout: that layout misplaces the y label of a
        # fixed-aspect heatmap with long class names, pushing it off the page.
        fig.savefig(tmp, format=fmt, dpi=_DPI, bbox_inches="tight" if tight else None, pad_inches=0.1)


# --------------------------------------------------------------------------- values (regression tasks)


def residuals_by_range(y_true: np.ndarray, y_pred: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """The residuals (predicted - true) by quantile range of the true value: each range's rows,
    mean residual (bias) and RMSE."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    edges = np.unique(np.quantile(y_true, np.linspace(0, 1, bins + 1))) if len(y_true) else np.array([0.0])
    which = np.clip(np.searchsorted(edges, y_true, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in np.unique(which):
        r = (y_pred - y_true)[which == b]
        hi = edges[min(b + 1, len(edges) - 1)]
        rows.append({"range": f"{edges[b]:g}-{hi:g}", "rows": len(r), "bias": float(r.mean()),
                     "rmse": float(np.sqrt(np.mean(r ** 2)))})
    return pd.DataFrame(rows, columns=["range", "rows", "bias", "rmse"])


def plot_values(y_true: np.ndarray, y_pred: np.ndarray, path: str | Path, title: str) -> None:
    """Predicted against true values with the identity line."""
    fig = _figure((6.0, 6.0))
    ax = fig.subplots()
    ax.scatter(y_true, y_pred, s=10, alpha=0.6, color="tab:blue")
    both = np.concatenate([np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)])
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], linestyle=":", color="grey", label="predicted = true")
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    _save(fig, path)


def plot_residuals(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Bias and RMSE of the residuals by range of the true value (:func:`residuals_by_range`)."""
    fig = _figure((7.0, 4.5))
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["bias"], width=0.4, color="tab:orange", label="mean residual (bias)")
    ax.bar(x + 0.2, table["rmse"], width=0.4, color="tab:blue", label="RMSE")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(x, table["range"], rotation=45, ha="right", fontsize="small")
    ax.set_xlabel("true value range (quantiles)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
