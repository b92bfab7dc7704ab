"""Leave a process that loaded Ray's core worker without running C++ static destructors.

After ``ray.shutdown()`` a driver process keeps Ray's native io threads (``gcs_client_io_service``,
``worker.io``) and gRPC's threads running. A normal interpreter exit then runs the C++ static
destructors of Ray's library while those threads can still call into what is being destroyed,
and the process occasionally dies with SIGSEGV after its work is done and its output written (CI
saw it once: every test passed, then ``make test`` failed with "Segmentation fault"). A Ray job
whose driver dies that way is reported FAILED. Ray's own worker processes leave with
``os._exit`` for the same reason; the entry points here do the same, but only after the Python
exit handlers (Ray's, Spark's, logging's) have run and stdout/stderr are flushed, and only when
Ray's native module is loaded. Processes that never loaded Ray exit normally.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

NATIVE_MODULES = ("ray._raylet",)


def holds_native_runtime() -> bool:
    """Return True when a module whose native threads outlive its shutdown is loaded."""
    return any(name in sys.modules for name in NATIVE_MODULES)


def exit_code(exc: SystemExit) -> int:
    """Return the status ``raise SystemExit(exc.code)`` would exit with, printing a message code."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def skip_native_teardown(code: int) -> None:
    """Flush stdout/stderr and ``os._exit(code)`` when Ray is loaded; otherwise return."""
    if not holds_native_runtime():
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``: run the exit handlers, then skip native teardown where Ray is loaded."""
    if holds_native_runtime():
        # What a normal exit does first: wait for non-daemon threads, then run the exit handlers.
        getattr(threading, "_shutdown", lambda: None)()
        atexit._run_exitfuncs()
        skip_native_teardown(code)
    raise SystemExit(code)


def run_main(main: Callable[..., object], *args: object) -> NoReturn:
    """Call ``main(*args)`` as a process entry point and leave through :func:`exit_process`."""
    try:
        main(*args)
    except SystemExit as exc:
        exit_process(exit_code(exc))
    exit_process(0)
