"""``comp cv-report``: out-of-fold metrics, confusion matrices and learning curves of runs.

Everything is computed from files a run already holds (its OOF predictions, each fold's history), so a
report can be made again at any time without a model or a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comp import atomic, metrics
from comp.console import log_to
from comp.data.table import ClassMap
from comp.errors import CompError
from comp.metrics import Task
from comp.evaluate.plots import (comparison_path, plot_comparison, plot_confusion, plot_confusions, residuals_by_range,
                                 shared_metrics)
from comp.evaluate.labels_table import per_label_markdown
from comp.evaluate.views import display_names, label_decision, write_run_views
from comp.kinds import kind_of
from comp.run.oof import Oof, read_oof
from comp.run.thresholds import load_fitted
from comp.recipe import Recipe
from comp.recipe.task import describe_task
from comp.run.folder import RunDir, RunInfo, list_blends

logger = logging.getLogger(__name__)

# cam.jpg in every report: it costs about 4 % of `make demo`'s CPU time (benchmarks/cam.md), under the
# 10 % that would have turned it off by default; `comp cv-report --no-cam` leaves it out.
CAM_DEFAULT = True
CAM_METHOD = "gradcam"

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
    recipe: Recipe | None = None  # the run's resolved recipe (what differs between runs compared)
    overrides: tuple[str, ...] = ()  # the --set overrides the run recorded (run.json)


def run_report(run_dir: Path) -> RunReport:
    """Compute a run's report from its files."""
    run = RunDir(run_dir)
    info: RunInfo = run.info()
    recipe: Recipe = run.recipe()
    classes = ClassMap(tuple(info.classes))
    read = read_oof(run_dir, classes)
    oof, y_true, probs = read.frame, read.y_true, read.probs
    n = len(classes)
    task = run.task()  # as the fit resolved it (run.json)
    kind = kind_of(task)
    overall = kind.summarise(task, y_true, probs)
    thresholds, note = None, ""
    rule = kind_of(task).merge_rule
    if rule is not None and run.thresholds_path.is_file():  # fitted on this OOF by `comp fit`
        decision = load_fitted(run_dir, rule, list(classes.labels))
        thresholds = rule.fitted_values(decision)
        figures, note = rule.report(probs, y_true, read.folds, task, decision, list(classes.labels))
        overall.update(figures)
    per_fold = {}
    for fold, rows in oof.groupby("fold").groups.items():
        idx = np.asarray(rows)
        per_fold[int(fold)] = kind.summarise(task, y_true[idx], probs[idx])
    if kind.continuous:  # values: residuals by range of the true value instead of per-class scores
        per_class = residuals_by_range(y_true, probs[:, 0])
    elif kind.label_sets:  # per label: support, AUC, AP, F1 at the fitted threshold
        decision = label_decision(run, task, classes)
        rows = metrics.per_label_table(y_true, probs, decision.apply(probs))
        per_class = pd.DataFrame(rows).assign(label=display_names(task, classes.labels),
                                              threshold=_label_thresholds(decision, n))
    else:
        precision, recall = metrics.per_class_precision_recall(y_true, probs.argmax(1), n)
        f1, support, _ = metrics.per_class_f1(y_true, probs.argmax(1), n)
        per_class = pd.DataFrame({"class": display_names(task, classes.labels), "precision": precision,
                                  "recall": recall, "f1": f1, "support": support})
    histories = fold_histories(run)
    return RunReport(info.name, overall, per_fold, per_class, thresholds, histories, task.monitor, read, task,
                     recipe.predict.checkpoints, describe_task(task, classes.labels), note, recipe,
                     tuple(info.overrides))


def _label_thresholds(decision, n: int) -> list[float]:
    """Each label's threshold in a decision (0.5 each when none is fitted)."""
    if decision.cuts is not None and len(decision.cuts) == n:
        return [float(t) for t in decision.cuts]
    return [0.5] * n


def fold_histories(run: RunDir, folds: list[int] | None = None) -> dict[str, pd.DataFrame]:
    """``fold<K>`` → its history.csv, for the run's completed folds (or ``folds``) that have one."""
    histories = {}
    for fold in run.completed_folds() if folds is None else folds:
        history = run.fold(fold).read_history()
        if history is not None:
            histories[f"fold{fold}"] = history
    return histories


def confused_pairs(cm: np.ndarray, names: list[str], top: int = 5) -> list[tuple[str, str, int, float]]:
    """The most frequent mistakes of a confusion matrix (true on rows): (true class, predicted
    class, rows, share of the true class's rows), the most rows first (ties: the larger share)."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    pairs = [(int(cm[i, j]), i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] > 0]
    pairs.sort(key=lambda p: (-p[0], -p[0] / totals[p[1]], p[1], p[2]))
    return [(names[i], names[j], c, c / totals[i]) for c, i, j in pairs[:top]]


def write_run_report(run_dir: Path, report: RunReport, *, cam: bool = CAM_DEFAULT) -> list[Path]:
    """report.md, report.json, confusion matrices (PNG + CSV) and the pictures of
    :func:`comp.evaluate.views.write_run_views` (curves, ROC, PR, calibration, image mosaics);
    with ``cam``, cam.jpg (:func:`comp.evaluate.cam.write_cam_gallery`)."""
    classes = report.oof.classes
    oof, y_true, probs = report.oof.frame, report.oof.y_true, report.oof.probs
    run = RunDir(run_dir)
    written = []
    groups: dict[int | None, np.ndarray] = {None: np.arange(len(oof))}
    if len(report.per_fold) > 1:
        groups.update({k: np.flatnonzero(oof["fold"].to_numpy() == k) for k in report.per_fold})
    no_confusion = kind_of(report.task).continuous or kind_of(report.task).label_sets  # (no single class per row)
    for fold, idx in groups.items() if not no_confusion else ():
        cm = metrics.confusion_matrix(y_true[idx], probs[idx].argmax(1), len(classes))
        for normalised in (False, True):
            values = metrics.row_normalise(cm) if normalised else cm
            frame = pd.DataFrame(values, index=pd.Index(classes.labels, name="true"),
                                 columns=list(classes.labels))
            csv, png = (run.confusion(ext, fold=fold, normalised=normalised) for ext in ("csv", "png"))
            with atomic.atomic_path(csv) as tmp:
                frame.to_csv(tmp)
            title = f"{report.name}{'' if fold is None else f' fold{fold}'}: validation confusion" + (
                " (row-normalised)" if normalised else " (counts)")
            plot_confusion(values, display_names(report.task, classes.labels), png, title, normalised)
            written += [csv, png]
    pictures = write_run_views(run, run.recipe(), report.task, classes, oof, y_true, probs, report.histories)
    written += pictures
    if cam and not kind_of(report.task).continuous:  # per class (per label): a continuous target has none
        written += _cam_gallery(run, report)
    payload = {"name": report.name, "overall": report.overall,
               "per_fold": {str(k): v for k, v in report.per_fold.items()},
               "per_class": report.per_class.to_dict(orient="records"),
               "thresholds": report.thresholds, "oof_checkpoints": report.checkpoints,
               "task": report.task_line,
               "most_confused": [{"true": t, "predicted": p, "rows": c, "share_of_true": share}
                                 for t, p, c, share in _confused(report)]}
    atomic.write_text(run.report_json, json.dumps(payload, indent=2, default=float) + "\n")
    captions = {run.confusion("png", normalised=True): "Confusion matrix (row-normalised; counts in "
                                                               "confusion.png, per fold in confusion_fold*.png)",
                run.curves_png: "Learning curves: every fold, the best epoch by the monitor marked",
                run.roc_png: "ROC curves", run.pr_png: "Precision-recall curves",
                run.calibration_png: "Reliability diagram (calibration) and its ECE",
                run.values_png: "Out-of-fold predictions against the true values",
                run.cooccurrence_png: "How often labels are true together (the diagonal: each label's rows)",
                run.residuals_png: "Residuals (bias and RMSE) by range of the true value",
                run.oof_mistakes_jpg: ("The rows farthest from their true value" if kind_of(report.task).continuous
                                       else "The rows of largest loss over their labels (true and predicted labels)"
                                       if kind_of(report.task).label_sets
                                       else "The most confident out-of-fold mistakes"),
                run.val_predictions_jpg: "A sample of validation predictions (green right, red wrong)",
                run.cam_jpg: (f"Where the model looked ({CAM_METHOD}): per label the most confident image that has "
                              "it and the one that has it with the lowest probability, each beside its map of that label"
                              if kind_of(report.task).label_sets else
                              f"Where the model looked ({CAM_METHOD}): per class the most confident right and the "
                              "worst wrong out-of-fold image, each beside its map of the class predicted")}
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
    if kind_of(report.task).continuous:
        lines += ["## Residuals by range of the true value", "", "| range | rows | bias | RMSE |", "|---|---|---|---|"]
        lines += [f"| {r['range']} | {r['rows']} | {r['bias']:+.4f} | {r['rmse']:.4f} |"
                  for r in report.per_class.to_dict(orient="records")]
    elif kind_of(report.task).label_sets:
        rows = report.per_class.to_dict(orient="records")
        lines += ["## Per label", "", per_label_markdown([{**r, "label": i} for i, r in enumerate(rows)],
                                                          [r["label"] for r in rows], [r["threshold"] for r in rows])]
    else:
        lines += ["## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r.get('f1', math.nan):.4f} | "
                  f"{r['support']} |" for r in report.per_class.to_dict(orient="records")]
        pairs = _confused(report)
        lines += ["", "## Most confused", ""]
        if pairs:
            lines += ["| true | predicted | rows | share of the true class |", "|---|---|---|---|"]
            lines += [f"| {t} | {p} | {c} | {share:.1%} |" for t, p, c, share in pairs]
        else:
            lines += ["No out-of-fold mistakes."]
    if report.threshold_note:
        lines += ["", report.threshold_note]
    if figures:
        lines += ["", "## Pictures"]
        for caption, path in figures:
            lines += ["", f"### {caption}", "", f"![{Path(path).stem}]({Path(path).name})"]
    return "\n".join(lines) + "\n"


def _confused(report: RunReport) -> list[tuple[str, str, int, float]]:
    oof = report.oof
    if kind_of(report.task).continuous or kind_of(report.task).label_sets:
        return []
    cm = metrics.confusion_matrix(oof.y_true, oof.probs.argmax(1), len(oof.classes))
    return confused_pairs(cm, display_names(report.task, oof.classes.labels))


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


def _cam_gallery(run: RunDir, report: RunReport) -> list[Path]:
    """cam.jpg, through the weights the OOF came from; a run it cannot be drawn for gets a note."""
    from comp.evaluate.cam import write_cam_gallery

    oof = report.oof
    try:
        path = write_cam_gallery(run, run.recipe(), oof.classes, oof.frame, oof.y_true, oof.probs, run.cam_jpg,
                                 which=report.checkpoints, names=display_names(report.task, oof.classes.labels),
                                 method=CAM_METHOD)
    except CompError as err:
        logger.info(f"no class activation maps: {err}")
        return []
    return [] if path is None else [path]


def report_one(run_dir: Path, *, cam: bool = CAM_DEFAULT) -> RunReport | None:
    """Write one run's report (the tables, report.md/.json and every picture) and log its
    out-of-fold table. A run without out-of-fold rows gets what its histories give
    (:func:`report_training`) and None is returned."""
    if not RunDir(run_dir).has_oof():
        report_training(run_dir)
        return None
    report = run_report(run_dir)
    write_run_report(run_dir, report, cam=cam)
    rows = {"overall": report.overall}
    if len(report.per_fold) > 1:
        rows.update({f"fold {k}": v for k, v in report.per_fold.items()})
    logger.info(f"\n{report.name} ({run_dir}): out-of-fold metrics on {len(report.oof.y_true)} "
                f"rows, from the {report.checkpoints} weights of each fold; {report.task_line}")
    logger.info(text_table(rows))
    pictures = ("values, residuals, curves, mosaic" if kind_of(report.task).continuous
                else "curves, per-label ROC and PR, co-occurrence, mosaics" if kind_of(report.task).label_sets
                else "confusion*.png/csv, curves, ROC, PR, calibration, mosaics")
    logger.info(f"wrote {RunDir(run_dir).report_md} (with {pictures})")
    return report


_NO_OOF = "no metrics, confusion matrices, ROC/PR, calibration or image mosaics"


def report_training(run_dir: Path) -> list[Path]:
    """What a run without out-of-fold rows (the "full" scheme, or no fold validated yet) can
    show: curves.png from its folds' history.csv and a report.md with each fold's last epoch,
    saying what cannot be made. Returns the files written (none without any history)."""
    run = RunDir(run_dir)
    info, recipe = run.info(), run.recipe()
    task = run.task()
    why = ('the "full" scheme trains on every row and validates none' if recipe.cv.scheme == "full"
           else "no fold has finished validating")
    histories = fold_histories(run, [int(k) for k in info.folds if run.fold(int(k)).history_path.is_file()])
    logger.info(f"\n{info.name} ({run_dir}): no out-of-fold rows ({why}): {_NO_OOF}; "
                f"{describe_task(task, info.classes)}")
    if not histories:
        logger.info(f"{info.name}: no fold has a history.csv yet: nothing to draw")
        return []
    write_run_views(run, recipe, task, ClassMap(tuple(info.classes)), pd.DataFrame(), np.zeros(0, dtype=np.int64),
                    np.zeros((0, len(info.classes))), histories)
    shown = {"epoch": "{:.0f}", "train_loss": "{:.4f}", "train_accuracy": "{:.4f}", "lr": "{:.3g}",
             "seconds": "{:.1f}"}
    columns = [c for c in shown if any(c in frame.columns for frame in histories.values())]
    last = ["| fold | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, frame in histories.items():
        row = frame.iloc[-1]
        last.append(f"| {name} | " + " | ".join(
            shown[c].format(float(row[c])) if c in row and pd.notna(row[c]) else "-" for c in columns) + " |")
    text = "\n".join([f"# {info.name}: training report", "",
                      f"No out-of-fold rows ({why}), so {_NO_OOF}; {describe_task(task, info.classes)}.", "",
                      "## Last epoch per fold", "", *last, "", "## Pictures", "",
                      "### Learning curves (training loss, accuracy and LR of every fold)", "",
                      f"![{run.curves_png.stem}]({run.curves_png.name})"]) + "\n"
    atomic.write_text(run.report_md, text)
    logger.info(f"wrote {run.curves_png} and {run.report_md} from the folds' history.csv")
    return [run.curves_png, run.report_md]


def cv_report(run_dirs: list[Path], runs_root: Path, *, metric: str | None = None,
              out: Path | None = None, cam: bool = CAM_DEFAULT) -> dict[str, RunReport]:
    """Report each run (its lines also appended to the run's report.log); a run without
    out-of-fold rows (the "full" scheme, or no fold finished) gets its curves and says what it
    cannot show, and only a run with nothing at all to show is an error. With several runs of
    one competition: a side-by-side table (comparison.md), the comparison figure
    (``compare_<run1>_vs_<run2>.png`` under ``runs_root``, or ``out``; ``metric`` picks the one
    metric to compare), the recipe keys that differ, and their confusion matrices side by side
    (the same name ending ``_confusion``); runs of another competition are left out and named."""
    reports, training_only, written = {}, [], False
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        with log_to(run.report_log, replay=False):
            report = report_one(run_dir, cam=cam)
        if report is None:
            training_only.append(run.name)
            written = written or run.curves_png.is_file()
        else:
            reports[report.name] = report
    if not reports and not written:
        raise CompError(f"nothing to report: {', '.join(training_only)} "
                        f"{'has' if len(training_only) == 1 else 'have'} no out-of-fold rows and no history.csv")
    if training_only and len(run_dirs) > 1:
        logger.info(f"\nnot compared: {', '.join(training_only)} (no out-of-fold rows)")
    compared = one_competition(reports)
    if len(compared) > 1:
        _compare(compared, runs_root, metric=metric, out=out)
        _show_blends(reports, runs_root)
    elif metric or out:
        logger.info("--metric and --out are for comparing two or more runs; one run has its own report")
    return reports


def competition_of(report: RunReport) -> tuple[str, tuple[str, ...]]:
    """What makes runs comparable: the competition folder (resolved) and the class list."""
    root = str(Path(report.recipe.data.root).resolve()) if report.recipe is not None else ""
    return root, tuple(report.oof.classes.labels)


def one_competition(reports: dict[str, RunReport]) -> dict[str, RunReport]:
    """The reports of the first report's competition (:func:`competition_of`); the others are
    named as left out of the comparison."""
    if not reports:
        return {}
    first = competition_of(next(iter(reports.values())))
    kept = {name: r for name, r in reports.items() if competition_of(r) == first}
    left = [name for name in reports if name not in kept]
    if left:
        def where(key: tuple[str, tuple[str, ...]]) -> str:
            return f"{key[0]}, classes {', '.join(key[1])}"

        logger.info(f"\ncompared only the runs of {where(first)}: {', '.join(kept)}; left out "
                    + "; ".join(f"{name} (another competition: {where(competition_of(reports[name]))})"
                                for name in left))
    return kept


def _compare(reports: dict[str, RunReport], runs_root: Path, *,
             metric: str | None, out: Path | None) -> None:
    """The side-by-side table, the comparison figure and the confusion matrices side by side."""
    table = {name: r.overall for name, r in reports.items()}
    logger.info("\nruns side by side")
    logger.info(text_table(table))
    differences = recipe_differences({name: r.recipe for name, r in reports.items() if r.recipe is not None},
                                     {name: r.overrides for name, r in reports.items()})
    if differences:
        logger.info("\nrecipe keys that differ ((--set): given on the command line)")
        logger.info(text_grid(differences, list(reports)))
    else:
        logger.info("no recipe key differs between these runs (their names aside)")
    atomic.write_text(runs_root / "comparison.md", "# Runs compared\n\n" + metrics_table(table) + "\n\n"
                      + "## Recipe keys that differ\n\n"
                      + (markdown_grid(differences, list(reports)) if differences
                         else "None: the recipes are the same apart from their names.") + "\n")
    histories = {name: r.histories for name, r in reports.items()}
    shared = shared_metrics(histories)
    if metric and metric not in shared and metric not in ("val_loss", "train_loss"):
        raise CompError(f"--metric {metric!r}: the runs' histories share {', '.join(shared) or 'no metric'}")
    figure = Path(out) if out else comparison_path(runs_root, list(reports))
    drawn = plot_comparison(histories, figure, summaries=table,
                            metric=None if metric in ("val_loss", "train_loss") else metric, differences=differences)
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
        logger.info("the runs' classes differ: no side-by-side confusion matrices")
    logger.info(f"compared {', '.join(drawn) or 'the losses'}: wrote {', '.join(str(p) for p in written)}")


def recipe_differences(recipes: dict[str, Recipe], overrides: dict[str, Sequence[str]] | None = None
                       ) -> dict[str, dict[str, str]]:
    """The recipe keys (``section.key``, as ``--set`` names them) whose values differ between
    runs, the run names aside: key → run → value; a value the run's ``overrides`` set is marked
    "(--set)"."""
    flat = {name: _flatten(recipe) for name, recipe in recipes.items()}
    given = {name: [o.split("=", 1)[0].strip() for o in (overrides or {}).get(name, ())] for name in recipes}
    out = {}
    for key in dict.fromkeys(k for values in flat.values() for k in values):
        if key == "name":
            continue
        shown = {name: values.get(key, "-") for name, values in flat.items()}
        if len(set(shown.values())) > 1:
            out[key] = {name: value + (" (--set)" if any(g == key or g.startswith(key + ".") for g in given[name])
                                       else "") for name, value in shown.items()}
    return out


def _flatten(recipe: Recipe) -> dict[str, str]:
    """``section.key`` (or a top-level ``key``) → the value as a recipe would write it."""
    out = {}
    for f in dataclasses.fields(recipe):
        if not f.metadata.get("toml", True):
            continue
        value = getattr(recipe, f.name)
        if dataclasses.is_dataclass(value):
            for g in dataclasses.fields(value):
                out[f"{f.name}.{g.name}"] = _show(getattr(value, g.name))
        else:
            out[f.name] = _show(value)
    return out


def _show(value: object) -> str:
    return value if isinstance(value, str) and value else json.dumps(value, default=str)


def text_grid(rows: dict[str, dict[str, str]], columns: list[str]) -> str:
    """A fixed-width table of text: a row per key, a column per name."""
    width = max(len(k) for k in rows)
    sizes = [max([len(c)] + [len(r.get(c, "-")) for r in rows.values()]) for c in columns]
    out = [f"{'':<{width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(columns, sizes))]
    out += [f"{key:<{width}}  " + "  ".join(f"{values.get(c, '-'):<{w}}" for c, w in zip(columns, sizes))
            for key, values in rows.items()]
    return "\n".join(line.rstrip() for line in out)


def markdown_grid(rows: dict[str, dict[str, str]], columns: list[str]) -> str:
    """The same as a Markdown table."""
    out = ["| key | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    out += [f"| `{key}` | " + " | ".join(values.get(c, "-").replace("|", "\\|") for c in columns) + " |"
            for key, values in rows.items()]
    return "\n".join(out)


def _show_blends(reports: dict[str, RunReport], runs_root: Path) -> None:
    """Each blend (``comp blend``) of reported runs, with the figures it printed when fitted."""
    for blend in list_blends(runs_root):
        if set(blend.runs) <= set(reports):
            logger.info(f"\nblend {blend.name} for {blend.metric} ({blend.mean} mean): "
                        + ", ".join(f"{r} {w:.3f}" for r, w in zip(blend.runs, blend.weights)))
            logger.info(text_table(blend.figures.get("table", {})))


def _fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
