"""Preprocessing fitted from merged profiles equals scikit-learn's impute + scale + one-hot."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines.data.schema import DataPlan, check_columns, profile_batch
from pipelines.data.sources import Source
from pipelines.data.split import SPLIT_COLUMN, TRAIN
from pipelines.models.preprocess import Preprocessor, fit_preprocessor

pytestmark = pytest.mark.local


def _plan(max_categories: int = 50) -> DataPlan:
    return DataPlan(
        source=Source("t", ("t",), "parquet"),
        test_source=None,
        label="label",
        numeric=("a", "b", "const"),
        categorical=("city",),
        key_columns=("a",),
        seed=0,
        valid=0.0,
        test=0.0,
        max_categories=max_categories,
    )


def _table(n: int = 3000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.normal(5, 2, size=n)
    a[rng.random(n) < 0.1] = np.nan
    city = rng.choice(["oslo", "rome", "lima", "kyiv", None], size=n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    return pa.table(
        {
            "a": pa.array(a, from_pandas=True),
            "b": rng.integers(0, 10, size=n),
            "const": np.ones(n),
            "city": pa.array(city.tolist()),
            "label": rng.integers(0, 2, size=n),
            SPLIT_COLUMN: pa.array(np.full(n, TRAIN, dtype=np.int8)),
        }
    )


def test_profiles_merge_to_the_whole_and_match_sklearn() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    table, plan = _table(), _plan()
    parts = [profile_batch(b, plan) for b in table.to_batches(max_chunksize=333)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    whole = profile_batch(table, plan)
    assert merged.rows == whole.rows and merged.categories == whole.categories
    assert merged.numeric["train"]["a"].mean == pytest.approx(whole.numeric["train"]["a"].mean, rel=1e-12)
    assert merged.numeric["train"]["a"].m2 == pytest.approx(whole.numeric["train"]["a"].m2, rel=1e-10)
    dropped = check_columns(merged, plan)
    assert dropped == ["const"]
    prep = fit_preprocessor(merged, plan, dropped)
    ours = prep.transform(table)

    frame = table.select(["a", "b", "city"]).to_pandas()
    frame["city"] = frame["city"].fillna("__missing__")
    reference = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"]),
        ]
    ).fit_transform(frame)
    # Same columns, ordered by category frequency on our side and alphabetically on sklearn's.
    ref_names = ["a", "b", *sorted(["kyiv", "lima", "oslo", "rome", "__missing__"])]
    our_names = [n.split("=")[-1].replace("<missing>", "__missing__") for n in prep.feature_names()]
    order = [ref_names.index(n) for n in our_names]
    np.testing.assert_allclose(ours, reference[:, order], rtol=1e-10, atol=1e-12)


def test_rare_and_unseen_categories_go_to_other_and_json_round_trip() -> None:
    table, plan = _table(), _plan(max_categories=2)
    prep = fit_preprocessor(profile_batch(table, plan), plan, ["const"])
    city = next(c for c in prep.categorical if c.name == "city")
    assert city.categories == ("oslo", "rome", None) and city.other
    new = pa.table({"a": [1.0, None], "b": [3, 4], "city": ["paris", None]})
    x = prep.transform(new)
    names = prep.feature_names()
    assert x[0, names.index("city=<other>")] == 1 and x[1, names.index("city=<missing>")] == 1
    assert x[1, 0] == 0.0  # a missing value is imputed with the train mean -> 0 after scaling
    again = Preprocessor.from_dict(prep.to_dict())
    np.testing.assert_array_equal(again.transform(table), prep.transform(table))
