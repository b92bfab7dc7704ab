"""``scaleclf bench``: scaleclf against raw-engine baselines, per engine and data size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, QuietOption, SetOption, VerboseOption


def bench(
    config: Annotated[Path, typer.Argument(help="Job spec (YAML) to benchmark.")],
    engines: Annotated[str, typer.Option("--engines", help="Comma-separated engines.")] = "local",
    rows: Annotated[str | None, typer.Option("--rows", help="Comma-separated row counts (synthetic sources).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for bench.json and bench.png.")] = Path("out/bench"),
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Runs of each side per engine and size.")] = 3,
    baselines: Annotated[
        str | None,
        typer.Option("--baselines", help="Engines whose raw baseline runs (default: all of --engines)."),
    ] = None,
    memory_cap: Annotated[
        str | None,
        typer.Option(
            "--memory-cap",
            help="Run every child under this memory cap, e.g. 2GiB (cgroup v2 memory.max, else RLIMIT_DATA).",
        ),
    ] = None,
    set_: SetOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Time the spec on each engine beside its raw baseline; print the table, write bench.json."""
    from pipelines.bench import bench as run_bench
    from pipelines.bench import format_table
    from pipelines.errors import ConfigError
    from pipelines.progress import Progress, stdout
    from pipelines.spec import load_spec, parse_size

    spec = load_spec(config, list(set_ or []))
    names = [e.strip() for e in engines.split(",") if e.strip()]
    try:
        sizes: list[int | None] = [int(r) for r in rows.split(",")] if rows else [None]
    except ValueError:
        raise ConfigError(f"--rows: expected comma-separated integers, got {rows!r}") from None
    try:
        cap = parse_size(memory_cap) if memory_cap else None
    except ValueError as exc:
        raise ConfigError(f"--memory-cap: {exc}") from None
    raw = None if baselines is None else [e.strip() for e in baselines.split(",") if e.strip()]
    report = run_bench(
        spec,
        names,
        sizes,
        out,
        repeats=repeats,
        progress=Progress(quiet=quiet, verbose=verbose),
        baselines=raw,
        memory_cap=cap,
    )
    print(format_table(report))
    stdout(str(out / "bench.json"))
