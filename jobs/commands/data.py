"""``scaleclf data``: generate synthetic datasets and list the datasets scaleclf knows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import CONTEXT, DebugOption, QuietOption

app = typer.Typer(help="Generate and inspect datasets.", no_args_is_help=True, context_settings=CONTEXT)


@app.command("generate")
def generate(
    name: Annotated[str, typer.Argument(help="Synthetic task: higgs, imbalanced, multiclass, moons, circles, churn.")],
    rows: Annotated[int, typer.Option("--rows", help="Number of rows.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="x.parquet, x.csv or a directory of Parquet parts; default out/data/NAME-ROWS.parquet."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Write NAME with ROWS rows to OUT in bounded memory; print OUT."""
    from pipelines.data.synthetic import write_dataset
    from pipelines.progress import Progress, stdout

    out = out or Path("out") / "data" / f"{name}-{rows}.parquet"
    progress = Progress(quiet=quiet)
    with progress.stage("generate_s", f"generated {rows} rows of {name}"):
        write_dataset(name, rows, out, seed=seed)
    stdout(str(out))


@app.command("list")
def list_datasets(quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """List the synthetic and builtin datasets."""
    from pipelines.data.builtin import BUILTIN
    from pipelines.data.synthetic import GENERATORS

    for name, task in GENERATORS.items():
        print(f"synthetic:{name:<12} {task.description}")
    for name in BUILTIN:
        print(f"builtin:{name}")
