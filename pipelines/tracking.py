"""Optional MLflow logging of a finished run: params, metrics, the report and the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError


def tracking_uri(output_dir: Path) -> str:
    """Return ``$MLFLOW_TRACKING_URI`` or a local sqlite store beside the runs."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:500]


def log_run(run_dir: Path, spec: dict[str, Any], metrics: dict[str, Any], output_dir: Path, experiment: str) -> str:
    """Log a finished run directory to MLflow; return the MLflow run id."""
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            "config error: output.mlflow: mlflow is not installed (pip install 'scaleclf[tracking]')"
        ) from exc
    uri = tracking_uri(output_dir)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        # Keep artifacts beside the sqlite store rather than in the current directory.
        location = (output_dir / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    params: dict[str, str] = {}
    _flatten("", spec, params)
    values = {}
    for split in ("test", "valid"):
        for key, value in (metrics.get(split) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"{split}_{key}"] = float(value)
    for key, value in (metrics.get("timing") or {}).items():
        values[f"timing_{key}"] = float(value)
    with mlflow.start_run(run_name=run_dir.name) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(values)
        mlflow.set_tags({"engine": metrics.get("engine"), "model": metrics.get("model"), "run_dir": str(run_dir)})
        for name in ("metrics.json", "report.html", "spec.yaml"):
            if (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name))
        mlflow.log_artifacts(str(run_dir / "model"), artifact_path="model")
        return str(run.info.run_id)
