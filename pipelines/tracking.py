"""MLflow tracking: a finished run's params, metrics, report and plots, and its model as an MLflow model.

Every model is logged as a pyfunc model whose code is ``pipelines/mlflow_model.py`` and whose
artifact is the run directory, so ``mlflow.pyfunc.load_model`` predicts exactly what ``scaleclf
predict`` does; beside it, the native flavor where MLflow has one (scikit-learn through skops,
xgboost as JSON), which takes the preprocessed feature matrix. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import __version__
from pipelines.errors import ConfigError

PYFUNC_NAME = "model"
NATIVE_NAME = "native_model"


@dataclass(frozen=True)
class LoggedRun:
    """Where a run went in MLflow: the run id, the pyfunc model's URI and the native flavor logged."""

    run_id: str
    model_uri: str
    native_flavor: str | None


def tracking_uri(output_dir: Path) -> str:
    """Return ``$MLFLOW_TRACKING_URI`` or a local sqlite store beside the runs."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def import_mlflow(field: str = "output.mlflow") -> Any:
    """Return the mlflow module, or raise a ConfigError that says how to install it."""
    # This store is local: no usage reports leave the machine, no progress bars on the terminal.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(f"config error: {field}: mlflow is not installed (pip install 'scaleclf[tracking]')") from exc
    return mlflow


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Keep MLflow's and alembic's INFO chatter and warnings off the terminal."""
    import_mlflow()  # importing mlflow sets its loggers' levels: import first, then quieten them
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def use_store(output_dir: Path, experiment: str) -> Any:
    """Point MLflow at the store for ``output_dir`` and the experiment; return the mlflow module."""
    mlflow = import_mlflow()
    uri = tracking_uri(output_dir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        # Keep artifacts beside the sqlite store rather than in the current directory.
        location = (output_dir / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return mlflow


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:500]


def _metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    values = {}
    for split in ("test", "valid"):
        for key, value in (metrics.get(split) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"{split}_{key}"] = float(value)
    for key, value in (metrics.get("timing") or {}).items():
        values[f"timing_{key}"] = float(value)
    return values


def log_run(
    run_dir: Path, spec: dict[str, Any], metrics: dict[str, Any], output_dir: Path, experiment: str
) -> LoggedRun:
    """Log a finished run directory and its models to MLflow; return where they went."""
    with quiet_mlflow():
        mlflow = use_store(output_dir, experiment)
        params: dict[str, str] = {}
        _flatten("", spec, params)
        with mlflow.start_run(run_name=run_dir.name) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(_metric_values(metrics))
            mlflow.set_tags(
                {"engine": metrics.get("engine"), "model": metrics.get("model"), "run_dir": str(run_dir.resolve())}
            )
            for name in ("metrics.json", "report.html", "spec.yaml", "tuning.json", "explain.json"):
                if (run_dir / name).is_file():
                    mlflow.log_artifact(str(run_dir / name))
            if (run_dir / "plots").is_dir():
                mlflow.log_artifacts(str(run_dir / "plots"), artifact_path="plots")
            model_uri = log_pyfunc(mlflow, run_dir)
            native = log_native(mlflow, run_dir)
            return LoggedRun(str(run.info.run_id), model_uri, native)


def input_example(run_dir: Path, rows: int = 5) -> Any:
    """Return the first rows of the run's training source, feature columns only, as a DataFrame."""
    from pipelines.data.sources import open_dataset
    from pipelines.scoring import load_run, scoring_plan

    run = load_run(run_dir)
    plan, _ = scoring_plan(run, run.spec.data.source, "all")
    table = open_dataset(plan.source).head(rows, columns=list(plan.features))
    return table.to_pandas()


def log_pyfunc(mlflow: Any, run_dir: Path) -> str:
    """Log the run as a pyfunc model (code + the run directory); return its ``runs:/`` URI."""
    from mlflow.models import infer_signature

    example = input_example(run_dir)
    code = Path(__file__).with_name("mlflow_model.py")
    signature = infer_signature(example, output_example(run_dir, len(example)))
    info = mlflow.pyfunc.log_model(
        name=PYFUNC_NAME,
        python_model=str(code),
        artifacts={"run": str(run_dir.resolve())},
        signature=signature,
        input_example=example,
        pip_requirements=[f"scaleclf=={__version__}", f"mlflow=={mlflow.__version__}"],
    )
    return f"runs:/{mlflow.active_run().info.run_id}/{PYFUNC_NAME}" if info is None else str(info.model_uri)


def output_example(run_dir: Path, rows: int) -> Any:
    """Return a frame shaped like the pyfunc model's output (no prediction: that could start an engine)."""
    import pandas as pd

    from pipelines.scoring import load_run

    classes = list(load_run(run_dir).ctx.task.classes)
    frame = pd.DataFrame({f"proba_{c}": [1.0 / len(classes)] * rows for c in classes})
    frame["prediction"] = [classes[0]] * rows
    return frame


def log_native(mlflow: Any, run_dir: Path) -> str | None:
    """Log the model's native MLflow flavor when it has one; return the flavor's name or None."""
    from pipelines.models.fitted import TRUSTED_SKOPS_TYPES, XGBOOST_FILE
    from pipelines.scoring import in_process_model, load_run

    run = load_run(run_dir)
    kind = run.manifest["native_kind"]
    if kind == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(run_dir / "model" / XGBOOST_FILE)
        mlflow.xgboost.log_model(
            booster, name=NATIVE_NAME, model_format="json", pip_requirements=[f"xgboost=={xgboost.__version__}"]
        )
        return "xgboost"
    if kind == "sklearn":
        from importlib.metadata import version

        model = in_process_model(run)
        assert model is not None  # the model layer reloads scikit-learn models without an engine
        estimator = model.estimator
        mlflow.sklearn.log_model(
            estimator,
            name=NATIVE_NAME,
            serialization_format="skops",
            skops_trusted_types=sorted(TRUSTED_SKOPS_TYPES),
            pip_requirements=[f"scikit-learn=={version('scikit-learn')}", f"skops=={version('skops')}"],
        )
        return "sklearn"
    return None
