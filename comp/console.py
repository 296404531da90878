"""What a long command shows while it works and keeps afterwards: progress, run logs, the run's ETA.

:func:`progress` is tqdm in a terminal: a live bar with the count, images/s and the ETA. Anywhere
else (output redirected to a file, nohup, SLURM, a notebook cell) tqdm would redraw one line with
carriage returns, or stay silent; there the same figures come as plain lines instead, one every
~30 seconds or 10 % of the work (whichever comes first) and one at the end, so a log shows how
far an epoch is. ``COMP_PROGRESS=bar|lines|off`` overrides the choice.

:class:`RunLog` is the ``log`` callable the commands pass around: each message goes to the console
and, with a timestamp, to the run's log files (fit.log, predict.log, report.log).

:class:`Countdown` is the whole run's ETA (folds × epochs) from the mean epoch so far.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from comp.atomic import append_text
from comp.errors import CompError

LINE_INTERVAL = 30.0  # seconds between progress lines outside a terminal ...
LINE_SHARE = 0.1  # ... or this share of the total, whichever comes first,
LINE_GAP = 1.0  # but not sooner than this after the last line (a 2-second pass prints only its end)
_LINE_FORMAT = ("{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, elapsed {elapsed}, "
                "ETA {remaining}{postfix}")
_LINE_FORMAT_OPEN = "{desc}: {n_fmt} {unit}, {rate_fmt}, elapsed {elapsed}{postfix}"


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "img", enabled: bool = True, file: TextIO | None = None,
             interval: float = LINE_INTERVAL, share: float = LINE_SHARE, gap: float = LINE_GAP) -> tqdm:
    """A progress bar (in a terminal) or progress lines (elsewhere) over ``iterable``, or a
    manual one (``total``, then ``update(n)``); disabled when not ``enabled``.

    Use it as a context manager or close it: closing prints the last line outside a terminal.
    """
    file = file if file is not None else sys.stderr
    mode = progress_mode(file) if enabled else "off"
    if mode == "off":
        return tqdm(iterable, total=total, disable=True)
    if mode == "bar":
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=file, leave=False, dynamic_ncols=True)
    return ProgressLines(iterable, total=total, desc=desc, unit=unit, file=file, interval=interval, share=share,
                         gap=gap)


def progress_mode(file: TextIO | None = None) -> str:
    """"bar" on a terminal, "lines" elsewhere; ``COMP_PROGRESS`` (bar, lines, off) overrides."""
    forced = os.environ.get("COMP_PROGRESS", "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return forced
    file = file if file is not None else sys.stderr
    try:
        return "bar" if file.isatty() else "lines"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "lines"


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
        self._next_n = self._step()

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


class RunLog:
    """A ``log`` callable: prints each message and appends it, timestamped, to the attached files.

    Messages logged before a file is attached (the run folder may not exist yet) are kept and
    written to each file when it is attached, after a line naming the command. A file may be
    given as a callable returning its path, read at every write, for a run folder that moves
    (a staged run promoted into place).
    """

    def __init__(self, console: Callable[[str], None] = print) -> None:
        self.console = console
        self.files: list[Callable[[], Path]] = []
        self.lines: list[str] = []
        self.started = timestamp(local=True)

    def __call__(self, message: str) -> None:
        self.console(message)
        self.write(message)

    def write(self, message: str) -> None:
        """Only to the files (and the kept lines), not the console."""
        stamp = timestamp(local=True)
        text = "".join(f"{stamp} {line}\n" for line in str(message).split("\n"))
        self.lines.append(text)
        for where in list(self.files):
            self._append(where, text)

    def _append(self, where: Callable[[], Path], text: str) -> bool:
        """Append to one log file; a log that cannot be written (a full disk) is dropped with one
        warning, so it never stops the command whose outputs matter more."""
        try:
            append_text(where(), text)
            return True
        except CompError as err:
            if where in self.files:
                self.files.remove(where)
            print(f"warning: {err}; not logging there any more", file=sys.stderr)
            return False

    def attach(self, path: str | Path | Callable[[], Path]) -> None:
        """Append to ``path`` from now on, starting with what was logged so far."""
        where = path if callable(path) else (lambda p=Path(path): p)
        if any(Path(f()) == Path(where()) for f in self.files):
            return
        command = " ".join(["comp", *sys.argv[1:]]) if sys.argv else "comp"
        if self._append(where, f"{self.started} === {command} (pid {os.getpid()})\n" + "".join(self.lines)):
            self.files.append(where)


class Countdown:
    """The ETA of ``total`` steps of about equal length (a run's epochs over all its folds)."""

    def __init__(self, total: int) -> None:
        self.total = max(0, int(total))
        self.done = 0
        self.seconds = 0.0

    def skip(self, steps: int) -> None:
        """Steps that need no doing (epochs a resumed fold already trained)."""
        self.total = max(self.done, self.total - int(steps))

    def tick(self, seconds: float) -> None:
        """One step finished, taking ``seconds``."""
        self.done += 1
        self.seconds += float(seconds)

    @property
    def remaining(self) -> float | None:
        """Seconds left, by the mean step so far; None before the first step."""
        if not self.done:
            return None
        return self.seconds / self.done * max(0, self.total - self.done)

    def describe(self) -> str:
        """E.g. ``run 3/10 epochs, ETA 0:02:41``."""
        left = self.remaining
        eta = "?" if left is None else tqdm.format_interval(left)
        return f"run {self.done}/{self.total} epochs, ETA {eta}"


def timestamp(*, local: bool = False) -> str:
    """Now as ISO 8601 to the second: UTC (``+00:00``) for files, local time for log lines."""
    now = datetime.now(timezone.utc)
    return (now.astimezone() if local else now).isoformat(timespec="seconds")


def parse_time(value: str | float | int | None) -> datetime | None:
    """A time as run.json and result.json record it: ISO 8601, or the older Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
