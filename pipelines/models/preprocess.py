"""Preprocessing fitted on the train split: mean imputation, standard scaling, one-hot encoding.

The fitted state is plain numbers and strings (JSON), and ``transform`` works on any Arrow
batch, so every engine applies exactly the same preprocessing the local engine does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.schema import DataPlan, DataProfile, numeric_values, text_values

MISSING = None  # the category of a missing value


@dataclass(frozen=True)
class NumericFeature:
    """A numeric column: missing values become ``mean``, then ``(x - mean) / scale``."""

    name: str
    mean: float
    scale: float


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical column one-hot encoded over ``categories`` (None = missing) plus other."""

    name: str
    categories: tuple[str | None, ...]
    other: bool  # infrequent and unseen values share one column

    @property
    def width(self) -> int:
        """Return the number of one-hot columns."""
        return len(self.categories) + int(self.other)


@dataclass(frozen=True)
class Preprocessor:
    """Fitted preprocessing that turns an Arrow batch into a dense float64 feature matrix."""

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    dropped: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        """Return the width of the feature matrix."""
        return len(self.numeric) + sum(c.width for c in self.categorical)

    @property
    def input_columns(self) -> list[str]:
        """Return the source columns this preprocessor reads."""
        return [f.name for f in self.numeric] + [c.name for c in self.categorical]

    def feature_names(self) -> list[str]:
        """Return one name per output column (``col`` or ``col=value``)."""
        names = [f.name for f in self.numeric]
        for c in self.categorical:
            names += [f"{c.name}={'<missing>' if v is None else v}" for v in c.categories]
            names += [f"{c.name}=<other>"] if c.other else []
        return names

    def transform(self, batch: pa.Table | pa.RecordBatch, dtype: Any = np.float64) -> np.ndarray:
        """Return the feature matrix (rows x n_features) of a batch."""
        out = np.zeros((batch.num_rows, self.n_features), dtype=dtype)
        for j, f in enumerate(self.numeric):
            values = numeric_values(batch.column(f.name))
            out[:, j] = (np.where(np.isnan(values), f.mean, values) - f.mean) / f.scale
        start = len(self.numeric)
        for c in self.categorical:
            positions = self._category_positions(c, batch.column(c.name))
            rows = np.flatnonzero(positions >= 0)
            out[rows, start + positions[rows]] = 1.0
            start += c.width
        return out

    @staticmethod
    def _category_positions(c: CategoricalFeature, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        values = text_values(column)
        known = [v for v in c.categories if v is not None]
        idx = pc.index_in(values, value_set=pa.array(known, type=pa.string()))
        found = np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        # index_in counts positions among the non-missing categories; map them back.
        lookup = np.array([i for i, v in enumerate(c.categories) if v is not None], dtype=np.int64)
        pos = np.where(found >= 0, lookup[np.maximum(found, 0)] if len(lookup) else -1, -1)
        is_null = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if MISSING in c.categories:
            pos[is_null] = c.categories.index(MISSING)
        if c.other:
            pos[(pos < 0) & ~is_null] = len(c.categories)
        return pos

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted state as JSON-ready data."""
        return {
            "numeric": [{"name": f.name, "mean": f.mean, "scale": f.scale} for f in self.numeric],
            "categorical": [
                {"name": c.name, "categories": list(c.categories), "other": c.other} for c in self.categorical
            ],
            "dropped": list(self.dropped),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        """Return the Preprocessor that ``to_dict`` described."""
        return cls(
            numeric=tuple(NumericFeature(**f) for f in d["numeric"]),
            categorical=tuple(
                CategoricalFeature(c["name"], tuple(c["categories"]), bool(c["other"])) for c in d["categorical"]
            ),
            dropped=tuple(d.get("dropped", [])),
        )


def fit_preprocessor(profile: DataProfile, plan: DataPlan, dropped: list[str]) -> Preprocessor:
    """Return the preprocessing fitted on the train split's profile, skipping ``dropped`` columns."""
    stats = profile.numeric.get("train", {})
    numeric = []
    for col in plan.numeric:
        if col in dropped:
            continue
        s = stats[col]
        # Imputed rows sit at the mean, so they add rows but no spread (as impute-then-scale does).
        scale = math.sqrt(s.m2 / (s.count + s.missing))
        numeric.append(NumericFeature(col, s.mean, scale))
    categorical = []
    missing = profile.category_missing.get("train", {})
    for col in plan.categorical:
        if col in dropped:
            continue
        counts = profile.categories[col]
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        kept: list[str | None] = [v for v, _ in ranked[: plan.max_categories]]
        if missing.get(col, 0):
            kept.append(MISSING)
        categorical.append(CategoricalFeature(col, tuple(kept), other=len(counts) > plan.max_categories))
    return Preprocessor(tuple(numeric), tuple(categorical), tuple(dropped))
