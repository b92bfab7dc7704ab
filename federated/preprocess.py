"""Preprocessing statistics and label classes supplied by the user (``federated.preprocess: given``).

The file is JSON in ``model/preprocess.json``'s format plus the label classes::

    {"numeric": [{"name": "x1", "mean": 0.1, "scale": 2.0}, ...],
     "categorical": [{"name": "colour", "categories": ["red", "blue", null], "other": true}, ...],
     "dropped": ["constant_col"],          # optional: feature columns the model ignores
     "classes": [0, 1],                    # label values, index = class id (binary: positive last)
     "class_counts": [700, 300]}           # optional: only model.class_weight: balanced reads it

Every field is checked by hand (nothing is unpickled or evaluated), and every feature column of
the data must be in exactly one of numeric, categorical or dropped.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.data.schema import SPLIT_NAMES, DataPlan, DataProfile, Task
from pipelines.errors import ConfigError, DataError
from pipelines.models.preprocess import CategoricalFeature, NumericFeature, Preprocessor
from pipelines.spec import FederatedSpec

KEY = "federated.preprocess_from"


@dataclass(frozen=True)
class GivenPreprocessing:
    """The user's preprocessing and label classes, read from ``path``."""

    path: str
    preprocessor: Preprocessor
    classes: tuple[Any, ...]
    class_counts: tuple[int, ...] | None


def _fail(path: str, what: str) -> ConfigError:
    return ConfigError(f"config error: {KEY}: {path}: {what}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _items(d: dict[str, Any], field: str, path: str) -> list[Any]:
    value = d.get(field, [])
    if not isinstance(value, list):
        raise _fail(path, f"{field!r} must be a list, not {type(value).__name__}")
    return value


def _numeric(i: int, f: Any, path: str) -> NumericFeature:
    where = f"numeric[{i}]"
    if not isinstance(f, dict) or set(f) != {"name", "mean", "scale"}:
        raise _fail(path, f"{where} must be an object with exactly name, mean and scale")
    if not isinstance(f["name"], str) or not f["name"]:
        raise _fail(path, f"{where}.name must be a non-empty string")
    if not _is_number(f["mean"]):
        raise _fail(path, f"{where}.mean ({f['name']!r}) must be a finite number, not {f['mean']!r}")
    if not _is_number(f["scale"]) or f["scale"] <= 0:
        raise _fail(path, f"{where}.scale ({f['name']!r}) must be a finite number above 0, not {f['scale']!r}")
    return NumericFeature(f["name"], float(f["mean"]), float(f["scale"]))


def _categorical(i: int, c: Any, path: str) -> CategoricalFeature:
    where = f"categorical[{i}]"
    if not isinstance(c, dict) or set(c) != {"name", "categories", "other"}:
        raise _fail(path, f"{where} must be an object with exactly name, categories and other")
    if not isinstance(c["name"], str) or not c["name"]:
        raise _fail(path, f"{where}.name must be a non-empty string")
    cats = c["categories"]
    if not isinstance(cats, list) or not all(v is None or isinstance(v, str) for v in cats):
        raise _fail(path, f"{where}.categories ({c['name']!r}) must be a list of strings (null: missing)")
    if len(set(cats)) != len(cats):
        raise _fail(path, f"{where}.categories ({c['name']!r}) repeats a value")
    if not isinstance(c["other"], bool):
        raise _fail(path, f"{where}.other ({c['name']!r}) must be true or false")
    if not cats and not c["other"]:
        raise _fail(path, f"{where} ({c['name']!r}) has no categories and no other column")
    return CategoricalFeature(c["name"], tuple(cats), c["other"])


def _classes(d: dict[str, Any], path: str) -> tuple[tuple[Any, ...], tuple[int, ...] | None]:
    classes = d.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise _fail(path, "'classes' must be a list of two or more label values (index = class id)")
    for v in classes:
        if not (isinstance(v, str) or _is_number(v) or isinstance(v, bool)):
            raise _fail(path, f"classes: {v!r} is not a label value (string, number or boolean)")
    if len({str(v) for v in classes}) != len(classes):
        raise _fail(path, "classes: a label value is repeated")
    counts = d.get("class_counts")
    if counts is None:
        return tuple(classes), None
    if (
        not isinstance(counts, list)
        or len(counts) != len(classes)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in counts)
    ):
        raise _fail(path, f"class_counts must be {len(classes)} positive integers, one per class")
    return tuple(classes), tuple(counts)


def load_given(fed: FederatedSpec) -> GivenPreprocessing | None:
    """Return the given preprocessing of ``fed`` (None for ``preprocess: merged``); ConfigError on a bad file."""
    if fed.preprocess != "given":
        return None
    path = str(fed.preprocess_from)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise _fail(path, f"cannot read it ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise _fail(path, "not valid JSON (not UTF-8 text)") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(d, dict):
        raise _fail(path, "must hold a JSON object")
    unknown = sorted(set(d) - {"numeric", "categorical", "dropped", "classes", "class_counts"})
    if unknown:
        raise _fail(path, f"unknown field {unknown[0]!r}")
    numeric = tuple(_numeric(i, f, path) for i, f in enumerate(_items(d, "numeric", path)))
    categorical = tuple(_categorical(i, c, path) for i, c in enumerate(_items(d, "categorical", path)))
    dropped = _items(d, "dropped", path)
    if not all(isinstance(c, str) for c in dropped):
        raise _fail(path, "dropped must be a list of column names")
    names = [f.name for f in numeric] + [c.name for c in categorical] + dropped
    repeated = [n for n, k in Counter(names).items() if k > 1]
    if repeated:
        raise _fail(path, f"column {repeated[0]!r} is listed more than once")
    if not numeric and not categorical:
        raise _fail(path, "no feature columns (numeric and categorical are empty)")
    classes, counts = _classes(d, path)
    return GivenPreprocessing(path, Preprocessor(numeric, categorical, tuple(dropped)), classes, counts)


def check_given_columns(given: GivenPreprocessing, plan: DataPlan) -> None:
    """Raise a ConfigError unless every feature column of ``plan`` is in the file, with its kind."""
    prep = given.preprocessor
    kinds = {f.name: "numeric" for f in prep.numeric} | {c.name: "categorical" for c in prep.categorical}
    for col in plan.features:
        kind = "numeric" if col in plan.numeric else "categorical"
        if col in prep.dropped:
            continue
        if col not in kinds:
            raise _fail(given.path, f"feature column {col!r} of the data is missing (add it, or to dropped)")
        if kinds[col] != kind:
            raise _fail(given.path, f"column {col!r} is {kind} in the data but {kinds[col]} in the file")
    extra = [c for c in [*kinds, *prep.dropped] if c not in plan.features]
    if extra:
        raise _fail(given.path, f"column {extra[0]!r} is not a feature column of the data")


def given_task(given: GivenPreprocessing, profile: DataProfile, plan: DataPlan) -> Task:
    """Return the Task with the given classes; DataError when a label of the data is not one of them.

    The data's labels are only checked against the classes (an unknown label cannot be encoded);
    class counts come from the file, or are 0 when it has none.
    """
    classes = list(given.classes)
    if plan.positive_label is not None:
        matches = [c for c in classes if c == plan.positive_label or str(c) == str(plan.positive_label)]
        if len(classes) != 2 or not matches:
            raise _fail(given.path, f"data.positive_label {plan.positive_label!r} is not one of its two classes")
        classes = [c for c in classes if c is not matches[0]] + [matches[0]]
    for split in SPLIT_NAMES:
        labels = profile.labels.get(split, Counter())
        if labels.get(None, 0):
            raise DataError(f"data.label: column {plan.label!r} has missing values in the {split} split; remove them")
        # 0 in the file is the label 0.0 of a float column, as Task.encode casts it.
        unknown = sorted(str(v) for v in labels if not any(v == c or str(v) == str(c) for c in classes))
        if unknown:
            raise DataError(
                f"data.label: value {unknown[0]!r} in the {split} split is not one of the classes of {given.path}"
            )
    counts = given.class_counts or (0,) * len(classes)
    if given.class_counts and classes != list(given.classes):
        counts = tuple(given.class_counts[given.classes.index(c)] for c in classes)
    for split in SPLIT_NAMES:
        stats = profile.numeric.get(split, {})
        for col in plan.numeric:
            if col in stats and stats[col].infinite:
                raise DataError(f"column {col!r} has {stats[col].infinite} infinite values in the {split} split")
    return Task(label=plan.label, classes=tuple(classes), class_counts=tuple(counts))
