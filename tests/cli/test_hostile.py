"""Hostile inputs (issue 15): no lost work, ever.

Every case drives the real command line (``python -m comp ...`` in a process of its own, under umask 022)
on data the test makes, and asserts the exit code, one message naming the thing, no traceback,
and the files afterwards: the old run byte-identical, the neighbour run and the folders outside
``--runs`` intact, links kept, FIFOs and devices left alone, no temp file behind, modes from the
umask.

Sections follow the issue's "What it must contain":
 1. run names                        5. atomic writes: links, FIFOs, devices, modes, stale temps
 2. --overwrite with set-up errors   6. broken files, disk full, NaN, recipe encodings
 3. failed set-up, check, --resume   7. labels and image paths in `comp check` / `comp score`
 4. the run lock                     8. Ctrl-C with loader workers

One finished run is trained once per module (``pristine``) and copied into each case's own
project folder. Importing torch costs more than any of these tiny commands, so each command
runs in a process of its own forked from one that has imported it (conftest.run_comp); those
that a signal must reach with their loader workers are started in the background the same way,
each leading its own process group (:func:`start`); the fit that holds a run's lock while other
fits try it is a fresh ``python -m comp`` (:func:`spawn`: a lock knows its holder by pid and
command line). The cases that are one command on a prepared folder are
registered with :data:`AHEAD`, which runs them two at a time ahead of the tests that read them;
the tests that need timing (the lock, Ctrl-C) or two commands in turn run in the test itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CompProcess, run_comp, start_comp, write_competition, write_recipe

pytestmark = pytest.mark.xdist_group("test_hostile")  # one worker makes the module's fixtures (conftest)

COMP_TIMEOUT = 180  # seconds for one command; every fit here is one epoch of 16 px images
WORKERS = 2  # cases run at once by AHEAD
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


# =========================================================================== running comp


@dataclass
class Result:
    """What one ``comp`` command did."""

    args: list[str]
    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return f"$ comp {' '.join(self.args)}\nexit {self.rc}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def comp(*args: str | Path, cwd: Path, umask: int = 0o022, prelude: str = "",
         timeout: float = COMP_TIMEOUT) -> Result:
    """Run ``comp ARGS`` in ``cwd`` under ``umask`` in its own process (forked from one that has
    imported torch already: see conftest.run_comp); ``prelude`` is Python run first in that process."""
    args = [str(a) for a in args]
    rc, out, err = run_comp(args, cwd, umask=umask, prelude=prelude, timeout=timeout)
    if rc is None:
        pytest.fail(f"`comp {' '.join(args)}` still ran after {timeout}s (killed):\n{out}\n{err}")
    return Result(args, rc, out, err)


def file_size_limit(limit: int) -> str:
    """A prelude: writes past ``limit`` bytes fail (EFBIG), as on a full disk."""
    return ("import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")


# Disk full while torch writes a checkpoint: torch.save leaves part of the file and raises a
# RuntimeError from its C++ writer (not an OSError), as it does on ENOSPC.
DISK_FULL_TORCH_SAVE = textwrap.dedent('''\
    import errno, os
    import torch

    def _disk_full(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as part:
                part.write(b"PK\\x03\\x04" + bytes(4096))
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed "
                           "writing file data/0: file write failed (" + os.strerror(errno.ENOSPC) + ")")

    torch.save = _disk_full
    ''')


def spawn(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """Start ``comp ARGS`` as a fresh ``python -m comp`` in its own process group (a run's lock
    names the process by its pid and command line); stdout and stderr go to files (a pipe nobody
    reads could fill up and stall it)."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "comp", *map(str, args)], cwd=cwd, stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, env=ENV, umask=0o022,
                                start_new_session=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def start(*args: str, cwd: Path, log: Path) -> CompProcess:
    """Start ``comp ARGS`` in a process of its own, forked as :func:`comp`'s are, leading its own
    process group (so Ctrl-C can reach its loader workers), and return at once; stdout and stderr
    go to files as :func:`spawn`'s."""
    proc = start_comp([str(a) for a in args], cwd, log, session=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def logs(proc: subprocess.Popen | CompProcess) -> str:
    return Path(f"{proc.log}.out").read_text() + "--- stderr\n" + Path(f"{proc.log}.err").read_text()


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen | CompProcess, what: str,
             timeout: float = 120) -> None:
    """Poll ``condition`` until true; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"comp exited with {proc.returncode} before {what}:\n{logs(proc)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout}s:\n{logs(proc)}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen | CompProcess) -> None:
    """Kill a spawned comp and its loader workers (its own process group), if still running."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


# =========================================================================== files and messages


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of a regular file, a link's target, "dir", or the node's type.

    Special files are only stat'ed, never opened (opening a FIFO for reading would block). Lock
    files are left out: how a fit marks a run as held is not part of the run's content.
    """
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if "lock" in name.lower():
                continue
            p = Path(dirpath) / name
            mode = os.lstat(p).st_mode
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(mode):
                found[rel] = "link -> " + os.readlink(p)
            elif stat.S_ISDIR(mode):
                found[rel] = "dir"
            elif stat.S_ISREG(mode):
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                found[rel] = f"special {stat.S_IFMT(mode):o}"
    return found


def assert_same_tree(before: dict[str, str], after: dict[str, str], what: str) -> None:
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    gone, new = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
    assert not (changed or gone or new), (f"{what} changed: changed {changed[:6]}, deleted {gone[:6]}, "
                                          f"created {new[:6]}")


def tmp_files(root: Path) -> list[str]:
    """Temp files of interrupted atomic writes (``.<name>.*.tmp``) anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.tmp"))


def assert_no_traceback(res: Result) -> None:
    assert "Traceback" not in res.err and "Traceback" not in res.out, res.text


def assert_ok(res: Result) -> None:
    assert_no_traceback(res)
    assert res.rc == 0, res.text


def assert_user_error(res: Result, *needles: str, code: int = 2) -> None:
    """Exit ``code``, no traceback, and a message on stderr that contains every needle."""
    assert_no_traceback(res)
    assert res.rc == code, res.text
    for needle in needles:
        assert needle in res.err, f"the message does not name {needle!r}:\n{res.text}"


def names_quoted(err: str, thing: str) -> bool:
    """Whether ``err`` names ``thing`` in quotes (a bare "." or ".." would match any sentence)."""
    return any(q in err for q in (f"'{thing}'", f'"{thing}"', f"`{thing}`"))


def warnings_in(res: Result) -> list[str]:
    return [line for line in (res.out + res.err).splitlines() if "warning" in line.lower()]


BROKEN_KINDS = ["empty", "text", "random", "truncated"]


def broken_bytes(kind: str, real: bytes) -> bytes:
    """Not a checkpoint: empty, text, random bytes (starting with the pickle opcode BINGET, which
    sends torch's unpickler to a KeyError), or the first half of a real one."""
    return {"empty": b"",
            "text": b"these are not the weights you are looking for\n",
            "random": b"h" + np.random.default_rng(15).bytes(4095),
            "truncated": real[: len(real) // 2]}[kind]


# =========================================================================== projects


def tiny_recipe(path: Path, data_root: Path, extra: str = "", data_extra: str = "") -> Path:
    """conftest's recipe made tinier: timm's 0.4 M-parameter test_resnet, 16 px, one epoch.
    ``extra`` adds whole sections; ``data_extra`` adds lines to ``[data]``."""
    write_recipe(path, data_root, extra)
    text = path.read_text().replace('name = "resnet18"', 'name = "test_resnet"', 1)  # if conftest's is not already
    for old, new in (("size = 32", "size = 16"),
                     ("epochs = 2", "epochs = 1"),
                     (f'root = "{data_root}"\n', f'root = "{data_root}"\n{data_extra}')):
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


@dataclass
class Project:
    """A working directory: tiny.toml, runs/ (tiny and its neighbour other), keep/ (not comp's)."""

    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def run(self) -> Path:
        return self.runs / "tiny"

    @property
    def recipe(self) -> Path:
        return self.root / "tiny.toml"


def make_project(base: Path, pristine: Path, *, with_runs: bool = True) -> Project:
    p = Project(base / "project")
    p.root.mkdir()
    shutil.copy2(pristine / "tiny.toml", p.recipe)
    if with_runs:
        shutil.copytree(pristine / "runs", p.runs, symlinks=True)
    (p.root / "keep").mkdir()
    (p.root / "keep" / "notes.txt").write_text("not comp's to touch\n")
    return p


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_competition(tmp_path_factory.mktemp("data") / "comp", n_train=12, n_test=3, size=16)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, data_root) -> Path:
    """tiny.toml and runs/tiny (one finished fit, made under umask 022), runs/other (a copy)."""
    base = tmp_path_factory.mktemp("pristine")
    tiny_recipe(base / "tiny.toml", data_root)
    res = comp("fit", "tiny.toml", "--runs", "runs", cwd=base)
    assert res.rc == 0, res.text
    shutil.copytree(base / "runs" / "tiny", base / "runs" / "other", symlinks=True)
    return base


@pytest.fixture
def empty_project(tmp_path, pristine) -> Project:
    return make_project(tmp_path, pristine, with_runs=False)


def fit_args(*args: str) -> tuple[str, ...]:
    return ("fit", "tiny.toml", "--runs", "runs", *args)


def predict_args(out: Path | str, *args: str) -> tuple[str, ...]:
    return ("predict", "--run", "tiny", "--runs", "runs", "--out", str(out), *args)


# =========================================================================== cases run ahead


@dataclass
class Command:
    args: tuple[str, ...]
    umask: int = 0o022
    prelude: str = ""
    timeout: float = COMP_TIMEOUT
    cwd: Path | None = None  # default: the project


@dataclass
class Case:
    """One command on its own folder: ``base`` holds project/ and whatever the case put beside it."""

    base: Path
    project: Project
    before: dict[str, str]  # snapshot(base) just before the command ran
    res: Result
    notes: dict = field(default_factory=dict)  # what prepare wants the test to know

    def after(self) -> dict[str, str]:
        return snapshot(self.base)


Prepare = Callable[[Project, object, dict], Command]


class Ahead:
    """Cases registered with the function that prepares their project and returns their command.

    ``get`` starts a case (if not yet started) and the cases registered after it, keeping
    ``WORKERS`` commands running, then waits for its own. Registration order is file order, so
    while a test asserts, the next tests' commands are already running; a ``-k`` run starts at
    most one case it does not need.
    """

    def __init__(self) -> None:
        self.order: list[tuple[str, object]] = []
        self.prepare: dict[tuple[str, object], Prepare] = {}
        self.jobs: dict[tuple[str, object], Future] = {}
        self.factory = self.pristine = self.data_root = self.pool = None

    def register(self, group: str, params: list, prepare: Prepare) -> list:
        for p in params:
            self.order.append((group, p))
            self.prepare[(group, p)] = prepare
        return params

    def get(self, group: str, param: object) -> Case:
        key = (group, param)
        self._start(key)
        for later in self.order[self.order.index(key) + 1:]:
            if sum(not job.done() for job in self.jobs.values()) >= WORKERS:
                break
            self._start(later)
        return self.jobs[key].result()

    def _start(self, key: tuple[str, object]) -> None:
        if key in self.jobs:
            return
        base = self.factory.mktemp(key[0])
        project = make_project(base, self.pristine)
        notes: dict = {}
        cmd = self.prepare[key](project, key[1], notes)
        before = snapshot(base)

        def run() -> Case:
            res = comp(*cmd.args, cwd=cmd.cwd or project.root, umask=cmd.umask, prelude=cmd.prelude,
                       timeout=cmd.timeout)
            return Case(base, project, before, res, notes)

        self.jobs[key] = self.pool.submit(run)


AHEAD = Ahead()


@pytest.fixture(scope="module")
def ahead(tmp_path_factory, pristine, data_root):
    AHEAD.factory, AHEAD.pristine, AHEAD.data_root = tmp_path_factory, pristine, data_root
    AHEAD.pool = ThreadPoolExecutor(WORKERS)
    yield AHEAD
    AHEAD.pool.shutdown(wait=True, cancel_futures=True)


# =========================================================================== 1. run names

ABSOLUTE = "<absolute>"  # stands for the path of a folder beside the project, outside --runs
BAD_NAMES = [(name, overwrite) for name in [".", "..", ABSOLUTE, "../x", "a/b", ".hidden"]
             for overwrite in (False, True)]


def _bad_name(p: Project, param, notes) -> Command:
    name, overwrite = param
    victim = p.root.parent / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("a folder outside --runs\n")
    notes["name"] = str(victim) if name == ABSOLUTE else name
    return Command(fit_args("--set", f'name="{notes["name"]}"', *(["--overwrite"] if overwrite else [])))


@pytest.mark.parametrize("param", AHEAD.register("bad-name", BAD_NAMES, _bad_name),
                         ids=[f"{n}-{'overwrite' if o else 'new'}" for n, o in BAD_NAMES])
def test_bad_run_name_is_refused_at_load(ahead, param):
    case = ahead.get("bad-name", param)
    name, res = case.notes["name"], case.res
    assert_user_error(res)
    assert "name" in res.err and (names_quoted(res.err, name) or (len(name) > 3 and name in res.err)), res.text
    assert_same_tree(case.before, case.after(), "the project or the folders beside it")


def _good_name(p: Project, param, notes) -> Command:
    return Command(("check", "tiny.toml", "--set", f'name="{param}"'))


@pytest.mark.parametrize("name", AHEAD.register("good-name", ["r18-v2.1_a"], _good_name))
def test_plain_dotted_run_name_is_accepted(ahead, name):
    assert_ok(ahead.get("good-name", name).res)


def _run_linked_outside(p: Project, param, notes) -> Command:
    elsewhere = p.root.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.move(str(p.run), str(elsewhere / "tiny"))
    p.run.symlink_to(elsewhere / "tiny")
    return Command(fit_args("--overwrite"))


@pytest.mark.parametrize("param", AHEAD.register("linked-run", ["overwrite"], _run_linked_outside))
def test_overwrite_of_a_run_linked_outside_runs_is_refused(ahead, param):
    """runs/tiny is a symlink to a run elsewhere: resolved, the run is outside --runs."""
    case = ahead.get("linked-run", param)
    assert_user_error(case.res, "tiny")
    assert_same_tree(case.before, case.after(), "the linked run and its link")


# =========================================================================== 2. --overwrite

SETUP_ERRORS = {  # id: (fit arguments, what the message must name)
    "unknown-model": (["--set", "model.name=nosuchnet"], ["nosuchnet"]),
    "unreadable-pretrained": (["--set", 'model.pretrained="weights.pth"'], ["weights.pth"]),
    "class-weight-count": (["--set", "loss.class_weights=[1.0, 2.0]"], ["class_weights"]),
    "warmup-ge-epochs": (["--set", "schedule.warmup_epochs=1"], ["warmup_epochs"]),
    "fold-7": (["--fold", "7"], ["--fold", "7"]),
}


def real_checkpoint() -> Path:
    """A good checkpoint, also a good pretrained-weights file (its tensors are under "model")."""
    return AHEAD.pristine / "runs" / "tiny" / "fold0" / "best.pt"


def _write_bad_weights(p: Project, kind: str) -> None:
    """weights.pth in the project: a broken copy of a real checkpoint."""
    (p.root / "weights.pth").write_bytes(broken_bytes(kind, real_checkpoint().read_bytes()))


def _overwrite_setup_error(p: Project, case: str, notes) -> Command:
    if case == "unreadable-pretrained":
        _write_bad_weights(p, "truncated")  # today's loader names this one cleanly
    return Command(fit_args(*SETUP_ERRORS[case][0], "--overwrite"))


@pytest.mark.parametrize("case", AHEAD.register("overwrite-setup", list(SETUP_ERRORS), _overwrite_setup_error))
def test_overwrite_with_setup_error_keeps_old_run(ahead, case):
    run = ahead.get("overwrite-setup", case)
    assert_user_error(run.res, *SETUP_ERRORS[case][1])
    assert_same_tree(run.before, run.after(), "the old run, its neighbour or keep/")


def _overwrite_disk_full(p: Project, param, notes) -> Command:
    return Command(fit_args("--overwrite"), prelude=DISK_FULL_TORCH_SAVE)


@pytest.mark.parametrize("param", AHEAD.register("overwrite-disk-full", ["torch.save"], _overwrite_disk_full))
def test_overwrite_with_disk_full_at_first_checkpoint_keeps_old_run(ahead, param):
    case = ahead.get("overwrite-disk-full", param)
    assert_user_error(case.res, ".pt")
    assert_same_tree(case.before, case.after(), "the old run")


def _overwrite_ok(p: Project, param, notes) -> Command:
    notes["old"] = json.loads((p.run / "run.json").read_text())
    return Command(fit_args("--overwrite"))


@pytest.mark.parametrize("param", AHEAD.register("overwrite-ok", ["plain"], _overwrite_ok))
def test_overwrite_that_succeeds_replaces_the_run(ahead, param):
    case = ahead.get("overwrite-ok", param)
    assert_ok(case.res)
    p, old = case.project, case.notes["old"]
    new = json.loads((p.run / "run.json").read_text())
    assert new["status"] == "complete" and new["created"] > old["created"], new
    assert (p.run / "fold0" / "best.pt").is_file() and (p.run / "oof.csv").is_file()
    after = case.after()
    for outside in ("project/runs/other", "project/keep"):
        assert_same_tree({k: v for k, v in case.before.items() if k.startswith(outside)},
                         {k: v for k, v in after.items() if k.startswith(outside)}, outside)
    assert not tmp_files(case.base), tmp_files(case.base)


# =========================================================================== 3. set-up, check, --resume

NEW_RUN_SETUP = ["unknown-model", "unreadable-pretrained"]


def _new_run_setup_error(p: Project, case: str, notes) -> Command:
    shutil.rmtree(p.runs)
    if case == "unreadable-pretrained":
        _write_bad_weights(p, "text")
    return Command(fit_args(*SETUP_ERRORS[case][0]))


@pytest.mark.parametrize("case", AHEAD.register("new-run-setup", NEW_RUN_SETUP, _new_run_setup_error))
def test_failed_setup_of_a_new_run_leaves_nothing_to_trip_over(ahead, case):
    """No run folder behind, or one that the corrected command simply reuses."""
    run = ahead.get("new-run-setup", case)
    args, needles = SETUP_ERRORS[case]
    assert_user_error(run.res, *needles)
    p = run.project
    if not os.path.lexists(p.run):
        return
    if case == "unreadable-pretrained":  # fixed: a good weights file, the very same command
        shutil.copy(real_checkpoint(), p.root / "weights.pth")
        fixed = args
    else:  # fixed: the bad override dropped
        fixed = []
    again = comp(*fit_args(*fixed), cwd=p.root)
    assert again.rc == 0, "the failed set-up left a run folder and the corrected command is refused:\n" + again.text
    assert_no_traceback(again)


CHECK_SETUP = ["unknown-model", "unreadable-pretrained", "class-weight-count", "warmup-ge-epochs"]


def _check_setup_error(p: Project, case: str, notes) -> Command:
    if case == "unreadable-pretrained":
        _write_bad_weights(p, "text")
    return Command(("check", "tiny.toml", *SETUP_ERRORS[case][0]))


@pytest.mark.parametrize("case", AHEAD.register("check-setup", CHECK_SETUP, _check_setup_error))
def test_check_makes_the_setup_checks_of_fit(ahead, case):
    assert_user_error(ahead.get("check-setup", case).res, *SETUP_ERRORS[case][1])


RESUME_OVERRIDES = {  # id: (overrides, what the message must name; None: accepted)
    "two-differing-keys": (["--set", "optim.lr=0.5", "--set", "augment.hflip=0.0"], ["lr", "hflip"]),
    "equal-to-stored": (["--set", "train.epochs=1"], None),
}


def _resume_override(p: Project, case: str, notes) -> Command:
    return Command(fit_args("--resume", *RESUME_OVERRIDES[case][0]))


@pytest.mark.parametrize("case", AHEAD.register("resume-override", list(RESUME_OVERRIDES), _resume_override))
def test_resume_with_overrides_that_differ_from_the_run(ahead, case):
    run = ahead.get("resume-override", case)
    needles = RESUME_OVERRIDES[case][1]
    if needles is None:  # the same value as stored: nothing differs
        assert_ok(run.res)
        return
    assert_user_error(run.res, *needles)
    assert_same_tree(run.before, run.after(), "the run")


# =========================================================================== 4. the run lock

SLOW = ("--set", "train.epochs=1000")  # runs until the test stops it


@pytest.fixture(scope="class")
def holder(tmp_path_factory, pristine):
    """A slow fit of a new run, holding runs/tiny while TestRunLock's tests run."""
    p = make_project(tmp_path_factory.mktemp("lock"), pristine, with_runs=False)
    proc = spawn(*fit_args(*SLOW), cwd=p.root, log=p.root.parent / "holder")
    try:
        wait_for(lambda: (p.run / "run.json").is_file(), proc, "run.json from the first fit")
        yield p, proc
    finally:
        stop(proc)


class TestRunLock:
    """A fit holds its run folder; a second fit of it is refused while the first one lives."""

    # --resume first: today it trains beside the holder; --overwrite deletes the holder's folder.
    @pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
    def test_second_fit_is_refused_naming_the_holder(self, holder, flag):
        p, proc = holder
        assert proc.poll() is None, "the first fit is gone:\n" + logs(proc)
        extra = ("--set", "train.epochs=1") if flag == "--overwrite" else ()  # finishes quickly today
        res = comp(*fit_args(flag, *extra), cwd=p.root, timeout=40)
        assert_user_error(res, str(proc.pid))
        assert proc.poll() is None, "the first fit died:\n" + logs(proc)

    def test_lock_of_a_killed_fit_is_taken_over(self, empty_project):
        p = empty_project
        last = p.run / "fold0" / "last.pt"
        first = start(*fit_args(*SLOW), cwd=p.root, log=p.root.parent / "first")
        second = None
        try:
            wait_for(last.is_file, first, "fold0/last.pt from the first fit")
            stop(first)  # kill -9: its lock stays behind
            stamp = last.stat().st_mtime_ns
            second = start(*fit_args("--resume"), cwd=p.root, log=p.root.parent / "second")
            wait_for(lambda: last.stat().st_mtime_ns != stamp, second, "an epoch saved by the resumed fit")
            second.send_signal(signal.SIGINT)
            second.wait(timeout=60)
            assert second.returncode == 130, logs(second)
            assert "Traceback" not in logs(second), logs(second)
        finally:
            stop(first)
            if second is not None:
                stop(second)


# =========================================================================== 5. atomic writes


def _out_symlink(p: Project, param, notes) -> Command:
    (p.root / "shared").mkdir()
    (p.root / "shared" / "real.csv").write_text("old content\n")
    (p.root / "subs").mkdir()
    (p.root / "subs" / "sub.csv").symlink_to(Path("..") / "shared" / "real.csv")
    return Command(predict_args(p.root / "subs" / "sub.csv"))


@pytest.mark.parametrize("param", AHEAD.register("out-symlink", ["relative-link"], _out_symlink))
def test_predict_out_through_symlink_updates_target_and_keeps_link(ahead, param):
    case = ahead.get("out-symlink", param)
    assert_ok(case.res)
    link, target = case.project.root / "subs" / "sub.csv", case.project.root / "shared" / "real.csv"
    assert link.is_symlink(), "the link was replaced by a file"
    assert os.readlink(link) == str(Path("..") / "shared" / "real.csv")
    assert target.read_text().startswith("id,label\n"), target.read_text()
    assert not tmp_files(case.base), tmp_files(case.base)


SPECIAL_OUT = ["fifo", "char-device", "directory"]


def _out_special(p: Project, kind: str, notes) -> Command:
    out = p.root / "special.csv"
    if kind == "fifo":
        os.mkfifo(out)  # nothing ever reads it: comp must not open it (the timeout guards)
    elif kind == "char-device":
        try:
            os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        except OSError as err:
            notes["skip"] = f"cannot create a character device here ({err.strerror}; needs CAP_MKNOD)"
            return Command(("--help",))
    else:
        out.mkdir()
        (out / "inside.txt").write_text("x\n")
    return Command(predict_args(out), timeout=90)


@pytest.mark.parametrize("kind", AHEAD.register("out-special", SPECIAL_OUT, _out_special))
def test_predict_out_onto_a_special_file_is_refused(ahead, kind):
    case = ahead.get("out-special", kind)
    if "skip" in case.notes:
        pytest.skip(case.notes["skip"])
    assert_user_error(case.res, "special.csv")
    assert_same_tree(case.before, case.after(), f"the {kind} named by --out")  # still a FIFO/device/folder
    assert not tmp_files(case.base), tmp_files(case.base)


UMASKS = [(0o022, 0o644), (0o027, 0o640)]


def _out_umask(p: Project, param, notes) -> Command:
    return Command(predict_args(p.root / "sub.csv"), umask=param[0])


@pytest.mark.parametrize("param", AHEAD.register("out-umask", UMASKS, _out_umask), ids=["022", "027"])
def test_predict_out_mode_follows_umask(ahead, param):
    case = ahead.get("out-umask", param)
    assert_ok(case.res)
    mode = stat.S_IMODE((case.project.root / "sub.csv").stat().st_mode)
    assert mode == param[1], f"{mode:o} under umask {param[0]:03o}"


@pytest.mark.parametrize("name", ["run.json", "recipe.toml", "oof.csv", "fold0/best.pt", "fold0/last.pt"])
def test_run_files_mode_0644_under_umask_022(pristine, name):
    mode = stat.S_IMODE((pristine / "runs" / "tiny" / name).stat().st_mode)
    assert mode == 0o644, f"{name}: {mode:o}"


def _stale_temps(p: Project, command: str, notes) -> Command:
    # atomic.py's temp names: mkstemp(prefix=".<name>.", suffix=".tmp") beside the target; a
    # killed write's temp is older than atomic.STALE_TEMP_SECONDS (a fresh one may be a live write's)
    if command == "predict":
        temps = [p.root / ".sub.csv.k1ll3d_.tmp"]
        temps[0].write_bytes(b"id,la")
        cmd = Command(predict_args(p.root / "sub.csv"))
    else:
        temps = [p.run / "fold0" / ".last.pt.k1ll3d_.tmp", p.run / ".oof.csv.k1ll3d_.tmp"]
        temps[0].write_bytes(bytes(100_000))
        temps[1].write_bytes(b"id,label,fo")
        # Fold 0 as if killed before its first last.pt: its job, resumed, trains it again from the
        # start, rewriting its checkpoints and oof.csv (without --resume a started fold is refused).
        (p.run / "fold0" / "result.json").unlink()
        (p.run / "fold0" / "last.pt").unlink()
        cmd = Command(fit_args("--fold", "0", "--resume"))
    for temp in temps:
        os.utime(temp, (time.time() - 3600,) * 2)
    return cmd


@pytest.mark.parametrize("command", AHEAD.register("stale-temps", ["predict", "fit"], _stale_temps))
def test_stale_temps_of_a_killed_write_are_removed_by_the_next_write(ahead, command):
    case = ahead.get("stale-temps", command)
    assert_ok(case.res)
    assert not tmp_files(case.base), tmp_files(case.base)


# =========================================================================== 6. broken files


def _broken_best(p: Project, kind: str, notes) -> Command:
    best = p.run / "fold0" / "best.pt"
    best.write_bytes(broken_bytes(kind, best.read_bytes()))
    return Command(predict_args(p.root / "sub.csv"))


@pytest.mark.parametrize("kind", AHEAD.register("broken-best", BROKEN_KINDS, _broken_best))
def test_predict_with_broken_best_checkpoint(ahead, kind):
    case = ahead.get("broken-best", kind)
    assert_user_error(case.res, "best.pt")
    assert not os.path.lexists(case.project.root / "sub.csv"), "a submission came from a broken checkpoint"
    assert not tmp_files(case.base), tmp_files(case.base)


def _broken_last(p: Project, kind: str, notes) -> Command:
    (p.run / "fold0" / "result.json").unlink()  # fold 0 unfinished: --resume reads last.pt
    last = p.run / "fold0" / "last.pt"
    last.write_bytes(broken_bytes(kind, last.read_bytes()))
    return Command(fit_args("--resume"))


@pytest.mark.parametrize("kind", AHEAD.register("broken-last", ["empty", "truncated"], _broken_last))
def test_resume_with_broken_last_checkpoint_says_how_to_start_over(ahead, kind):
    assert_user_error(ahead.get("broken-last", kind).res, "last.pt", "--overwrite")


def _broken_pretrained(p: Project, kind: str, notes) -> Command:
    shutil.rmtree(p.runs)
    _write_bad_weights(p, kind)
    return Command(fit_args("--set", 'model.pretrained="weights.pth"'))


@pytest.mark.parametrize("kind", AHEAD.register("broken-pretrained", ["empty", "text", "random"], _broken_pretrained))
def test_fit_with_broken_pretrained_weights(ahead, kind):
    assert_user_error(ahead.get("broken-pretrained", kind).res, "weights.pth")


DISK_FULL = {  # id: (command, prelude, what the message must name)
    "fit-checkpoint-efbig": ("fit", file_size_limit(256 * 1024), ".pt"),  # the C++ writer fails for real
    "predict-csv-efbig": ("predict", file_size_limit(16), "sub.csv"),
}


def _disk_full(p: Project, case: str, notes) -> Command:
    command, prelude, _ = DISK_FULL[case]
    if command == "fit":
        shutil.rmtree(p.runs)
        return Command(fit_args(), prelude=prelude)
    return Command(predict_args(p.root / "sub.csv"), prelude=prelude)


@pytest.mark.parametrize("case", AHEAD.register("disk-full", list(DISK_FULL), _disk_full))
def test_disk_full_while_writing(ahead, case):
    run = ahead.get("disk-full", case)
    assert_user_error(run.res, DISK_FULL[case][2])
    assert not os.path.lexists(run.project.root / "sub.csv")
    assert not tmp_files(run.base), tmp_files(run.base)


def _nan_last_step(p: Project, param, notes) -> Command:
    shutil.rmtree(p.runs)
    # One step per epoch at an absurd LR: that step's loss is finite, the weights after it are not.
    return Command(fit_args("--set", "optim.lr=1e30", "--set", "train.batch_size=16"))


@pytest.mark.parametrize("param", AHEAD.register("nan", ["last-step"], _nan_last_step))
def test_nan_from_the_last_update_of_an_epoch(ahead, param):
    res = ahead.get("nan", param).res
    assert_user_error(res)
    assert any(w in res.err.lower() for w in ("nan", "non-finite", "inf")), res.text


ENCODINGS = {"utf-16": "utf-16", "latin-1": "utf-8", "utf-8-sig": None}  # encoding: needle (None: accepted)


def _encoded_recipe(p: Project, encoding: str, notes) -> Command:
    text = "# recette: café\n" + p.recipe.read_text()
    (p.root / "enc.toml").write_bytes(text.encode(encoding))
    return Command(("check", "enc.toml"))


@pytest.mark.parametrize("encoding", AHEAD.register("encoding", list(ENCODINGS), _encoded_recipe))
def test_recipe_encoding(ahead, encoding):
    res = ahead.get("encoding", encoding).res
    if ENCODINGS[encoding] is None:  # UTF-8 with a BOM is simply UTF-8
        assert_ok(res)
        return
    assert_user_error(res, "enc.toml")
    assert ENCODINGS[encoding] in res.err.lower(), res.text


# =========================================================================== 7. labels and paths


def _competition(p: Project, data_root: Path, name: str = "competition") -> Path:
    # Not "comp": under `python -m comp` the working directory comes first on sys.path, so with an
    # editable install a folder comp/ there (holding train/ and test/) shadows comp's subpackages.
    root = p.root / name
    shutil.copytree(data_root, root)
    return root


def _relabelled(p: Project, labels: dict[int, str]) -> Command:
    """The competition with train.csv rows ``labels`` relabelled (rows 0 and 3 are "cat")."""
    root = _competition(p, AHEAD.data_root)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    for row, label in labels.items():
        train.loc[row, "label"] = label
    train.to_csv(root / "train.csv", index=False)
    return Command(("check", tiny_recipe(p.root / "r.toml", root)))


@pytest.mark.parametrize("variant", AHEAD.register(
    "case-label", ["Cat ", "CAT"], lambda p, v, notes: _relabelled(p, {0: v, 3: v})))
def test_check_warns_about_labels_differing_by_case_or_whitespace(ahead, variant):
    res = ahead.get("case-label", variant).res
    assert_ok(res)
    assert any(variant.strip() in w and "cat" in w for w in warnings_in(res)), res.text


@pytest.mark.parametrize("label", AHEAD.register(
    "nan-label", ["nan", "None"], lambda p, v, notes: _relabelled(p, {0: v, 3: v})))
def test_check_warns_about_nan_like_labels(ahead, label):
    res = ahead.get("nan-label", label).res
    assert_ok(res)
    assert any(label in w for w in warnings_in(res)), res.text


@pytest.mark.parametrize("param", AHEAD.register(
    "empty-label", ["empty"], lambda p, v, notes: _relabelled(p, {0: "", 3: ""})))
def test_check_on_empty_labels_warns_or_fails_naming_them(ahead, param):
    res = ahead.get("empty-label", param).res
    assert_no_traceback(res)
    if res.rc == 0:
        assert any("empty" in w.lower() for w in warnings_in(res)), res.text
    else:
        assert_user_error(res, "empty")


def _header_only(p: Project, param, notes) -> Command:
    root = _competition(p, AHEAD.data_root)
    (root / "train.csv").write_text("id,label\n")
    return Command(("check", tiny_recipe(p.root / "r.toml", root)))


@pytest.mark.parametrize("param", AHEAD.register("header-only", ["train.csv"], _header_only))
def test_check_fails_on_header_only_train_csv(ahead, param):
    assert_user_error(ahead.get("header-only", param).res, "train.csv")


def _few_rows(p: Project, param, notes) -> Command:
    root = write_competition(p.root / "few", n_train=18, n_test=3, size=16)  # 6 rows a class
    train = pd.read_csv(root / "train.csv", dtype=str)
    eel = train.index[train["label"] == "eel"]
    train.drop(eel[2:]).to_csv(root / "train.csv", index=False)  # eel keeps 2 rows
    recipe = tiny_recipe(p.root / "r.toml", root, extra='\n[cv]\nscheme = "kfold"\nfolds = 5\n')
    return Command(("check", recipe))


@pytest.mark.parametrize("param", AHEAD.register("few-rows", ["kfold-5"], _few_rows))
def test_check_names_class_with_fewer_rows_than_folds(ahead, param):
    res = ahead.get("few-rows", param).res
    assert_ok(res)
    assert any("eel" in w for w in warnings_in(res)), res.text


def _score_outside(p: Project, param, notes) -> Command:
    solution = AHEAD.data_root / "solution.csv"
    sub = pd.read_csv(solution, dtype=str)
    sub.loc[0, "label"] = "zebra"
    sub.to_csv(p.root / "sub.csv", index=False)
    return Command(("score", "sub.csv", "--solution", solution))


@pytest.mark.parametrize("param", AHEAD.register("score-outside", ["zebra"], _score_outside))
def test_score_rejects_labels_outside_the_solution(ahead, param):
    assert_user_error(ahead.get("score-outside", param).res, "zebra")


def _path_outside(p: Project, where: str, notes) -> Command:
    root = _competition(p, AHEAD.data_root)
    outside = p.root / "outside.png"
    shutil.copy(root / "train" / "tr000.png", outside)
    train = pd.read_csv(root / "train.csv", dtype=str)
    train["path"] = [f"train/{i}.png" for i in train["id"]]
    train.loc[0, "path"] = "../outside.png" if where == "relative" else str(outside)
    train.to_csv(root / "train.csv", index=False)
    test = pd.read_csv(root / "test.csv", dtype=str)
    test["path"] = [f"test/{i}.png" for i in test["id"]]
    test.to_csv(root / "test.csv", index=False)
    return Command(("check", tiny_recipe(p.root / "r.toml", root, data_extra='path_col = "path"\n')))


@pytest.mark.parametrize("where", AHEAD.register("path-outside", ["relative", "absolute"], _path_outside))
def test_check_lists_image_paths_outside_the_competition(ahead, where):
    res = ahead.get("path-outside", where).res
    assert_ok(res)
    assert any("outside.png" in w for w in warnings_in(res)), res.text


# =========================================================================== 8. Ctrl-C with workers


def test_ctrl_c_with_loader_workers_prints_its_message_once(empty_project):
    p = empty_project
    proc = start(*fit_args(*SLOW, "--set", "train.workers=2"), cwd=p.root, log=p.root.parent / "fit")
    try:
        wait_for((p.run / "fold0" / "history.csv").is_file, proc, "a finished epoch")
        time.sleep(0.3)  # into the next epoch, the workers loading
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the fit did not stop after Ctrl-C:\n" + logs(proc))
    finally:
        stop(proc)
    err = Path(f"{proc.log}.err").read_text()
    assert proc.returncode == 130, logs(proc)
    assert "Traceback" not in err, err
    assert err.count("finishing the current step") == 1, err
    assert "--resume" in err, err


# =========================================================================== 9. issue 27: a careless user

# ----------------------------------------------------------------- work lost without --overwrite


def _foreign_folder(p: Project, overwrite: bool, notes) -> Command:
    """runs/mynotes/ is the user's folder (notes, results), not a run."""
    (p.runs / "mynotes").mkdir()
    (p.runs / "mynotes" / "notes.md").write_text("my results, not comp's\n")
    return Command(fit_args("--set", "name=mynotes", *(["--overwrite"] if overwrite else [])))


@pytest.mark.parametrize("overwrite", AHEAD.register("foreign-folder", [False, True], _foreign_folder),
                         ids=["new", "overwrite"])
def test_fit_refuses_a_folder_it_did_not_make_at_the_runs_place(ahead, overwrite):
    case = ahead.get("foreign-folder", overwrite)
    assert_user_error(case.res, "mynotes", "not a run")
    assert_same_tree(case.before, case.after(), "the user's folder")


def _runs_is_the_data(p: Project, param, notes) -> Command:
    """--runs names the folder holding the competition, and the run is named after it."""
    root = _competition(p, AHEAD.data_root)
    tiny_recipe(p.root / "r.toml", root)
    return Command(("fit", "r.toml", "--runs", ".", "--set", "name=competition"))


@pytest.mark.parametrize("param", AHEAD.register("runs-is-data", ["competition"], _runs_is_the_data))
def test_fit_into_the_competition_folder_is_refused(ahead, param):
    case = ahead.get("runs-is-data", param)
    assert_user_error(case.res, "competition")
    assert_same_tree(case.before, case.after(), "the competition")


def _demo_over_a_folder(p: Project, param, notes) -> Command:
    (p.root / "mine").mkdir()
    (p.root / "mine" / "train.csv").write_text("id,label\nmy,own\n")
    return Command(("demo", "--dest", "mine"))


@pytest.mark.parametrize("param", AHEAD.register("demo-nonempty", ["mine"], _demo_over_a_folder))
def test_demo_refuses_a_non_empty_destination(ahead, param):
    case = ahead.get("demo-nonempty", param)
    assert_user_error(case.res, "mine", "--overwrite")
    assert_same_tree(case.before, case.after(), "the destination")


def test_demo_rebuilds_its_own_folder_in_place(tmp_path):
    """An earlier `comp demo` (what `make demo` runs every time) is not "non-empty" to demo."""
    from comp.data.demo import build_demo
    from comp.errors import CompError

    build_demo(tmp_path / "digits")
    first = snapshot(tmp_path / "digits")
    build_demo(tmp_path / "digits")
    assert snapshot(tmp_path / "digits") == first
    (tmp_path / "digits" / "notes.txt").write_text("mine\n")
    with pytest.raises(CompError, match="not empty"):
        build_demo(tmp_path / "digits")


def without_logs(tree: dict[str, str]) -> dict[str, str]:
    """A snapshot less the logs a command appends to (predict.log: what it printed, an error too)."""
    return {k: v for k, v in tree.items() if not k.endswith(".log")}


def _on_own_competition(p: Project) -> Path:
    """A copy of the competition that runs/tiny (and runs/other) now read: files a case may spoil."""
    root = _competition(p, AHEAD.data_root)
    for run in ("tiny", "other"):
        toml = p.runs / run / "recipe.toml"
        toml.write_text(toml.read_text().replace(str(AHEAD.data_root), str(root)))
    return root


OUT_ONTO_INPUT = ["run.json", "other-run", "fold-dir", "sample_submission", "test.csv", "test-image",
                  "link-to-run-file", "cv-report-out"]


def _out_onto_input(p: Project, where: str, notes) -> Command:
    root = _on_own_competition(p)
    out = {"run.json": p.run / "run.json", "other-run": p.runs / "other" / "oof.csv",
           "fold-dir": p.run / "fold0" / "new.csv", "sample_submission": root / "sample_submission.csv",
           "test.csv": root / "test.csv", "test-image": root / "test" / "te000.png",
           "link-to-run-file": p.root / "sub.csv", "cv-report-out": None}[where]
    if where == "link-to-run-file":
        out.symlink_to(p.run / "folds.csv")
    if where == "cv-report-out":  # the comparison figure onto a run's own picture
        return Command(("cv-report", "--run", "tiny", "--run", "other", "--runs", "runs", "--out",
                        p.run / "curves.png"))
    return Command(predict_args(out))


@pytest.mark.parametrize("where", AHEAD.register("out-onto-input", OUT_ONTO_INPUT, _out_onto_input))
def test_predict_out_onto_its_own_input_or_a_run_file_is_refused(ahead, where):
    case = ahead.get("out-onto-input", where)
    assert_user_error(case.res, "--out")
    assert_same_tree(without_logs(case.before), without_logs(case.after()), "the runs and the competition")


def _planted_link(p: Project, name: str, notes) -> Command:
    outside = p.root / "keep" / "notes.txt"
    (p.run / name).unlink(missing_ok=True)
    (p.run / name).symlink_to(outside)
    if name == "predict.log":
        return Command(predict_args(p.root / "sub.csv"))
    return Command(("cv-report", "--run", "tiny", "--runs", "runs"))


@pytest.mark.parametrize("name", AHEAD.register("planted-link", ["report.md", "predict.log"], _planted_link))
def test_a_link_planted_in_a_run_is_never_written_through(ahead, name):
    case = ahead.get("planted-link", name)
    assert_no_traceback(case.res)
    if name == "report.md":
        assert_user_error(case.res, "report.md", "outside")
    else:  # a log behind such a link is dropped with a warning; the submission is written
        assert case.res.rc == 0 and "predict.log" in case.res.err, case.res.text
    assert (case.project.root / "keep" / "notes.txt").read_text() == "not comp's to touch\n"
    assert (case.project.run / name).is_symlink()


# ----------------------------------------------------------------- a cache of another size

CACHE_SIZE = 8  # smaller than the 16-px images, so comp cache writes a copy of each


def _misfit_cache(p: Project, command: str, notes) -> Command:
    """A complete-looking cache for size 8 (manifest and all) whose arrays are 12 x 12: a copy
    of another size's cache, or a hand-made one."""
    root = _competition(p, AHEAD.data_root)
    recipe = tiny_recipe(p.root / "r.toml", root)
    recipe.write_text(recipe.read_text().replace("size = 16", f"size = {CACHE_SIZE}"))
    folder = root / ".cache" / f"{CACHE_SIZE}_none"
    files = {}
    for image in sorted(root.glob("t*/*.png")):
        rel = str(image.relative_to(root))
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{rel}.npy", np.full((12, 12, 3), 255, np.uint8))
        st = image.stat()
        files[rel] = [f"{rel}.npy", st.st_size, st.st_mtime_ns]
    (folder / "manifest.json").write_text(json.dumps({"format": 2, "size": CACHE_SIZE, "preprocess": "none",
                                                      "files": files}))
    notes["count"], notes["folder"] = len(files), folder
    if command == "cache":
        return Command(("cache", "r.toml"))
    return Command(("fit", "r.toml", "--runs", "runs", "--set", "name=cached"))


@pytest.mark.parametrize("command", AHEAD.register("misfit-cache", ["cache", "fit"], _misfit_cache))
def test_a_cache_of_another_size_is_rebuilt_or_not_read(ahead, command):
    case = ahead.get("misfit-cache", command)
    assert_ok(case.res)
    arrays = sorted(case.notes["folder"].rglob("*.npy"))
    if command == "cache":
        assert f"({case.notes['count']} written now)" in case.res.out, case.res.text
        assert {np.load(a).shape for a in arrays} == {(CACHE_SIZE, CACHE_SIZE, 3)}
    else:  # the fit says so and reads the sources
        assert "another size" in case.res.out + case.res.err, case.res.text


# ----------------------------------------------------------------- tracebacks and a hang

LONG_NAME = "r" * 300


def _tracebacks(p: Project, case: str, notes) -> Command:
    if case == "long-name":
        return Command(fit_args("--set", f"name={LONG_NAME}"))
    if case in ("runs-file-fit", "runs-file-predict"):
        (p.root / "runs.txt").write_text("a file, not a folder of runs\n")
        if case == "runs-file-fit":
            return Command(("fit", "tiny.toml", "--runs", "runs.txt"))
        return Command(("predict", "--runs", "runs.txt", "--out", "sub.csv"))
    if case == "header-only-test":
        root = _on_own_competition(p)
        (root / "test.csv").write_text("id\n")
        return Command(predict_args("sub.csv"))
    if case == "fifo-image":
        root = _competition(p, AHEAD.data_root)
        (root / "train" / "tr000.png").unlink()
        os.mkfifo(root / "train" / "tr000.png")  # nothing writes it: a reader would wait forever
        return Command(("check", tiny_recipe(p.root / "r.toml", root)), timeout=90)
    raise AssertionError(case)


TRACEBACKS = {  # id: what the message must name
    "long-name": ["300 characters"],
    "runs-file-fit": ["runs.txt", "not a folder"],
    "runs-file-predict": ["runs.txt", "not a folder"],
    "header-only-test": ["test.csv", "no rows"],
    "fifo-image": ["tr000.png", "FIFO"],
}


@pytest.mark.parametrize("case", AHEAD.register("tracebacks", list(TRACEBACKS), _tracebacks))
def test_what_was_a_traceback_or_a_hang_is_one_message(ahead, case):
    run = ahead.get("tracebacks", case)
    assert_user_error(run.res, *TRACEBACKS[case])
    assert not os.path.lexists(run.project.root / "sub.csv")
    assert_same_tree(without_logs(run.before), without_logs(run.after()), "the project")


def _foreign_best(p: Project, kind: str, notes) -> Command:
    """fold0/best.pt made for another model: a head for 4 classes, or no state dict at all."""
    import torch

    best = p.run / "fold0" / "best.pt"
    state = torch.load(best, weights_only=True)
    if kind == "four-classes":
        head = [k for k, v in state["model"].items() if v.ndim == 2 and v.shape[0] == 3][-1]
        state["model"][head] = torch.zeros(4, state["model"][head].shape[1])
        state["model"][head.replace("weight", "bias")] = torch.zeros(4)
    else:
        state["model"] = [1.0, 2.0]
    torch.save(state, best)
    return Command(predict_args(p.root / "sub.csv"))


@pytest.mark.parametrize("kind", AHEAD.register("foreign-best", ["four-classes", "not-a-state-dict"], _foreign_best))
def test_predict_checks_a_checkpoint_against_the_run_before_use(ahead, kind):
    case = ahead.get("foreign-best", kind)
    assert_user_error(case.res, "best.pt")
    if kind == "four-classes":
        assert "3 classes" in case.res.err and "(4," in case.res.err, case.res.text
    assert not os.path.lexists(case.project.root / "sub.csv")


# ----------------------------------------------------------------- the "partly" cases, decided


# Disk full as torch.save reports it when its writer comes up short: no errno, no "No space left".
SHORT_WRITE_TORCH_SAVE = textwrap.dedent('''\
    import torch

    def _short(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4096")

    torch.save = _short
    ''')


def _partly(p: Project, case: str, notes) -> Command:
    if case == "run-outside-runs":  # predict --run PATH: read it, write nothing there
        elsewhere = p.root.parent / "elsewhere"
        shutil.copytree(p.run, elsewhere / "tiny", symlinks=True)
        (elsewhere / "tiny" / "predict.log").unlink(missing_ok=True)
        return Command(("predict", "--run", str(elsewhere / "tiny"), "--runs", "runs", "--out", "sub.csv"))
    if case == "empty-recipe":
        (p.root / "empty.toml").write_text("# nothing yet\n\n")
        return Command(("check", "empty.toml"))
    if case == "huge-epochs":
        return Command(("check", "tiny.toml", "--set", "train.epochs=99999999999999999999"))
    if case == "bad-test-image":
        root = _on_own_competition(p)
        (root / "test" / "te001.png").write_bytes(b"not a png")
        return Command(predict_args("sub.csv"))
    if case == "short-checkpoint-write":  # torch's writer on a full disk, without an errno
        return Command(fit_args("--overwrite"), prelude=SHORT_WRITE_TORCH_SAVE)
    if case in ("score-folder", "root-is-file"):
        (p.root / "folder.csv").mkdir()
        if case == "score-folder":
            return Command(("score", "folder.csv", "--solution", AHEAD.data_root / "solution.csv"))
        (p.root / "data.zip").write_text("a file\n")
        return Command(("check", tiny_recipe(p.root / "r.toml", p.root / "data.zip")))
    if case in ("broken-neighbour-typo", "broken-neighbour-other"):
        (p.runs / "other" / "run.json").write_text('{"name": "oth')
        return Command(predict_args("sub.csv", *(["--run", "tyni"] if case.endswith("typo") else [])))
    raise AssertionError(case)


PARTLY = {  # id: (exit code, what the output must name, what it must not)
    "run-outside-runs": (0, [], []),
    "empty-recipe": (2, ["empty.toml", "empty"], []),
    "huge-epochs": (2, ["epochs", "out of range"], []),
    "bad-test-image": (2, ["te001.png", "test image"], ["--skip-bad"]),
    "short-checkpoint-write": (2, ["disk full", ".pt"], ["enforce fail"]),
    "score-folder": (2, ["folder.csv", "not a file"], ["not found"]),
    "root-is-file": (2, ["data.zip", "is a file"], ["not found"]),
    "broken-neighbour-typo": (2, ["no run named 'tyni'"], []),
    "broken-neighbour-other": (0, [], []),
}


@pytest.mark.parametrize("case", AHEAD.register("partly", list(PARTLY), _partly))
def test_partly_held_cases_have_their_decided_behaviour(ahead, case):
    run = ahead.get("partly", case)
    code, needles, absent = PARTLY[case]
    if code:
        assert_user_error(run.res, *needles, code=code)
    else:
        assert_ok(run.res)
    for word in absent:
        assert word not in run.res.err, run.res.text
    if case == "run-outside-runs":  # the run outside --runs is read, not written
        elsewhere = {k: v for k, v in run.before.items() if k.startswith("elsewhere")}
        assert_same_tree(elsewhere, {k: v for k, v in run.after().items() if k.startswith("elsewhere")},
                         "the run outside --runs")
    if case == "short-checkpoint-write":
        assert_same_tree(run.before, run.after(), "the old run")


def test_a_live_process_that_is_not_comp_does_not_hold_a_run(tmp_path, pristine):
    """A lock left by a killed fit whose pid now belongs to another program is taken over."""
    import socket

    p = make_project(tmp_path, pristine)
    other = subprocess.Popen(["sleep", "300"])
    try:
        (p.runs / ".tiny.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        res = comp(*fit_args("--overwrite", "--no-report"), cwd=p.root)
        assert_ok(res)
        assert not (p.runs / ".tiny.lock").exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("how", ["kill", "ctrl-c"])
def test_overwrite_stopped_after_its_first_checkpoint_keeps_the_old_run(tmp_path, pristine, how):
    p = make_project(tmp_path, pristine)
    before = snapshot(p.runs)
    proc = start(*fit_args("--overwrite", *SLOW), cwd=p.root, log=tmp_path / "fit")
    try:
        wait_for(lambda: any(p.runs.glob(".tiny.new-*/fold0/history.csv")), proc, "the new run's first epoch")
        if how == "kill":
            stop(proc)
        else:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=90)
    finally:
        stop(proc)
    assert_same_tree(before, {k: v for k, v in snapshot(p.runs).items() if ".tiny.new-" not in k},
                     "the old run")
    if how == "ctrl-c":
        err = Path(f"{proc.log}.err").read_text()
        assert proc.returncode == 130 and "Traceback" not in err, logs(proc)
        assert "kept as it was" in err and "--overwrite" in err, err
        assert not list(p.runs.glob(".tiny.new-*")), "the unfinished new run was left behind"


def test_two_ctrl_c_still_print_the_resume_command(empty_project):
    p = empty_project
    proc = start(*fit_args(*SLOW), cwd=p.root, log=p.root.parent / "fit")
    try:
        wait_for((p.run / "fold0" / "history.csv").is_file, proc, "a finished epoch")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)  # at once: the first has not finished its step yet
        proc.wait(timeout=90)
    finally:
        stop(proc)
    err = Path(f"{proc.log}.err").read_text()
    assert proc.returncode == 130, logs(proc)
    assert "Traceback" not in err, err
    assert "resume with: comp fit" in err and "--resume" in err, err
