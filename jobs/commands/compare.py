"""``scaleclf compare``: the spec on several engines, the same metrics on the same rows, gaps tabulated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, QuietOption, SetOption, VerboseOption


def compare(
    config: Annotated[Path, typer.Argument(help="Job spec (YAML).")],
    engines: Annotated[str, typer.Option("--engines", help="Comma-separated engines; gaps are against the first.")] = (
        "local,spark,dask,ray"
    ),
    models: Annotated[
        str | None, typer.Option("--models", help="Comma-separated catalog models (default: the spec's model).")
    ] = None,
    address: Annotated[
        list[str] | None,
        typer.Option("--address", help="ENGINE=ADDRESS of a running cluster for that engine. Repeatable."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for compare.json and the runs.")] = Path("out/compare"),
    set_: SetOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Train the spec on each engine and print every run's test metrics with its gap to the first engine."""
    from pipelines.compare import compare as run_compare
    from pipelines.compare import format_table
    from pipelines.errors import ConfigError
    from pipelines.progress import Progress, stdout
    from pipelines.spec import load_spec

    spec = load_spec(config, list(set_ or []))
    addresses: dict[str, str] = {}
    for item in address or []:
        engine, sep, where = item.partition("=")
        if not sep or not engine.strip() or not where.strip():
            raise ConfigError(f"--address: expected ENGINE=ADDRESS, got {item!r}")
        addresses[engine.strip()] = where.strip()
    names = [e.strip() for e in engines.split(",") if e.strip()]
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else [spec.model.name]
    entries = run_compare(spec, names, chosen, out, addresses, Progress(quiet=quiet, verbose=verbose))
    print(format_table(entries))
    stdout(str(out / "compare.json"))
    if any(e.error for e in entries):
        raise typer.Exit(1)
