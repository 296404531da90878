"""The locks of a run: ``.<name>.lock`` beside the run folder while a fit writes the run, and
``.fold<K>.lock`` in it while one fold trains (:class:`RunLock`)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from comp.errors import CompError
from comp.run.folder import RunDir

_BRIEF_WAIT = 120.0  # seconds a fold job waits for another's brief hold on the run's lock


class RunLock:
    """The lock a fit holds on its run while it writes it: ``.<name>.lock`` beside the run folder,
    created with O_CREAT | O_EXCL and holding the pid and host. A lock whose process is gone (on
    this host) is taken over. Taking it clears what a killed fit of the run left
    (:meth:`RunDir.clean_leftovers`).

    ``brief``: held only for a moment (a fold job creating or joining its run, a merge); a brief
    taker waits up to two minutes for another brief holder instead of failing. ``fold``: the lock
    of one fold (``.fold<K>.lock`` in the run folder), held while that fold trains, so fold jobs
    of one run (``comp fit RECIPE --fold K``, here or on machines sharing the folder) train
    side by side and never the same fold twice."""

    def __init__(self, run: RunDir, *, fold: int | None = None, brief: bool = False) -> None:
        self.run = run
        self.fold = fold
        self.brief = brief
        self.run_name = run.name
        self.owned = False

    @property
    def path(self) -> Path:  # read when used: a staged run's fold lock follows it into place
        return self.run.lock_path if self.fold is None else self.run.fold(self.fold).lock_path

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "brief": self.brief}
        deadline, vanished = time.monotonic() + _BRIEF_WAIT, 0
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    vanished += 1
                    if vanished > 20:
                        raise CompError(f"cannot take the lock {self.path}: it keeps changing hands") from None
                    continue  # released (or unreadable and stale) meanwhile: try again
                if holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                    self.path.unlink(missing_ok=True)  # its process is gone: take it over
                    continue
                if self.brief and holder.get("brief") and time.monotonic() < deadline:
                    time.sleep(0.1)  # another fold job is creating, joining or merging the run
                    continue
                what = f"run {self.run_name!r}" if self.fold is None else f"fold {self.fold} of run {self.run_name!r}"
                raise CompError(f"{what} is being written by another comp fit (pid {holder.get('pid')} on "
                                f"{holder.get('host')}); wait for it to finish or stop it (its lock: {self.path})")
            except OSError as err:
                raise CompError(f"cannot create the lock {self.path}: {err.strerror}") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.owned = True
            if self.fold is None:
                self.run.clean_leftovers()
            return

    def _holder(self) -> dict[str, Any] | None:
        """The lock's pid and host; None when it vanished or is an unreadable leftover."""
        try:
            text = self.path.read_text()
            holder = json.loads(text)
            if isinstance(holder, dict) and "pid" in holder:
                return holder
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            pass
        # Empty or damaged: a fit killed while creating it, unless one is writing it right now.
        try:
            if time.time() - self.path.stat().st_mtime < 5:
                return {"pid": "?", "host": "?", "brief": True}  # being written: a brief taker waits
            self.path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        return None

    def release(self) -> None:
        if self.owned:
            self.path.unlink(missing_ok=True)
            self.owned = False


def _alive(pid: Any) -> bool:
    """Whether process ``pid`` exists and may be a comp (os.kill(pid, 0); a process of another
    user counts). A live process whose command line does not mention comp (Linux's /proc) took
    a dead fit's pid: its lock is stale."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        pass
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    try:
        command = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (or not ours to read): assume it is the fit
    return b"comp" in command
