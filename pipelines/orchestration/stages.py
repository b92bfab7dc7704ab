"""What each pipeline stage does, through scaleclf's public functions; Dagster only schedules these.

Every stage takes the pipeline spec, its output directory and its inputs' values, and returns a
JSON-ready value (what the IO manager stores and the downstream stages receive).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.errors import ConfigError
from pipelines.orchestration.spec import LOWER_IS_BETTER, PipelineSpec
from pipelines.progress import Progress
from pipelines.spec import JobSpec, build_spec

# Simpler models win ties: the order of the catalog from the fewest moving parts to the most.
SIMPLICITY = (
    "naive_bayes",
    "logistic_regression",
    "linear_svm",
    "decision_tree",
    "rff_svm",
    "nystroem_svm",
    "random_forest",
    "gbt",
    "xgboost",
    "mlp",
)


def data_stage(spec: PipelineSpec, out: Path) -> dict[str, Any]:
    """Read and validate the training data once, profile it, and keep the drift reference sample."""
    from pipelines.data.schema import DataProfile, check_columns, infer_task, make_plan, profile_batch
    from pipelines.data.sources import open_dataset
    from pipelines.drift import reference_sample

    job = spec.base_job()
    plan = make_plan(job.data, job.seed)
    profile = DataProfile()
    for batch in open_dataset(plan.source).to_batches(columns=plan.columns):
        profile = profile.merge(profile_batch(plan.attach(batch), plan))
    task = infer_task(profile, plan)
    dropped = check_columns(profile, plan)
    directory = out / "data"
    directory.mkdir(parents=True, exist_ok=True)
    sample = reference_sample(plan, spec.drift.reference_rows, int(profile.rows.get("train", 0)))
    pq.write_table(sample, directory / "reference.parquet")
    value = {
        "source": job.data.source,
        "rows": {k: int(v) for k, v in profile.rows.items()},
        "classes": [str(c) for c in task.classes],
        "numeric": list(plan.numeric),
        "categorical": list(plan.categorical),
        "label": plan.label,
        "constant_columns": dropped,
        "reference": str(directory / "reference.parquet"),
        "reference_rows": sample.num_rows,
    }
    (directory / "profile.json").write_text(json.dumps(value, indent=2) + "\n")
    return value


def candidate_job(spec: PipelineSpec, name: str, out: Path) -> JobSpec:
    """Return the candidate's job spec writing into the pipeline's directory."""
    job = spec.candidate_job(name)
    return job.model_copy(update={"output": job.output.model_copy(update={"dir": str(out / "runs" / name)})})


def train_stage(spec: PipelineSpec, name: str, out: Path, experiment: str) -> dict[str, Any]:
    """Train one candidate with ``pipelines.run.train``, log it to MLflow; return its metrics and where it went."""
    from pipelines.run import train

    job = candidate_job(spec, name, out)
    run_dir = train(job, Progress(quiet=True))
    return describe_run(name, run_dir, job, out, experiment)


def describe_run(name: str, run_dir: Path, job: JobSpec, out: Path, experiment: str) -> dict[str, Any]:
    """Return a trained run's value: metrics, timings and its MLflow run and model."""
    from pipelines.tracking import log_run

    metrics = json.loads((run_dir / "metrics.json").read_text())
    logged = log_run(run_dir, job.public_dump(), metrics, out, experiment)
    return {
        "candidate": name,
        "run_dir": str(run_dir),
        "engine": metrics["engine"],
        "model": metrics["model"],
        "valid": metrics["valid"],
        "test": metrics["test"],
        "fit_s": metrics["timing"].get("fit_s"),
        "mlflow_run_id": logged.run_id,
        "model_uri": logged.model_uri,
        "native_flavor": logged.native_flavor,
    }


def compare_stage(spec: PipelineSpec, candidates: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    """Tabulate every candidate's valid and test metrics; write compare.json."""
    metric = spec.champion.metric
    rows = [
        {
            "candidate": name,
            "engine": c["engine"],
            "model": c["model"],
            f"valid_{metric}": c["valid"].get(metric),
            f"test_{metric}": c["test"].get(metric),
            "fit_s": c["fit_s"],
            "run_dir": c["run_dir"],
        }
        for name, c in sorted(candidates.items())
    ]
    (out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
    return {"metric": metric, "rows": rows}


def pick_champion(spec: PipelineSpec, candidates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the best candidate on the valid split; within ``tolerance``, the simpler, then faster, one."""
    metric, tolerance = spec.champion.metric, spec.champion.tolerance
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    scored = {n: c for n, c in candidates.items() if c["valid"].get(metric) is not None}
    if not scored:
        raise ConfigError(f"config error: pipeline champion.metric: {metric} is not defined for any candidate")
    best = max(sign * c["valid"][metric] for c in scored.values())
    tied = [n for n, c in scored.items() if sign * c["valid"][metric] >= best - tolerance - 1e-12]

    def simplicity(name: str) -> tuple[int, float, str]:
        c = scored[name]
        rank = SIMPLICITY.index(c["model"]) if c["model"] in SIMPLICITY else len(SIMPLICITY)
        return rank, float(c["fit_s"] or 0.0), name

    winner = min(tied, key=simplicity)
    return {**scored[winner], "metric": metric, "value": scored[winner]["valid"][metric], "tied": sorted(tied)}


def register_stage(spec: PipelineSpec, champion: dict[str, Any], out: Path) -> dict[str, Any]:
    """Register the champion in the MLflow Model Registry; it takes the alias only if it wins the duel."""
    from pipelines.orchestration.registry import CHAMPION, Duel, alias_version, challenge, register, version_run_dir
    from pipelines.tracking import quiet_mlflow, use_store

    run_dir = Path(champion["run_dir"])
    with quiet_mlflow():
        mlflow = use_store(out, spec.name)
        current = alias_version(spec.model_name, CHAMPION)
        if current is not None and version_run_dir(spec.model_name, current).resolve() == run_dir.resolve():
            duel = Duel("same_model", str(current.version), None, champion["metric"])
        else:
            version = register(mlflow, spec.model_name, champion["model_uri"], run_dir)
            duel = challenge(spec.model_name, version, run_dir, training_source(spec), champion["metric"])
            current = alias_version(spec.model_name, CHAMPION)
        assert current is not None  # the duel has set the alias
        champion_dir = version_run_dir(spec.model_name, current)
    return {
        "model_name": spec.model_name,
        "champion_version": str(current.version),
        "champion_uri": f"models:/{spec.model_name}@champion",
        "champion_run_dir": str(champion_dir),
        "duel": duel.to_dict(),
    }


def score_stage(spec: PipelineSpec, model_run_dir: Path, out: Path) -> dict[str, Any]:
    """Score the new data with the registered champion into scores/scores.parquet."""
    from pipelines.scoring import write_scores

    new = new_data_source(spec)
    target = out / "scores" / "scores.parquet"
    summary = write_scores(model_run_dir, new, target, keep=spec.score.keep, split="all")
    return {"path": str(target), "rows": summary.rows, "kept": summary.kept, "run_dir": str(model_run_dir)}


def resolved_source(text: str, rows: int | None, generator_seed: int, fmt: str, field: str) -> str:
    """Return a path or URI that names the same rows on its own (synthetic and builtin sets materialised)."""
    from pipelines.data.sources import resolve_source

    if not text.startswith(("synthetic:", "builtin:")):
        return text
    source = resolve_source(text, field_name=field, rows=rows, generator_seed=generator_seed, fmt=fmt)
    return source.paths[0] if len(source.paths) == 1 else str(Path(source.paths[0]).parent)


def new_data_source(spec: PipelineSpec) -> str:
    """Return a path or URI of the new data, which the score, drift and retrain stages read alike."""
    if spec.new_data is None:
        raise ConfigError("config error: pipeline new_data: required by the score, drift and retrain stages")
    new = spec.new_data
    return resolved_source(new.source, new.rows, new.generator_seed, new.format, "new_data.source")


def training_source(spec: PipelineSpec) -> str:
    """Return a path or URI of the base job's training data."""
    data = spec.base_job().data
    return resolved_source(data.source, data.rows, data.generator_seed, data.format, "data.source")


def retrain_stage(
    spec: PipelineSpec, champion: dict[str, Any], drift: dict[str, Any], out: Path, experiment: str
) -> dict[str, Any]:
    """Train a challenger on the new data when the drift verdict (or ``retrain.when``) asks; duel the champion."""
    when = spec.retrain.when
    if when == "never" or (when == "drift" and drift["verdict"] != "drift"):
        return {"action": "none", "reason": f"retrain.when is {when}; drift verdict {drift['verdict']}"}
    from pipelines.data.sources import read_schema, resolve_source
    from pipelines.orchestration.registry import challenge, register
    from pipelines.run import train
    from pipelines.spec import apply_overrides
    from pipelines.tracking import quiet_mlflow, use_store

    source = new_data_source(spec)
    label = spec.base_job().data.label
    if label not in read_schema(resolve_source(source, field_name="new_data.source"), "new_data.source").names:
        return {"action": "none", "reason": f"the new data carry no label column {label!r} to train on"}
    raw = spec.candidate_job(champion["candidate"]).model_dump(mode="json")
    raw["data"].update({"source": source, "rows": None, "test_source": None})
    raw["output"].update({"dir": str(out / "runs" / "retrain"), "run_name": None, "mlflow": False})
    job = build_spec(apply_overrides(raw, spec.retrain.set))
    started = time.perf_counter()
    run_dir = train(job, Progress(quiet=True))
    value = describe_run(f"retrain-{champion['candidate']}", run_dir, job, out, experiment)
    with quiet_mlflow():
        mlflow = use_store(out, experiment)
        version = register(mlflow, spec.model_name, value["model_uri"], run_dir)
        duel = challenge(spec.model_name, version, run_dir, source, champion["metric"])
    return {
        "action": duel.decision,
        "challenger_version": version,
        "challenger_run_dir": str(run_dir),
        "duel": duel.to_dict(),
        "train_s": round(time.perf_counter() - started, 2),
    }
