"""Quiet runs: library warnings and engine logs go to ``logs/`` in the run directory, not the terminal.

While a run works, :func:`run_logs` points the process's stdout and stderr file descriptors at a
capture file, so whatever a library prints (Python warnings and loggers, xgboost's native lines,
Ray's and Dask's worker output, a JVM started by the run) lands there; only the progress console
keeps the terminal. When the run ends the capture becomes ``logs/scaleclf.log`` and what Spark's
driver logged meanwhile (log4j, see ``conf/log4j2.properties``) becomes ``logs/spark-driver.log``.
The capture lives outside the run directory: processes started during the run keep the descriptor
after it ends, and must not change a file of a finished run. ``--verbose`` leaves the descriptors
alone (everything reaches the terminal) and still logs Python records to ``logs/scaleclf.log``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

LOG_FILE = "scaleclf.log"
SPARK_LOG_FILE = "spark-driver.log"
# Read by the Spark engine when it starts a JVM; infra/spark/submit.sh sets the first for spark-submit.
SPARK_LOG_ENV = "SCALECLF_SPARK_LOG"
VERBOSE_ENV = "SCALECLF_VERBOSE"
LOG4J_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "log4j2.properties"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def spark_log_file() -> Path:
    """Return the file this process's Spark driver logs to (``$SCALECLF_SPARK_LOG``, else one per process)."""
    named = os.environ.get(SPARK_LOG_ENV)
    return Path(named) if named else Path(tempfile.gettempdir()) / f"scaleclf-spark-{os.getpid()}.log"


def spark_java_options() -> str:
    """Return driver JVM options that send Spark's log4j output to :func:`spark_log_file`, not the terminal."""
    console = "info" if os.environ.get(VERBOSE_ENV) == "1" else "off"
    options = [f"-Dscaleclf.spark.log={spark_log_file()}", f"-Dscaleclf.console.level={console}"]
    if LOG4J_CONFIG.is_file():
        options.insert(0, f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}")
    return " ".join(options)


@contextmanager
def run_logs(run_dir: Path, progress: Any) -> Iterator[Path]:
    """Capture library output for the duration of a run; yield ``run_dir/logs``.

    Parameters
    ----------
    run_dir : Path
        The run's (temporary) directory; ``logs/`` is created in it.
    progress : pipelines.progress.Progress
        Its console keeps writing to the terminal; ``progress.verbose`` turns the capture off.
    """
    logs = Path(run_dir) / "logs"
    logs.mkdir(exist_ok=True)
    spark_log = spark_log_file()
    spark_start = spark_log.stat().st_size if spark_log.is_file() else 0
    verbose = bool(getattr(progress, "verbose", False))
    previous = os.environ.get(VERBOSE_ENV)
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    try:
        if verbose:
            with _python_records_to(logs / LOG_FILE):
                yield logs
        else:
            with tempfile.NamedTemporaryFile(prefix="scaleclf-run-", suffix=".log", delete=False) as capture:
                pass
            try:
                with _console_on_terminal(progress.console), _descriptors_to(Path(capture.name)):
                    yield logs
            finally:
                shutil.copyfile(capture.name, logs / LOG_FILE)
                os.unlink(capture.name)
    finally:
        _restore_env(VERBOSE_ENV, previous)
        _copy_from(spark_log, spark_start, logs / SPARK_LOG_FILE)


@contextmanager
def scratch_logs(progress: Any) -> Iterator[None]:
    """Keep library output off the terminal for work that writes no run directory (predict, evaluate).

    The output is captured as in a run and removed at the end; ``--verbose`` shows it instead.
    """
    with tempfile.TemporaryDirectory(prefix="scaleclf-logs-") as scratch, run_logs(Path(scratch), progress):
        yield


@contextmanager
def _descriptors_to(path: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` (appending) and restore them afterwards."""
    _flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for fd in saved:
            os.dup2(target, fd)
        yield
    finally:
        _flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(target)


@contextmanager
def _console_on_terminal(console: Any) -> Iterator[None]:
    """Keep a rich console on the terminal while descriptor 2 points elsewhere."""
    stream: IO[str] = sys.stderr
    duplicate = None
    if _on_descriptor(sys.stderr, 2):
        duplicate = os.fdopen(os.dup(2), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8")
        stream = duplicate
    saved = console._file  # None means "whatever sys.stderr is at the time"
    console.file = stream
    try:
        yield
    finally:
        console.file = saved
        if duplicate is not None:
            duplicate.close()


@contextmanager
def _python_records_to(path: Path) -> Iterator[None]:
    """Add a file handler for every Python log record (the terminal keeps its handlers)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    # With a handler on the root, logging's last resort (warnings to stderr) stops; keep it.
    handlers: list[logging.Handler] = [handler]
    if not root.handlers:
        terminal = logging.StreamHandler()
        terminal.setLevel(logging.WARNING)
        handlers.append(terminal)
    for h in handlers:
        root.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


def _on_descriptor(stream: Any, fd: int) -> bool:
    try:
        return int(stream.fileno()) == fd
    except (AttributeError, OSError, ValueError):  # pytest's capture, StringIO
        return False


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            continue


def _copy_from(source: Path, offset: int, target: Path) -> None:
    """Copy what was appended to ``source`` after ``offset`` into ``target`` (nothing new: no file)."""
    if not source.is_file() or source.stat().st_size <= offset:
        return
    with source.open("rb") as src, target.open("wb") as dst:
        src.seek(offset)
        shutil.copyfileobj(src, dst)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
