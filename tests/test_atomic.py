"""comp.atomic: writes through links, refusals of special files, modes, stale temps, the path guard."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest

from comp import atomic
from comp.errors import CompError


@pytest.fixture
def umask_027(monkeypatch):
    monkeypatch.setattr(atomic, "_umask", 0o027)


def test_write_through_a_symlink_updates_the_target_and_keeps_the_link(tmp_path):
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "real.csv"
    target.write_text("old\n")
    link = tmp_path / "sub.csv"
    link.symlink_to(os.path.join("shared", "real.csv"))
    atomic.write_text(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == os.path.join("shared", "real.csv")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / "out.csv"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(CompError, match="out.csv.*not a regular file"):
        atomic.write_text(path, "x")
    mode = os.lstat(path).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISDIR(mode)
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_link_to_a_fifo_is_refused_naming_the_link(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "out.csv").symlink_to("pipe")
    with pytest.raises(CompError, match="out.csv.*FIFO"):
        atomic.write_text(tmp_path / "out.csv", "x")


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path, umask_027):
    atomic.write_text(tmp_path / "new.txt", "x")
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o600)
    atomic.write_text(kept, "new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "new"


def test_umask_is_read_without_changing_it():
    before = os.umask(0o022)
    os.umask(before)
    atomic._umask = None
    assert atomic.umask() == before
    assert os.umask(before) == before


def test_stale_temps_of_the_target_are_removed_and_held_ones_kept(tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setattr(atomic, "_temps", {})
    old = time.time() - 60
    stale = tmp_path / ".a.csv.k1ll3d_.tmp"
    other = tmp_path / ".b.csv.k1ll3d_.tmp"  # another target's: its own write removes it
    held = tmp_path / ".a.csv.l1ve0000.tmp"
    for p in (stale, other, held):
        p.write_bytes(b"part")
        os.utime(p, (old, old))
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer
        atomic.write_text(tmp_path / "a.csv", "x")
        assert not stale.exists() and other.exists() and held.exists()
    finally:
        os.close(fd)


def test_failed_write_removes_its_temp_and_names_the_file(tmp_path):
    with pytest.raises(CompError, match=r"disk full while writing .*a\.csv"):
        with atomic.atomic_path(tmp_path / "a.csv") as tmp:
            tmp.write_text("part")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


def test_torch_save_runtime_error_is_one_message(tmp_path, monkeypatch):
    import torch

    from comp.run.checkpoint import save_checkpoint

    def full(obj, f, *args, **kwargs):
        with open(f, "wb") as part:
            part.write(b"PK")
        raise RuntimeError(f"PytorchStreamWriter failed writing file data/0: file write failed "
                           f"({os.strerror(errno.ENOSPC)})")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CompError, match=r"disk full while writing .*last\.pt"):
        save_checkpoint(tmp_path / "last.pt", model={}, epoch=1)
    assert list(tmp_path.iterdir()) == []


def test_a_confined_folder_is_never_written_through_a_link_out_of_it(tmp_path):
    """A run folder (confined) holds only what comp made: a planted link out of it is refused,
    for atomic writes and log appends alike; a link that stays inside is written through."""
    run, outside = tmp_path / "runs" / "r", tmp_path / "outside.txt"
    run.mkdir(parents=True)
    outside.write_text("not comp's\n")
    atomic.confine(run)
    (run / "report.md").symlink_to(outside)
    (run / "fit.log").symlink_to(outside)
    with pytest.raises(CompError, match="report.md.*outside"):
        atomic.write_text(run / "report.md", "x")
    with pytest.raises(CompError, match="fit.log.*outside"):
        atomic.append_text(run / "fit.log", "x\n")
    (run / "sub").mkdir()
    (run / "sub" / "real.csv").write_text("old\n")
    (run / "inside.csv").symlink_to(run / "sub" / "real.csv")
    atomic.write_text(run / "inside.csv", "new\n")
    assert outside.read_text() == "not comp's\n" and (run / "sub" / "real.csv").read_text() == "new\n"
    atomic.write_text(tmp_path / "elsewhere.txt", "a path outside the confined folder is free\n")


def test_a_torch_short_write_reads_as_a_full_disk(tmp_path):
    err = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4096")
    message = str(atomic.write_error(tmp_path / "best.pt", err))
    assert "disk full" in message and "best.pt" in message, message


def test_a_folder_confined_within_its_parent_is_not_written_through_when_itself_a_link(tmp_path):
    """confine(folder, within=root) (runs/.blends in --runs): the folder itself a link out of
    root is refused; a link in it to another place inside root is written through."""
    root, outside = tmp_path / "runs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / ".blends").symlink_to(outside, target_is_directory=True)
    atomic.confine(root / ".blends", within=root)
    with pytest.raises(CompError, match=r"\.blends.*outside"):
        atomic.write_text(root / ".blends" / "b.json", "{}")
    assert list(outside.iterdir()) == []
    (root / ".blends").unlink()
    (root / ".blends").mkdir()
    (root / "kept.json").write_text("old\n")
    (root / ".blends" / "in.json").symlink_to(root / "kept.json")
    atomic.write_text(root / ".blends" / "in.json", "new\n")
    assert (root / "kept.json").read_text() == "new\n"
