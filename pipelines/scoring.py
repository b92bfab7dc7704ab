"""Scoring with a saved run: reload its verified model and predict or evaluate new data.

``write_scores`` is batch scoring (``scaleclf predict``, the pipelines' ``score`` stage): it
streams the input in batches and writes each batch's predictions with a ``ParquetWriter``, so
memory is bounded by one batch whatever the input's size. Models the model layer reloads without
an engine (scikit-learn, xgboost, NumPy networks, naive Bayes: every engine's but Spark MLlib's)
predict in this process and carry the input's identifier columns through; Spark models are
scored on Spark, which returns row keys only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.artifacts import verify_run
from pipelines.data.schema import (
    DataPlan,
    DataProfile,
    Task,
    check_same_family,
    numeric_values,
    schema_from_text,
    text_values,
)
from pipelines.data.sources import read_schema, resolve_source
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES, TEST
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

BATCH_ROWS = 65_536
# Output columns scaleclf writes; an identifier column of the same name would be ambiguous.
RESERVED = ("row_key", "label", "prediction")


@dataclass
class LoadedRun:
    """A finished run directory with its verified model, ready to score new data."""

    run_dir: Path
    spec: JobSpec
    manifest: dict[str, Any]
    ctx: FitContext
    post: Postprocess


def load_run(run_dir: Path) -> LoadedRun:
    """Return the run's spec, verified manifest and fitted state.

    The whole run directory is verified first (``pipelines.artifacts.verify_run``: every file
    listed, unchanged, the manifest's signature when a key is set); nothing is read before.
    """
    if not (run_dir / "spec.yaml").is_file():
        raise ArtifactError(f"{run_dir} is not a scaleclf run directory (no spec.yaml)")
    model_dir = run_dir / "model"
    manifest = verify_run(run_dir, MODEL_FORMAT)
    # spec.yaml holds secrets as ***: they are left out, the engine takes them from its own configuration.
    spec = build_spec(load_yaml((run_dir / "spec.yaml").read_text())).without_redacted()
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


@dataclass
class DataChecks:
    """What the scored rows hold that the model encodes without a choice: never silent, always counted.

    A categorical value outside the model's categories is encoded as ``<other>`` (or, when the
    model has no such column, as no category at all); a missing value as the ``<missing>`` category
    or, for numbers, the training mean. Both are counted per column, and a feature column with no
    value at all in the scored rows is named: its predictions rest on imputation alone.
    """

    rows: int = 0
    unseen: Counter = field(default_factory=Counter)  # categorical column -> values outside its categories
    missing: Counter = field(default_factory=Counter)  # feature column -> missing values

    def add(self, table: pa.Table, prep: Preprocessor) -> None:
        """Count the unseen categories and missing values of one batch of rows to score."""
        self.rows += table.num_rows
        for f in prep.numeric:
            self.missing[f.name] += int(np.isnan(numeric_values(table.column(f.name))).sum())
        for c in prep.categorical:
            values = text_values(table.column(c.name))
            is_null = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            known = pa.array([v for v in c.categories if v is not None], type=pa.string())
            seen = np.asarray(pc.is_in(values, value_set=known).fill_null(False).to_numpy(zero_copy_only=False))
            self.unseen[c.name] += int((~seen & ~is_null).sum())
            self.missing[c.name] += int(is_null.sum())

    @property
    def all_missing(self) -> list[str]:
        """Return the feature columns without a single value in the scored rows."""
        return sorted(c for c, n in self.missing.items() if self.rows and n == self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Return the counts as JSON-ready data (columns with nothing to report left out)."""
        return {
            "rows": self.rows,
            "unseen_categories": {c: n for c, n in sorted(self.unseen.items()) if n},
            "missing_values": {c: n for c, n in sorted(self.missing.items()) if n},
            "all_missing_columns": self.all_missing,
        }

    def warnings(self) -> list[str]:
        """Return one line per finding, for stderr."""
        lines = []
        unseen = {c: n for c, n in sorted(self.unseen.items()) if n}
        if unseen:
            shown = ", ".join(f"{c!r} {n}" for c, n in unseen.items())
            lines.append(f"--data: values never seen in training, encoded as <other>/no category: {shown} (rows)")
        if self.all_missing:
            shown = ", ".join(repr(c) for c in self.all_missing)
            lines.append(f"--data: feature column(s) {shown} have no value in the {self.rows} scored rows (imputed)")
        return lines


def scan_checks(run: LoadedRun, plan: DataPlan, split: str) -> DataChecks:
    """Return the DataChecks of the rows of ``split`` in the plan's source, read piece by piece."""
    from pipelines.data.reader import read_unit, source_units

    checks = DataChecks()
    code = SPLIT_NAMES.index(split)
    for unit in source_units(plan.source):
        table = plan.attach(read_unit(plan, unit, plan.source))
        if plan.fixed_split is None:
            table = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
        checks.add(table, run.ctx.preprocessor)
    return checks


@dataclass
class ScoreSummary:
    """What ``write_scores`` wrote: the file, its row count, the identifier columns kept, the data checks."""

    out: Path
    rows: int
    kept: list[str]
    has_label: bool
    split: str
    checks: DataChecks = field(default_factory=DataChecks)


def in_process_model(run: LoadedRun, engine_name: str | None = None) -> Any | None:
    """Return the run's model loaded for prediction in this process, or None when only its engine can run it.

    ``engine_name`` asks for a given engine to score (``--engine``): then the engine scores.
    """
    from pipelines.models.fitted import load_fitted

    if engine_name is not None:
        return None
    try:
        return load_fitted(run.run_dir / "model", run.manifest["native_kind"], run.ctx.task.n_classes, run.ctx.output)
    except ArtifactError:  # a model only its engine loads (Spark MLlib)
        return None


def raw_outputs(model: Any, table: pa.Table, ctx: FitContext) -> np.ndarray:
    """Return the model's probabilities or decision scores for the feature columns of ``table``."""
    return np.asarray(model.predict(ctx.features(table)), dtype=np.float64)


def check_features(table: pa.Table, run: LoadedRun, where: str) -> None:
    """Raise a DataError when a feature column is missing or holds infinite values."""
    schema = run.manifest["schema"]
    for col in [*schema["numeric"], *schema["categorical"]]:
        if col not in table.schema.names:
            raise DataError(f"{where}: column {col!r}, a feature of this model, is missing")
    for col in schema["numeric"]:
        infinite = int(np.isinf(numeric_values(table.column(col))).sum())
        if infinite:
            raise DataError(f"{where}: column {col!r} has {infinite} infinite values in the data to score")


def predict_table(run: LoadedRun, table: pa.Table, model: Any | None = None) -> np.ndarray:
    """Return the final probabilities (rows x classes, input order) of the rows of ``table``.

    ``model`` is ``in_process_model(run)`` when the caller keeps it between calls; a model only
    its engine can run is scored through a temporary Parquet file and matched back by row key.
    """
    check_features(table, run, "input")
    model = model if model is not None else in_process_model(run)
    if model is not None:
        return run.post.probabilities(raw_outputs(model, table, run.ctx), run.ctx.output)
    with tempfile.TemporaryDirectory(prefix="scaleclf-score-") as tmp:
        path = Path(tmp) / "rows.parquet"
        pq.write_table(table, path)
        _, preds, proba, _ = score(run.run_dir, str(path), split="all")
        plan, _ = scoring_plan(run, str(path), "all")
    keys = np.asarray(plan.attach(table).column(KEY_COLUMN).to_numpy())
    # Identical rows share a key and a prediction, so a key names one row of probabilities.
    order = np.argsort(preds.keys, kind="stable")
    where = np.searchsorted(preds.keys[order], keys)
    return proba[order[np.minimum(where, len(order) - 1)]]


def _keep_columns(names: list[str], run: LoadedRun, keep: list[str] | None) -> list[str]:
    schema = run.manifest["schema"]
    features = {*schema["numeric"], *schema["categorical"]}
    if keep is None:
        return [c for c in names if c not in features and c != schema["label"]]
    for col in keep:
        if col not in names:
            raise ConfigError(f"--keep: column {col!r} is not in the data to score")
    return list(dict.fromkeys(keep))


def _output_names(run: LoadedRun, kept: list[str], has_label: bool) -> list[str]:
    classes = [str(c) for c in run.ctx.task.classes]
    names = ["row_key", *kept, *(["label"] if has_label else []), *(f"proba_{c}" for c in classes), "prediction"]
    clash = sorted({c for c in kept if c in RESERVED or c in names[len(kept) + 1 :]})
    if clash:
        raise ConfigError(f"--keep: column {clash[0]!r} has the name of a prediction column; rename it first")
    return names


def _in_process_batches(
    run: LoadedRun, model: Any, plan: DataPlan, split: str, kept: list[str], batch_rows: int, checks: DataChecks
) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
    """Yield (kept columns with the row key, class index, probabilities) batch by batch.

    The input is read piece by piece with the engines' row reader (a Parquet row group, a CSV
    file), the identifier columns from the same piece, so rows stay aligned; memory holds one
    piece and one batch of predictions.
    """
    from pipelines.data.reader import read_unit, source_units

    code = SPLIT_NAMES.index(split)
    given = read_schema(plan.source, "--data")
    ids = dataclasses.replace(plan, numeric=tuple(kept), categorical=(), key_columns=(), has_label=False, schema=given)
    for unit in source_units(plan.source):
        table = plan.attach(read_unit(plan, unit, plan.source))
        if kept:
            for name, column in zip(kept, read_unit(ids, unit, plan.source).columns, strict=True):
                table = table.append_column(name, column) if name not in table.column_names else table
        if plan.fixed_split is None:
            table = table.filter(pc.equal(table.column(SPLIT_COLUMN), pa.scalar(code, pa.int8())))
        for start in range(0, table.num_rows, batch_rows):
            batch = table.slice(start, batch_rows)
            check_features(batch, run, "--data")
            checks.add(batch, run.ctx.preprocessor)
            y = _labels(batch, run, plan)
            proba = run.post.probabilities(raw_outputs(model, batch, run.ctx), run.ctx.output)
            yield batch.select([KEY_COLUMN, *kept]), y, proba


def _labels(table: pa.Table, run: LoadedRun, plan: DataPlan) -> np.ndarray:
    if not plan.has_label:
        return np.full(table.num_rows, -1, dtype=np.int32)
    column = table.column(plan.label)
    y = run.ctx.task.encode(column)
    unseen = (y < 0) & ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if unseen.any():
        values = sorted({str(v) for v in pc.filter(column, pa.array(unseen)).to_pylist()})
        raise DataError(f"--data: label value(s) {', '.join(values[:5])} were never seen in training")
    return y


def _engine_batches(
    run: LoadedRun, plan: DataPlan, split: str, engine_name: str | None, progress: Progress
) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
    """Yield (row keys, class index, probabilities) as the run's engine streams its predictions."""
    engine_spec = run.spec.engine.model_copy(update={"name": engine_name or run.manifest["engine"]})
    engine = create_engine(engine_spec, run.ctx.seed)
    with engine:
        with progress.stage("load_s", f"loaded {plan.source.text} on {engine.name}"):
            data = engine.load(plan)
            check_scoring_data(engine.profile(data, plan), run.ctx.task, plan)
            model = engine.load_model(run.run_dir / "model", run.ctx, run.manifest["native_kind"])
        for batch in engine.predict(model, data, run.ctx, split):
            preds = Predictions.collect([batch])
            keys = pa.table({KEY_COLUMN: pa.array(preds.keys, pa.uint64())})
            yield keys, preds.y, run.post.probabilities(preds.values, run.ctx.output)


def write_scores(
    run_dir: Path,
    source_text: str,
    out: Path,
    *,
    keep: list[str] | None = None,
    split: str = "auto",
    engine_name: str | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> ScoreSummary:
    """Score ``source_text`` with a saved run into the Parquet file ``out``, batch by batch.

    Columns: ``row_key``, the kept identifier columns (default: every input column that is
    neither a feature nor the label), ``label`` when the input has the label column,
    ``proba_<class>`` and ``prediction``. The file appears only when complete.
    """
    if split not in ("auto", "all", "train", "valid", "test"):
        raise ConfigError(f"--split: {split!r} is not allowed (allowed: auto, all, train, valid, test)")
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a directory; give a file path such as predictions.parquet")
    progress = progress or Progress(quiet=True)
    run = load_run(run_dir)
    if out.resolve().is_relative_to(run_dir.resolve()):
        raise ConfigError(
            f"--out: {out} is inside the run directory {run_dir}, which holds only what train wrote"
            " (an unlisted file makes it unloadable); write the predictions elsewhere"
        )
    plan, read_split = scoring_plan(run, source_text, split)
    model = in_process_model(run, engine_name)
    checks = DataChecks()
    if model is not None:
        kept = _keep_columns(list(read_schema(plan.source, "--data").names), run, keep)
        batches = _in_process_batches(run, model, plan, read_split, kept, batch_rows, checks)
    else:
        if keep:
            raise ConfigError(
                f"--keep: a {run.manifest['engine']} model is scored on its engine, which returns row keys only;"
                " identifier columns are kept for models that score in this process (local-engine runs)"
            )
        kept = []
        checks = scan_checks(run, plan, read_split)
        batches = _engine_batches(run, plan, read_split, engine_name, progress)
    names = _output_names(run, kept, plan.has_label)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    rows = 0
    try:
        with progress.stage("predict_s", f"scored the {read_split} rows of {source_text}"):
            writer: pq.ParquetWriter | None = None
            try:
                for ids, y, proba in batches:
                    table = _output_table(run, ids, y, proba, kept, plan.has_label, names)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    rows += table.num_rows
            finally:
                if writer is not None:
                    # The footer says what the model encoded without a choice (DataChecks), counted over every batch.
                    writer.add_key_value_metadata({CHECKS_METADATA: json.dumps(checks.to_dict())})
                    writer.close()
        if rows == 0:
            raise DataError(f"--data: no {read_split} rows to score in {source_text}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ScoreSummary(out, rows, kept, plan.has_label, read_split, checks)


CHECKS_METADATA = "scaleclf.data_checks"  # key of the DataChecks in the predictions file's footer


def _output_table(
    run: LoadedRun, ids: pa.Table, y: np.ndarray, proba: np.ndarray, kept: list[str], has_label: bool, names: list[str]
) -> pa.Table:
    task = run.ctx.task
    classes = np.array(list(task.classes), dtype=object)
    columns: list[Any] = [ids.column(KEY_COLUMN).cast(pa.uint64()), *(ids.column(c) for c in kept)]
    kind = pa.array(list(task.classes)).type
    if has_label:
        label = classes[np.maximum(y, 0)]
        label[y < 0] = None
        columns.append(pa.array(label.tolist(), type=kind))
    columns += [pa.array(proba[:, j]) for j in range(task.n_classes)]
    threshold = run.post.decision_threshold
    chosen = (proba[:, 1] >= threshold).astype(int) if task.n_classes == 2 else proba.argmax(axis=1)
    columns.append(pa.array(classes[chosen].tolist(), type=kind))
    return pa.table(columns, names=names)
