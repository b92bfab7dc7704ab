"""One module per ``scaleclf`` command; options shared by several commands live here."""

from __future__ import annotations

from typing import Annotated

import typer

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec key: dotted.key=value (YAML-typed). Repeatable.", metavar="KEY=VALUE"),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result line.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
EngineOption = Annotated[
    str | None, typer.Option("--engine", help="Engine to run on: local, spark, dask or ray (overrides engine.name).")
]
