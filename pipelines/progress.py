"""Progress on stderr (rich): a line per finished stage, a spinner or a bar with ETA while one works."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape

# A bar redraws at most this often, so a step costs a clock read between redraws.
REFRESH_S = 0.25
BAR_WIDTH = 24


class Progress:
    """Reports stages ("load", "fit", ...) with a spinner and their elapsed time.

    On a terminal a spinner runs while a stage works; elsewhere (CI, pipes) one line is
    printed when each stage ends. ``quiet`` prints nothing. Timings are kept either way.
    ``verbose`` asks for library warnings and engine logs on the terminal as well as in the
    run's log file (``pipelines.logs``).
    """

    def __init__(self, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.timings: dict[str, float] = {}
        self._status: Any = None  # the spinner of the running stage, which a bar takes over
        self._stage_text = ""

    @contextmanager
    def stage(self, name: str, text: str) -> Iterator[None]:
        """Time a stage called ``name`` while showing ``text``; add its seconds to ``timings``."""
        start = time.perf_counter()
        if self.quiet or not self.console.is_terminal:
            yield
        else:
            with self.console.status(f"{text}...") as status:
                self._status, self._stage_text = status, text
                try:
                    yield
                finally:
                    self._status, self._stage_text = None, ""
        elapsed = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + elapsed
        self.note(f"{text} [dim]({elapsed:.1f}s)[/dim]")

    def note(self, text: str) -> None:
        """Print one line of information unless quiet."""
        if not self.quiet:
            self.console.print(f"[green]✓[/green] {text}")

    def warn(self, text: str) -> None:
        """Print a warning line unless quiet."""
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/yellow] {text}")

    def iterations(self, total: int, what: str) -> IterationBar:
        """Return ``step(n, **metrics)`` for a loop of ``total`` ``what`` (boosting rounds, epochs...).

        Call ``step(n, valid_logloss=0.52)`` after the n-th iteration. On a terminal it draws a
        bar with the elapsed time, an ETA and the latest metrics (in the running stage's spinner
        line), redrawn at most every ``REFRESH_S``; elsewhere it prints only a final line. It ends
        when ``n`` reaches ``total`` or on ``close()``; it is also a context manager that closes.
        """
        return IterationBar(self, total, what)


def stdout(line: str) -> None:
    """Print a result line on stdout (the run directory is always the last such line).

    Under spark-submit the driver's stdout and stderr reach the terminal merged; there
    ``infra/spark/submit.sh`` sets ``$SCALECLF_RESULT_FILE``, the result lines go to that file,
    and the script prints them on its own stdout after the job (progress stays on stderr).
    """
    result_file = os.environ.get("SCALECLF_RESULT_FILE")
    if result_file:
        with open(result_file, "a", encoding="utf-8") as out:
            out.write(line + "\n")
        return
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class IterationBar:
    """A throttled progress bar with ETA; see :meth:`Progress.iterations`."""

    def __init__(self, progress: Progress, total: int, what: str) -> None:
        self.progress, self.total, self.what = progress, max(int(total), 1), what
        self.started = self.drawn = time.perf_counter()
        self.n = 0
        self.metrics: dict[str, float] = {}
        self.closed = progress.quiet
        self._live = progress.console.is_terminal and not progress.quiet
        self._own: Any = None  # a spinner of the bar's own when no stage runs

    def __call__(self, n: int, **metrics: float) -> None:
        """Record that ``n`` iterations are done, with the latest metrics."""
        if self.closed:
            return
        self.n, self.metrics = n, metrics
        if n >= self.total:
            self.close()
            return
        now = time.perf_counter()
        if self._live and now - self.drawn >= REFRESH_S:
            self.drawn = now
            self._draw(now)

    def close(self) -> None:
        """Stop the bar and print its final line."""
        if self.closed:
            return
        self.closed = True
        if self._own is not None:
            self._own.stop()
        elif self.progress._status is not None:
            self.progress._status.update(f"{self.progress._stage_text}...")
        self.progress.note(f"{self.n}/{self.total} {escape(self.what)}{self._metrics()} [dim]({self._elapsed()})[/dim]")

    def __enter__(self) -> IterationBar:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:  # a failed loop ends quietly: the error says what happened
            self.closed = True
            if self._own is not None:
                self._own.stop()

    def _draw(self, now: float) -> None:
        done = min(self.n / self.total, 1.0)
        filled = round(done * BAR_WIDTH)
        eta = (now - self.started) / self.n * (self.total - self.n) if self.n else None
        bar = f"[magenta]{'━' * filled}[/magenta][dim]{'━' * (BAR_WIDTH - filled)}[/dim]"
        text = f"{bar} {self.n}/{self.total} {escape(self.what)} · {self._elapsed()}"
        text += f" · ETA {_clock(eta)}" if eta is not None else ""
        text += self._metrics()
        status = self.progress._status
        if status is not None:
            status.update(f"{self.progress._stage_text}  {text}")
        elif self._own is None:
            self._own = self.progress.console.status(text)
            self._own.start()
        else:
            self._own.update(text)

    def _elapsed(self) -> str:
        return _clock(time.perf_counter() - self.started)

    def _metrics(self) -> str:
        shown = ", ".join(f"{escape(k)} {v:.4g}" for k, v in self.metrics.items())
        return f" · {shown}" if shown else ""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
