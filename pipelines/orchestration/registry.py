"""The MLflow Model Registry side of the lifecycle: register, alias, and the champion/challenger duel."""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipelines.errors import ArtifactError, DataError
from pipelines.orchestration.spec import LOWER_IS_BETTER

CHAMPION = "champion"
CHALLENGER = "challenger"
RUN_DIR_TAG = "scaleclf.run_dir"


@dataclass
class Duel:
    """The champion and challenger scored on the same rows, and what was decided."""

    decision: str  # first_champion | same_model | promoted | kept
    champion_version: str
    challenger_version: str | None
    metric: str
    champion_score: float | None = None
    challenger_score: float | None = None
    rows: int = 0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return asdict(self)


def client() -> Any:
    """Return an MlflowClient on the current tracking and registry URIs."""
    from mlflow import MlflowClient

    return MlflowClient()


def register(mlflow: Any, name: str, model_uri: str, run_dir: Path) -> str:
    """Register ``model_uri`` as a new version of ``name``; return the version number."""
    # register_model prints its progress on stderr; the stage reports the version itself.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(model_uri, name, tags={RUN_DIR_TAG: str(run_dir.resolve())})
    return str(version.version)


def alias_version(name: str, alias: str) -> Any | None:
    """Return the model version behind ``name@alias``, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_run_dir(name: str, version: Any) -> Path:
    """Return the scaleclf run directory of a registered version (downloaded when not on this machine)."""
    path = Path(version.tags.get(RUN_DIR_TAG, ""))
    if path.is_dir():
        return path
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}"))
    if not (local / "artifacts" / "run").is_dir():
        raise ArtifactError(f"registered model {name} version {version.version} holds no scaleclf run directory")
    return local / "artifacts" / "run"


def metric_on_rows(run_dir: Path, source: str, keys: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Return ``metric`` of a run's model on the rows of ``source`` whose row keys are ``keys``."""
    from pipelines.evaluation.metrics import compute_metrics
    from pipelines.scoring import score

    run, preds, proba, _ = score(run_dir, source, split="all")
    order = np.argsort(preds.keys, kind="stable")
    where = np.minimum(np.searchsorted(preds.keys[order], keys), len(order) - 1)
    found = preds.keys[order][where] == keys
    if not found.all():
        raise DataError(f"{source}: {int((~found).sum())} test rows of the challenger are not in the data scored")
    value = compute_metrics(y, proba[order[where]], threshold=run.post.decision_threshold).get(metric)
    if value is None:
        raise DataError(f"{source}: {metric} is not defined on these rows (a single class?)")
    return float(value)


def challenge(name: str, version: str, run_dir: Path, source: str, metric: str) -> Duel:
    """Make ``version`` the champion of ``name`` unless the current champion is as good on the same rows.

    The rows are the challenger's test split of ``source`` (the current data, never seen in its
    training); the champion is scored on those very rows. The loser keeps or gets the
    ``challenger`` alias.
    """
    mlflow_client = client()
    current = alias_version(name, CHAMPION)
    if current is None:
        mlflow_client.set_registered_model_alias(name, CHAMPION, version)
        return Duel("first_champion", version, None, metric)
    if str(current.version) == version:
        return Duel("same_model", version, None, metric)
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    from pipelines.scoring import load_run

    task = load_run(run_dir).ctx.task  # verifies the run directory before any of its files is read
    test = pq.read_table(run_dir / "predictions.parquet", columns=["row_key", "label"])
    keys = np.asarray(test.column("row_key").to_numpy())
    y = task.encode(test.column("label"))
    new = metric_on_rows(run_dir, source, keys, y, metric)
    note: str | None = None
    try:
        old: float | None = metric_on_rows(version_run_dir(name, current), source, keys, y, metric)
    except ArtifactError as exc:
        # A champion this scaleclf can no longer load (an older model format, a changed file)
        # cannot serve either: the challenger replaces it, and the duel says why.
        old, note = None, f"champion version {current.version} cannot be loaded: {exc}"
    better = old is None or (new < old if metric in LOWER_IS_BETTER else new > old)
    if better:
        mlflow_client.set_registered_model_alias(name, CHAMPION, version)
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    return Duel(
        "promoted" if better else "kept",
        version if better else str(current.version),
        version,
        metric,
        old,
        new,
        len(keys),
        note,
    )
