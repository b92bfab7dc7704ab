"""``scaleclf federate``: simulate federated training with Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, OutOption, QuietOption, SetOption, VerboseOption


def federate(
    config: Annotated[Path, typer.Argument(help="Federated job spec (YAML).")],
    set_: SetOption = None,
    out: OutOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Run a federated simulation and print the run directory as the last line."""
    from federated.simulation import federate as run_federated
    from jobs.commands.train import summary
    from pipelines.progress import Progress, stdout
    from pipelines.spec import load_spec

    overrides = list(set_ or []) + ([f"output.dir={out}"] if out is not None else [])
    spec = load_spec(config, overrides)
    progress = Progress(quiet=quiet, verbose=verbose)
    run_dir = run_federated(spec, progress)
    if not quiet:
        summary(progress, run_dir)
    stdout(str(run_dir))
