"""Schema inference (the data plan), mergeable data profiles, validation and the label task."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.sources import Source, file_schemas, open_dataset, resolve_source
from pipelines.data.split import KEY_COLUMN, SPLIT_COLUMN, SPLIT_NAMES, TEST, attach_key_and_split
from pipelines.errors import ConfigError, DataError

MAX_LABEL_CLASSES = 100
MAX_TRACKED_CATEGORIES = 100_000
MAX_TEST_KEYS = 20_000_000  # 160 MB of keys: beyond that the test-file overlap is not counted


@dataclass(frozen=True)
class DataPlan:
    """What every engine reads and how it reads it: columns, their roles and the split."""

    source: Source
    test_source: Source | None
    label: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    key_columns: tuple[str, ...]
    seed: int
    valid: float
    test: float
    max_categories: int = 50
    positive_label: Any = None
    fixed_split: int | None = None  # put every row of ``source`` in this split (scoring)
    has_label: bool = True  # False when scoring data without the label column
    schema: pa.Schema | None = None  # the type of every column read (the union of the source's files)
    allow_missing_columns: bool = False  # a column missing from some files is read as missing values

    @property
    def features(self) -> tuple[str, ...]:
        """Return the feature columns in model order: numeric, then categorical."""
        return self.numeric + self.categorical

    @property
    def columns(self) -> list[str]:
        """Return every column an engine must read: features, label and key columns."""
        label = [self.label] if self.has_label else []
        return list(dict.fromkeys([*self.features, *label, *self.key_columns]))

    @property
    def read_schema(self) -> pa.Schema:
        """Return the schema every engine reads the plan's columns as (``pipelines.data.reader``)."""
        assert self.schema is not None, "a plan made by make_plan (or scoring) carries its schema"
        return pa.schema([self.schema.field(c) for c in self.columns])

    def attach(self, batch: pa.Table | pa.RecordBatch, *, is_test_source: bool = False) -> Any:
        """Return ``batch`` with the row key and split columns this plan defines."""
        return attach_key_and_split(
            batch,
            key_columns=self.key_columns,
            seed=self.seed,
            valid=self.valid,
            test=self.test,
            fixed_split=TEST if is_test_source else self.fixed_split,
        )


def _is_numeric(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def make_plan(data: Any, seed: int) -> DataPlan:
    """Return the DataPlan for a ``DataSpec``: sources resolved, feature roles inferred."""
    source = resolve_source(data.source, rows=data.rows, generator_seed=data.generator_seed, fmt=data.format)
    files = file_schemas(source)
    schema = unified_schema(files, data.source, "data.source")
    names = list(schema.names)
    null_typed = [f.name for f in schema if pa.types.is_null(f.type)]
    if null_typed:
        # A CSV with only a header, or a column with no value at all: say which.
        if open_dataset(source).count_rows() == 0:
            raise DataError(f"data.source: {data.source} has no rows")
        if null_typed[0] not in data.drop:
            raise DataError(f"column {null_typed[0]!r} has no values (all missing); drop it with data.drop")
    if data.label not in names:
        raise DataError(f"data.label: column {data.label!r} is not in {data.source} (columns: {_list(names)})")
    for key in ("features", "categorical", "drop"):
        for col in getattr(data, key) or []:
            if col not in names:
                raise ConfigError(f"config error: data.{key}: column {col!r} is not in {data.source}")
    if data.key is not None and data.key not in names:
        raise ConfigError(f"config error: data.key: column {data.key!r} is not in {data.source}")
    excluded = {data.label, *data.drop, *([data.key] if data.key else [])}
    features = [c for c in (data.features or names) if c not in excluded]
    if not features:
        raise DataError(f"data.features: no feature columns left in {data.source} after label/key/drop")
    numeric, categorical = [], []
    for col in features:
        kind = schema.field(col).type
        if pa.types.is_nested(kind):
            raise DataError(
                f"column {col!r} has type {kind}: nested values are neither numbers nor categories;"
                " drop it with data.drop"
            )
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise DataError(
                f"column {col!r} holds bytes ({kind}), not UTF-8 text (a CSV written in latin-1?);"
                " re-encode the file as UTF-8 or drop it with data.drop"
            )
        if col in data.categorical or _is_text(kind):
            categorical.append(col)
        elif _is_numeric(kind):
            numeric.append(col)
        else:
            raise DataError(
                f"column {col!r} has type {kind}, which scaleclf cannot use as a feature;"
                " drop it with data.drop or list it in data.categorical"
            )
    label_type = schema.field(data.label).type
    if not (_is_numeric(label_type) or _is_text(label_type)):
        raise DataError(
            f"data.label: column {data.label!r} has type {label_type}; expected integers, booleans or strings"
        )
    key_columns = (data.key,) if data.key else tuple([*features, data.label])
    columns = list(dict.fromkeys([*numeric, *categorical, data.label, *key_columns]))
    if not data.allow_missing_columns:
        check_every_file_has(files, columns, "data.source")
    test_source = None
    valid, test = data.split.valid, data.split.test
    if data.test_source:
        test_source = resolve_source(data.test_source, field_name="data.test_source", fmt=data.format)
        test_files = file_schemas(test_source, "data.test_source")
        test_schema = unified_schema(test_files, data.test_source, "data.test_source")
        for col in [*features, data.label]:
            if col not in test_schema.names:
                raise DataError(f"data.test_source: column {col!r} is missing from {data.test_source}")
            check_same_family(schema.field(col).type, test_schema.field(col).type, col, "data.test_source")
        if not data.allow_missing_columns:
            check_every_file_has(test_files, columns, "data.test_source")
        # The fixed test set replaces the test share: the source feeds train and valid only.
        valid, test = data.split.valid / (data.split.train + data.split.valid), 0.0
    return DataPlan(
        source=source,
        test_source=test_source,
        label=data.label,
        numeric=tuple(numeric),
        categorical=tuple(categorical),
        key_columns=key_columns,
        seed=seed,
        valid=valid,
        test=test,
        max_categories=data.max_categories,
        positive_label=data.positive_label,
        schema=pa.schema([schema.field(c) for c in columns]),
        allow_missing_columns=data.allow_missing_columns,
    )


def unified_schema(files: list[tuple[str, pa.Schema]], text: str, field: str) -> pa.Schema:
    """Return the union of the files' schemas (integers widen to floats); a type clash is a DataError."""
    try:
        return pa.unify_schemas([s for _, s in files], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            f"{field}: the files of {text} disagree on a column's type: {str(exc).splitlines()[0]}"
        ) from None


def check_every_file_has(files: list[tuple[str, pa.Schema]], columns: list[str], field: str) -> None:
    """Raise a DataError naming the first file that lacks one of ``columns``."""
    for path, schema in files:
        for col in columns:
            if col not in schema.names:
                raise DataError(
                    f"{field}: column {col!r} is missing from {path} (other files of the source have it;"
                    " set data.allow_missing_columns: true to read it as missing values)"
                )


def type_family(kind: pa.DataType) -> str:
    """Return a column type's family: "boolean", "numeric", "text" or the type itself."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return str(kind)


def check_same_family(expected: pa.DataType, got: pa.DataType, column: str, field: str) -> None:
    """Raise a DataError when ``got`` is not of ``expected``'s family (booleans are not numbers here)."""
    if pa.types.is_null(got):
        return
    if type_family(expected) != type_family(got):
        raise DataError(
            f"{field}: column {column!r} is {type_family(got)} ({got}) but was {type_family(expected)}"
            f" ({expected}) in the training data"
        )


@dataclass
class NumericStats:
    """Mergeable moments of one numeric column (Chan et al.'s parallel variance)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    missing: int = 0
    infinite: int = 0

    @classmethod
    def per_group(cls, values: np.ndarray, groups: np.ndarray, n_groups: int) -> list[NumericStats]:
        """Return the stats of a float64 array (NaN = missing) for each group code 0..n_groups-1.

        One bincount per moment instead of a masked copy per group: profiling is the part
        of loading every engine runs on every partition.
        """
        rows = np.bincount(groups, minlength=n_groups)
        finite = np.isfinite(values)
        count: np.ndarray
        missing: np.ndarray
        if finite.all():  # the common case, half the passes
            count, missing, clean = rows.astype(np.float64), np.zeros(n_groups), values
        else:
            count = np.bincount(groups, weights=finite, minlength=n_groups)
            missing = np.bincount(groups, weights=np.isnan(values), minlength=n_groups)
            clean = np.where(finite, values, 0.0)
        mean = np.divide(
            np.bincount(groups, weights=clean, minlength=n_groups), count, out=np.zeros(n_groups), where=count > 0
        )
        dev = clean - mean[groups]
        if clean is not values:
            dev[~finite] = 0.0
        m2 = np.bincount(groups, weights=dev * dev, minlength=n_groups)
        return [
            cls(
                count=int(count[g]),
                mean=float(mean[g]),
                m2=float(m2[g]),
                missing=int(missing[g]),
                infinite=int(rows[g] - count[g] - missing[g]),
            )
            for g in range(n_groups)
        ]

    def merge(self, other: NumericStats) -> NumericStats:
        """Return the stats of both parts together."""
        n = self.count + other.count
        out = NumericStats(count=n, missing=self.missing + other.missing, infinite=self.infinite + other.infinite)
        if n:
            delta = other.mean - self.mean
            out.mean = self.mean + delta * other.count / n
            out.m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return out


@dataclass
class DataProfile:
    """Mergeable summary of the data per split: rows, labels, column moments and categories."""

    rows: Counter = field(default_factory=Counter)
    labels: dict[str, Counter] = field(default_factory=dict)
    numeric: dict[str, dict[str, NumericStats]] = field(default_factory=dict)  # split -> col -> stats
    categories: dict[str, Counter] = field(default_factory=dict)  # train only
    category_missing: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> col -> nulls
    truncated: set[str] = field(default_factory=set)
    # Row keys of the fixed test file's rows (data.test_source), to count those that are also
    # train or valid rows; None once there are more than MAX_TEST_KEYS.
    test_keys: np.ndarray | None = field(default_factory=lambda: np.empty(0, np.uint64))
    test_overlap: dict[str, Any] | None = None  # filled in by the run: test rows shared with train/valid

    def merge(self, other: DataProfile) -> DataProfile:
        """Return the profile of both parts together."""
        out = DataProfile(rows=self.rows + other.rows, truncated=self.truncated | other.truncated)
        if self.test_keys is None or other.test_keys is None:
            out.test_keys = None
        else:
            keys = np.concatenate([self.test_keys, other.test_keys])
            out.test_keys = keys if len(keys) <= MAX_TEST_KEYS else None
        for split in set(self.labels) | set(other.labels):
            out.labels[split] = self.labels.get(split, Counter()) + other.labels.get(split, Counter())
        for split in set(self.numeric) | set(other.numeric):
            a, b = self.numeric.get(split, {}), other.numeric.get(split, {})
            out.numeric[split] = {c: a.get(c, NumericStats()).merge(b.get(c, NumericStats())) for c in set(a) | set(b)}
        for col in set(self.categories) | set(other.categories):
            merged = self.categories.get(col, Counter()) + other.categories.get(col, Counter())
            if len(merged) > MAX_TRACKED_CATEGORIES:
                merged = Counter(dict(merged.most_common(MAX_TRACKED_CATEGORIES)))
                out.truncated.add(col)
            out.categories[col] = merged
        for split in set(self.category_missing) | set(other.category_missing):
            na, nb = self.category_missing.get(split, {}), other.category_missing.get(split, {})
            out.category_missing[split] = {c: na.get(c, 0) + nb.get(c, 0) for c in set(na) | set(nb)}
        return out


def profile_batch(batch: pa.Table | pa.RecordBatch, plan: DataPlan) -> DataProfile:
    """Return the profile of one batch that carries the plan's split column."""
    split = np.asarray(batch.column(SPLIT_COLUMN).to_numpy(zero_copy_only=False))
    # Convert and encode each column once; every split is then a boolean mask over numpy arrays.
    groups = split.astype(np.intp)
    numeric = {
        c: NumericStats.per_group(numeric_values(batch.column(c)), groups, len(SPLIT_NAMES)) for c in plan.numeric
    }
    categorical = {c: _encoded(text_values(batch.column(c))) for c in plan.categorical}
    label = _encoded(finite_or_null(batch.column(plan.label))) if plan.has_label else None
    prof = DataProfile()
    if plan.test_source is not None:
        keys = np.asarray(batch.column(KEY_COLUMN).to_numpy(zero_copy_only=False)).view(np.uint64)
        prof.test_keys = keys[split == TEST].copy()
    for code, name in enumerate(SPLIT_NAMES):
        mask = split == code
        n = int(mask.sum())
        if not n:
            continue
        prof.rows[name] = n
        if label is not None:
            prof.labels[name] = _counts(label, mask, with_nulls=True)
        prof.numeric[name] = {c: stats[code] for c, stats in numeric.items()}
        prof.category_missing[name] = {c: int((codes[mask] < 0).sum()) for c, (codes, _) in categorical.items()}
        if name == "train":
            prof.categories.update({c: _counts(enc, mask) for c, enc in categorical.items()})
    return prof


def finite_or_null(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Return a label column with NaN and infinite floats as nulls: a missing label, never a class "nan"."""
    if not pa.types.is_floating(column.type):
        return column
    return pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))


def _encoded(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Return (code per row, -1 for null; the distinct values) of a column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, encoded.dictionary.to_pylist()


def _counts(encoded: tuple[np.ndarray, list[Any]], mask: np.ndarray, with_nulls: bool = False) -> Counter:
    """Return value -> rows among ``mask`` (None counts missing values when ``with_nulls``)."""
    codes, values = encoded
    picked = codes[mask]
    counts = np.bincount(picked[picked >= 0], minlength=len(values))
    out = Counter({v: int(k) for v, k in zip(values, counts, strict=True) if k})
    nulls = int((picked < 0).sum())
    if with_nulls and nulls:
        out[None] = nulls
    return out


def numeric_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return a numeric column as float64 with NaN for missing values."""
    arr = pc.cast(column, pa.float64())
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def text_values(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Return a categorical column as one string array (numbers and booleans as text)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


@dataclass(frozen=True)
class Task:
    """The label: its column, the class values (index = class id) and binary or multiclass."""

    label: str
    classes: tuple[Any, ...]
    class_counts: tuple[int, ...]  # rows per class in train

    @property
    def n_classes(self) -> int:
        """Return the number of classes."""
        return len(self.classes)

    @property
    def kind(self) -> str:
        """Return "binary" or "multiclass"."""
        return "binary" if self.n_classes == 2 else "multiclass"

    def encode(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Return the class index of each label value; -1 for null or unseen values."""
        values = pa.array(list(self.classes))
        try:
            idx = pc.index_in(pc.cast(column, values.type), value_set=values)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            idx = pc.index_in(pc.cast(column, pa.string()), value_set=pc.cast(values, pa.string()))
        return np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description."""
        return {"label": self.label, "classes": list(self.classes), "class_counts": list(self.class_counts)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        """Return the Task that ``to_dict`` described."""
        return cls(label=d["label"], classes=tuple(d["classes"]), class_counts=tuple(d["class_counts"]))


def _list(items: Any, limit: int = 8) -> str:
    items = [str(i) for i in items]
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b) or (isinstance(a, bool) and str(a).lower() == str(b).lower())


def infer_task(profile: DataProfile, plan: DataPlan) -> Task:
    """Return the Task defined by the train labels, or raise a DataError about the labels."""
    for split in SPLIT_NAMES:
        nulls = profile.labels.get(split, Counter()).get(None, 0)
        if nulls:
            raise DataError(
                f"data.label: column {plan.label!r} has {nulls} missing values (null, NaN or infinite) in the"
                f" {split} split; remove those rows"
            )
    train = profile.labels.get("train", Counter())
    if not train:
        raise DataError(f"data.source: the train split is empty ({sum(profile.rows.values())} rows in all)")
    if len(train) < 2:
        only = next(iter(train))
        raise DataError(f"data.label: the train split holds a single class ({only!r}); a classifier needs two or more")
    if len(train) > MAX_LABEL_CLASSES:
        raise DataError(
            f"data.label: column {plan.label!r} has {len(train)} distinct values in train; "
            f"scaleclf trains classifiers with at most {MAX_LABEL_CLASSES} classes"
        )
    classes = sorted(train, key=lambda v: (str(type(v)), v))
    if plan.positive_label is not None:
        if len(classes) != 2:
            raise ConfigError(
                f"config error: data.positive_label: only for binary labels; {plan.label!r} has {len(classes)} classes"
            )
        matches = [c for c in classes if _same(c, plan.positive_label)]
        if not matches:
            raise ConfigError(
                f"config error: data.positive_label: {plan.positive_label!r} is not a value of {plan.label!r}"
                f" (values: {_list(classes)})"
            )
        classes = [c for c in classes if c is not matches[0]] + [matches[0]]
    elif len(classes) == 2 and all(isinstance(c, str) for c in classes):
        raise ConfigError(
            f"config error: data.positive_label: required for the string label {plan.label!r}"
            f" (values: {_list(classes)})"
        )
    for split in ("valid", "test"):
        unseen = [v for v in profile.labels.get(split, Counter()) if not any(_same(v, c) for c in classes)]
        if unseen:
            raise DataError(
                f"data.label: value(s) {_list(sorted(map(str, unseen)))} in the {split} split never occur in train"
            )
        if not profile.rows.get(split) and (split == "valid" or plan.test_source is None):
            raise DataError(
                f"data.source: the {split} split is empty ({sum(profile.rows.values())} rows in all); "
                "use more rows or change data.split"
            )
    return Task(label=plan.label, classes=tuple(classes), class_counts=tuple(train[c] for c in classes))


def check_columns(profile: DataProfile, plan: DataPlan) -> list[str]:
    """Return the constant feature columns to drop; raise a DataError on unusable columns."""
    dropped = []
    # Splits in their fixed order, columns in plan order: every engine names the same first offender,
    # whichever partition a distributed profile merged first.
    for split in [*SPLIT_NAMES, *(k for k in profile.numeric if k not in SPLIT_NAMES)]:
        stats = profile.numeric.get(split, {})
        for col in [c for c in plan.numeric if c in stats] + [c for c in stats if c not in plan.numeric]:
            s = stats[col]
            if s.infinite:
                raise DataError(f"column {col!r} has {s.infinite} infinite values in the {split} split")
    train = profile.numeric.get("train", {})
    for col in plan.numeric:
        s = train.get(col, NumericStats())
        if s.count == 0:
            raise DataError(f"column {col!r} has no values in the train split (all missing); drop it with data.drop")
        if s.m2 <= 0.0:
            dropped.append(col)
    for col in plan.categorical:
        counts = profile.categories.get(col, Counter())
        if not counts:
            raise DataError(f"column {col!r} has no values in the train split (all missing); drop it with data.drop")
        if len(counts) == 1 and not profile.category_missing.get("train", {}).get(col, 0):
            dropped.append(col)
    if len(dropped) == len(plan.features):
        raise DataError(f"every feature column is constant in the train split ({_list(dropped)})")
    return dropped


def schema_text(schema: pa.Schema) -> str:
    """Return an Arrow schema as text for a JSON file (base64 of its IPC form: no code, only types)."""
    import base64

    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    """Return the schema ``schema_text`` wrote."""
    import base64

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
