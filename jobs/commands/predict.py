"""``scaleclf predict``: score new data with a saved run's model."""

from __future__ import annotations

import os
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
    split: SplitOption = "auto",
    engine: EngineOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Write predictions (row_key, label, proba_<class>, prediction) to a Parquet file."""
    from pipelines.errors import ConfigError
    from pipelines.progress import Progress, stdout
    from pipelines.run import write_predictions
    from pipelines.scoring import score

    if out.exists() and out.is_dir():
        raise ConfigError(f"--out: {out} is a directory; give a file path such as predictions.parquet")
    run, preds, proba, _ = score(
        run_dir, data, split=split, engine_name=engine, progress=Progress(quiet=quiet, verbose=verbose)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write_predictions(tmp, preds, proba, run.ctx.task, run.post.decision_threshold)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    stdout(str(out))
