"""Seeing what training does (issue 18): progress anywhere, run logs, pictures, TensorBoard."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from comp.console import (Countdown, log_to, parse_time, progress, progress_mode, recent_eta, say, setup_console,
                          timestamp)
from comp.data.mosaic import denormalise, mosaic, write_mosaic
from comp.errors import CompError
from comp.evaluate import plots

pytestmark = pytest.mark.xdist_group("test_views")  # one worker makes the module's fixtures (conftest)


def _image(path, min_side=100, max_side=4000):
    """A valid image of plausible size that is not a blank page."""
    image = cv2.imread(str(path))
    assert image is not None, path
    h, w = image.shape[:2]
    assert min_side <= h <= max_side and min_side <= w <= max_side, (path, image.shape)
    assert image.std() > 5
    return image


# --------------------------------------------------------------------------- progress and logs


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def bars():
    """Progress on, as the command line has it (a library caller that sets no level gets none)."""
    logger = logging.getLogger("comp.progress")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def test_progress_lines_outside_a_terminal(monkeypatch, bars):
    monkeypatch.delenv("COMP_PROGRESS", raising=False)
    out = io.StringIO()
    with progress(total=200, desc="fold 0 epoch 1/3", file=out, gap=0.0) as bar:
        for _ in range(20):
            bar.update(10)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.strip().split("\n")
    assert len(lines) == 10  # every 10 % of the work
    out = io.StringIO()
    with progress(total=200, desc="quick", file=out) as bar:  # a pass of under a second: its end only
        for _ in range(20):
            bar.update(10)
    assert out.getvalue().count("\n") == 1 and "quick: 200/200" in out.getvalue()
    assert re.fullmatch(r"fold 0 epoch 1/3: 200/200 img \(100%\), [\d.]+img/s, elapsed \S+, ETA \S+", lines[-1])


def test_progress_lines_by_time_and_at_the_end(monkeypatch, bars):
    monkeypatch.delenv("COMP_PROGRESS", raising=False)
    out = io.StringIO()
    bar = progress(total=1000, desc="x", file=out, interval=0.0)  # every update is due by time
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert [line.split(":")[1].split()[0] for line in out.getvalue().strip().split("\n")] == ["1/1000", "2/1000",
                                                                                              "3/1000"]
    out = io.StringIO()
    bar = progress(total=1000, desc="x", file=out, interval=1e9)
    bar.update(3)
    bar.close()  # the last figures are always shown
    assert out.getvalue().count("\n") == 1 and "3/1000" in out.getvalue()


def test_progress_bar_in_a_terminal_and_off(monkeypatch, bars):
    monkeypatch.delenv("COMP_PROGRESS", raising=False)
    tty = _Tty()
    for _ in progress(range(5), desc="bar", file=tty):
        pass
    assert "\r" in tty.getvalue() and "img/s" in tty.getvalue()
    quiet = io.StringIO()
    for _ in progress(range(5), desc="off", file=quiet, enabled=False):
        pass
    assert quiet.getvalue() == ""
    monkeypatch.setenv("COMP_PROGRESS", "lines")
    forced = _Tty()
    for _ in progress(range(5), desc="forced", file=forced):
        pass
    assert "\r" not in forced.getvalue() and "forced: 5/5" in forced.getvalue()


def test_progress_lines_on_a_terminal_of_no_size(monkeypatch, bars):
    """``script -qc`` without a terminal around it: a pseudo-terminal of 0 columns, where a bar shows nothing."""
    monkeypatch.delenv("COMP_PROGRESS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    monkeypatch.setenv("COLUMNS", "0")
    tty = _Tty()
    assert progress_mode(tty) == "lines"
    with progress(total=100, desc="fold 0 epoch 1/2", file=tty, gap=0.0) as bar:
        for _ in range(10):
            bar.update(10)
    lines = tty.getvalue().split("\n")
    assert "\r" not in tty.getvalue() and len(lines) == 11 and lines[-1] == ""
    assert lines[-2].startswith("fold 0 epoch 1/2: 100/100 img (100%)") and "ETA 00:00" in lines[-2]
    monkeypatch.setenv("COLUMNS", "120")
    assert progress_mode(tty) == "bar"
    monkeypatch.setenv("LINES", "0")  # sized across but not down: tqdm draws nothing either
    assert progress_mode(tty) == "lines"


def test_messages_are_never_written_into_a_bar(monkeypatch, bars):
    monkeypatch.delenv("COMP_PROGRESS", raising=False)
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    message = "train_batch.jpg: 8 of the first batch's 8 training images"
    tty = _Tty()
    with progress(total=10, desc="fold 0 epoch 1/1", file=tty) as bar:
        for i in range(10):
            bar.update(1)
            bar.refresh()
            if i == 4:
                say(message, file=tty)
    text = tty.getvalue()
    assert "img/s" in text  # the bar was drawn, before and after
    before, after = text.split(message)
    assert before.endswith("\r") and before.rstrip("\r").endswith(" ")  # the bar's line cleared first
    assert after.startswith("\n") and "fold 0 epoch 1/1" in after  # ... and redrawn below the message
    # Outside a terminal the same message leaves the progress lines whole (no carriage return).
    out = io.StringIO()
    with progress(total=10, desc="x", file=out, gap=0.0) as bar:
        for i in range(10):
            bar.update(1)
            if i == 4:
                say(message, file=out)
    assert "\r" not in out.getvalue() and f"\n{message}\n" in out.getvalue()


@pytest.fixture
def console(monkeypatch):
    """The command line's logging set-up (:func:`setup_console`) on a stream of the test's, undone after."""
    out = io.StringIO()
    undo = setup_console(stream=out)
    yield out
    undo()


def test_the_short_epoch_line_is_for_a_terminal(console, monkeypatch, tmp_path):
    log = logging.getLogger("comp.train.loop")
    full = "fold 0 epoch   3  train_loss 0.4121  train_acc 0.8600  val_loss 0.3912  acc 0.8700  qwk 0.8123  45.2s"
    with log_to(tmp_path / "fit.log"):
        monkeypatch.setenv("COMP_PROGRESS", "bar")  # stdout taken for a terminal
        log.info(full, extra={"brief": "fold 0 epoch 3/12: loss 0.4121, val 0.3912, qwk 0.8123, 45s"})
        monkeypatch.setenv("COMP_PROGRESS", "lines")  # a pipe, a file
        log.info(full, extra={"brief": "short"})
    assert console.getvalue().splitlines() == ["fold 0 epoch 3/12: loss 0.4121, val 0.3912, qwk 0.8123, 45s", full]
    assert (tmp_path / "fit.log").read_text().count(full) == 2  # the log keeps the full line


def test_the_epoch_line_for_a_terminal_is_short():
    from comp.kinds import make_task
    from comp.train.fold_hooks import epoch_line as _epoch_line, short_epoch_line as _short_epoch_line

    task = make_task("binary", 2, metric="weighted_f1")
    row = {"epoch": 3, "train_loss": 0.41213, "train_accuracy": 0.86, "val_loss": 0.39121, "seconds": 45.24,
           **{name: 0.8123 for name in task.metric_names}}
    short = _short_epoch_line(0, row, task, (0.8123, 3), 12)
    assert short == "fold 0 epoch 3/12: loss 0.4121, val 0.3912, wf1 0.8123 *, 45s"
    assert len(short + ", run ETA 1:24:10") < 80 < len(_epoch_line(0, row, task, (0.8123, 3)))
    unvalidated = {**row, "val_loss": float("nan")}
    assert _short_epoch_line(1, unvalidated, task, None, 12) == "fold 1 epoch 3/12: loss 0.4121, 45s"


def test_run_log_tees_with_timestamps(console, monkeypatch, tmp_path):
    monkeypatch.setenv("COMP_PROGRESS", "lines")
    log = logging.getLogger("comp.train.fit")
    log.info("before the folder exists")
    home = {"path": tmp_path / "staged" / "fit.log"}
    with log_to(lambda: home["path"]):
        log.info("two\nlines")
        home["path"] = tmp_path / "final" / "fit.log"  # the run folder moved: the log follows
        log.info("after the move")
    assert console.getvalue().splitlines() == ["before the folder exists", "two", "lines", "after the move"]
    first = (tmp_path / "staged" / "fit.log").read_text().splitlines()
    assert "===" in first[0]
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d "
    assert re.fullmatch(stamp + "before the folder exists", first[1])
    assert re.fullmatch(stamp + "lines", first[3])
    assert (tmp_path / "final" / "fit.log").read_text().strip().endswith("after the move")


def test_countdown_and_times():
    clock = Countdown(10)
    assert clock.remaining is None and "ETA ?" in clock.describe()
    clock.tick(2.0)
    clock.tick(4.0)
    assert clock.remaining == pytest.approx(24.0)
    assert clock.describe() == "run 2/10 epochs, ETA 00:24"
    # The ETA follows the latest epochs: a machine busy for the first epochs does not inflate it.
    assert recent_eta([600.0, 600.0, 600.0, 60.0, 60.0, 60.0, 60.0, 60.0], 25) == pytest.approx(25 * 60.0)
    assert recent_eta([600.0, 60.0], 10, window=5) == pytest.approx(10 * 330.0)
    assert recent_eta([], 10) is None and recent_eta([5.0], 0) == 0.0
    busy = Countdown(30)
    for seconds in [600.0] * 3 + [60.0] * 7:
        busy.tick(seconds)
    assert busy.remaining == pytest.approx(20 * 60.0) and busy.describe() == "run 10/30 epochs, ETA 20:00"
    assert busy.eta() == "20:00" and Countdown(3).eta() == "?"
    now = timestamp()
    assert now.endswith("+00:00") and parse_time(now).tzinfo is not None
    assert parse_time("") is None and parse_time("garbage") is None  # a run that sorts as the oldest


# --------------------------------------------------------------------------- mosaics


def test_mosaic_tiles_and_denormalise(tmp_path):
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (6, 20, 24, 3), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    normalised = (batch.transpose(0, 3, 1, 2) / 255.0 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    assert np.abs(denormalise(normalised, mean, std).astype(int) - batch).max() <= 1
    path = tmp_path / "m.jpg"
    n = write_mosaic(path, list(batch), [f"cat\np {i / 10:.2f}" for i in range(6)], correct=[True, False] * 3)
    assert n == 6
    image = _image(path)
    assert image.shape[1] >= 3 * 112  # ceil(sqrt(6)) = 3 columns
    canvas, drawn = mosaic(list(batch) * 20, max_tiles=64)
    assert drawn == 64 and canvas.dtype == np.uint8
    grey = mosaic([np.zeros((8, 8), np.uint8)], ["a very long caption that cannot fit in one tile"])[0]
    assert grey.ndim == 3


# --------------------------------------------------------------------------- curves against scikit-learn


def _oof(n=240, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("k", [2, 4])
def test_roc_pr_curves_are_sklearns(k, tmp_path):
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y, probs = _oof(k=k)
    names = [f"c{i}" for i in range(k)]
    rocs, prs = plots.roc_pr_curves(y, probs, names)
    targets = [1] if k == 2 else list(range(k))
    assert [c.label for c in rocs] == (["c1"] if k == 2 else [f"c{i} vs rest" for i in range(k)])
    for c, roc, pr in zip(targets, rocs, prs):
        fpr, tpr, _ = roc_curve(y == c, probs[:, c])
        precision, recall, _ = precision_recall_curve(y == c, probs[:, c])
        np.testing.assert_allclose(roc.x, fpr)
        np.testing.assert_allclose(roc.y, tpr)
        np.testing.assert_allclose(pr.x, recall)
        np.testing.assert_allclose(pr.y, precision)
        assert roc.area == pytest.approx(roc_auc_score(y == c, probs[:, c]))
        assert pr.area == pytest.approx(average_precision_score(y == c, probs[:, c]))
    plots.plot_roc(rocs, tmp_path / "roc.png")
    plots.plot_pr(prs, tmp_path / "pr.png")
    _image(tmp_path / "roc.png", 300)
    _image(tmp_path / "pr.png", 300)
    # A class with no row has no curve (one-vs-rest is undefined), and nothing breaks.
    rocs, _ = plots.roc_pr_curves(np.where(y == 0, 1, y), probs, names)
    assert "c0 vs rest" not in [c.label for c in rocs] or k == 2


def test_calibration_is_sklearns(tmp_path):
    from sklearn.calibration import calibration_curve

    y, probs = _oof(k=3, seed=1)
    cal = plots.calibration_data(y, probs, bins=10)
    hit, conf = probs.argmax(1) == y, probs.max(1)
    prob_true, prob_pred = calibration_curve(hit, conf, n_bins=10)
    np.testing.assert_allclose(cal.prob_true, prob_true)
    np.testing.assert_allclose(cal.prob_pred, prob_pred)
    assert cal.counts.sum() == len(y)
    # ECE by hand: bins of width 0.1, |accuracy - confidence| weighted by the bin's share.
    edges = np.linspace(0, 1, 11)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    assert cal.ece == pytest.approx(ece)
    assert plots.expected_calibration_error(y, probs) == pytest.approx(ece)
    # Binary: the positive class's probability against the positive label.
    yb, pb = _oof(k=2, seed=2)
    binary = plots.calibration_data(yb, pb, bins=5)
    prob_true, prob_pred = calibration_curve(yb, pb[:, 1], n_bins=5)
    np.testing.assert_allclose(binary.prob_true, prob_true)
    np.testing.assert_allclose(binary.prob_pred, prob_pred)
    # Perfectly calibrated by construction: ECE 0.
    assert plots.expected_calibration_error(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 1.0, 0.0])) == 0.0
    plots.plot_calibration(cal, tmp_path / "calibration.png", "calibration")
    _image(tmp_path / "calibration.png", 300)


# --------------------------------------------------------------------------- curves and runs compared


def _history(seed, n=5, metric="qwk"):
    rng = np.random.default_rng(seed)
    e = np.arange(1, n + 1)
    return pd.DataFrame({"epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 0.5 / e, "val_loss": 1.1 / e,
                         "accuracy": 0.6 + rng.random(n) * 0.01, metric: 0.5 + rng.random(n) * 0.1,
                         "lr": 1e-3 / e, "seconds": 1.0})


def test_learning_curves_mark_best_epochs(tmp_path):
    histories = {f"fold{i}": _history(i) for i in range(3)}
    best = plots.best_epochs(histories, "qwk", "max")
    for name, frame in histories.items():
        assert best[name] == (int(frame.epoch[frame.qwk.idxmax()]), pytest.approx(frame.qwk.max()))
    assert plots.best_epochs(histories, "val_loss", "min")["fold0"][0] == 5
    plots.plot_learning_curves(histories, "qwk", tmp_path / "curves.png", mode="max")
    _image(tmp_path / "curves.png", 600)


def test_comparison_names_limits_and_figure(tmp_path):
    assert plots.comparison_path(tmp_path, ["r18", "r50"]).name == "compare_r18_vs_r50.png"
    many = plots.comparison_path(tmp_path, [f"run{i}" for i in range(6)])
    assert many.name == "compare_run0_vs_run1_vs_run2_and_3_more.png"
    lo, hi = plots.metric_limits("accuracy", [0.9, 0.9075])
    assert hi - lo >= 0.05 and 0 <= lo and hi <= 1  # a 0.0075 change does not fill the plot
    lo, hi = plots.metric_limits("accuracy", [0.99, 1.0])  # a line at exactly 1.0 lies inside the frame
    assert 1.0 < hi < 1.01 and lo == pytest.approx(0.95 - 0.04 * 0.05)
    lo, hi = plots.metric_limits("val_loss", [0.30, 0.31])
    assert -0.02 < lo < 0.0 and hi > 0.31  # ... and one at 0
    assert plots.metric_limits("mae", [float("nan")]) is None
    runs = {"a": {f"fold{i}": _history(i, metric="f1") for i in range(2)},
            "b": {"fold0": _history(9, metric="f1").assign(roc_auc=0.7)}}
    assert plots.shared_metrics(runs) == ["accuracy", "f1"]
    path = plots.comparison_path(tmp_path, list(runs))
    drawn = plots.plot_comparison(runs, path, summaries={"a": {"accuracy": 0.6, "f1": 0.55},
                                                          "b": {"accuracy": 0.6075, "f1": 0.5}})
    assert drawn == ["accuracy", "f1"]
    _image(path, 600)
    # Identical runs are named as such (the later one drawn inside the earlier); the recipe keys that differ.
    runs["c"] = {name: frame.copy() for name, frame in runs["a"].items()}
    assert plots._same_curves(runs, ["train_loss", "val_loss", "accuracy", "f1"]) == {"c": "a"}
    differences = {"model.name": {"a": "resnet18", "b": "resnet50 (--set)", "c": "resnet18"}}
    plain = plots.plot_comparison(runs, tmp_path / "plain.png")
    assert plots.plot_comparison(runs, tmp_path / "table.png", differences=differences) == plain
    assert _image(tmp_path / "table.png").shape[0] > _image(tmp_path / "plain.png").shape[0]  # the table below
    assert plots.plot_comparison(runs, tmp_path / "one.png", metric="f1") == ["f1"]
    plots.plot_confusions({"a": np.eye(3) * 5, "b": np.ones((3, 3))}, ["x", "y", "z"], tmp_path / "cms.png")
    image = _image(tmp_path / "cms.png", 300)
    assert image.shape[1] > 1.5 * image.shape[0]  # side by side


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_missing_is_one_clear_message():
    from comp.recipe import LogConfig, Recipe
    from comp.train import tensorboard

    tensorboard.require(Recipe())  # off: nothing needed
    try:
        import tensorboard as _  # noqa: F401
        pytest.skip("tensorboard is installed here")
    except ImportError:
        pass
    with pytest.raises(CompError, match=re.escape("pip install comp[tensorboard]")):
        tensorboard.require(Recipe(log=LogConfig(tensorboard=True)))


class FakeWriter:
    """Records what a SummaryWriter was asked to write."""

    made: list[FakeWriter] = []

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.scalars, self.images, self.closed = [], [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), int(step)))

    def add_image(self, tag, image, step, dataformats="CHW"):
        assert dataformats == "HWC" and image.dtype == np.uint8 and image.shape[2] == 3
        self.images.append((tag, image.shape, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_fold_board_with_a_fake_writer(monkeypatch, tmp_path):
    from comp.recipe import LogConfig, Recipe
    from comp.train import tensorboard

    monkeypatch.setattr(tensorboard, "summary_writer_class", lambda: FakeWriter)
    FakeWriter.made.clear()
    board = tensorboard.FoldBoard.open(Recipe(log=LogConfig(tensorboard=True)), tmp_path / "tb" / "fold0")
    board.step(1, 0.5, 1e-3)
    board.epoch({"epoch": 1, "train_loss": 0.5, "val_loss": float("nan"), "accuracy": 0.75})
    board.confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], 1)
    board.close()
    writer = FakeWriter.made[0]
    assert writer.log_dir.endswith("fold0") and writer.closed
    assert ("step/train_loss", 0.5, 1) in writer.scalars and ("epoch/accuracy", 0.75, 1) in writer.scalars
    assert not any(t == "epoch/val_loss" for t, _, _ in writer.scalars)  # NaN is not logged
    assert writer.images[0][0] == "valid/confusion"
    off = tensorboard.FoldBoard.open(Recipe(), tmp_path / "x")
    off.step(1, 0.5, 1e-3)
    assert not off.on


# --------------------------------------------------------------------------- through the command line


def _cli(*args, timeout=420):
    """``python -m comp ...`` in a process of its own with stdout and stderr as pipes: not a terminal,
    as under nohup or SLURM (forked from one that has imported torch: conftest.run_comp)."""
    from types import SimpleNamespace

    from tests.conftest import run_comp

    code, out, err = run_comp([str(a) for a in args], Path.cwd(), timeout=timeout,
                              prelude="import os\nos.environ.pop('COMP_PROGRESS', None)\n")
    assert code == 0, out + err
    return SimpleNamespace(stdout=out, stderr=err)


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory):
    """A finished 2-fold run of the tiny competition, fitted through the CLI (one epoch)."""
    from tests.conftest import write_competition, write_recipe

    base = tmp_path_factory.mktemp("views")
    recipe = write_recipe(base / "tiny.toml", write_competition(base / "comp"), extra="""
        [cv]
        scheme = "kfold"
        folds = 2
        """)
    runs = base / "runs"
    fit = _cli("fit", recipe, "--runs", runs, "--set", "train.epochs=1")
    return runs / "tiny", recipe, fit


def test_fit_through_the_cli_shows_progress_logs_and_pictures(kfold_run):
    run, _, fit = kfold_run
    # Progress as plain lines on a pipe: count, total, images/s and ETA, for training and validation.
    for fold in (0, 1):
        assert re.search(rf"^fold {fold} epoch 1/1: 16/16 img \(100%\), +[\d.]+(?:img/s|s/img), elapsed \S+, ETA \S+",
                         fit.stderr, re.M), fit.stderr
        assert re.search(rf"^fold {fold} epoch 1/1 validation: 18/18 img \(100%\)", fit.stderr, re.M), fit.stderr
    assert "\r" not in fit.stderr
    assert re.search(r"^checking images: 45/45 img", fit.stderr, re.M) or "checking images: 36/36" in fit.stderr
    epoch_lines = [line for line in fit.stdout.splitlines() if re.match(r"fold \d epoch +1 ", line)]
    assert len(epoch_lines) == 2 and "(run 1/2 epochs, ETA" in epoch_lines[0] and "train_acc" in epoch_lines[0]
    # fit.log: every line fit printed, timestamped, the epoch lines among them.
    log = (run / "fit.log").read_text()
    for line in epoch_lines:
        assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* " + re.escape(line) + "$", log, re.M), log
    assert fit.stdout.strip().splitlines()[-1] == f"report: {run / 'report.md'}"  # fit ends with the report
    # history.csv: train accuracy beside the loss; run.json and result.json: ISO 8601 times.
    history = pd.read_csv(run / "fold0" / "history.csv")
    assert history.train_accuracy.between(0, 1).all()
    info = json.loads((run / "run.json").read_text())
    result = json.loads((run / "fold0" / "result.json").read_text())
    for value in (info["created"], info["updated"], result["finished"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", value), value
    # train_batch.jpg: the first batch (8 images), each a tile.
    batch = _image(run / "train_batch.jpg")
    assert "train_batch.jpg: 8 of the first batch's 8 training images" in fit.stdout
    assert batch.shape == mosaic([np.zeros((4, 4, 3), np.uint8)] * 8, ["x"] * 8)[0].shape
    # The report's pictures, embedded in report.md with the per-class F1.
    for name in ("curves.png", "roc.png", "pr.png", "calibration.png", "confusion_normalised.png"):
        _image(run / name, 300)
        assert f"]({name})" in (run / "report.md").read_text()
    _image(run / "val_predictions.jpg")
    assert "| class | precision | recall | F1 | support |" in (run / "report.md").read_text()


def test_predict_through_the_cli_shows_progress_and_logs(kfold_run, tmp_path):
    run, _, _ = kfold_run
    done = _cli("predict", "--runs", run.parent, "--run", "tiny", "--tta", "--out", tmp_path / "sub.csv")
    # The prediction pass (its line names the run(s), checkpoints and views): count, rate, ETA.
    assert re.search(r"^predict .*\b(2 checkpoint|fold1/best).*: 9/9 img \(100%\), +[\d.]+(?:img/s|s/img), "
                     r"elapsed \S+, ETA \S+", done.stderr, re.M), done.stderr
    assert re.search(r"^checking images: 9/9 img \(100%\)", done.stderr, re.M), done.stderr
    assert "\r" not in done.stderr
    log = (run / "predict.log").read_text()
    assert "=== comp predict" in log and "wrote " in log and "2 checkpoint(s) × 3 view(s)" in log


def test_predict_called_from_python_is_quiet_and_keeps_its_log(kfold_run, tmp_path, capsys, monkeypatch):
    """A library caller that set up no logging: no message, no progress; predict.log gets them all."""
    import shutil

    from comp.predict.predict import predict

    monkeypatch.setenv("COMP_PROGRESS", "lines")
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(kfold_run[0], run)
    (run / "predict.log").unlink(missing_ok=True)
    out = predict([run], out=tmp_path / "sub.csv", tta=False)
    captured = capsys.readouterr()
    assert out.is_file() and captured.out == "" and "img" not in captured.err, captured
    log = (run / "predict.log").read_text().splitlines()
    assert "===" in log[0] and any("2 checkpoint(s) × 1 view(s)" in line for line in log)
    assert log[-1].endswith(f" wrote {out}")


def test_cv_report_latest_run_full_runs_and_one_competition(kfold_run, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from comp.cli import app

    run, recipe, _ = kfold_run
    runs = tmp_path / "runs"
    shutil.copytree(run, runs / "tiny")
    twin = runs / "twin"
    shutil.copytree(run, twin)  # a second finished k-fold run to compare, with another LR given by --set
    info = json.loads((twin / "run.json").read_text())
    (twin / "run.json").write_text(json.dumps({**info, "name": "twin", "updated": 1.7e9,  # an old float time
                                               "overrides": info["overrides"] + ["optim.lr=0.01"]}))
    toml = (twin / "recipe.toml").read_text()
    assert re.search(r"(?m)^lr = 0\.003$", toml), toml
    (twin / "recipe.toml").write_text(re.sub(r"(?m)^lr = 0\.003$", "lr = 0.01", toml))
    other = runs / "retino"  # the same classes, but another competition folder
    shutil.copytree(run, other)
    root = str(tmp_path / "other_comp")
    shutil.copytree(tomllib_root(run), root)
    (other / "recipe.toml").write_text(re.sub(r'(?m)^root = ".*"$', f'root = "{root}"',
                                              (other / "recipe.toml").read_text()))
    (other / "run.json").write_text(json.dumps({**info, "name": "retino", "updated": 1.6e9}))
    cli = CliRunner()
    full = cli.invoke(app, ["fit", str(recipe), "--runs", str(runs), "--set", "cv.scheme=full", "--set",
                            'name="whole"', "--set", "train.epochs=1"])
    assert full.exit_code == 0, full.output
    # A full run gets its learning curves from history.csv when fit ends, and a report that says the rest cannot be.
    assert f"report: {runs / 'whole' / 'report.md'}" in full.output
    _image(runs / "whole" / "curves.png", 300)
    assert "No out-of-fold rows (the \"full\" scheme" in (runs / "whole" / "report.md").read_text()
    (runs / "whole" / "curves.png").unlink()
    # Without --run: the latest run (the full one), said with its task; exit 0 with what it can show.
    result = cli.invoke(app, ["cv-report", "--runs", str(runs)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert re.search(rf"no --run: the latest run under {re.escape(str(runs))}/, whole \(.*multiclass", result.output), \
        result.output
    assert re.search(r"whole .*: no out-of-fold rows \(the \"full\" scheme .*\): no metrics", result.output)
    _image(runs / "whole" / "curves.png", 300)
    assert "runs side by side" not in result.output and not list(runs.glob("compare_*"))
    result = cli.invoke(app, ["cv-report", "--runs", str(runs), "--run", "whole"])
    assert result.exit_code == 0 and "no out-of-fold rows" in result.output, result.output
    # Several runs: only one competition's are compared; the others are named; what differs is listed.
    result = cli.invoke(app, ["cv-report", "--runs", str(runs), "--run", "tiny", "--run", "twin", "--run", "retino",
                              "--run", "whole"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "not compared: whole (no out-of-fold rows)" in result.output
    assert re.search(r"compared only the runs of .*: tiny, twin; left out retino \(another competition: "
                     + re.escape(root), result.output), result.output
    assert re.search(r"(?m)^optim\.lr +0\.003 +0\.01 \(--set\)$", result.output), result.output
    assert "| `optim.lr` | 0.003 | 0.01 (--set) |" in (runs / "comparison.md").read_text()
    figure = runs / "compare_tiny_vs_twin.png"
    _image(figure, 500)
    _image(runs / "compare_tiny_vs_twin_confusion.png", 300)
    assert (runs / "tiny" / "report.log").read_text().count("out-of-fold metrics") == 1
    # --out and --metric choose the file and the panel.
    out = tmp_path / "mine.png"
    result = cli.invoke(app, ["cv-report", "--runs", str(runs), "--run", "tiny", "--run", "twin",
                              "--metric", "accuracy", "--out", str(out)])
    assert result.exit_code == 0, result.output
    _image(out, 300)


def test_a_run_without_oof_rows_gets_its_curves_and_a_training_report(kfold_run, tmp_path, caplog):
    import shutil

    from comp.evaluate.report import report_one

    run = tmp_path / "tiny"
    shutil.copytree(kfold_run[0], run)
    for name in ("oof.csv", "curves.png", "report.md"):
        (run / name).unlink()
    caplog.set_level(logging.INFO, logger="comp")
    assert report_one(run) is None
    _image(run / "curves.png", 300)
    text = (run / "report.md").read_text()
    assert "No out-of-fold rows (no fold has finished validating), so no metrics" in text
    assert "| fold | epoch | train_loss | train_accuracy | lr | seconds |" in text
    history = pd.read_csv(run / "fold1" / "history.csv")
    assert f"| fold1 | 1 | {history.train_loss.iloc[-1]:.4f} | {history.train_accuracy.iloc[-1]:.4f} |" in text
    assert "](curves.png)" in text and any("no out-of-fold rows" in line for line in caplog.messages)


def tomllib_root(run):
    """The competition folder a run's recipe.toml names."""
    import tomllib

    return tomllib.loads((run / "recipe.toml").read_text())["data"]["root"]


def _copied_run_all_wrong(kfold_run, tmp_path):
    """A copy of the k-fold run and OOF probabilities that put 0.8 on a wrong class for every row."""
    import shutil

    from comp.data.table import ClassMap
    from comp.run.folder import RunDir

    run = RunDir(tmp_path / "tiny")
    shutil.copytree(kfold_run[0], run.path)
    oof = run.read_oof()
    classes = ClassMap(("cat", "dog", "eel"))
    y = classes.encode(oof["label"].to_numpy())
    probs = np.full((len(y), 3), 0.1)
    probs[np.arange(len(y)), (y + 1) % 3] = 0.8
    return run, oof, classes, y, probs


def test_oof_mistakes_mosaic_from_a_hand_made_oof(kfold_run, tmp_path):
    from comp.evaluate.views import mistakes, write_oof_mosaics

    run, oof, classes, y, probs = _copied_run_all_wrong(kfold_run, tmp_path)  # every row wrong, with confidence 0.8 ...
    probs[:3] = [0.05, 0.05, 0.9]  # ... and three more confident ones first
    order = mistakes(y, probs)
    wrong_first = [i for i in range(3) if y[i] != 2]
    assert list(order[:len(wrong_first)]) == wrong_first and len(order) == min(32, (probs.argmax(1) != y).sum())
    written = write_oof_mosaics(run, run.recipe(), classes, oof, y, probs)
    assert written == [run.oof_mistakes_jpg, run.val_predictions_jpg]
    _image(run.oof_mistakes_jpg)


def test_mosaic_captions_name_true_class_probability_and_loss(kfold_run, tmp_path, monkeypatch):
    import math

    from comp.data.mosaic import fit_text
    from comp.evaluate import views

    # A path id (C-NMC's Path column) shows its file name; the true class's probability and the loss follow.
    caption = views.tile_caption("C-NMC/validation_data/fold_0/UID_H10_43_1_hem.bmp", "ALL", "hem", 0.12, 0.88)
    assert caption.split("\n") == ["UID_H10_43_1_hem.bmp", "true 0.12 ALL", "pred 0.88 hem",
                                    f"loss {-math.log(0.12):.2f}"]
    assert views.tile_caption("tr001", "cat", "cat", 0.9, 0.9).split("\n")[0] == "tr001"
    assert views.tile_caption("a\\b\\c.png", "x", "y", 1.0, 0.0).endswith("loss 0.00")
    # A name too long for its tile keeps its end (what tells files apart), marked "..".
    cut = fit_text("C-NMC/validation_data/fold_0/UID_H10_43_1_hem.bmp", 100, keep_end=True)
    assert cut.startswith("..") and cut.endswith("_hem.bmp") and len(cut) < 30
    assert fit_text("short", 100, keep_end=True) == "short"
    # Through write_oof_mosaics: the captions each tile gets, the first line cut at its start.
    run, oof, classes, y, probs = _copied_run_all_wrong(kfold_run, tmp_path)
    drawn = []
    monkeypatch.setattr(views, "write_mosaic", lambda path, images, captions, **kw: drawn.append((path, captions, kw)))
    views.write_oof_mosaics(run, run.recipe(), classes, oof, y, probs)
    path, captions, kw = drawn[0]
    assert path == run.oof_mistakes_jpg and kw["name_first"] is True
    row = views.mistakes(y, probs)[0]
    true, pred = classes.labels[y[row]], classes.labels[(y[row] + 1) % 3]
    assert captions[0] == f"{oof['id'][row]}\ntrue 0.10 {true}\npred 0.80 {pred}\nloss {-math.log(0.1):.2f}"


def test_recipe_differences_name_the_keys_and_the_overrides():
    import dataclasses

    from comp.evaluate.report import markdown_grid, recipe_differences, text_grid
    from comp.recipe import Recipe

    base = Recipe(name="a")
    other = dataclasses.replace(base, name="b", model=dataclasses.replace(base.model, name="resnet50"),
                                train=dataclasses.replace(base.train, batch_size=16))
    found = recipe_differences({"a": base, "b": other, "c": dataclasses.replace(base, name="c")},
                               {"b": ["model.name=resnet50"]})
    assert found == {"model.name": {"a": "resnet18", "b": "resnet50 (--set)", "c": "resnet18"},
                     "train.batch_size": {"a": "32", "b": "16", "c": "32"}}
    assert recipe_differences({"a": base, "b": dataclasses.replace(base, name="b")}) == {}  # names aside
    assert text_grid(found, ["a", "b", "c"]).splitlines()[1].split() == ["model.name", "resnet18", "resnet50",
                                                                         "(--set)", "resnet18"]
    assert "| `train.batch_size` | 32 | 16 | 32 |" in markdown_grid(found, ["a", "b", "c"])


def test_ordinal_mistakes_farthest_grade_first():
    from comp.evaluate.views import mistakes

    y = np.array([0, 0, 4, 2, 1, 3])
    probs = np.full((6, 5), 0.05)
    probs[0, 1] = 0.8  # one grade off, very confident
    probs[1, 4] = 0.6  # four grades off
    probs[2, 0] = 0.4  # four grades off, less confident
    probs[3, 2] = 0.9  # right
    probs[4, 3] = 0.7  # two grades off
    probs[5, 2] = 0.5  # one grade off, less confident
    assert list(mistakes(y, probs, ordinal=True)) == [1, 2, 4, 0, 5]
    assert list(mistakes(y, probs)) == [0, 4, 1, 5, 2]  # unordered classes: by confidence alone


def test_report_lists_the_most_confused_pairs(kfold_run):
    from comp.evaluate.report import confused_pairs
    from comp.metrics import confusion_matrix

    cm = np.array([[5, 3, 0], [1, 6, 1], [4, 0, 2]])
    assert confused_pairs(cm, ["a", "b", "c"]) == [("c", "a", 4, pytest.approx(4 / 6)),
                                                   ("a", "b", 3, pytest.approx(3 / 8)),
                                                   ("b", "a", 1, pytest.approx(1 / 8)),  # ties: class order
                                                   ("b", "c", 1, pytest.approx(1 / 8))]
    assert confused_pairs(np.eye(3) * 4, ["a", "b", "c"]) == []
    # report.md of the fitted run: the pairs of its own out-of-fold confusion matrix.
    run = kfold_run[0]
    oof = pd.read_csv(run / "oof.csv", dtype={"label": str, "pred": str})
    labels = ["cat", "dog", "eel"]
    probs = oof[[f"prob_{c}" for c in labels]].to_numpy()
    cm = confusion_matrix(oof["label"].map(labels.index).to_numpy(), probs.argmax(1), 3)
    text = (run / "report.md").read_text()
    assert "## Most confused" in text
    pairs = confused_pairs(cm, labels)
    if pairs:
        t, p, c, share = pairs[0]
        assert f"| {t} | {p} | {c} | {share:.1%} |" in text
    else:
        assert "No out-of-fold mistakes." in text
    report = json.loads((run / "report.json").read_text())
    assert [(d["true"], d["predicted"], d["rows"]) for d in report["most_confused"]] == [p[:3] for p in pairs]


def test_tensorboard_through_fit_with_a_fake_writer(monkeypatch, tmp_path, recipe_file):
    from typer.testing import CliRunner

    from comp.cli import app
    from comp.recipe import load_recipe
    from comp.train import tensorboard
    from comp.run.life import FitRequest
    from comp.train.fit import fit

    # Without the package: one clear message, exit 2, nothing trained.
    try:
        import tensorboard as _  # noqa: F401
    except ImportError:
        result = CliRunner().invoke(app, ["fit", str(recipe_file), "--runs", str(tmp_path / "r0"), "--set",
                                          "log.tensorboard=true"])
        assert result.exit_code == 2 and "pip install comp[tensorboard]" in result.output, result.output
        assert not (tmp_path / "r0").exists()
    monkeypatch.setattr(tensorboard, "summary_writer_class", lambda: FakeWriter)
    FakeWriter.made.clear()
    recipe = load_recipe(recipe_file, ["log.tensorboard=true", "train.epochs=2"])
    run = fit(recipe, FitRequest(runs_root=tmp_path / "runs")).path
    (writer,) = FakeWriter.made
    assert writer.log_dir == str(run / "tb" / "fold0") or writer.log_dir.endswith("/tb/fold0")
    steps = [s for t, _, s in writer.scalars if t == "step/train_loss"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 2 * 3  # 28 rows, batch 8: 3 steps an epoch
    assert {"epoch/train_loss", "epoch/train_accuracy", "epoch/val_loss", "epoch/accuracy", "epoch/lr"} <= {
        t for t, _, _ in writer.scalars}
    assert [t for t, _, _ in writer.images].count("valid/confusion") == 2 and ("train/batch" in
                                                                                 [t for t, _, _ in writer.images])
    assert writer.closed
