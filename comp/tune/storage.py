"""Where a study's trials live: an Optuna storage opened from a URL, with the heartbeat that fails
a trial left RUNNING by a process that died and retries its parameters once.

- ``sqlite:///PATH`` (the default, ``runs/<study>/study.db``): embedded, nothing to start; for
  processes on one machine (SQLite on NFS corrupts).
- ``postgresql://...``, ``mysql://...``: any SQLAlchemy URL, for many machines.
- ``journal:PATH``: Optuna's journal file, for many machines sharing a file system (NFS): it
  takes a lock by creating a file, which NFS supports. Optuna's journal has no heartbeat, so a
  trial of a killed process stays RUNNING there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comp.errors import CompError

logger = logging.getLogger(__name__)

JOURNAL = "journal:"
_TRIES = 8  # openings of an RDB storage that another process is creating at the same moment
HEARTBEAT = 60  # seconds between a running trial's heartbeats; stale after two missed


def open_storage(url: str, *, heartbeat: int = HEARTBEAT, on_stale: Callable[[Any, Any], None] | None = None) -> Any:
    """The Optuna storage at ``url`` (see the module notes); a URL that cannot be opened is one
    CompError naming it. ``on_stale(study, trial)`` runs for each trial the heartbeat failed,
    before its parameters are queued again (once)."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    shown = mask(url)
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = url[len(JOURNAL):]
        if not path:
            raise CompError(f"--storage {shown}: name the journal file, e.g. journal:/shared/study.log")
        if not Path(path).parent.is_dir():
            raise CompError(f"--storage {shown}: cannot open it: the folder {Path(path).parent} does not exist")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
        except Exception as err:  # noqa: BLE001 - whatever the backend raises, one message naming the URL
            raise CompError(f"--storage {shown}: cannot open it: {_first_line(err)}") from None
    retry = RetryHeartbeatStaleTrialCallback(max_retry=1)

    def stale(study: Any, trial: Any) -> None:
        if on_stale is not None:
            on_stale(study, trial)
        retry(study, trial)

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):  # writers wait for one another instead of failing at once
        kwargs = {"connect_args": {"timeout": 60}}
    attempt = 0
    while True:
        try:
            return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                              heartbeat_stale_trial_callback=stale)
        except Exception as err:  # noqa: BLE001 - a bad URL, a missing driver, a server that does not answer
            attempt += 1
            # Processes starting together race to create the tables: the loser opens them once made.
            if attempt < _TRIES and any(s in str(err) for s in ("already exists", "locked", "UNIQUE")):
                time.sleep(0.2 * attempt)
                continue
            raise CompError(f"--storage {shown}: cannot open it ({_first_line(err)}); give an SQLAlchemy URL "
                            f"(sqlite:///PATH, postgresql://..., mysql://...) or journal:PATH") from None


def mask(url: str) -> str:
    """``url`` with any password hidden (for messages and study.json)."""
    if url.startswith(JOURNAL) or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: shown as given up to the host
        return "***@" + url.rsplit("@", 1)[1]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
