"""The ``scaleclf`` command line: one small module per command under ``jobs/commands``."""

from __future__ import annotations

import sys
import warnings
from typing import Annotated, Any, NoReturn

import click
import typer
from typer.main import get_command

from jobs.commands import CONTEXT, bench, compare, data, evaluate, federate, models, pipeline, predict, schema, train
from pipelines.errors import ScaleclfError
from pipelines.interrupts import Interrupted, interrupts_raise
from pipelines.process_exit import run_main

app = typer.Typer(
    name="scaleclf",
    help="Train and evaluate classifiers on local, Spark, Dask, Ray or federated engines from one job spec.",
    no_args_is_help=True,
    context_settings=CONTEXT,
    pretty_exceptions_enable=False,
)
app.command("train")(train.train)
app.command("predict")(predict.predict)
app.command("evaluate")(evaluate.evaluate)
app.command("federate")(federate.federate)
app.command("bench")(bench.bench)
app.command("compare")(compare.compare)
app.command("schema")(schema.schema)
app.command("models")(models.models)
app.add_typer(data.app, name="data")
app.add_typer(pipeline.app, name="pipeline")


def _print_version(value: bool) -> None:
    if value:
        from pipelines import __version__

        print(f"scaleclf {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train and evaluate classifiers on local, Spark, Dask, Ray or federated engines from one job spec."""


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(code)


def _one_line_warning(message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
    sys.stderr.write(f"warning: {category.__name__}: {' '.join(str(message).split())}\n")


def invoke(command: click.Command, args: list[str], prog: str) -> None:
    """Run ``command`` on ``args``; errors print one line on stderr (a traceback only with --debug)."""
    debug = "--debug" in args
    if not debug:
        warnings.showwarning = _one_line_warning
    try:
        with interrupts_raise():
            code = command.main(args=args, prog_name=prog, standalone_mode=False)
    except ScaleclfError as exc:
        if debug:
            raise
        _fail(str(exc), exc.exit_code)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        _fail(" ".join(exc.format_message().split()), exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt, Interrupted):
        _fail("interrupted", 130)
    except Exception as exc:
        if debug:
            raise
        text = " ".join(str(exc).split()) or "no message"
        _fail(f"{type(exc).__name__}: {text} (run with --debug for the traceback)", 1)
    raise SystemExit(code if isinstance(code, int) else 0)


def main(argv: list[str] | None = None) -> None:
    """Run the ``scaleclf`` CLI on ``argv`` (default: the process arguments)."""
    invoke(get_command(app), sys.argv[1:] if argv is None else argv, "scaleclf")


def run() -> None:
    """The ``scaleclf`` console script: :func:`main`, leaving through ``exit_process`` (see there)."""
    run_main(main)


if __name__ == "__main__":
    run()
