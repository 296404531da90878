"""Report figures: confusion matrices, learning curves, and run-versus-run overlays.

Figures are built as ``Figure`` objects on an Agg canvas rather than through pyplot, so no
global figure state or GUI backend is involved and they are freed like any other object.
Each file is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from comp.atomic import atomic_path

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
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
        vmax, fmt = 1.0, "{:.2f}"
    else:
        vmax, fmt = max(float(cm.max(initial=0.0)), 1.0), "{:.0f}"

    # Grow the figure with the class count so 20 classes stay legible, within page size.
    side = min(max(4.5, 0.55 * n + 2.5), 14.0)
    fig = _figure((side + 1.2, side))
    ax = fig.add_subplot()
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
    _save(fig, path)


def plot_learning_curves(histories: dict[str, pd.DataFrame], monitor: str, path: str | Path,
                         title: str = "") -> None:
    """Two panels per run: losses (train dashed, val solid) and the ``monitor`` metric.

    Each history has columns ``epoch``, ``train_loss``, ``val_loss`` and ``monitor``; a column
    that is absent or all NaN (a run without validation) is simply not drawn.
    """
    fig = _figure((12.0, 4.5))
    loss_ax, metric_ax = fig.subplots(1, 2)
    colours = _colours(len(histories))
    for colour, (name, frame) in zip(colours, histories.items()):
        _line(loss_ax, frame, "train_loss", f"{name} train", colour, "--")
        _line(loss_ax, frame, "val_loss", f"{name} val", colour, "-")
        _line(metric_ax, frame, monitor, name, colour, "-")
    _finish_axis(loss_ax, "loss", "loss")
    _finish_axis(metric_ax, monitor, monitor)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_overlay(curves: dict[str, pd.DataFrame], metric: str, path: str | Path,
                 title: str = "") -> None:
    """One axis, one line of ``metric`` against ``epoch`` per run, to compare runs."""
    fig = _figure((7.5, 4.5))
    ax = fig.add_subplot()
    for colour, (name, frame) in zip(_colours(len(curves)), curves.items()):
        _line(ax, frame, metric, name, colour, "-")
    _finish_axis(ax, metric, title or metric)
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


def _finish_axis(ax: Axes, ylabel: str, title: str) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ncol = max(1, math.ceil(len(handles) / 12))
        ax.legend(fontsize="small", ncol=ncol)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes,
                color="grey")


def _save(fig: Figure, path: str | Path) -> None:
    """Save by the path's extension (PNG when it has none), atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        # "tight" as well as the constrained layout: that layout misplaces the y label of a
        # fixed-aspect heatmap with long class names, pushing it off the page.
        fig.savefig(tmp, format=fmt, dpi=_DPI, bbox_inches="tight", pad_inches=0.1)
