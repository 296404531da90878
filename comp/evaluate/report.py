"""``comp cv-report``: out-of-fold metrics, confusion matrices and learning curves of runs.

Everything is computed from files a run already holds (its OOF predictions, each fold's history), so a
report can be made again at any time without a model or a GPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comp import atomic, metrics
from comp.console import RunLog
from comp.data.table import ClassMap
from comp.errors import CompError
from comp.metrics import Task
from comp.evaluate.oof import Oof, binary_decisions, ordinal_decisions, read_oof
from comp.evaluate.plots import comparison_path, plot_comparison, plot_confusion, plot_confusions, shared_metrics
from comp.evaluate.views import write_run_views
from comp.predict.decision import load_binary_threshold, load_thresholds
from comp.recipe import Recipe
from comp.recipe.task import describe_task, resolve_task
from comp.train.rundir import RunDir, RunInfo, list_blends

# Beside the task's metrics, the fitted decisions: qwk_thresholds / <metric>_threshold score the
# cuts (or the binary threshold) on the same OOF they were fitted on (optimistic); *_nested cut
# each fold with values fitted on the other folds, what the decision is worth on unseen rows.


@dataclass(frozen=True)
class RunReport:
    """A run's out-of-fold results: overall and per-fold metrics, per-class scores."""

    name: str
    overall: dict[str, float]
    per_fold: dict[int, dict[str, float]]
    per_class: pd.DataFrame  # class, precision, recall, support
    thresholds: list[float] | None  # ordinal cut points fitted on the OOF expected grade, or [binary threshold]
    histories: dict[str, pd.DataFrame]
    monitor: str
    oof: Oof  # what the figures are made of: read once, with the run's classes
    task: Task
    checkpoints: str = "best"  # the weights the OOF predictions came from ([predict] checkpoints)
    task_line: str = ""  # the task, its positive class, monitor and leaderboard metric
    threshold_note: str = ""  # what the fitted decision is, for report.md


def run_report(run_dir: Path) -> RunReport:
    """Compute a run's report from its files."""
    run = RunDir(run_dir)
    info: RunInfo = run.info()
    recipe: Recipe = run.recipe()
    classes = ClassMap(tuple(info.classes))
    read = read_oof(run_dir, classes)
    oof, y_true, probs = read.frame, read.y_true, read.probs
    n = len(classes)
    task = resolve_task(recipe, classes.labels)
    overall = metrics.summarise(task, y_true, probs)
    thresholds, note = None, ""
    fitted = run.thresholds_path.is_file()  # fitted on this OOF by `comp fit`
    if fitted and task.kind == "ordinal":
        cuts = load_thresholds(run_dir)
        thresholds = [float(c) for c in cuts]
        decided = ordinal_decisions(read, cuts)
        overall["qwk_thresholds"] = metrics.quadratic_weighted_kappa(y_true, decided.in_sample, n)
        if decided.nested is not None:  # None for a holdout: nothing to fit the cuts on
            overall["qwk_thresholds_nested"] = metrics.quadratic_weighted_kappa(y_true, decided.nested, n)
            overall["accuracy_thresholds_nested"] = float(np.mean(decided.nested == y_true))
        note = (f"Ordinal thresholds fitted on the OOF expected grade: {', '.join(f'{c:.3f}' for c in cuts)}. "
                "qwk_thresholds scores them on the rows they were fitted on (optimistic); "
                "the *_nested columns cut each fold with thresholds fitted on the other folds.")
    elif fitted and task.kind == "binary":
        threshold, _ = load_binary_threshold(run_dir)
        thresholds = [threshold]
        pos, metric = task.positive, task.decision_metric
        decided = binary_decisions(read, task, threshold)
        overall[f"{metric}_threshold"] = metrics.summarise(task, y_true, probs, y_pred=decided.in_sample)[metric]
        if decided.nested is not None:
            overall[f"{metric}_threshold_nested"] = metrics.summarise(task, y_true, probs,
                                                                      y_pred=decided.nested)[metric]
            overall["accuracy_threshold_nested"] = float(np.mean(decided.nested == y_true))
        note = (f"Threshold tuned on the OOF for {metric}: {classes.labels[pos]} when P({classes.labels[pos]}) "
                f">= {threshold:.3f}. {metric}_threshold scores it on the rows it was tuned on (optimistic); "
                "the *_nested columns cut each fold with a threshold tuned on the other folds.")
    per_fold = {}
    for fold, rows in oof.groupby("fold").groups.items():
        idx = np.asarray(rows)
        per_fold[int(fold)] = metrics.summarise(task, y_true[idx], probs[idx])
    precision, recall = metrics.per_class_precision_recall(y_true, probs.argmax(1), n)
    f1, support, _ = metrics.per_class_f1(y_true, probs.argmax(1), n)
    per_class = pd.DataFrame({"class": classes.labels, "precision": precision, "recall": recall, "f1": f1,
                              "support": support})
    histories = {}
    for fold in run.completed_folds():
        history = run.fold(fold).read_history()
        if history is not None:
            histories[f"fold{fold}"] = history
    return RunReport(info.name, overall, per_fold, per_class, thresholds, histories, task.monitor, read, task,
                     recipe.predict.checkpoints, describe_task(task, classes.labels), note)


def write_run_report(run_dir: Path, report: RunReport, log: Callable[[str], None] = print) -> list[Path]:
    """report.md, report.json, confusion matrices (PNG + CSV) and the pictures of
    :func:`comp.evaluate.views.write_run_views` (curves, ROC, PR, calibration, image mosaics)."""
    classes = report.oof.classes
    oof, y_true, probs = report.oof.frame, report.oof.y_true, report.oof.probs
    run = RunDir(run_dir)
    written = []
    groups = {"": np.arange(len(oof))}
    if len(report.per_fold) > 1:
        groups.update({f"_fold{k}": np.flatnonzero(oof["fold"].to_numpy() == k) for k in report.per_fold})
    for suffix, idx in groups.items():
        cm = metrics.confusion_matrix(y_true[idx], probs[idx].argmax(1), len(classes))
        for normalised in (False, True):
            stem = f"confusion{suffix}" + ("_normalised" if normalised else "")
            values = metrics.row_normalise(cm) if normalised else cm
            frame = pd.DataFrame(values, index=pd.Index(classes.labels, name="true"),
                                 columns=list(classes.labels))
            with atomic.atomic_path(run.confusion(stem, "csv")) as tmp:
                frame.to_csv(tmp)
            title = f"{report.name}{suffix.replace('_', ' ')}: validation confusion" + (
                " (row-normalised)" if normalised else " (counts)")
            plot_confusion(values, list(classes.labels), run.confusion(stem, "png"), title, normalised)
            written += [run.confusion(stem, "csv"), run.confusion(stem, "png")]
    pictures = write_run_views(run, run.recipe(), report.task, classes, oof, y_true, probs, report.histories,
                               log=log)
    written += pictures
    payload = {"name": report.name, "overall": report.overall,
               "per_fold": {str(k): v for k, v in report.per_fold.items()},
               "per_class": report.per_class.to_dict(orient="records"),
               "thresholds": report.thresholds, "oof_checkpoints": report.checkpoints,
               "task": report.task_line}
    atomic.write_text(run.report_json, json.dumps(payload, indent=2, default=float) + "\n")
    captions = {run.confusion("confusion_normalised", "png"): "Confusion matrix (row-normalised; counts in "
                                                               "confusion.png, per fold in confusion_fold*.png)",
                run.curves_png: "Learning curves: every fold, the best epoch by the monitor marked",
                run.roc_png: "ROC curves", run.pr_png: "Precision-recall curves",
                run.calibration_png: "Reliability diagram (calibration) and its ECE",
                run.oof_mistakes_jpg: "The most confident out-of-fold mistakes",
                run.val_predictions_jpg: "A sample of validation predictions (green right, red wrong)"}
    figures = [(text, path) for path, text in captions.items() if path in written]
    atomic.write_text(run.report_md, report_markdown(report, figures))
    return written + [run.report_json, run.report_md]


def report_markdown(report: RunReport, figures: list[tuple[str, Path]] = ()) -> str:
    """The report as Markdown tables, then the ``figures`` (caption, file beside report.md)."""
    lines = [f"# {report.name}: out-of-fold report", "",
             f"Predictions of each fold's {report.checkpoints} weights ([predict] checkpoints); "
             f"{report.task_line}.", "",
             "## Overall", "",
             metrics_table({"overall": report.overall}), ""]
    if len(report.per_fold) > 1:
        lines += ["## Per fold", "", metrics_table({f"fold {k}": v for k, v in report.per_fold.items()}), ""]
    lines += ["## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r.get('f1', math.nan):.4f} | "
              f"{r['support']} |" for r in report.per_class.to_dict(orient="records")]
    if report.threshold_note:
        lines += ["", report.threshold_note]
    if figures:
        lines += ["", "## Pictures"]
        for caption, path in figures:
            lines += ["", f"### {caption}", "", f"![{Path(path).stem}]({Path(path).name})"]
    return "\n".join(lines) + "\n"


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table, one row per entry, one column per metric present."""
    columns = _columns(rows)
    out = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows.items():
        out.append(f"| {name} | " + " | ".join(_fmt(values.get(c, math.nan)) for c in columns) + " |")
    return "\n".join(out)


def text_table(rows: dict[str, dict[str, float]]) -> str:
    """A fixed-width table for the terminal."""
    columns = _columns(rows)
    width = max([len(n) for n in rows] + [4])
    sizes = [max(len(c), 7) for c in columns]
    out = [f"{'':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, sizes))]
    for name, values in rows.items():
        out.append(f"{name:<{width}}  " + "  ".join(f"{_fmt(values.get(c, math.nan)):>{w}}"
                                                    for c, w in zip(columns, sizes)))
    return "\n".join(out)


def _columns(rows: dict[str, dict[str, float]]) -> list[str]:
    """Every metric any row has, in the order they first appear (the task's order)."""
    return list(dict.fromkeys(c for r in rows.values() for c in r))


def report_one(run_dir: Path, log: Callable[[str], None] = print) -> RunReport:
    """Write one run's report (the tables, report.md/.json and every picture) and print its
    out-of-fold table; raises CompError when the run has no validation to report."""
    report = run_report(run_dir)
    write_run_report(run_dir, report, log=log)
    rows = {"overall": report.overall}
    if len(report.per_fold) > 1:
        rows.update({f"fold {k}": v for k, v in report.per_fold.items()})
    log(f"\n{report.name} ({run_dir}): out-of-fold metrics on {int(report.per_class['support'].sum())} rows, "
        f"from the {report.checkpoints} weights of each fold; {report.task_line}")
    log(text_table(rows))
    log(f"wrote {RunDir(run_dir).report_md} (with confusion*.png/csv, curves, ROC, PR, calibration, mosaics)")
    return report


def cv_report(run_dirs: list[Path], runs_root: Path, log: Callable[[str], None] = print, *,
              metric: str | None = None, out: Path | None = None) -> dict[str, RunReport]:
    """Report each run (its lines also appended to the run's report.log); a run without
    validation (no oof.csv: the "full" scheme, or no fold finished) is skipped and named, and
    only when none is left is that an error. With several runs: a side-by-side table
    (comparison.md), the comparison figure (``compare_<run1>_vs_<run2>.png`` under ``runs_root``,
    or ``out``; ``metric`` picks the one metric to compare) and their confusion matrices side by
    side (the same name ending ``_confusion``)."""
    reports, skipped = {}, []
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        if not run.has_oof():
            skipped.append(run.name)
            continue
        run_log = RunLog(log)
        run_log.attach(run.report_log)
        report = report_one(run_dir, run_log)
        reports[report.name] = report
    if skipped:
        why = "no validation to report (no oof.csv: the \"full\" scheme, or no fold finished)"
        if not reports:
            raise CompError(f"nothing to report: {', '.join(skipped)} {'has' if len(skipped) == 1 else 'have'} {why}")
        log(f"\nskipped {', '.join(skipped)}: {why}")
    if len(reports) > 1:
        _compare(reports, runs_root, log, metric=metric, out=out)
        _show_blends(reports, runs_root, log)
    elif metric or out:
        log("--metric and --out are for comparing two or more runs; one run has its own report")
    return reports


def _compare(reports: dict[str, RunReport], runs_root: Path, log: Callable[[str], None], *,
             metric: str | None, out: Path | None) -> None:
    """The side-by-side table, the comparison figure and the confusion matrices side by side."""
    table = {name: r.overall for name, r in reports.items()}
    log("\nruns side by side")
    log(text_table(table))
    atomic.write_text(runs_root / "comparison.md", "# Runs compared\n\n" + metrics_table(table) + "\n")
    histories = {name: r.histories for name, r in reports.items()}
    shared = shared_metrics(histories)
    if metric and metric not in shared and metric not in ("val_loss", "train_loss"):
        raise CompError(f"--metric {metric!r}: the runs' histories share {', '.join(shared) or 'no metric'}")
    figure = Path(out) if out else comparison_path(runs_root, list(reports))
    drawn = plot_comparison(histories, figure, summaries=table,
                            metric=None if metric in ("val_loss", "train_loss") else metric)
    written = [runs_root / "comparison.md", figure]
    classes = {r.oof.classes.labels for r in reports.values()}
    if len(classes) == 1:
        labels = ClassMap(classes.pop())
        cms = {name: metrics.confusion_matrix(r.oof.y_true, r.oof.probs.argmax(1), len(labels))
               for name, r in reports.items()}
        confusion = figure.with_name(figure.stem + "_confusion" + (figure.suffix or ".png"))
        plot_confusions(cms, list(labels.labels), confusion, title="out-of-fold confusion, row-normalised: "
                        + " vs ".join(cms))
        written.append(confusion)
    else:
        log("the runs' classes differ: no side-by-side confusion matrices")
    log(f"compared {', '.join(drawn) or 'the losses'}: wrote {', '.join(str(p) for p in written)}")


def _show_blends(reports: dict[str, RunReport], runs_root: Path, log: Callable[[str], None]) -> None:
    """Each blend (``comp blend``) of reported runs, with the figures it printed when fitted."""
    for blend in list_blends(runs_root):
        if set(blend.runs) <= set(reports):
            log(f"\nblend {blend.name} for {blend.metric} ({blend.mean} mean): "
                + ", ".join(f"{r} {w:.3f}" for r, w in zip(blend.runs, blend.weights)))
            log(text_table(blend.figures.get("table", {})))


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
