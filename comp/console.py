"""What a long command shows while it works and keeps afterwards: progress, run logs, the run's ETA.

:func:`progress` is tqdm in a terminal: a live bar with the count, images/s and the ETA. Anywhere
else (output redirected to a file, nohup, SLURM, a notebook cell) tqdm would redraw one line with
carriage returns, or stay silent; there the same figures come as plain lines instead, one every
~30 seconds or 10 % of the work (whichever comes first) and one at the end, so a log shows how
far an epoch is. A terminal that reports no width (``script -qc``, some CI runners: 0 columns)
cannot draw a bar either and gets the lines. ``COMP_PROGRESS=bar|lines|off`` overrides the choice.

:func:`progress_enabled` decides whether anything shows: the ``comp.progress`` logger enabled for
INFO. The command line sets "comp" to INFO (:func:`setup_console`); a library caller that sets no
level gets no progress (and only warnings, the standard library's default); a torchrun rank other
than 0 calls :func:`quiet_rank`, which turns off both.

Messages go through :mod:`logging`: each module logs to ``logging.getLogger(__name__)``, under the
"comp" logger. :class:`ConsoleHandler` (what :func:`setup_console` attaches) prints them through
:func:`say`, so a live bar is cleared first and redrawn after, never written into; a record with a
short form (``extra={"brief": ...}``) shows that on a terminal. :func:`log_to` appends them,
timestamped and in full, to a run's log file (fit.log, predict.log, report.log) while a command
works on the run. A library caller that sets up no logging sees warnings only (the standard
library's default), and the run logs still get every line.

:class:`Countdown` is the whole run's ETA (folds × epochs) from the mean of the last few epochs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from comp.atomic import append_text
from comp.errors import CompError

LINE_INTERVAL = 30.0  # seconds between progress lines outside a terminal ...
LINE_SHARE = 0.1  # ... or this share of the total, whichever comes first,
LINE_GAP = 1.0  # but not sooner than this after the last line (a 2-second pass prints only its end)
MIN_BAR_COLUMNS = 20  # a terminal narrower than this (or of 0 rows: unsized) gets lines, not a bar
ETA_WINDOW = 5  # the run's ETA is the mean of this many latest epochs times the epochs left
_LINE_FORMAT = ("{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, "
                "ETA {remaining}{postfix}")
_LINE_FORMAT_OPEN = "{desc}: {n_fmt} {unit}, {rate_fmt}, elapsed {elapsed}{postfix}"


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "img", enabled: bool = True, file: TextIO | None = None,
             interval: float = LINE_INTERVAL, share: float = LINE_SHARE, gap: float = LINE_GAP) -> tqdm:
    """A progress bar (in a terminal) or progress lines (elsewhere) over ``iterable``, or a
    manual one (``total``, then ``update(n)``); off when not ``enabled`` or not
    :func:`progress_enabled` (a library caller that set no logging level, a quiet rank).

    Use it as a context manager or close it: closing prints the last line outside a terminal.
    """
    file = file if file is not None else sys.stderr
    mode = progress_mode(file) if enabled and progress_enabled() else "off"
    if mode == "off":
        return tqdm(iterable, total=total, disable=True)
    if mode == "bar":
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=file, leave=False, dynamic_ncols=True)
    return ProgressLines(iterable, total=total, desc=desc, unit=unit, file=file, interval=interval, share=share,
                         gap=gap)


def progress_mode(file: TextIO | None = None) -> str:
    """"bar" on a terminal that reports a usable size, "lines" elsewhere (a file, a pipe, a
    terminal of 0 columns or rows); ``COMP_PROGRESS`` (bar, lines, off) overrides."""
    forced = os.environ.get("COMP_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    file = file if file is not None else sys.stderr
    try:
        if not file.isatty():
            return "lines"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "lines"
    columns, rows = terminal_size(file)
    small = (columns is not None and columns < MIN_BAR_COLUMNS) or (rows is not None and rows < 1)
    return "lines" if small else "bar"


def terminal_size(file: TextIO) -> tuple[int | None, int | None]:
    """(columns, rows): the smallest the environment (``COLUMNS``, ``LINES``) or the terminal of
    ``file`` reports; None where neither says. A pseudo-terminal nobody sized (``script -qc``
    with no terminal around it) reports 0 × 0, where tqdm draws nothing at all."""
    sizes: list[tuple[int | None, int | None]] = [(_env_int("COLUMNS"), _env_int("LINES"))]
    try:
        size = os.get_terminal_size(file.fileno())
        sizes.append((size.columns, size.lines))
    except (AttributeError, ValueError, OSError):  # no file descriptor (a wrapped stream), not a terminal
        pass
    columns = [c for c, _ in sizes if c is not None]
    rows = [r for _, r in sizes if r is not None]
    return (min(columns) if columns else None), (min(rows) if rows else None)


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def say(message: str, file: TextIO | None = None) -> None:
    """Print a message (to stdout by default) through tqdm's writer: a live bar on the same
    terminal is cleared first and redrawn below the message, so the two never share a line."""
    tqdm.write(str(message), file=file if file is not None else sys.stdout)


class ProgressLines(tqdm):
    """tqdm's figures (count, total, rate, elapsed, ETA) as whole lines, for a file or a pipe.

    A line is written when ``interval`` seconds have passed since the last one, when another
    ``share`` of the total is done (but ``gap`` seconds after the last line at the soonest), and
    when the bar closes (if anything is new); never a carriage return or a partial line. tqdm
    still counts and times; only its display changes.
    """

    def __init__(self, iterable: Iterable | None = None, *, interval: float = LINE_INTERVAL,
                 share: float = LINE_SHARE, gap: float = LINE_GAP, **kwargs: Any) -> None:
        self._interval, self._share, self._gap = interval, share, gap
        self._shown_n, self._shown_t, self._next_n = 0, time.monotonic(), 0.0
        total = kwargs.get("total")
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        fmt = _LINE_FORMAT if total else _LINE_FORMAT_OPEN
        # Every update reaches display(), which decides; smoothing 0: the rate is the mean so far.
        kwargs.update(total=total, bar_format=fmt, mininterval=0, miniters=1, smoothing=0, leave=False,
                      dynamic_ncols=False, ncols=None)
        super().__init__(iterable, **kwargs)
        self.ncols = None  # tqdm sizes itself to a terminal's width (-1 at 0 columns): a line is never cut
        self._next_n = self._step()

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: a line, once written, stays (tqdm.write would otherwise write a
        carriage return into the log before its message)."""

    def _step(self) -> float:
        return self.total * self._share if self.total else float("inf")

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not hasattr(self, "_next_n"):  # tqdm's first refresh, inside __init__
            return False
        closing = msg == ""  # tqdm clears a finished bar with an empty message
        now = time.monotonic()
        since = now - self._shown_t
        due = since >= self._interval or (since >= self._gap and self.n >= self._next_n)
        if closing:
            due = self.n > self._shown_n
        if not due or (self.n == 0 and not closing):
            return False
        line = self.format_meter(**self.format_dict)
        self.fp.write(line.rstrip() + "\n")
        self.fp.flush()
        self._shown_n, self._shown_t = self.n, now
        step = self._step()
        while self._next_n <= self.n:
            self._next_n += step
        return False


# --------------------------------------------------------------------------- messages through logging

LOGGER = "comp"  # every module logs under it: logging.getLogger(__name__)
PROGRESS_LOGGER = "comp.progress"  # bars and progress lines show while this logger is enabled for INFO


def progress_enabled() -> bool:
    """Whether bars and progress lines show: ``comp.progress`` enabled for INFO. The command
    line sets "comp" to INFO (:func:`setup_console`); a library caller that sets nothing gets
    none (as with messages), and :func:`quiet_rank` turns both off."""
    return logging.getLogger(PROGRESS_LOGGER).isEnabledFor(logging.INFO)


def stamped(created: float, message: str) -> str:
    """``message`` as a run log keeps it: every line prefixed with the local time, to the second."""
    stamp = timestamp(local=True, at=created)
    return "".join(f"{stamp} {line}\n" for line in str(message).split("\n"))


class ConsoleHandler(logging.Handler):
    """comp's messages on the console (stdout, or ``stream``), through :func:`say`: a live bar is
    cleared first and redrawn below. A record with a short form (``extra={"brief": ...}``) shows
    that on a terminal that draws bars; pipes and files get the full message."""

    def __init__(self, stream: TextIO | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.stream = stream  # None: sys.stdout when the record comes (a test runner swaps it)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.stream if self.stream is not None else sys.stdout
            brief = getattr(record, "brief", None)
            text = brief if brief is not None and progress_mode(stream) == "bar" else self.format(record)
            say(text, file=stream)
        except Exception:  # noqa: BLE001 - logging's rule: a handler never raises
            self.handleError(record)


class RunLogHandler(logging.Handler):
    """Appends each record, timestamped and in full, to a run's log file (fit.log, predict.log,
    report.log). ``where`` is a path, or a callable returning it (read at every write, so the
    log follows a staged run folder promoted into place) or None while there is no folder yet:
    lines are kept until there is, then written after a line naming the command (none when
    ``header`` is false: a file this command wrote before). ``kept`` (stamped lines) go first:
    what the command said before this log was opened.

    A log that cannot be written (a full disk, a planted link) is dropped with one warning on
    stderr, so it never stops the command whose outputs matter more.
    """

    def __init__(self, where: str | Path | Callable[[], Path | None], kept: Sequence[str] = (),
                 started: str | None = None, header: bool = True) -> None:
        super().__init__()
        self.where: Callable[[], Path | None] = where if callable(where) else (lambda p=Path(where): p)
        self.pending = list(kept)
        if header:
            command = " ".join(["comp", *sys.argv[1:]]) if sys.argv else "comp"
            self.pending.insert(0, f"{started or timestamp(local=True)} === {command} (pid {os.getpid()})\n")
        self.failed = False

    def path(self) -> Path | None:
        """The file written to now (None: not known yet, or dropped after a failure)."""
        if self.failed:
            return None
        path = self.where()
        return None if path is None else Path(path)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(stamped(record.created, self.format(record)))
        except Exception:  # noqa: BLE001 - logging's rule: a handler never raises
            self.handleError(record)

    def flush(self) -> None:
        """Write what is kept, once there is a file."""
        if self.pending and self.path() is not None:
            self.write("")

    def write(self, text: str) -> None:
        """Append ``text`` (after whatever is kept), or keep it while there is no file yet."""
        if self.failed:
            return
        self.pending.append(text)
        path = self.where()
        if path is None:
            return
        try:
            append_text(path, "".join(self.pending))
        except CompError as err:
            self.failed = True
            print(f"warning: {err}; not logging there any more", file=sys.stderr)
        self.pending = []


class _Session(logging.Handler):
    """The command's lines so far, stamped, for each run log it opens (:func:`log_to`), and the
    run logs it has written (one opened again continues: ``comp fit`` writes its closing lines
    into the fit.log that :func:`comp.train.fit.fit` wrote)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = timestamp(local=True)
        self.lines: list[str] = []
        self.written: set[Path] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(stamped(record.created, self.format(record)))


class _Onward(logging.Handler):
    """While :func:`_info_through` lowers "comp" to INFO for a run log, the records at the level
    the caller had (warnings, by default) still go where they went before: the root logger's
    handlers, else the standard library's last resort (stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().callHandlers(record)


@contextmanager
def _info_through() -> Iterator[None]:
    """INFO records reach comp's handlers, though nobody set a level ("comp" is NOTSET in library
    use: its effective level is the root's, WARNING by default); anywhere else they go only at
    the level they went before, and progress keeps the level it had."""
    comp, bars = logging.getLogger(LOGGER), logging.getLogger(PROGRESS_LOGGER)
    if comp.level != logging.NOTSET:
        yield
        return
    before, propagate = bars.level, comp.propagate
    onward = _Onward(comp.getEffectiveLevel())
    bars.setLevel(bars.getEffectiveLevel())
    comp.setLevel(logging.INFO)
    if propagate:
        comp.propagate = False
        comp.addHandler(onward)
    try:
        yield
    finally:
        comp.removeHandler(onward)
        comp.propagate = propagate
        comp.setLevel(logging.NOTSET)
        bars.setLevel(before)


@contextmanager
def log_to(where: str | Path | Callable[[], Path | None], *, replay: bool = True) -> Iterator[RunLogHandler]:
    """Append comp's messages (INFO and up), timestamped, to a run's log file while inside;
    ``where`` as :class:`RunLogHandler` takes it. With ``replay``, the file first gets what the
    command said before (the lines :func:`setup_console` keeps). A file already being written
    (a run named twice) is not written twice; one this command wrote before and closed is
    continued (no second line naming the command, nothing replayed)."""
    comp = logging.getLogger(LOGGER)
    now = where() if callable(where) else Path(where)
    for h in comp.handlers:
        if isinstance(h, RunLogHandler) and now is not None and h.path() == Path(now):
            yield h
            return
    session = next((h for h in comp.handlers if isinstance(h, _Session)), None)
    again = session is not None and now is not None and Path(now) in session.written
    kept = session.lines if replay and session and not again else ()
    handler = RunLogHandler(where, kept=kept, started=session.started if session else None, header=not again)
    if kept:
        handler.flush()  # the file gets them even if nothing more is said
    comp.addHandler(handler)
    try:
        with _info_through():
            yield handler
    finally:
        comp.removeHandler(handler)
        written = handler.path()
        if session is not None and written is not None and not handler.pending:
            session.written.add(written)


def setup_console(level: int = logging.INFO, stream: TextIO | None = None) -> Callable[[], None]:
    """What the command line does once, at its start: comp's messages at ``level`` and up on the
    console (:class:`ConsoleHandler`; progress shows too), kept for the run logs the command
    opens (:func:`log_to`), and not passed on to the root logger (nothing prints twice).
    Returns the function that undoes it (a command's end; the next test's command starts clean)."""
    comp = logging.getLogger(LOGGER)
    before = (comp.level, comp.propagate, list(comp.handlers))
    for h in list(comp.handlers):  # a command before this one that did not undo its set-up
        if isinstance(h, (ConsoleHandler, _Session)):
            comp.removeHandler(h)
    comp.addHandler(ConsoleHandler(stream))
    comp.addHandler(_Session())
    comp.setLevel(level)
    comp.propagate = False

    def undo() -> None:
        for h in list(comp.handlers):
            comp.removeHandler(h)
        for h in before[2]:
            comp.addHandler(h)
        comp.setLevel(before[0])
        comp.propagate = before[1]

    return undo


@contextmanager
def muted() -> Iterator[None]:
    """Warnings only, and no progress, while inside: the set-up lines of a step that is not the
    command's own work (``comp check`` building the model, ``comp bench`` building its fold), or
    a pass that is timed (``comp bench``'s epochs)."""
    comp = logging.getLogger(LOGGER)
    before = comp.level
    if comp.getEffectiveLevel() < logging.WARNING:
        comp.setLevel(logging.WARNING)
    try:
        yield
    finally:
        comp.setLevel(before)


def quiet_rank() -> None:
    """A process that does not speak for the run (a torchrun rank other than 0): warnings only,
    no messages, no progress."""
    logging.getLogger(LOGGER).setLevel(logging.WARNING)


class Countdown:
    """The ETA of ``total`` steps of about equal length (a run's epochs over all its folds), from
    the latest steps: a machine that was busy (or idle) early on does not skew it for the rest."""

    def __init__(self, total: int, window: int = ETA_WINDOW) -> None:
        self.total = max(0, int(total))
        self.done = 0
        self.recent: deque[float] = deque(maxlen=max(1, int(window)))

    def skip(self, steps: int) -> None:
        """Steps that need no doing (epochs a resumed fold already trained)."""
        self.total = max(self.done, self.total - int(steps))

    def tick(self, seconds: float) -> None:
        """One step finished, taking ``seconds``."""
        self.done += 1
        self.recent.append(float(seconds))

    @property
    def remaining(self) -> float | None:
        """Seconds left (:func:`recent_eta`); None before the first step."""
        return recent_eta(self.recent, self.total - self.done)

    def eta(self) -> str:
        """The time left as tqdm writes it (``02:41``, ``1:02:41``), or ``?``."""
        left = self.remaining
        return "?" if left is None else tqdm.format_interval(left)

    def describe(self) -> str:
        """E.g. ``run 3/10 epochs, ETA 02:41``."""
        return f"run {self.done}/{self.total} epochs, ETA {self.eta()}"


def recent_eta(durations: Sequence[float], steps_left: int, window: int = ETA_WINDOW) -> float | None:
    """Seconds for ``steps_left`` more steps at the mean of the last ``window`` ``durations``;
    None without any duration."""
    recent = list(durations)[-max(1, int(window)):]
    if not recent:
        return None
    return sum(recent) / len(recent) * max(0, int(steps_left))


def timestamp(*, local: bool = False, at: float | None = None) -> str:
    """Now (or the Unix time ``at``, a log record's) as ISO 8601 to the second: UTC (``+00:00``)
    for files, local time for log lines."""
    now = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)
    return (now.astimezone() if local else now).isoformat(timespec="seconds")


def parse_time(value: str | None) -> datetime | None:
    """A time as run.json records it (ISO 8601, :func:`timestamp`); None when it is missing or
    not one (a hand-edited file: such a run sorts as the oldest)."""
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
