"""Atomic file writes: a temp file in the destination folder, then ``os.replace``.

A crash, Ctrl-C or full disk mid-write leaves the previous file (or none), never half of one.

* A symlink is written through: the temp file goes beside the link's target and replaces the
  target; the link stays a link.
* A path that exists but is not a regular file (a folder, FIFO, device) is refused with a
  :class:`CompError` naming it; nothing is opened or replaced.
* New files get the user's umask (0644 under umask 022); a file being replaced keeps its mode.
* Temp files are ``.<name>.<random>.tmp``; the writer holds an ``flock`` on its temp while it
  writes, so a temp of the same target that nobody holds is left over from a killed write and
  is removed by the next write of that target (by a later command: each folder is listed for
  such temps once per process).
* Any failure (a full disk included) is one CompError naming the file, and the temp is
  removed; :func:`write_error` also words a writer's own exception (torch.save's RuntimeError).
* A folder passed to :func:`confine` (a run folder) keeps its writes inside: a link in it that
  leads out of it is refused, never written through (only a path the user names follows links).
  ``confine(folder, within=root)`` keeps them inside ``root`` instead (``runs/.blends`` inside
  --runs), so a confined folder that is itself a link out of ``root`` is refused too.
* The temp file gets its mode again just before the rename: a writer that replaces the file it
  is given (safetensors' ``save_file``) would otherwise leave its own (0600).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from comp.errors import CompError

try:
    import fcntl
except ImportError:  # not on POSIX: no stale-temp detection
    fcntl = None

# A temp of the same target that no writer holds is removed once it is this old (a brand-new
# temp is locked a moment after it is created; this leaves that moment alone).
STALE_TEMP_SECONDS = 2.0
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_umask: int | None = None
_temps: dict[str, list[str]] = {}  # folder -> temp files seen there, not yet checked
_temps_lock = threading.Lock()
# absolute folder -> the absolute folder its writes may not leave through a link (itself, or --runs)
_confined: dict[str, str] = {}
# torch's C++ writer on a short write (a full disk) says only this, with no errno
_SHORT_WRITE = "unexpected pos"


def confine(folder: str | Path, within: str | Path | None = None) -> None:
    """From now on, a write under ``folder`` whose path (through links) leads out of ``within``
    (default: ``folder`` itself) is refused: a folder comp keeps holds only what comp made there,
    so a link in it was planted. With ``within`` (--runs, for a folder comp keeps in it), the
    folder itself being a link out of ``within`` is refused as well."""
    _confined[os.path.abspath(folder)] = os.path.abspath(within if within is not None else folder)


def _check_confined(path: Path, target: Path) -> None:
    """Refuse ``path`` when it lies in a confined folder but ``target`` (resolved) lies outside
    what confines that folder."""
    if not _confined:
        return
    where = os.path.abspath(path)
    for folder, within in list(_confined.items()):
        if where.startswith(folder + os.sep):
            real, home = os.path.realpath(target), os.path.realpath(within)
            if real != home and not real.startswith(home + os.sep):
                raise CompError(f"refusing to write {path}: it leads to {real}, outside {within} "
                                f"(a link comp did not make); remove the link")


def umask() -> int:
    """The process's umask, read once: from /proc (no change to the process state), else by
    setting and restoring it (racy with other threads, so done once, early)."""
    global _umask
    if _umask is None:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                line = next(x for x in f if x.startswith("Umask:"))
            _umask = int(line.split()[1], 8)
        except (OSError, StopIteration, ValueError, IndexError):
            _umask = os.umask(0o022)
            os.umask(_umask)
    return _umask


def temp_folder(parent: str | Path, prefix: str, suffix: str = "") -> Path:
    """A new hidden folder in ``parent`` to build a whole folder in before renaming it into
    place; unlike ``tempfile.mkdtemp``'s 0700 it gets the user's umask (0755 under 022)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(folder, 0o777 & ~umask())
    return folder


def write_target(path: str | Path) -> Path:
    """Where a write to ``path`` lands: the final target of a symlink (chain), else ``path``.
    An existing target that is not a regular file is a CompError: call it up front to refuse
    an output path before any work is done."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if os.path.islink(path) else path
    _check_confined(path, target)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as err:
        raise CompError(f"cannot write {path}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        via = f" (a link to {target})" if target != path else ""
        raise CompError(f"refusing to write {path}{via}: it is {kind}, not a regular file; "
                        f"name a file to write instead")
    return target


def _remove_stale_temps(target: Path) -> None:
    """Remove ``.<name>.*.tmp`` beside ``target`` that no live writer holds (a killed write's).

    Each folder is listed once per process (a cache folder may hold a million files, written one
    by one): the temp files found then are the candidates, checked when their target is written.
    """
    if fcntl is None:
        return
    folder = os.path.abspath(target.parent)
    with _temps_lock:
        if folder not in _temps:
            try:
                _temps[folder] = [e.name for e in os.scandir(folder)
                                  if e.name.startswith(".") and e.name.endswith(".tmp")]
            except OSError:
                _temps[folder] = []
        prefix = f".{target.name}."
        mine = [n for n in _temps[folder] if n.startswith(prefix)]
        _temps[folder] = [n for n in _temps[folder] if not n.startswith(prefix)]
    for name in mine:
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < STALE_TEMP_SECONDS:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a live writer holds it
            os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def write_error(path: str | Path, err: BaseException) -> CompError:
    """One message for a failed write of ``path``: "disk full" when the error says so."""
    code = getattr(err, "errno", None)
    text = str(err)
    full = code if code in _FULL_ERRNOS else next((e for e in _FULL_ERRNOS if os.strerror(e) in text), None)
    if full is None and _SHORT_WRITE in text:
        full = errno.ENOSPC  # torch.save's writer could not write all its bytes
    if full is not None:
        return CompError(f"disk full while writing {path} ({os.strerror(full)}); free some space "
                         f"and run the command again")
    reason = getattr(err, "strerror", None) or (text.strip().splitlines() or [type(err).__name__])[-1]
    return CompError(f"cannot write {path}: {reason}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``'s target (see the module notes); on success it is
    renamed onto the target, else removed. An OSError inside the block becomes a CompError."""
    path = Path(path)
    target = write_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise write_error(path, err) from None
    tmp_path = Path(tmp)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # this temp is in use: no other write removes it
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)  # a replaced file keeps its mode
        except FileNotFoundError:
            mode = 0o666 & ~umask()
        os.fchmod(fd, mode)
        yield tmp_path
        os.chmod(tmp_path, mode)  # the writer may have replaced the temp with a file of its own mode
        write_target(path)  # still a regular file (or none): never replace what appeared meanwhile
        os.replace(tmp_path, target)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        os.close(fd)
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame as CSV (no index) atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def append_text(path: str | Path, text: str) -> None:
    """Append to a log file (created with its folder if missing): one ``write`` of whole lines
    on an O_APPEND file, so lines from concurrent writers never interleave mid-line. The one
    non-atomic writer: a log grows line by line and is never rewritten."""
    path = Path(path)
    write_target(path)  # never a FIFO or a device, nor a link out of a confined folder
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        raise write_error(path, err) from None
