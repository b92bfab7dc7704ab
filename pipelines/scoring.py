"""Scoring with a saved run: reload its verified model and predict or evaluate new data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines.artifacts import read_verified_manifest
from pipelines.data.schema import DataPlan, DataProfile, Task, check_same_family, schema_from_text
from pipelines.data.sources import read_schema, resolve_source
from pipelines.data.split import TEST
from pipelines.engines import create_engine
from pipelines.engines.base import FitContext
from pipelines.errors import ArtifactError, ConfigError, DataError
from pipelines.logs import scratch_logs
from pipelines.models.catalog import get_model
from pipelines.models.kernels import FeatureMap
from pipelines.models.postprocess import Postprocess
from pipelines.models.preprocess import Preprocessor
from pipelines.progress import Progress
from pipelines.run import MODEL_FORMAT, Predictions
from pipelines.spec import JobSpec, build_spec, load_yaml


@dataclass
class LoadedRun:
    """A finished run directory with its verified model, ready to score new data."""

    run_dir: Path
    spec: JobSpec
    manifest: dict[str, Any]
    ctx: FitContext
    post: Postprocess


def load_run(run_dir: Path) -> LoadedRun:
    """Return the run's spec, verified manifest and fitted state (checksums checked first)."""
    if not (run_dir / "spec.yaml").is_file():
        raise ArtifactError(f"{run_dir} is not a scaleclf run directory (no spec.yaml)")
    model_dir = run_dir / "model"
    manifest = read_verified_manifest(model_dir)
    if manifest.get("format_version") != MODEL_FORMAT:
        raise ArtifactError(
            f"{model_dir} was written in model format {manifest.get('format_version')!r}; this scaleclf reads"
            f" format {MODEL_FORMAT}: train the run again"
        )
    spec = build_spec(load_yaml((run_dir / "spec.yaml").read_text()))
    info = get_model(manifest["model"])
    prep = Preprocessor.from_dict(json.loads((model_dir / "preprocess.json").read_text()))
    post = Postprocess.from_dict(json.loads((model_dir / "postprocess.json").read_text()))
    fmap = FeatureMap.load(model_dir) if (model_dir / "feature_map.json").is_file() else None
    weights = manifest.get("class_weights")
    ctx = FitContext(
        Task.from_dict(manifest["task"]),
        prep,
        info,
        manifest["params"],
        np.asarray(weights) if weights is not None else None,
        fmap,
        int(manifest["seed"]),
    )
    return LoadedRun(run_dir, spec, manifest, ctx, post)


def scoring_plan(run: LoadedRun, source_text: str, split: str) -> tuple[DataPlan, str]:
    """Return the plan that reads ``source_text`` with the run's schema, and the split to score."""
    meta, schema = run.manifest["data"], run.manifest["schema"]
    same = source_text == meta["source"]
    source = resolve_source(
        source_text,
        field_name="--data",
        rows=meta["rows"] if same else None,
        generator_seed=meta["generator_seed"],
        fmt=meta["format"],
    )
    given = read_schema(source, "--data")
    names = set(given.names)
    trained = schema_from_text(schema["arrow"])
    for col in [*schema["numeric"], *schema["categorical"]]:
        if col not in names:
            raise DataError(f"--data: column {col!r}, a feature of this model, is missing from {source_text}")
    has_label = schema["label"] in names
    if split == "auto":
        split = "test" if same and has_label and meta["test_source"] is None else "all"
    if split != "all" and not (has_label and set(schema["key_columns"]) <= names):
        raise ConfigError(f"--split {split}: needs the label column {schema['label']!r} in --data to find the split")
    key_columns = (
        schema["key_columns"] if set(schema["key_columns"]) <= names else schema["numeric"] + schema["categorical"]
    )
    columns = list(
        dict.fromkeys(
            [*schema["numeric"], *schema["categorical"], *([schema["label"]] if has_label else []), *key_columns]
        )
    )
    for col in columns:
        if col in trained.names:
            check_same_family(trained.field(col).type, given.field(col).type, col, "--data")
    read_as = pa.schema([trained.field(c) if c in trained.names else given.field(c) for c in columns])
    split_meta = meta["split"]
    return DataPlan(
        source=source,
        test_source=None,
        label=schema["label"],
        numeric=tuple(schema["numeric"]),
        categorical=tuple(schema["categorical"]),
        key_columns=tuple(key_columns),
        seed=split_meta["seed"],
        valid=split_meta["valid"],
        test=split_meta["test"],
        fixed_split=TEST if split == "all" else None,
        has_label=has_label,
        schema=read_as,
    ), ("test" if split == "all" else split)


def score(
    run_dir: Path,
    source_text: str,
    *,
    split: str = "auto",
    engine_name: str | None = None,
    progress: Progress | None = None,
) -> tuple[LoadedRun, Predictions, np.ndarray, str]:
    """Return the run, raw predictions, final probabilities and the split scored on ``source_text``."""
    if split not in ("auto", "all", "train", "valid", "test"):
        raise ConfigError(f"--split: {split!r} is not allowed (allowed: auto, all, train, valid, test)")
    progress = progress or Progress(quiet=True)
    run = load_run(run_dir)
    engine_spec = run.spec.engine.model_copy(update={"name": engine_name or run.manifest["engine"]})
    engine = create_engine(engine_spec, run.ctx.seed)
    with scratch_logs(progress), engine:
        plan, read_split = scoring_plan(run, source_text, split)
        with progress.stage("load_s", f"loaded {source_text} on {engine.name}"):
            data = engine.load(plan)
            profile = engine.profile(data, plan)
            check_scoring_data(profile, run.ctx.task, plan)
            model = engine.load_model(run_dir / "model", run.ctx, run.manifest["native_kind"])
        with progress.stage("predict_s", f"scored the {read_split} rows"):
            preds = Predictions.collect(engine.predict(model, data, run.ctx, read_split))
    if len(preds.y) == 0:
        raise DataError(f"--data: no {read_split} rows to score in {source_text}")
    return run, preds, run.post.probabilities(preds.values, run.ctx.output), read_split


def check_scoring_data(profile: DataProfile, task: Task, plan: DataPlan) -> None:
    """Raise a DataError when data to score holds infinite values or labels the model never saw."""
    for split, stats in profile.numeric.items():
        for col, s in stats.items():
            if s.infinite:
                raise DataError(f"column {col!r} has {s.infinite} infinite values in the data to score ({split})")
    if not plan.has_label:
        return
    known = {str(c) for c in task.classes}
    for split, counts in profile.labels.items():
        unseen = sorted(str(v) for v in counts if str(v) not in known)
        if unseen:
            raise DataError(
                f"--data: label value(s) {', '.join(unseen[:5])} were never seen in training ({split} rows)"
            )
