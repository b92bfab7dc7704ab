"""``scaleclf federate``: simulate federated training with Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, QuietOption, SetOption


def federate(
    config: Annotated[Path, typer.Argument(help="Federated job spec (YAML).")],
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Parent directory of the run (output.dir).")] = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Run a federated simulation and print the run directory as the last line."""
    from pipelines.errors import ConfigError

    raise ConfigError(
        "federate: federated training is not available in this build yet (see the README's support matrix)"
    )
