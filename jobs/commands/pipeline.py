"""``scaleclf pipeline``: run a pipeline of jobs as Dagster assets, show its status, open the Dagster UI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import CONTEXT, DebugOption, QuietOption, SetOption

app = typer.Typer(
    help="Pipelines of jobs (conf/pipelines/*.yaml) as Dagster assets.", no_args_is_help=True, context_settings=CONTEXT
)


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Pipeline spec (YAML), e.g. conf/pipelines/champion.yaml.")],
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Pipeline directory (default: runs/pipeline-NAME).")] = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Materialise the stale and missing stages in-process; print the pipeline directory as the last line."""
    from pipelines.orchestration.runner import run_pipeline
    from pipelines.orchestration.spec import load_pipeline
    from pipelines.progress import stdout

    spec = load_pipeline(config, list(set_ or []), out)
    run_pipeline(spec, quiet=quiet)
    stdout(str(spec.out_dir()))


@app.command("status")
def status(
    directory: Annotated[Path, typer.Argument(help="A pipeline directory written by pipeline run.")],
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Print every stage: fresh, stale or missing, when it was last materialised, and what it found."""
    from pipelines.orchestration.runner import pipeline_status

    for row in pipeline_status(directory):
        when = (
            dt.datetime.fromtimestamp(row["materialized"]).strftime("%Y-%m-%d %H:%M:%S") if row["materialized"] else "-"
        )
        print(f"{row['stage']:<24} {row['status']:<8} {when:<20} {row['summary']}")
        for cause in row["causes"]:
            print(f"{'':<24} stale: {cause}")


@app.command("ui")
def ui(
    directory: Annotated[Path, typer.Argument(help="A pipeline directory written by pipeline run.")],
    port: Annotated[int, typer.Option("--port", help="Port of the Dagster UI on 127.0.0.1.")] = 3000,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Serve the Dagster UI (asset graph, lineage, materialisations) for the pipeline on 127.0.0.1."""
    from pipelines.orchestration.runner import serve_ui

    raise typer.Exit(serve_ui(directory, port))
