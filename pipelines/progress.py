"""Progress of long stages on stderr (rich), silent in quiet mode and when not a terminal."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


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

    @contextmanager
    def stage(self, name: str, text: str) -> Iterator[None]:
        """Time a stage called ``name`` while showing ``text``; add its seconds to ``timings``."""
        start = time.perf_counter()
        if self.quiet:
            yield
        elif self.console.is_terminal:
            with self.console.status(f"{text}..."):
                yield
        else:
            yield
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
