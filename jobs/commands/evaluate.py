"""``scaleclf evaluate``: recompute a saved model's metrics on a data source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, EngineOption, QuietOption, VerboseOption
from jobs.commands.predict import SplitOption


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by train or federate.")],
    data: Annotated[str, typer.Option("--data", help="Labelled source: path, URI, builtin:NAME or synthetic:NAME.")],
    split: SplitOption = "auto",
    engine: EngineOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Print the metrics (JSON) of the saved model on the --data rows, computed as train computes them."""
    from pipelines.errors import ConfigError
    from pipelines.evaluation.metrics import compute_metrics
    from pipelines.progress import Progress, stdout
    from pipelines.scoring import score

    run, preds, proba, used = score(
        run_dir, data, split=split, engine_name=engine, progress=Progress(quiet=quiet, verbose=verbose)
    )
    if (preds.y < 0).any():
        raise ConfigError(f"--data: {data} has no label column {run.ctx.task.label!r}; use predict instead")
    metrics = compute_metrics(
        preds.y, proba, threshold=run.post.decision_threshold, ece_bins=run.spec.evaluation.ece_bins
    )
    stdout(json.dumps({"run": str(run_dir), "data": data, "split": used, "metrics": metrics}, indent=2))
