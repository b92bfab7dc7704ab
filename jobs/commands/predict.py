"""``scaleclf predict``: score new data with a saved run's model, batch by batch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, EngineOption, QuietOption, VerboseOption

SplitOption = Annotated[
    str,
    typer.Option(
        "--split", help="Rows to score: auto (test rows of the training source, else all), all, train, valid, test."
    ),
]


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by train or federate.")],
    data: Annotated[str, typer.Option("--data", help="Source to score: path, URI, builtin:NAME or synthetic:NAME.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write the predictions to.")],
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep", help="Input column to copy into the output (repeatable; default: every non-feature column)."
        ),
    ] = None,
    split: SplitOption = "auto",
    engine: EngineOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Write row_key, kept columns, label (when the input has it), proba_<class> and prediction to a Parquet file."""
    from pipelines.progress import Progress, stdout
    from pipelines.scoring import write_scores

    progress = Progress(quiet=quiet, verbose=verbose)
    summary = write_scores(run_dir, data, out, keep=keep, split=split, engine_name=engine, progress=progress)
    kept = f"; kept {', '.join(summary.kept)}" if summary.kept else ""
    label = "" if summary.has_label else "; no label column in the input, none written"
    progress.note(f"scored {summary.rows} rows ({summary.split}){kept}{label}")
    for line in summary.checks.warnings():
        sys.stderr.write(f"warning: {line}\n")  # even with --quiet: the data, not the progress
    stdout(str(out))
