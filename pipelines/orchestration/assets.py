"""The pipeline as Dagster software-defined assets: lineage, code and data versions, retries.

Asset graph (one asset per stage; one per train candidate, so each has its own code version and
a changed candidate retrains alone)::

    source/training_data -> data -> train/<candidate>... -> compare -> champion -> register
    source/new_data -> score (register) -> drift (data) -> retrain (champion, register)

Values are small JSON documents (paths, metrics, versions) kept by ``JsonIOManager`` under the
output directory; nothing is pickled. Source assets are observed: their data version is a hash of
the files' content, so new data makes everything downstream stale and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.errors import EngineError, ScaleclfError
from pipelines.orchestration import stages
from pipelines.orchestration.spec import PipelineSpec, code_version
from pipelines.progress import Progress

PIPELINE_JOB = "pipeline"
TRAINING_DATA = dg.AssetKey(["source", "training_data"])
NEW_DATA = dg.AssetKey(["source", "new_data"])


class JsonIOManager(dg.ConfigurableIOManager):
    """Stores each asset's value as ``<base>/<key>.json`` (readable, diffable, never unpickled)."""

    base: str

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base) / f"{'__'.join(key.path)}.json"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Write the asset's value."""
        path = self._path(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> Any:
        """Read an upstream asset's value."""
        return json.loads(self._path(context.asset_key).read_text())


def content_hash(text: str, rows: int | None, generator_seed: int, fmt: str, field: str) -> str:
    """Return a sha256 over the names and bytes of a source's files (size and mtime for remote files)."""
    from pipelines.data.sources import resolve_source

    source = resolve_source(text, field_name=field, rows=rows, generator_seed=generator_seed, fmt=fmt)
    digest = hashlib.sha256()
    for path in source.paths:
        digest.update(Path(path).name.encode())
        if source.is_local:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        else:
            info = source.filesystem.get_file_info(path.split("://", 1)[1])
            digest.update(f"{info.size}:{info.mtime_ns}".encode())
    return digest.hexdigest()[:16]


def source_versions(spec: PipelineSpec) -> dict[dg.AssetKey, str]:
    """Return the data version (content hash) of the pipeline's training data and new data."""
    d = spec.base_job().data
    versions = {TRAINING_DATA: content_hash(d.source, d.rows, d.generator_seed, d.format, "data.source")}
    if spec.new_data is not None:
        n = spec.new_data
        versions[NEW_DATA] = content_hash(n.source, n.rows, n.generator_seed, n.format, "new_data.source")
    return versions


class Reporter:
    """Prints one line per stage on stderr (quiet: nothing)."""

    def __init__(self, quiet: bool) -> None:
        self.progress = Progress(quiet=quiet)

    def done(self, stage: str, text: str, seconds: float) -> None:
        """Report a materialised stage."""
        self.progress.note(f"{stage}: {text} [dim]({seconds:.1f}s)[/dim]")

    def warn(self, text: str) -> None:
        """Report a retry or a problem."""
        self.progress.warn(text)


def run_stage(
    reporter: Reporter, stage: str, work: Callable[[], dict[str, Any]], say: Callable[[dict], str]
) -> dg.Output[Any]:
    """Run a stage's work; engine errors are retried by the RetryPolicy, every other error fails at once."""
    started = time.perf_counter()
    try:
        value = work()
    except EngineError as exc:
        reporter.warn(f"{stage}: {exc}")
        raise
    except ScaleclfError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"exit_code": exc.exit_code, "error": type(exc).__name__},
            allow_retries=False,
        ) from exc
    except Exception as exc:
        raise dg.Failure(
            description=f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            metadata={"exit_code": 1, "error": type(exc).__name__},
            allow_retries=False,
        ) from exc
    text = say(value)
    reporter.done(stage, text, time.perf_counter() - started)
    return dg.Output(value, metadata={"summary": text, **_metadata(value)})


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Return the scalar fields of a value as Dagster metadata (shown in the UI)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool | int | float | str) and item is not None:
            out[key] = item
        elif isinstance(item, dict) and key in ("valid", "test", "duel"):
            out.update({f"{key}_{k}": v for k, v in item.items() if isinstance(v, int | float | str) and v is not None})
    return out


def build_assets(spec: PipelineSpec, out: Path, quiet: bool = False) -> list[Any]:
    """Return the pipeline's source assets and assets."""
    reporter = Reporter(quiet)
    retry = dg.RetryPolicy(
        max_retries=spec.retries.max_retries, delay=spec.retries.delay_s, backoff=dg.Backoff.EXPONENTIAL
    )
    base = spec.base_job()
    experiment = group = spec.name  # one Dagster asset group per pipeline, named after it

    @dg.observable_source_asset(key=TRAINING_DATA, group_name=group, description=f"training data: {base.data.source}")
    def training_data() -> dg.DataVersion:
        return dg.DataVersion(source_versions(spec)[TRAINING_DATA])

    @dg.asset(
        key="data",
        deps=[TRAINING_DATA],
        code_version=code_version({"data": base.data.model_dump(mode="json"), "seed": base.seed}),
        group_name=group,
        description="read, validate and profile the training data; keep the drift reference sample",
    )
    def data() -> dg.Output[Any]:
        return run_stage(
            reporter,
            "data",
            lambda: stages.data_stage(spec, out),
            lambda v: f"{sum(v['rows'].values())} rows, {len(v['numeric']) + len(v['categorical'])} features valid",
        )

    assets: list[Any] = [training_data, data]
    candidate_keys = {}
    for name in spec.candidates:
        job = spec.candidate_job(name)
        key = dg.AssetKey(["tune" if job.tuning.enabled else "train", name])
        candidate_keys[name] = key
        assets.append(_train_asset(spec, name, key, job, out, experiment, reporter, retry))

    @dg.asset(
        key="compare",
        ins={f"c_{i}": dg.AssetIn(k) for i, k in enumerate(candidate_keys.values())},
        code_version=code_version({"metric": spec.champion.metric, "candidates": sorted(spec.candidates)}),
        group_name=group,
        description="every candidate's valid and test metrics side by side",
    )
    def compare(**found: Any) -> dg.Output[Any]:
        by_name = {v["candidate"]: v for v in found.values()}
        return run_stage(
            reporter,
            "compare",
            lambda: stages.compare_stage(spec, by_name, out),
            lambda v: ", ".join(f"{r['candidate']} {r['valid_' + v['metric']]:.4f}" for r in v["rows"]),
        )

    @dg.asset(
        key="champion",
        ins={f"c_{i}": dg.AssetIn(k) for i, k in enumerate(candidate_keys.values())},
        deps=["compare"],
        code_version=code_version(spec.champion.model_dump(mode="json")),
        group_name=group,
        description=f"best candidate on the valid split by {spec.champion.metric} (ties: the simpler model)",
    )
    def champion(**found: Any) -> dg.Output[Any]:
        by_name = {v["candidate"]: v for v in found.values()}
        return run_stage(
            reporter,
            "champion",
            lambda: stages.pick_champion(spec, by_name),
            lambda v: f"{v['candidate']} ({v['model']} on {v['engine']}), valid {v['metric']} {v['value']:.4f}",
        )

    assets += [compare, champion]
    if spec.registry.enabled:
        assets.append(_register_asset(spec, out, reporter))
    if spec.new_data is not None:
        assets += _lifecycle_assets(spec, out, experiment, reporter, retry)
    return assets


def _train_asset(
    spec: PipelineSpec,
    name: str,
    key: dg.AssetKey,
    job: Any,
    out: Path,
    experiment: str,
    reporter: Reporter,
    retry: dg.RetryPolicy,
) -> Any:
    @dg.asset(
        key=key,
        deps=["data"],
        code_version=code_version(job.model_dump(mode="json")),
        retry_policy=retry,
        group_name=spec.name,
        kinds={job.engine.name},
        description=f"{job.model.name} on {job.engine.name}" + (" (tuned)" if job.tuning.enabled else ""),
    )
    def train_candidate() -> dg.Output[Any]:
        return run_stage(
            reporter,
            key.to_user_string(),
            lambda: stages.train_stage(spec, name, out, experiment),
            lambda v: (
                f"{v['model']} on {v['engine']}, valid {spec.champion.metric}"
                f" {v['valid'].get(spec.champion.metric) or float('nan'):.4f}, MLflow run {v['mlflow_run_id']}"
                f" model {v['model_uri']}"
            ),
        )

    return train_candidate


def _register_asset(spec: PipelineSpec, out: Path, reporter: Reporter) -> Any:
    @dg.asset(
        key="register",
        code_version=code_version(spec.registry.model_dump(mode="json") | {"name": spec.model_name}),
        group_name=spec.name,
        kinds={"mlflow"},
        description=f"MLflow Model Registry: {spec.model_name}@champion (a new champion must win the duel)",
    )
    def register(champion: dict[str, Any]) -> dg.Output[Any]:
        return run_stage(
            reporter,
            "register",
            lambda: stages.register_stage(spec, champion, out),
            lambda v: f"{v['champion_uri']} is version {v['champion_version']} ({v['duel']['decision']})",
        )

    return register


def _lifecycle_assets(
    spec: PipelineSpec, out: Path, experiment: str, reporter: Reporter, retry: dg.RetryPolicy
) -> list[Any]:
    assert spec.new_data is not None
    new = spec.new_data
    model_key = "register" if spec.registry.enabled else "champion"

    @dg.observable_source_asset(key=NEW_DATA, group_name=spec.name, description=f"new data: {new.source}")
    def new_data() -> dg.DataVersion:
        return dg.DataVersion(source_versions(spec)[NEW_DATA])

    @dg.asset(
        key="score",
        deps=[NEW_DATA],
        ins={"model": dg.AssetIn(model_key)},
        code_version=code_version({"score": spec.score.model_dump(mode="json")}),
        retry_policy=retry,
        group_name=spec.name,
        description="batch scores of the new data by the registered champion",
    )
    def score(model: dict[str, Any]) -> dg.Output[Any]:
        run_dir = Path(model.get("champion_run_dir") or model["run_dir"])
        return run_stage(
            reporter,
            "score",
            lambda: stages.score_stage(spec, run_dir, out),
            lambda v: f"scored {v['rows']} rows into {v['path']}",
        )

    @dg.asset(
        key="drift",
        deps=[NEW_DATA],
        code_version=code_version({"drift": spec.drift.model_dump(mode="json"), "metric": spec.champion.metric}),
        group_name=spec.name,
        description="per-feature PSI and KS / chi-squared tests, score shift and live metrics; a verdict",
    )
    def drift(data: dict[str, Any], score: dict[str, Any]) -> dg.Output[Any]:
        return run_stage(
            reporter,
            "drift",
            lambda: _drift(spec, data, score, out),
            lambda v: f"{v['verdict']}" + (f": {'; '.join(v['reasons'])}" if v["reasons"] else "") + f", {v['report']}",
        )

    @dg.asset(
        key="retrain",
        deps=[NEW_DATA, model_key],
        code_version=code_version({"retrain": spec.retrain.model_dump(mode="json")}),
        retry_policy=retry,
        group_name=spec.name,
        description="on drift: a challenger trained on the new data, promoted only if it beats the champion",
    )
    def retrain(champion: dict[str, Any], drift: dict[str, Any]) -> dg.Output[Any]:
        return run_stage(
            reporter,
            "retrain",
            lambda: stages.retrain_stage(spec, champion, drift, out, experiment),
            _retrain_text,
        )

    return [new_data, score, drift, retrain]


def _drift(spec: PipelineSpec, data: dict[str, Any], score: dict[str, Any], out: Path) -> dict[str, Any]:
    from pipelines.orchestration.drift_stage import drift_stage  # matplotlib: only when drift runs

    return drift_stage(spec, data, score, stages.new_data_source(spec), out)


def _retrain_text(v: dict[str, Any]) -> str:
    if v["action"] == "none":
        return f"nothing to do ({v['reason']})"
    duel = v["duel"]
    if duel["champion_score"] is None:
        return f"challenger version {v['challenger_version']} {duel['decision']}: {duel['note']}"
    return (
        f"challenger version {v['challenger_version']} {duel['decision']}: {duel['metric']}"
        f" {duel['challenger_score']:.4f} vs champion {duel['champion_score']:.4f} on {duel['rows']} current test rows"
    )


def build_definitions(spec: PipelineSpec, out: Path, quiet: bool = False) -> dg.Definitions:
    """Return the Dagster Definitions of a pipeline writing into ``out`` (what ``dagster dev`` loads)."""
    assets = build_assets(spec, out, quiet)
    job = dg.define_asset_job(PIPELINE_JOB, selection=dg.AssetSelection.all())
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        resources={"io_manager": JsonIOManager(base=str(out / "assets"))},
    )
