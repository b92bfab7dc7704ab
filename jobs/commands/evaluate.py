"""``scaleclf evaluate``: recompute a saved model's metrics on a data source."""

from __future__ import annotations

import json
import sys
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
    from pipelines.scoring import scan_checks, score, scoring_plan

    run, preds, proba, used = score(
        run_dir, data, split=split, engine_name=engine, progress=Progress(quiet=quiet, verbose=verbose)
    )
    if (preds.y < 0).any():
        raise ConfigError(f"--data: {data} has no label column {run.ctx.task.label!r}; use predict instead")
    metrics = compute_metrics(
        preds.y, proba, threshold=run.post.decision_threshold, ece_bins=run.spec.evaluation.ece_bins
    )
    checks = scan_checks(run, scoring_plan(run, data, split)[0], used)
    for line in checks.warnings():
        sys.stderr.write(f"warning: {line}\n")  # even with --quiet: the data, not the progress
    report = {"run": str(run_dir), "data": data, "split": used, "metrics": metrics, "data_checks": checks.to_dict()}
    stdout(json.dumps(report, indent=2))
