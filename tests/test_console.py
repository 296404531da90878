"""Messages through logging (issue 24, item 4): the console handler, run logs, quiet library use, progress levels."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

import pytest

from comp.console import ConsoleHandler, log_to, progress, progress_enabled, quiet_rank, setup_console

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d "
log = logging.getLogger("comp.evaluate.something")  # a module's logger, as comp's modules name theirs


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def clean_comp_logger():
    """Each test starts as a library caller would: "comp" unset, no handler; and ends so."""
    comp, bars = logging.getLogger("comp"), logging.getLogger("comp.progress")
    saved = (comp.level, comp.propagate, list(comp.handlers), bars.level)
    for h in saved[2]:
        comp.removeHandler(h)
    comp.setLevel(logging.NOTSET)
    comp.propagate = True
    bars.setLevel(logging.NOTSET)
    yield
    for h in list(comp.handlers):
        comp.removeHandler(h)
    for h in saved[2]:
        comp.addHandler(h)
    comp.setLevel(saved[0])
    comp.propagate = saved[1]
    bars.setLevel(saved[3])


def test_the_console_shows_messages_and_the_run_log_keeps_them_stamped(tmp_path, monkeypatch):
    monkeypatch.setenv("COMP_PROGRESS", "lines")  # stdout a pipe
    out = io.StringIO()
    undo = setup_console(stream=out)
    log.info("before the run folder exists")
    with log_to(tmp_path / "run" / "fit.log"):
        log.info("two\nlines")
        log.warning("warning: something odd")
        log.debug("not at INFO")
    log.info("after the run")
    undo()
    assert out.getvalue().splitlines() == ["before the run folder exists", "two", "lines", "warning: something odd",
                                           "after the run"]
    lines = (tmp_path / "run" / "fit.log").read_text().splitlines()
    # The header names the command and its arguments (an xdist worker has none).
    assert re.fullmatch(STAMP + r"=== comp( .*)? \(pid \d+\)", lines[0])
    assert [re.fullmatch(STAMP + "(.*)", line).group(1) for line in lines[1:]] == [
        "before the run folder exists", "two", "lines", "warning: something odd"]  # the earlier line replayed
    log.info("undone: nothing shows")
    assert "undone" not in out.getvalue() and not logging.getLogger("comp").handlers


def test_a_brief_message_is_short_on_a_terminal_and_full_in_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("COMP_PROGRESS", raising=False)
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    full = "fold 0 epoch   3  train_loss 0.4121  train_acc 0.8600  val_loss 0.3912  acc 0.8700  qwk 0.8123  45.2s"
    short = "fold 0 epoch 3/12: loss 0.4121, val 0.3912, qwk 0.8123, 45s"
    tty, pipe = _Tty(), io.StringIO()
    comp = logging.getLogger("comp")
    comp.addHandler(ConsoleHandler(tty))
    comp.addHandler(ConsoleHandler(pipe))
    comp.setLevel(logging.INFO)
    with log_to(tmp_path / "fit.log"):
        log.info(full, extra={"brief": short})
    assert tty.getvalue() == short + "\n" and pipe.getvalue() == full + "\n"
    assert re.fullmatch(STAMP + re.escape(full), (tmp_path / "fit.log").read_text().splitlines()[-1])


def test_the_run_log_follows_its_folder_and_keeps_lines_until_there_is_one(tmp_path):
    home = {"path": None}
    with log_to(lambda: home["path"], replay=False):
        log.info("before the folder exists")
        home["path"] = tmp_path / "staged" / "fit.log"
        log.info("staged")
        home["path"] = tmp_path / "final" / "fit.log"  # the staged run was promoted: the log follows
        log.info("after the move")
    staged = (tmp_path / "staged" / "fit.log").read_text().splitlines()
    assert "===" in staged[0] and [s.split(" ", 1)[1] for s in staged[1:]] == ["before the folder exists", "staged"]
    assert [s.split(" ", 1)[1] for s in (tmp_path / "final" / "fit.log").read_text().splitlines()] == ["after the move"]


def test_a_run_log_opened_twice_is_written_once_and_a_broken_one_is_dropped(tmp_path, capsys):
    with log_to(tmp_path / "predict.log"), log_to(tmp_path / "predict.log"):
        log.info("once")
    assert (tmp_path / "predict.log").read_text().count("once") == 1
    (tmp_path / "fifo.log").mkdir()  # not a file: the write fails
    with log_to(tmp_path / "fifo.log"), log_to(tmp_path / "other.log"):
        log.info("first")
        log.info("second")
    err = capsys.readouterr().err
    assert err.count("not logging there any more") == 1 and "fifo.log" in err
    assert (tmp_path / "other.log").read_text().count("second") == 1  # the other log goes on


def test_a_library_caller_gets_warnings_only_and_no_progress(tmp_path):
    """Without set-up, the standard library's default: nothing at INFO, warnings on stderr."""
    code = ("import logging\n"
            "from comp.console import progress, say\n"
            "log = logging.getLogger('comp.predict.predict')\n"
            "log.info('an info line')\n"
            "for _ in progress(range(3), desc='a pass'):\n"
            "    pass\n"
            "log.warning('warning: careful')\n"
            "with log_to(sys.argv[1]):\n"  # a run log wants every line: the console still gets warnings only
            "    log.info('kept in the file')\n"
            "    log.warning('warning: in both')\n")
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom comp.console import log_to\n" + code,
                           str(tmp_path / "fit.log")], capture_output=True, text=True, timeout=60,
                          env={"COMP_PROGRESS": "lines", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "warning: careful\nwarning: in both\n"
    assert [line.split(" ", 1)[1] for line in (tmp_path / "fit.log").read_text().splitlines()[1:]] == [
        "kept in the file", "warning: in both"]


def test_a_library_caller_s_own_logging_set_up_sees_what_it_asked_for(tmp_path):
    """basicConfig at WARNING: a run log open does not bring comp's INFO lines to the caller's handler."""
    code = ("import logging, sys\n"
            "from comp.console import log_to\n"
            "logging.basicConfig(format='%(levelname)s %(message)s')\n"
            "log = logging.getLogger('comp.train.fit')\n"
            "with log_to(sys.argv[1]):\n"
            "    log.info('only in the file')\n"
            "    log.warning('warning: shown')\n"
            "logging.getLogger().setLevel(logging.INFO)\n"
            "with log_to(sys.argv[1]):\n"
            "    log.info('asked for')\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "fit.log")], capture_output=True, text=True,
                          timeout=60, env={"PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["WARNING warning: shown", "INFO asked for"]
    assert (tmp_path / "fit.log").read_text().count("only in the file") == 1


def test_a_run_log_in_library_use_is_complete_and_the_console_stays_quiet(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COMP_PROGRESS", "lines")
    assert not progress_enabled()
    with log_to(tmp_path / "fit.log"):
        log.info("kept in the file")
        for _ in progress(range(3), desc="a pass"):
            pass
        assert not progress_enabled()  # the file wants the messages, not progress
    captured = capsys.readouterr()
    assert captured.out == "" and "a pass" not in captured.err
    assert "kept in the file" in (tmp_path / "fit.log").read_text()
    assert logging.getLogger("comp").level == logging.NOTSET  # as it was


def test_progress_follows_the_level_and_a_quiet_rank_silences_both(monkeypatch):
    monkeypatch.setenv("COMP_PROGRESS", "lines")
    out, bars = io.StringIO(), io.StringIO()
    undo = setup_console(stream=out)
    assert progress_enabled()
    for _ in progress(range(3), desc="shown", file=bars):
        pass
    logging.getLogger("comp.progress").setLevel(logging.WARNING)  # messages without progress
    for _ in progress(range(3), desc="hidden", file=bars):
        pass
    log.info("still said")
    logging.getLogger("comp.progress").setLevel(logging.NOTSET)
    quiet_rank()  # a torchrun rank other than 0
    for _ in progress(range(3), desc="rank 1", file=bars):
        pass
    log.info("rank 1 says nothing")
    log.warning("warning: but warns")
    undo()
    assert "shown: 3/3" in bars.getvalue() and "hidden" not in bars.getvalue() and "rank 1" not in bars.getvalue()
    assert out.getvalue().splitlines() == ["still said", "warning: but warns"]


def test_the_command_line_sets_up_the_console_for_each_command_and_undoes_it(tmp_path):
    from typer.testing import CliRunner

    from comp.cli import app

    result = CliRunner().invoke(app, ["cv-report", "--runs", str(tmp_path / "none")])
    assert result.exit_code == 2 and "error:" in result.output
    comp = logging.getLogger("comp")
    assert comp.handlers == [] and comp.level == logging.NOTSET and comp.propagate


def test_a_run_log_opened_again_by_the_same_command_goes_on(tmp_path, monkeypatch):
    """comp fit: the library fit writes fit.log; the command's closing lines follow, with no second
    line naming the command and nothing replayed."""
    monkeypatch.setenv("COMP_PROGRESS", "lines")
    undo = setup_console(stream=io.StringIO())
    log.info("said first")
    with log_to(tmp_path / "fit.log"):
        log.info("the fit")
    with log_to(tmp_path / "fit.log"):
        log.info("done")
    with log_to(tmp_path / "predict.log"):  # another file: the command's lines so far come first
        log.info("predicted")
    undo()
    assert [s.split(" ", 1)[1] for s in (tmp_path / "fit.log").read_text().splitlines()[1:]] == [
        "said first", "the fit", "done"]
    assert [s.split(" ", 1)[1] for s in (tmp_path / "predict.log").read_text().splitlines()[1:]] == [
        "said first", "the fit", "done", "predicted"]


def test_muted_says_warnings_only_and_restores_the_level(monkeypatch):
    from comp.console import muted

    monkeypatch.setenv("COMP_PROGRESS", "lines")
    out = io.StringIO()
    undo = setup_console(stream=out)
    with muted():
        log.info("a set-up line")
        log.warning("warning: kept")
    log.info("the command's own line")
    undo()
    assert out.getvalue().splitlines() == ["warning: kept", "the command's own line"]
    with muted():  # library use: as it was after
        pass
    assert logging.getLogger("comp").level == logging.NOTSET
