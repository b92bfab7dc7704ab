"""``scaleclf federate``: simulate federated training with Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, OutOption, QuietOption, SetOption, VerboseOption

SweepOption = Annotated[
    str | None,
    typer.Option(
        "--sweep",
        help="One run per value of a spec key, e.g. federated.privacy.noise_multiplier=0.5,1,2,4; writes"
        " sweep.json and sweep.png (test metrics against epsilon) beside the runs.",
        metavar="KEY=V1,V2,...",
    ),
]


def federate(
    config: Annotated[Path, typer.Argument(help="Federated job spec (YAML).")],
    set_: SetOption = None,
    out: OutOption = None,
    sweep: SweepOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Run a federated simulation and print the run directory as the last line (--sweep: the sweep's)."""
    from federated.simulation import federate as run_federated
    from jobs.commands.train import summary
    from pipelines.progress import Progress, stdout
    from pipelines.spec import load_spec

    overrides = list(set_ or []) + ([f"output.dir={out}"] if out is not None else [])
    progress = Progress(quiet=quiet, verbose=verbose)
    if sweep is not None:
        from federated.sweep import parse_sweep, run_sweep

        key, values = parse_sweep(sweep)
        load_spec(config, [*overrides, f"{key}={values[0]}"])  # a bad spec fails before any run
        stdout(str(run_sweep(config, overrides, key, values, progress)))
        return
    spec = load_spec(config, overrides)
    run_dir = run_federated(spec, progress)
    if not quiet:
        summary(progress, run_dir)
    stdout(str(run_dir))
