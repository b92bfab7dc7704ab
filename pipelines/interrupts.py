"""SIGINT and SIGTERM end a command like an error: cleanup runs, one line, exit 130.

Python turns SIGINT into KeyboardInterrupt but lets SIGTERM kill the process on the spot, so a
run's temporary directory and name reservation would stay behind. While a command runs, both
signals raise :class:`Interrupted` in the main thread. It is a BaseException, so no ``except
Exception`` swallows it and click does not print a blank line of its own: every ``with`` block
unwinds (the run directory removes its temporary directory, engines stop their clusters) and the
CLI prints ``error: interrupted``. Engines whose runtime installs its own handlers when it starts
(Ray's driver exits with ``sys.exit(15)`` on SIGTERM) get ours back through :func:`restore`, which
``Engine.__enter__`` calls after ``on_start``.

A native wait that checks for signals itself sees only ``KeyboardInterrupt``: Ray's ``ray.get``
ends early when a handler raises one, but its signal check does not handle any other exception a
handler raises and keeps waiting (a Ray Train fit ran on to its end, ~35 s, then failed with an
error naming the signal).
Around such waits, :func:`native_waits` makes both signals raise ``KeyboardInterrupt`` and turns
it back into :class:`Interrupted` when it leaves the block.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active = False


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while a command ran."""


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def restore() -> None:
    """Install the raising handlers again (after a runtime replaced them), when a command is running."""
    if _active and threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _raise)


@contextmanager
def native_waits() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt`` inside the block and leave it as :class:`Interrupted`.

    Only while a command runs (:func:`interrupts_raise`) and in the main thread; elsewhere the
    block runs unchanged.
    """
    if not _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def keyboard(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(received[-1])

    for sig in SIGNALS:
        signal.signal(sig, keyboard)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(received[-1] if received else "SIGINT") from None
    finally:
        restore()


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Make SIGINT and SIGTERM raise :class:`Interrupted` for the duration of the block (main thread only)."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _active = True
    restore()
    try:
        yield
    finally:
        _active = False
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
