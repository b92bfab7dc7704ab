"""One module per ``scaleclf`` command; options shared by several commands live here."""

from __future__ import annotations

from typing import Annotated

import click
import typer

ENGINES = ("local", "spark", "dask", "ray")
# -h as well as --help, on the root, every group and every command.
CONTEXT = {"help_option_names": ["-h", "--help"]}

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec key: dotted.key=value (YAML-typed). Repeatable.", metavar="KEY=VALUE"),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show library warnings and engine logs on the terminal too.")
]
EngineOption = Annotated[
    str | None,
    typer.Option("--engine", click_type=click.Choice((*ENGINES, "auto")), help="Engine to run on (sets engine.name)."),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", help="Spark master URL, Dask scheduler or Ray address of a running cluster (engine.address)."
    ),
]
OutOption = Annotated[
    str | None, typer.Option("--out", help="Parent directory of the run (output.dir).", metavar="DIR")
]
