"""The pipeline spec: a base job spec, train candidates as overrides of it, and the lifecycle stages."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from pipelines import __version__
from pipelines.errors import ConfigError
from pipelines.spec import JobSpec, _Section, apply_overrides, build_spec, describe_validation_error, read_yaml

METRICS = ("auc", "pr_auc", "accuracy", "balanced_accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece")
LOWER_IS_BETTER = ("log_loss", "brier", "ece")


class ChampionSpec(_Section):
    """How the champion is picked among the candidates (on the valid split)."""

    metric: Literal[METRICS] = "auc"  # type: ignore[valid-type]
    tolerance: float = Field(0.0, ge=0, description="scores this close count as a tie, won by the simpler model")


class RegisterSpec(_Section):
    """The MLflow Model Registry entry of the champion."""

    enabled: bool = True
    model_name: str | None = Field(None, description="registered model name (default: the pipeline's name)")


class NewDataSpec(_Section):
    """The new rows that are scored, checked for drift and, when labelled, retrained on."""

    source: str
    rows: int | None = Field(None, ge=1, description="rows to generate for synthetic: sources")
    generator_seed: int = Field(0, ge=0)
    format: Literal["auto", "parquet", "csv"] = "auto"


class ScoreSpec(_Section):
    """Batch scoring of the new data with the registered champion."""

    keep: list[str] | None = Field(None, description="identifier columns to keep (default: every non-feature column)")


class DriftSpec(_Section):
    """Thresholds of the drift verdict (see pipelines/drift.py)."""

    psi: float = Field(0.1, gt=0, description="PSI a feature or the scores must reach to drift")
    alpha: float = Field(0.01, gt=0, lt=1, description="level of the BH-corrected two-sample tests")
    min_features: int = Field(1, ge=1, description="drifted features that make a drift verdict")
    metric_drop: float = Field(0.05, gt=0, description="drop of the champion metric on labelled new rows")
    reference_rows: int = Field(20_000, ge=100, description="training rows kept as the reference sample")
    max_rows: int = Field(20_000, ge=100, description="new rows compared")


class RetrainSpec(_Section):
    """Training a challenger on the new data and promoting it only if it beats the champion."""

    when: Literal["drift", "always", "never"] = "drift"
    set: list[str] = Field(default_factory=list, description="KEY=VALUE overrides of the champion's job spec")


class RetrySpec(_Section):
    """Retries of stages whose engine cannot be reached (exit class 4); other errors never retry."""

    max_retries: int = Field(3, ge=0)
    delay_s: float = Field(2.0, ge=0, description="first wait; doubled at each retry")


class PipelineSpec(_Section):
    """A whole pipeline: the job every stage starts from, the candidates and the lifecycle stages."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="pipeline and registered model name")
    job: dict[str, Any] = Field(description="base job spec (a mapping; a path in the YAML file is inlined)")
    candidates: dict[str, dict[str, Any]] = Field(description="name -> overrides of job (mapping, plus set: [K=V])")
    champion: ChampionSpec = Field(default_factory=ChampionSpec)
    registry: RegisterSpec = Field(default_factory=RegisterSpec)
    new_data: NewDataSpec | None = None
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    retries: RetrySpec = Field(default_factory=RetrySpec)
    output_dir: str | None = Field(None, description="default: runs/pipeline-NAME")

    @field_validator("candidates")
    @classmethod
    def _names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not value:
            raise ValueError("at least one candidate is needed")
        for name, overrides in value.items():
            if not isinstance(overrides, dict):
                raise ValueError(f"candidate {name!r}: expected a mapping of job spec overrides")
        for name in value:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"candidate name {name!r}: use letters, digits, _ and -")
        return value

    @property
    def model_name(self) -> str:
        """Return the registered model's name."""
        return self.registry.model_name or self.name

    def out_dir(self) -> Path:
        """Return the pipeline's output directory."""
        return Path(self.output_dir or f"runs/pipeline-{self.name}")

    def base_job(self) -> JobSpec:
        """Return the job spec of the data every candidate shares (the first candidate's, data and seed alike)."""
        return self.candidate_job(next(iter(self.candidates)))

    def candidate_job(self, name: str) -> JobSpec:
        """Return the validated job spec of one candidate (overrides merged over ``job``)."""
        overrides = dict(self.candidates[name])
        sets = overrides.pop("set", [])
        shared = [k for k in ("data", "seed") if k in overrides] + [
            str(s) for s in sets if str(s).startswith(("data.", "seed="))
        ]
        if shared:
            raise ConfigError(
                f"config error: candidates.{name}: {shared[0]} cannot differ between candidates"
                " (they are compared on the same rows); set it in job"
            )
        if not isinstance(sets, list):
            raise ConfigError(f"config error: candidates.{name}.set: expected a list of KEY=VALUE")
        return _job(merge(self.job, overrides), [str(s) for s in sets], f"candidates.{name}")

    def to_yaml(self) -> str:
        """Return the resolved pipeline spec as YAML, secrets redacted (``pipelines.spec.redact``)."""
        from pipelines.spec import redact

        return yaml.safe_dump(redact(self.model_dump(mode="json")), sort_keys=False)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in, section by section (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "params":
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _job(raw: dict[str, Any], sets: list[str], where: str) -> JobSpec:
    try:
        return build_spec(apply_overrides(raw, sets))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_pipeline(path: str | Path, overrides: list[str] | None = None, out: Path | None = None) -> PipelineSpec:
    """Return the validated pipeline spec of a YAML file with ``--set`` overrides applied."""
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(raw.get("job"), str):  # a job spec file, relative to the pipeline file
        raw["job"] = read_yaml(path.parent / raw["job"])
    raw = apply_overrides(raw, list(overrides or []))
    if out is not None:
        raw["output_dir"] = str(out)
    spec = build_pipeline(raw)
    for name in spec.candidates:
        spec.candidate_job(name)
    return spec


def build_pipeline(raw: dict[str, Any]) -> PipelineSpec:
    """Return the validated PipelineSpec of a mapping, or raise a one-line ConfigError."""
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        message = describe_validation_error(exc)
        raise ConfigError(message.replace("config error:", "config error: pipeline", 1)) from None


def code_version(stage: Any) -> str:
    """Return a stage's code version: the scaleclf version and a hash of the stage's settings.

    ``engine.address`` and ``output`` are left out: where a cluster listens and where runs are
    written do not change what a stage computes.
    """
    data = json.loads(json.dumps(stage, default=str))
    if isinstance(data, dict):
        data.pop("output", None)
        if isinstance(data.get("engine"), dict):
            data["engine"].pop("address", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    return f"{__version__}-{digest}"
