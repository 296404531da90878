"""Shared fixtures: a tiny, learnable competition written by the tests themselves."""

from __future__ import annotations

import os

# One intra-op thread per test process: `make test` runs pytest-xdist workers, one per core, and
# the tiny models gain nothing from more threads (two threads per worker on two cores made steps
# several times slower). Set before torch is imported, so the fits the tests start in child
# processes compute with the same thread count as those in the test process.
os.environ["OMP_NUM_THREADS"] = "1"

import contextlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)

COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "eel": (40, 40, 220)}


def pytest_configure(config: pytest.Config) -> None:
    """Under ``-n N`` (pytest-xdist, whose --dist is then "load"), distribute as "loadgroup": the
    tests of a module marked ``xdist_group`` (one whose module fixture fits a run, say) go to one
    worker, which makes that fixture once, instead of every worker that got some of them making it
    again; every other test is handed out on its own, as with "load"."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # a worker names its tests' groups as its controller asked
        if workerinput.get("comp_loadgroup"):
            config.option.loadgroup = True
    elif getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", None) == "load":
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist's controller, per worker: whether it distributes by group (a worker learns its
    --dist from the command line, which says "load" or nothing)."""
    node.workerinput["comp_loadgroup"] = node.config.getvalue("dist") == "loadgroup"


def write_competition(root: Path, n_train: int = 36, n_test: int = 9, size: int = 16,
                      seed: int = 0) -> Path:
    """Images whose class is their dominant colour, plus noise; string labels on purpose."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()

    def image(label: str) -> np.ndarray:
        base = np.array(COLOURS[label], dtype=np.float64)
        img = base + rng.normal(0, 25, size=(size, size, 3))
        return np.clip(img, 0, 255).astype(np.uint8)

    train_labels = [names[i % 3] for i in range(n_train)]
    test_labels = [names[i % 3] for i in range(n_test)]
    train_ids = [f"tr{i:03d}" for i in range(n_train)]
    test_ids = [f"te{i:03d}" for i in range(n_test)]
    for folder, ids, labels in (("train", train_ids, train_labels), ("test", test_ids, test_labels)):
        for i, lab in zip(ids, labels):
            cv2.imwrite(str(root / folder / f"{i}.png"), image(lab)[:, :, ::-1])
    pd.DataFrame({"id": train_ids, "label": train_labels}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": test_ids}).to_csv(root / "test.csv", index=False)
    # The sample lists ids in another order than test.csv, as real ones may.
    pd.DataFrame({"id": test_ids[::-1], "label": "cat"}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": test_ids, "label": test_labels}).to_csv(root / "solution.csv", index=False)
    return root


def write_regression_competition(root: Path, n_train: int = 36, n_test: int = 9, size: int = 16,
                                 seed: int = 0) -> Path:
    """Grey images whose brightness is the target (0-100, one decimal) plus noise; column "score"."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    values = {"train": rng.uniform(0, 100, n_train).round(1), "test": rng.uniform(0, 100, n_test).round(1)}
    ids = {"train": [f"tr{i:03d}" for i in range(n_train)], "test": [f"te{i:03d}" for i in range(n_test)]}
    for folder in ("train", "test"):
        for i, v in zip(ids[folder], values[folder]):
            img = np.full((size, size, 3), 40 + 2 * v) + rng.normal(0, 10, size=(size, size, 3))
            cv2.imwrite(str(root / folder / f"{i}.png"), np.clip(img, 0, 255).astype(np.uint8))
    pd.DataFrame({"id": ids["train"], "score": values["train"]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ids["test"]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": ids["test"][::-1], "score": 0}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids["test"], "score": values["test"]}).to_csv(root / "solution.csv", index=False)
    return root


def write_multilabel_competition(root: Path, n_train: int = 36, n_test: int = 9, size: int = 16,
                                 seed: int = 0, columns: bool = False) -> Path:
    """Images whose labels are the colour channels lit ("red", "green", "blue"; a row may have
    none), plus noise. Tags in one column ``tags`` (Planet's layout), or with ``columns`` one 0/1
    column per label (Plant Pathology's), the sample then holding probabilities."""
    rng = np.random.default_rng(seed)
    names = ["red", "green", "blue"]
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    sets = {"train": [(i * 5 + 1) % 8 for i in range(n_train)], "test": [(i * 3 + 2) % 8 for i in range(n_test)]}
    ids = {"train": [f"tr{i:03d}" for i in range(n_train)], "test": [f"te{i:03d}" for i in range(n_test)]}
    Y = {k: np.array([[(code >> j) & 1 for j in range(3)] for code in v]) for k, v in sets.items()}
    for folder in ("train", "test"):
        for i, row in zip(ids[folder], Y[folder]):
            rgb = 30 + 190 * row
            img = rgb[None, None, :] + rng.normal(0, 20, size=(size, size, 3))
            cv2.imwrite(str(root / folder / f"{i}.png"), np.clip(img, 0, 255).astype(np.uint8)[:, :, ::-1])

    def frame(part: str, order=slice(None)) -> pd.DataFrame:
        rows = Y[part][order]
        if columns:
            return pd.DataFrame(rows, columns=names).assign(id=ids[part][order])[["id", *names]]
        tags = [" ".join(n for n, on in zip(names, r) if on) for r in rows]
        return pd.DataFrame({"id": ids[part][order], "tags": tags})

    frame("train").to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ids["test"]}).to_csv(root / "test.csv", index=False)
    sample = frame("test", slice(None, None, -1))
    if columns:
        sample[names] = 0.5
    else:
        sample["tags"] = "red green"
    sample.to_csv(root / "sample_submission.csv", index=False)
    frame("test").to_csv(root / "solution.csv", index=False)
    return root


def write_recipe(path: Path, data_root: Path, extra: str = "") -> Path:
    """A recipe for the tiny competition: small model input, two quick epochs, no workers."""
    path.write_text(textwrap.dedent(f"""\
        name = "tiny"
        seed = 1

        [data]
        root = "{data_root}"

        [model]
        name = "test_resnet"

        [augment]
        size = 32
        hflip = 0.5

        [optim]
        lr = 0.003

        [train]
        epochs = 2
        batch_size = 8
        workers = 0
        monitor = "accuracy"
        """) + textwrap.dedent(extra))
    return path


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return write_competition(tmp_path / "comp")


@pytest.fixture
def recipe_file(tmp_path: Path, competition: Path) -> Path:
    return write_recipe(tmp_path / "tiny.toml", competition)


# --------------------------------------------------------------------------- comp in a process

# What a command imports, loaded once by the fork server, so a forked `comp` starts in
# milliseconds instead of the seconds that importing torch, timm and matplotlib take.
_PRELOAD = ["torch", "timm", "comp.cli", "comp.train.fit", "comp.train.fold_processes", "comp.predict.predict",
            "comp.evaluate.report", "comp.data.check", "comp.evaluate.score", "sklearn.metrics",
            "sklearn.calibration", "sklearn.model_selection", "scipy.stats", "rich.console", "rich.progress",
            "PIL.JpegImagePlugin"]
_forks = None


def _fork_context():
    """The fork server's multiprocessing context, started with the first process it forks."""
    global _forks
    import multiprocessing

    if _forks is None:
        _forks = multiprocessing.get_context("forkserver")
        _forks.set_forkserver_preload(_PRELOAD)
    return _forks


def _forked_comp(args: list[str], cwd: str, umask: int, prelude: str, out: str, err: str,
                 session: bool = False) -> None:
    """Child side of :func:`run_comp` and :func:`start_comp`: ``python -m comp ARGS`` less the
    interpreter's start-up.

    stdout and stderr are the FIFOs (or files) ``out`` and ``err`` at the descriptor level (pipes, as
    for a subprocess: a file-size limit a prelude sets does not apply to them), stdin is /dev/null;
    an exception leaves as a traceback on stderr and exit code 1, ``SystemExit`` as its code
    (multiprocessing's bootstrap does what the interpreter does with them). ``session``: the
    process leads a session and process group of its own, as with Popen's start_new_session.
    """
    import atexit
    import runpy
    import traceback

    if session:
        os.setsid()
    os.chdir(cwd)
    os.umask(umask)
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        f = os.open(path, mode)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if prelude:
        exec(compile(prelude, "<prelude>", "exec"), {"__name__": "__prelude__"})
    sys.argv = ["comp", *args]
    code = 0
    try:
        runpy.run_module("comp", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    except BaseException:
        traceback.print_exc()
        code = 1
    # The interpreter runs them at exit, multiprocessing's child does not; run once the exception
    # and the frames it holds are gone (a DataLoader's iterator among them shuts its workers down
    # as it goes; held, its workers outlive the exit functions that wait for them).
    atexit._run_exitfuncs()
    sys.exit(code)


def run_comp(args: list[str], cwd: Path, *, umask: int = 0o022, prelude: str = "",
             timeout: float = 300) -> tuple[int | None, str, str]:
    """Run ``python -m comp ARGS`` in ``cwd`` in its own process, forked from a server that has
    already imported torch and comp; ``prelude`` is Python run first in that process.

    Returns (exit code, stdout, stderr); the exit code is None if the command still ran after
    ``timeout`` seconds (it is killed). A negative code is the signal that ended it.
    """
    import selectors
    import tempfile
    import time

    forks = _fork_context()
    with tempfile.TemporaryDirectory(prefix="comp-out-") as tmp:
        paths = [os.path.join(tmp, "out"), os.path.join(tmp, "err")]
        for path in paths:
            os.mkfifo(path)
        # Opened read-write (Linux allows it for a FIFO): the child's opens for writing never
        # block, and the FIFO never reads as at its end, so select waits for data, not spins.
        fds = [os.open(path, os.O_RDWR | os.O_NONBLOCK) for path in paths]
        got = {fd: bytearray() for fd in fds}
        sel = selectors.DefaultSelector()
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)

        def drain(wait: float) -> None:
            for key, _ in sel.select(wait):
                try:
                    while chunk := os.read(key.fd, 65536):
                        got[key.fd] += chunk
                except BlockingIOError:
                    pass

        try:
            proc = forks.Process(target=_forked_comp, args=([str(a) for a in args], str(cwd), umask, prelude,
                                                              *paths))
            proc.start()
            deadline = time.monotonic() + timeout
            while proc.is_alive() and time.monotonic() < deadline:
                drain(0.05)
            code = proc.exitcode
            if code is None:
                proc.kill()
                proc.join()
            proc.join()
            drain(0)
        finally:
            sel.close()
            for fd in fds:
                os.close(fd)
        return code, *(got[fd].decode(errors="replace") for fd in fds)


class CompProcess:
    """A ``comp`` that :func:`start_comp` started: the calls of subprocess.Popen the tests make."""

    def __init__(self, process, out: Path, err: Path) -> None:
        self._process, self.pid, self.out, self.err = process, process.pid, out, err

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["comp"], timeout)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def output(self) -> str:
        """What it wrote so far: stdout, then stderr."""
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def start_comp(args: list[str], cwd: Path, log: Path, *, umask: int = 0o022, prelude: str = "",
               session: bool = False) -> CompProcess:
    """Start ``python -m comp ARGS`` in ``cwd`` in its own process (forked as :func:`run_comp`'s are)
    and return at once, for a test that signals it while it runs; stdout and stderr go to the files
    ``log``.out and ``log``.err. ``session``: a session and process group of its own (os.killpg
    with its pid reaches its loader workers too, as Ctrl-C in a terminal does)."""
    out, err = Path(f"{log}.out"), Path(f"{log}.err")
    for path in (out, err):
        path.write_bytes(b"")
    process = _fork_context().Process(target=_forked_comp, args=([str(a) for a in args], str(cwd), umask, prelude,
                                                                 str(out), str(err), session))
    process.start()
    return CompProcess(process, out, err)


# --------------------------------------------------------------------------- a Python for scripts

_CLIENT = """\
#!{python} -IS
# `python ARGS` for a script that runs Python: ARGS, the working directory, the environment and
# descriptors 0-2 go to the server at {socket}, which runs them in a process forked from itself;
# the signals a launcher stops its processes with are passed on to that process.
import array, json, os, signal, socket, sys
request = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode()
with socket.socket(socket.AF_UNIX) as s:
    s.connect({socket!r})
    s.sendmsg([len(request).to_bytes(8, "big") + request],
               [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    answer = b""
    while chunk := s.recv(64):
        answer += chunk
        if answer.count(b"\\n") == 1:  # the process's pid
            pid = int(answer.split()[0])
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, lambda sig, frame: os.kill(pid, sig))
code = answer.split(b"\\n")[1:2]
sys.exit(int(code[0]) if code and code[0] else 1)  # no exit code: the process died
"""


def _serve_python(path: str, preload: list[str]) -> None:
    """Server side of :func:`forked_python`: accepts one request per connection, forks, runs it."""
    import importlib
    import signal
    import socket

    for name in preload:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped as they end
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path + ".new")
        server.listen(8)
        os.rename(path + ".new", path)  # the client finds the socket only once it listens
        while True:
            conn, _ = server.accept()
            if os.fork() == 0:
                server.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _run_python(conn)
            conn.close()


def _run_python(conn) -> None:
    """Child side of :func:`forked_python`: what ``python ARGV`` does (``-c CODE``, ``-m MODULE``,
    ``-`` or a script path, then its arguments), then the exit code to the client."""
    import array
    import atexit
    import json
    import runpy
    import socket
    import sys
    import traceback

    fds = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * fds.itemsize))
    for _, _, payload in ancillary:
        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    size, data = int.from_bytes(data[:8], "big"), data[8:]
    while len(data) < size:
        data += conn.recv(size - len(data))
    request = json.loads(data)
    conn.sendall(f"{os.getpid()}\n".encode())
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    argv, code = request["argv"], 0
    if argv[:1] == ["-u"]:  # unbuffered, as torchrun starts its workers
        argv = argv[1:]
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)
    try:
        if argv[:1] == ["-c"]:
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        elif argv[:1] == ["-m"]:
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[:1] == ["-"]:
            sys.argv = argv
            exec(compile(sys.stdin.read(), "<stdin>", "exec"), {"__name__": "__main__"})
        elif argv and not argv[0].startswith("-"):
            sys.argv = argv
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        else:
            print(f"forked python: {argv} not understood", file=sys.stderr)
            code = 2
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(f"{code}\n".encode())
    os._exit(code)


@contextlib.contextmanager
def forked_python(folder: Path, preload: list[str] = ()) -> Iterator[Path]:
    """An executable ``folder/python`` for a script that runs Python (``$PYTHON -m comp ...``):
    each call runs in its own process, forked from a server that has imported torch, comp and
    ``preload`` (as :func:`run_comp`'s are), instead of a fresh interpreter importing them again.
    It understands ``-c CODE``, ``-m MODULE``, ``-`` and a script's path, each with arguments, after
    an optional ``-u``."""
    import time

    folder.mkdir(parents=True, exist_ok=True)
    sock = str(folder / "python.sock")
    server = _fork_context().Process(target=_serve_python, args=(sock, list(preload)))
    server.start()
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(sock):
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Python server did not start (exit code {server.exitcode})")
            time.sleep(0.05)
        client = folder / "python"
        client.write_text(_CLIENT.format(python=sys.executable, socket=sock))
        client.chmod(0o755)
        yield client
    finally:
        server.kill()
        server.join()
