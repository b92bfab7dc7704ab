"""Shared fixtures: a per-session dataset cache, an in-process CLI runner, small data files."""

from __future__ import annotations

import atexit
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.process_exit import skip_native_teardown

# Generated and builtin datasets are cached per test session, never in the user's home.
os.environ.setdefault("SCALECLF_CACHE", tempfile.mkdtemp(prefix="scaleclf-test-cache-"))

REPO = Path(__file__).resolve().parent.parent

_SESSION: list[pytest.Session] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Keep the session so that the exit handler below knows its final exit status."""
    _SESSION.append(session)


def _leave_like_the_cli() -> None:
    """Exit with the session's status, skipping Ray's native teardown (pipelines/process_exit.py).

    Registered before any test imports Ray, so it runs after every other exit handler, Ray's
    own ``ray.shutdown`` included. A suite that never loaded Ray exits normally.
    """
    if _SESSION:
        skip_native_teardown(int(_SESSION[0].exitstatus))


atexit.register(_leave_like_the_cli)


def _absl_to_the_real_stderr() -> None:
    """Point absl's log handler at the process's stderr, not the stream pytest was capturing.

    ``dp_accounting`` imports ``absl.logging``, whose handler keeps whatever ``sys.stderr`` was at
    import time: during collection, pytest's capture stream, closed later. A library that logs
    through absl afterwards (the Dask pipeline test did) then wrote to a closed file and the whole
    session died with "lost sys.stderr" (CI, twice). Imported here, first, and pointed at
    ``sys.__stderr__``.
    """
    import sys

    try:
        import absl.logging
    except ImportError:
        return
    absl.logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


_absl_to_the_real_stderr()


@dataclass
class CliResult:
    """Exit code and captured output of one in-process ``scaleclf`` call."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """Return the last non-empty stdout line (the run directory for train)."""
        lines = [line for line in self.out.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Return a function that runs ``scaleclf ARGS`` in this process and captures its output."""
    from jobs.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# What a run may print on the terminal: ✓ progress lines, the test summary, the report's path.
PROGRESS_LINE = re.compile(r"^(✓ |test \(\d+ rows\): |report: )")


def terminal_noise(stderr: str) -> list[str]:
    """Return the stderr lines of a run that are not its progress or summary (warnings, engine logs)."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


def base_spec(source: str, label: str = "label", model: str = "logistic_regression", **data: object) -> dict:
    """Return a small job spec mapping; tests shrink or extend it."""
    return {
        "name": "test",
        "seed": 7,
        "data": {"source": source, "label": label, **data},
        "model": {"name": model},
        "engine": {"name": "local"},
        "output": {"dir": "runs", "report": False},
    }


@pytest.fixture(scope="session")
def conformance_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the session's directory of conformance data files (written once, shared by every engine)."""
    return tmp_path_factory.mktemp("conformance-data")


@pytest.fixture(scope="session")
def local_reference(conformance_files: Path, tmp_path_factory: pytest.TempPathFactory):
    """Return a function giving the local engine's metrics for a conformance cell (fitted once per session)."""
    import json

    from tests.conformance import Cell, run_cell, spec_for

    out = tmp_path_factory.mktemp("conformance-local")
    cache: dict[str, dict] = {}

    def reference(cell: Cell) -> dict:
        """Return the local run of ``cell``'s data case and model, on the same rows and with the same params."""
        key = json.dumps(spec_for(cell, conformance_files, "local", out), sort_keys=True)
        if key not in cache:
            got = run_cell(cell, conformance_files, "local", out)
            assert isinstance(got, dict), f"the local engine refused {cell.id}: {got}"
            cache[key] = got
        return cache[key]

    return reference


class Listeners:
    """Every listening socket of this process and its children, polled while a block runs."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, int]] = set()
        self.who: dict[int, str] = {}
        # Listeners of processes an earlier test left in the tree (session clusters, pools) are
        # not this block's: only sockets opened while it runs are judged.
        self.before: set[tuple[str, str, int]] = set()

    def poll(self) -> None:
        """Record the listening sockets of the process tree right now."""
        import psutil

        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        self.seen.add((proc.name(), conn.laddr.ip, conn.laddr.port))
                        self.who[conn.laddr.port] = " ".join(proc.cmdline())[:200]
            except (psutil.Error, OSError):
                continue

    @property
    def off_loopback(self) -> list[tuple[str, str, int]]:
        """Return the listeners bound to anything but 127.0.0.1 / ::1."""
        return sorted(s for s in self.seen - self.before if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"))


@pytest.fixture
def listeners():
    """Yield a Listeners recorder polled every 50 ms on a thread for the test's duration."""
    import threading

    found, stop = Listeners(), threading.Event()
    found.poll()
    found.before, found.seen = set(found.seen), set()

    def loop() -> None:
        while not stop.is_set():
            found.poll()
            stop.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
