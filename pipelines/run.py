"""The stage orchestrator: load, validate, fit, predict, evaluate and write the run directory."""

from __future__ import annotations

import datetime as dt
import html
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.artifacts import (
    RunDirectory,
    run_name,
    write_json,
    write_manifest,
)
from pipelines.data.schema import DataPlan, DataProfile, Task, check_columns, infer_task, make_plan, schema_text
from pipelines.data.split import SPLIT_NAMES
from pipelines.engines import create_engine
from pipelines.engines.base import Engine, EngineModel, FitContext
from pipelines.errors import ConfigError, DataError
from pipelines.evaluation.metrics import compute_metrics, roc_auc
from pipelines.logs import run_logs
from pipelines.models.catalog import get_model
from pipelines.models.kernels import FeatureMap, fit_nystroem_features, fit_rff_features
from pipelines.models.postprocess import Postprocess, fit_platt_only, fit_postprocess
from pipelines.models.preprocess import Preprocessor, fit_preprocessor
from pipelines.progress import Progress
from pipelines.spec import JobSpec

# model/manifest.json's format_version: 2 records native_kind and the Arrow schema; 3 lists every file of
# the run directory (paths relative to it) and signs the manifest.
MODEL_FORMAT = 3


@dataclass
class Predictions:
    """Raw engine outputs for one split: row keys, class indices and probabilities or scores."""

    keys: np.ndarray
    y: np.ndarray
    values: np.ndarray

    @classmethod
    def collect(cls, batches: Iterable[pa.RecordBatch]) -> Predictions:
        """Return the concatenation of prediction batches (see ``pipelines.engines.base``)."""
        keys, ys, values = [], [], []
        for batch in batches:
            keys.append(np.asarray(batch.column("row_key").to_numpy()))
            ys.append(np.asarray(batch.column("y").to_numpy(), dtype=np.int32))
            cols = [n for n in batch.schema.names if n[:2] in ("p_", "s_")]
            values.append(np.column_stack([np.asarray(batch.column(c).to_numpy()) for c in cols]))
        if not keys:
            return cls(np.empty(0, np.uint64), np.empty(0, np.int32), np.empty((0, 1)))
        return cls(np.concatenate(keys), np.concatenate(ys), np.concatenate(values))


@dataclass
class Prepared:
    """The data as the engine holds it, plus everything learned from the train split."""

    plan: DataPlan
    data: Any
    profile: DataProfile
    task: Task
    preprocessor: Preprocessor


def class_weights(task: Task, setting: str | dict[Any, float] | None) -> np.ndarray | None:
    """Return a weight per class index for ``model.class_weight`` (None = unweighted).

    Keys match labels of any type: ``{0: 2}`` (what YAML gives for integer labels), ``{"0": 2}``
    (what spec.yaml holds once written as JSON-typed YAML) and ``{0: 2}`` for float labels 0.0/1.0.
    """
    if setting is None:
        return None
    counts = np.asarray(task.class_counts, dtype=np.float64)
    if isinstance(setting, str):  # "balanced", the only string the spec allows
        return counts.sum() / (len(counts) * counts)
    weights = np.ones(task.n_classes)
    names = [str(c) for c in task.classes]
    for label, weight in setting.items():
        index = _label_index(task.classes, label)
        if index is None:
            raise ConfigError(
                f"config error: model.class_weight.{label}: not a label value (values: {', '.join(names)})"
            )
        weights[index] = float(weight)
    return weights


def _label_index(classes: Any, label: Any) -> int | None:
    """Return the index of the class ``label`` names: equal value, equal text, or equal number."""
    for i, cls in enumerate(classes):
        if str(cls) == str(label) or (type(cls) is type(label) and cls == label):
            return i
    for i, cls in enumerate(classes):
        try:
            if not isinstance(cls, bool | str) and float(cls) == float(label):
                return i
        except (TypeError, ValueError):
            continue
    return None


def prepare(spec: JobSpec, engine: Engine, progress: Progress) -> Prepared:
    """Return the loaded, profiled and validated data with the fitted preprocessing."""
    plan = make_plan(spec.data, spec.seed)
    data = engine.load(plan)
    profile = engine.profile(data, plan)
    task = infer_task(profile, plan)
    if plan.test_source is not None:
        profile.test_overlap = count_test_overlap(engine, data, profile, plan, progress)
    dropped = check_columns(profile, plan)
    if dropped:
        progress.warn(f"dropped constant column(s) {', '.join(dropped)}")
    for col in sorted(profile.truncated):
        progress.warn(f"column {col!r} has more than 100000 categories; only the most frequent are tracked")
    return Prepared(plan, data, profile, task, fit_preprocessor(profile, plan, dropped))


MAX_TEST_OVERLAP = 0.5  # share of fixed-test rows that are also train/valid rows beyond which a run is refused


def count_test_overlap(
    engine: Engine, data: Any, profile: DataProfile, plan: DataPlan, progress: Progress
) -> dict[str, Any] | None:
    """Return how many rows of the fixed test file are also train or valid rows (same row key).

    A test set that repeats training rows measures memory, not generalisation: more than half is
    refused, any overlap is reported (metrics.json ``test_overlap``).
    """
    if profile.test_keys is None:
        progress.warn("data.test_source: too many test rows to count the ones shared with data.source")
        return None
    keys = np.unique(profile.test_keys)
    found = np.unique(np.concatenate([engine.keys_found(data, keys, split) for split in ("train", "valid")]))
    test_rows = len(profile.test_keys)
    shared = int(np.isin(profile.test_keys, found).sum())
    share = shared / max(test_rows, 1)
    if share > MAX_TEST_OVERLAP:
        raise DataError(
            f"data.test_source: {shared} of its {test_rows} rows are also train/valid rows of {plan.source.text}"
            f" (same row key, {share:.0%}); the test set must be held out"
        )
    if shared:
        progress.warn(f"data.test_source: {shared} of its {test_rows} rows are also train/valid rows (same row key)")
    return {"rows": shared, "test_rows": test_rows, "share": round(share, 6)}


def fit_feature_map(
    engine: Engine, prepared: Prepared, kernel: str | None, params: dict[str, Any], seed: int
) -> FeatureMap | None:
    """Return the model's kernel feature map fitted once on the driver (None for other models)."""
    n_features = prepared.preprocessor.n_features
    if kernel == "rff":
        return fit_rff_features(n_features, params["n_components"], params["gamma"], seed)
    if kernel == "nystroem":
        rows = engine.sample_rows(prepared.data, "train", params["n_components"], seed)
        return fit_nystroem_features(prepared.preprocessor.transform(rows), params["gamma"])
    return None


def fit_with_progress(engine: Engine, data: Any, ctx: FitContext, progress: Progress) -> EngineModel:
    """Return ``engine.fit``; where the fit iterates, a throttled bar with ETA counts its steps."""
    from pipelines.models.native import iterations

    steps = iterations(ctx.model.name, ctx.params)
    if steps is None:
        return engine.fit(data, ctx)
    with progress.iterations(*steps) as bar:
        engine.on_step = bar
        try:
            return engine.fit(data, ctx)
        finally:
            engine.on_step = lambda *_, **__: None


def predict_split(engine: Engine, model: EngineModel, data: Any, ctx: FitContext, split: str) -> Predictions:
    """Return the engine's raw predictions for the rows of one split."""
    return Predictions.collect(engine.predict(model, data, ctx, split))


def round_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Return metrics with NumPy scalars as plain floats (JSON-ready)."""
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in metrics.items()}


@dataclass
class Evaluation:
    """The shared post-processing fitted on valid, the final probabilities and the metrics of both splits."""

    post: Postprocess
    p_valid: np.ndarray
    p_test: np.ndarray
    metrics: dict[str, dict[str, Any]]  # {"test": ..., "valid": ...}


def evaluate_splits(spec: JobSpec, ctx: FitContext, valid: Predictions, test: Predictions) -> Evaluation:
    """Return the evaluation every engine (and a federation) gets: Platt/calibration/threshold fitted on
    valid, then the shared metrics of the test and valid splits."""
    post = fit_postprocess(
        valid.y,
        valid.values,
        ctx.output,
        ctx.task.n_classes,
        calibration=spec.model.calibration,
        threshold=spec.evaluation.threshold,
        class_weights=ctx.class_weights,
    )
    p_valid = post.probabilities(valid.values, ctx.output)
    p_test = post.probabilities(test.values, ctx.output)
    threshold, bins = post.decision_threshold, spec.evaluation.ece_bins
    return Evaluation(
        post,
        p_valid,
        p_test,
        {
            "test": round_metrics(compute_metrics(test.y, p_test, threshold=threshold, ece_bins=bins)),
            "valid": round_metrics(compute_metrics(valid.y, p_valid, threshold=threshold, ece_bins=bins)),
        },
    )


def train(spec: JobSpec, progress: Progress | None = None) -> Path:
    """Run a training job end to end; return the completed run directory."""
    from pipelines.cost import AUTO, choose, estimate, plan_rows, record

    progress = progress or Progress(quiet=True)
    started = time.perf_counter()
    estimates = None
    if spec.engine.name == AUTO:
        chosen, estimates = choose(spec, *plan_rows(spec))
        progress.note(f"engine.name auto: {chosen} (estimates: {'; '.join(e.line() for e in estimates)})")
        spec = spec.model_copy(update={"engine": spec.engine.model_copy(update={"name": chosen})})
    engine = create_engine(spec.engine, spec.seed)
    info = get_model(spec.model.name)
    engine.plan(info.name, info.resolve_params(spec.model.params), spec.resources.memory_bytes)
    parent = Path(spec.output.dir)
    name = spec.output.run_name or run_name(parent, spec.name, spec.model.name, spec.engine.name)
    directory = RunDirectory(parent, name, generated=spec.output.run_name is None)
    with directory as tmp, run_logs(tmp, progress), engine:
        with progress.stage("load_s", f"loaded and profiled {spec.data.source} on {engine.name}"):
            prepared = prepare(spec, engine, progress)
            params = info.resolve_params(spec.model.params)
            feature_map = fit_feature_map(engine, prepared, info.kernel, params, spec.seed)
            ctx = FitContext(
                prepared.task,
                prepared.preprocessor,
                info,
                params,
                class_weights(prepared.task, spec.model.class_weight),
                feature_map,
                spec.seed,
            )
            rows = sum(prepared.profile.rows.values())
            columns = len(prepared.plan.numeric) + len(prepared.plan.categorical)
            expected = estimate(engine.name, info.name, rows, columns, spec.resources.memory_bytes)
            progress.note(f"estimate: {expected.line()}")
        trials = []
        with progress.stage("fit_s", f"fitted {info.name} on {prepared.profile.rows['train']} rows"):
            if spec.tuning.enabled:
                model, ctx, trials = _tune(spec, engine, prepared, ctx, progress)
            else:
                model = fit_with_progress(engine, prepared.data, ctx, progress)
        with progress.stage("predict_s", "predicted the valid and test splits"):
            valid = predict_split(engine, model, prepared.data, ctx, "valid")
            test = predict_split(engine, model, prepared.data, ctx, "test")
        engine_facts = engine.describe()
        explained = None
        if spec.output.report:
            with progress.stage("explain_s", "explained the model (learning curve, feature importance)"):
                explained = explain_model(engine, model, prepared, ctx)
        with progress.stage("evaluate_s", "evaluated"):
            result = evaluate_splits(spec, ctx, valid, test)
            post, p_test, threshold = result.post, result.p_test, result.post.decision_threshold
            metrics: dict[str, Any] = {
                "engine": engine.name,
                "model": info.name,
                "task": ctx.task.kind,
                "dataset": spec.data.source,
                "classes": [str(c) for c in ctx.task.classes],
                "rows": split_rows(prepared.profile),
                "class_counts": class_counts(prepared.profile),
                "test_overlap": prepared.profile.test_overlap,
                **result.metrics,
                "threshold": post.threshold.to_dict() if post.threshold else None,
                "calibration": spec.model.calibration,
                "params": ctx.params,
                "dropped_columns": list(prepared.preprocessor.dropped),
                "engine_info": engine_facts,
                "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            }
        with progress.stage("write_s", "wrote the model and predictions"):
            (tmp / "spec.yaml").write_text(spec.to_yaml())
            save_model(tmp / "model", model, ctx, post, prepared.plan, spec, engine.name)
            write_predictions(tmp / "predictions.parquet", test, p_test, ctx.task, threshold)
            if trials:
                write_json(tmp / "tuning.json", {"metric": spec.tuning.metric, "trials": [t.to_dict() for t in trials]})
            if explained is not None:
                write_json(tmp / "explain.json", explained)
        if spec.output.report:
            metrics["timing"] = _timing(progress, started)
            with progress.stage("report_s", "wrote the report"):
                write_run_report(tmp, spec, metrics, test.y, p_test, ctx.task, trials, explained)
        metrics["timing"] = _timing(progress, started)
        by = "auto" if estimates is not None else "spec"
        metrics["cost"] = record(expected, estimates or [expected], by, time.perf_counter() - started)
        write_json(tmp / "metrics.json", metrics)
    run_dir = directory.final
    if spec.output.mlflow:
        from pipelines.tracking import log_run

        with progress.stage("mlflow_s", "logged the run to MLflow"):
            logged = log_run(run_dir, spec.public_dump(), metrics, parent, spec.output.mlflow_experiment)
        progress.note(f"MLflow run {logged.run_id}, model {logged.model_uri}")
    return run_dir


EXPLAIN_ROWS = 2000  # train and valid rows the learning curve and permutation importance are computed on


def explain_model(engine: Engine, model: EngineModel, prepared: Prepared, ctx: FitContext) -> dict[str, Any]:
    """Return the model's learning curve and feature importance, measured on samples of train and valid rows."""
    from pipelines.models.explain import feature_importance, learning_curve

    def sample(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows = engine.sample_rows(prepared.data, split, EXPLAIN_ROWS, ctx.seed)
        y = ctx.labels(rows)
        keep = y >= 0
        return ctx.features(rows)[keep], y[keep]

    train, valid = sample("train"), sample("valid")
    k = ctx.task.n_classes

    def score(y: np.ndarray, out: np.ndarray) -> float:
        if k == 2:
            return float(roc_auc((y == 1).astype(np.int8), out if out.ndim == 1 else out[:, 1]) or 0.0)
        return float(np.mean(np.argmax(out, axis=1) == y))

    importance = feature_importance(
        model, ctx.preprocessor.feature_names(), valid, score, kernel=ctx.feature_map is not None, seed=ctx.seed
    )
    return {
        "rows": {"train": len(train[1]), "valid": len(valid[1])},
        "learning_curve": learning_curve(model, train, valid),
        "importance": [{"feature": f, "value": v, "kind": kind} for f, v, kind in importance],
    }


def _timing(progress: Progress, started: float) -> dict[str, float]:
    return {**{k: round(v, 4) for k, v in progress.timings.items()}, "total_s": round(time.perf_counter() - started, 4)}


def _tune(spec: JobSpec, engine: Engine, prepared: Prepared, ctx: FitContext, progress: Progress) -> Any:
    from pipelines.tuning import run_tuning

    def score(model: EngineModel, trial_ctx: FitContext) -> dict[str, Any]:
        valid = predict_split(engine, model, prepared.data, trial_ctx, "valid")
        post = fit_platt_only(
            valid.y, valid.values, trial_ctx.output, trial_ctx.task.n_classes, trial_ctx.class_weights
        )
        return round_metrics(compute_metrics(valid.y, post.probabilities(valid.values, trial_ctx.output)))

    def report(trial: Any) -> None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        value = "—" if trial.score is None else f"{trial.score:.4f}"
        progress.note(f"trial {trial.number}: {shown} -> valid {spec.tuning.metric} {value}")

    return run_tuning(engine, prepared.data, ctx, spec.tuning, score, on_trial=report, progress=progress)


def split_rows(profile: DataProfile) -> dict[str, int]:
    """Return the rows of every split and their total."""
    rows = {name: int(profile.rows.get(name, 0)) for name in SPLIT_NAMES}
    rows["total"] = sum(rows.values())
    return rows


def class_counts(profile: DataProfile) -> dict[str, dict[str, int]]:
    """Return the rows per label value of every split."""
    return {
        split: {str(k): int(v) for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))}
        for split, c in profile.labels.items()
    }


def save_model(
    directory: Path, model: EngineModel, ctx: FitContext, post: Postprocess, plan: DataPlan, spec: JobSpec, engine: str
) -> None:
    """Write ``model/``: the native model, preprocessing, post-processing, kernel map and the manifest."""
    directory.mkdir()
    native = model.save(directory)
    write_json(directory / "preprocess.json", ctx.preprocessor.to_dict())
    write_json(directory / "postprocess.json", post.to_dict())
    if ctx.feature_map is not None:
        ctx.feature_map.save(directory)
    write_manifest(
        directory,
        {
            "format_version": MODEL_FORMAT,
            "engine": engine,
            "model": ctx.model.name,
            "native_format": model.format,
            "native_kind": model.kind,
            "native_files": [p.relative_to(directory).as_posix() for p in native],
            "params": ctx.params,
            "output": ctx.output,
            "seed": ctx.seed,
            "class_weights": ctx.class_weights.tolist() if ctx.class_weights is not None else None,
            "task": ctx.task.to_dict(),
            "schema": {
                "numeric": list(plan.numeric),
                "categorical": list(plan.categorical),
                "label": plan.label,
                "key_columns": list(plan.key_columns),
                "feature_names": ctx.preprocessor.feature_names(),
                "arrow": schema_text(plan.read_schema),
            },
            "data": {
                "source": spec.data.source,
                "test_source": spec.data.test_source,
                "rows": spec.data.rows,
                "generator_seed": spec.data.generator_seed,
                "format": spec.data.format,
                "split": {"seed": plan.seed, "valid": plan.valid, "test": plan.test},
            },
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        },
    )


def write_predictions(path: Path, preds: Predictions, proba: np.ndarray, task: Task, threshold: float) -> Path:
    """Write predictions: row_key, label, proba_<class> per class and the predicted label."""
    classes = np.array(list(task.classes), dtype=object)
    known = preds.y >= 0
    label = classes[np.maximum(preds.y, 0)]
    label[~known] = None
    chosen = (proba[:, 1] >= threshold).astype(int) if task.n_classes == 2 else proba.argmax(axis=1)
    columns: dict[str, Any] = {"row_key": pa.array(preds.keys, pa.uint64()), "label": pa.array(label.tolist())}
    for j, cls in enumerate(task.classes):
        columns[f"proba_{cls}"] = pa.array(proba[:, j])
    columns["prediction"] = pa.array(classes[chosen].tolist())
    pq.write_table(pa.table(columns), path)
    return path


def write_run_report(
    tmp: Path,
    spec: JobSpec,
    metrics: dict[str, Any],
    y: np.ndarray,
    proba: np.ndarray,
    task: Task,
    trials: list[Any],
    explained: dict[str, Any] | None = None,
) -> None:
    """Write report.html and plots/ for a trained run: tuning trials, learning curve and importance sections."""
    from pipelines.evaluation.report import ReportSection, write_report

    sections = []
    if trials:
        rows = "".join(
            f"<tr><td>{t.number}</td><td>{html.escape(json.dumps(t.params))}</td>"
            f"<td>{'—' if t.score is None else f'{t.score:.4f}'}</td><td>{t.fit_s:.2f}</td></tr>"
            for t in trials
        )
        sections.append(
            ReportSection(
                f"Tuning ({len(trials)} trials, valid {spec.tuning.metric})",
                f"<table><tr><th>trial</th><th>params</th><th>score</th><th>fit s</th></tr>{rows}</table>",
            )
        )
    write_report(
        tmp,
        metrics=metrics,
        spec_yaml=spec.to_yaml(),
        y=y,
        proba=proba,
        classes=[str(c) for c in task.classes],
        sections=sections,
        **explanation_sections(explained, spec.model.name),
    )


def explanation_sections(explained: dict[str, Any] | None, model: str) -> dict[str, Any]:
    """Return ``write_report``'s learning-curve and importance arguments from ``explain.json``'s content."""
    if explained is None:
        return {}
    curve = explained.get("learning_curve")
    out: dict[str, Any] = {
        "importance": [(i["feature"], i["value"], i["kind"]) for i in explained["importance"]] or None,
    }
    if curve:
        out["curves"] = {k: curve[k] for k in ("train", "valid") if k in curve}
        out["curve_axis"] = curve["axis"]
        out["curve_metric"] = "log loss" if "valid" in curve else "training objective"
    else:
        out["curves_missing"] = f"{model} is fitted in one pass (no rounds, epochs or iterations to follow)"
    return out
