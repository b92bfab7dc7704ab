"""``scaleclf train``: run a job spec on one engine and write a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.commands import DebugOption, EngineOption, QuietOption, SetOption


def train(
    config: Annotated[Path, typer.Argument(help="Job spec (YAML).")],
    engine: EngineOption = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Parent directory of the run (output.dir).")] = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Train the spec's model and print the run directory as the last line."""
    from pipelines.progress import Progress, stdout
    from pipelines.run import train as run_train
    from pipelines.spec import load_spec

    overrides = list(set_ or []) + ([f"output.dir={out}"] if out is not None else [])
    spec = load_spec(config, overrides, engine=engine)
    progress = Progress(quiet=quiet)
    run_dir = run_train(spec, progress)
    if not quiet:
        summary(progress, run_dir)
    stdout(str(run_dir))


def summary(progress: object, run_dir: Path) -> None:
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]
    shown = [f"{k} {test[k]:.4f}" for k in ("auc", "pr_auc", "accuracy", "f1", "log_loss") if test.get(k) is not None]
    console = progress.console  # type: ignore[attr-defined]
    console.print(f"[bold]test[/bold] ({metrics['rows']['test']} rows): " + ", ".join(shown))
    if (run_dir / "report.html").is_file():
        console.print(f"report: {run_dir / 'report.html'}")
