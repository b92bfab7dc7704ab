"""``scaleclf train``: run a job spec on one engine and write a run directory.

The Spark, Dask and Ray job scripts (``jobs/*_train.py``) are this same command with the engine
fixed (:func:`job_command`), so spark-submit, a Dask job and ``ray job submit`` take the same
arguments and print the same lines as ``scaleclf train``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from jobs.commands import (
    CONTEXT,
    AddressOption,
    DebugOption,
    EngineOption,
    OutOption,
    QuietOption,
    SetOption,
    VerboseOption,
)

ConfigArgument = Annotated[Path, typer.Argument(help="Job spec (YAML).", metavar="CONFIG")]


def train(
    config: ConfigArgument,
    engine: EngineOption = None,
    set_: SetOption = None,
    out: OutOption = None,
    address: AddressOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Train the spec's model and print the run directory as the last line."""
    from pipelines.progress import Progress, stdout
    from pipelines.run import train as run_train
    from pipelines.spec import load_spec

    overrides = [f"engine.address={address}"] if address is not None else []
    overrides += list(set_ or []) + ([f"output.dir={out}"] if out is not None else [])
    spec = load_spec(config, overrides, engine=engine)
    progress = Progress(quiet=quiet, verbose=verbose)
    run_dir = run_train(spec, progress)
    if not quiet:
        summary(progress, run_dir)
    stdout(str(run_dir))


def summary(progress: Any, run_dir: Path) -> None:
    """Print the test metrics and the report's path of a finished run (on the progress console)."""
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]
    shown = [f"{k} {test[k]:.4f}" for k in ("auc", "pr_auc", "accuracy", "f1", "log_loss") if test.get(k) is not None]
    progress.console.print(f"[bold]test[/bold] ({metrics['rows']['test']} rows): " + ", ".join(shown))
    if (run_dir / "report.html").is_file():
        progress.console.print(f"report: {run_dir / 'report.html'}")


def train_command() -> click.Command:
    """Return a fresh click command of ``scaleclf train``."""
    app = typer.Typer(add_completion=False, context_settings=CONTEXT, pretty_exceptions_enable=False)
    app.command("train")(train)
    return typer.main.get_command(app)


def job_command(
    engine: str,
    *,
    help: str,
    address: str | None = None,
    several: Callable[[list[Path]], AbstractContextManager[object]] | None = None,
) -> click.Command:
    """Return ``scaleclf train`` with ``--engine`` fixed to ``engine``, for a job script.

    Parameters
    ----------
    engine : str
        The engine the script runs on; its ``--engine`` option is removed.
    help : str
        The script's help text.
    address : str | None
        Default of ``--address``; None removes the option (spark-submit's ``--master`` decides).
    several : callable | None
        When given, CONFIG takes one or more specs, trained one after the other inside the
        context this returns for the list (spark-submit: one Spark application for all).
    """
    command = train_command()
    params = {p.name: p for p in command.params}
    command.params.remove(params["engine"])
    if address is None:
        command.params.remove(params["address"])
    else:
        params["address"].default = address
        params["address"].show_default = True
    command.help = help
    train_one = command.callback
    assert train_one is not None

    def run(config: Any, **options: Any) -> None:
        if several is None:
            train_one(config=config, engine=engine, **options)
            return
        with several([Path(c) for c in config]):
            for one in config:
                train_one(config=one, engine=engine, **options)

    if several is not None:
        params["config"].nargs = -1
        params["config"].metavar = "CONFIG..."
    command.callback = run
    return command
