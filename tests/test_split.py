"""The row key and split are deterministic, engine- and order-independent, and near-stratified."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipelines.data.split import (
    SPLIT_COLUMN,
    TEST,
    TRAIN,
    VALID,
    assign_split,
    attach_key_and_split,
    column_codes,
    row_keys,
)

pytestmark = pytest.mark.local


def _table(n: int = 20_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, size=n),
            "s": pa.array(rng.choice(["a", "b", None], size=n).tolist()),
            "label": (rng.random(n) < 0.1).astype(np.int64),
        }
    )


def test_keys_do_not_depend_on_row_order_or_chunking() -> None:
    table = _table()
    keys = row_keys(table, ["x", "k", "s", "label"])
    perm = np.random.default_rng(1).permutation(table.num_rows)
    shuffled = table.take(pa.array(perm))
    chunked = pa.Table.from_batches(shuffled.to_batches(max_chunksize=777))
    assert np.array_equal(row_keys(chunked, ["x", "k", "s", "label"]), keys[perm])


def test_keys_ignore_integer_width_and_column_order() -> None:
    table = _table(1000)
    narrowed = table.set_column(1, "k", table.column("k").cast(pa.int32()))
    widened = narrowed.set_column(1, "k", narrowed.column("k").cast(pa.float64()))
    reordered = widened.select(["label", "s", "k", "x"])
    cols = ["x", "k", "s", "label"]
    assert np.array_equal(row_keys(reordered, cols), row_keys(table, cols))


def test_column_codes_normalise_zero_and_nan_and_nulls() -> None:
    codes = column_codes(pa.array([0.0, -0.0, float("nan"), None, 1.5]))
    assert codes[0] == codes[1]
    assert len({codes[2], codes[3], codes[4], codes[0]}) == 4
    strings = column_codes(pa.array(["a", None, "a", "b"]))
    assert strings[0] == strings[2] and strings[0] != strings[3] and strings[1] not in (strings[0], strings[3])


def test_split_shares_and_stratification() -> None:
    table = _table(200_000)
    split = assign_split(row_keys(table, table.column_names), seed=3, valid=0.15, test=0.15)
    for code, share in ((TRAIN, 0.7), (VALID, 0.15), (TEST, 0.15)):
        assert abs((split == code).mean() - share) < 0.005
    label = np.asarray(table.column("label"))
    overall = label.mean()
    for code in (TRAIN, VALID, TEST):
        assert abs(label[split == code].mean() - overall) < 0.006


def test_seed_changes_the_split_and_duplicates_stay_together() -> None:
    table = _table(5000)
    doubled = pa.concat_tables([table, table])
    keys = row_keys(doubled, doubled.column_names)
    a = assign_split(keys, seed=1, valid=0.2, test=0.2)
    b = assign_split(keys, seed=2, valid=0.2, test=0.2)
    assert (a != b).mean() > 0.3
    assert np.array_equal(a[:5000], a[5000:])


def test_attach_fixed_split_and_columns() -> None:
    table = _table(100)
    out = attach_key_and_split(table, key_columns=["x"], seed=0, valid=0.1, test=0.1, fixed_split=TEST)
    assert set(np.asarray(out.column(SPLIT_COLUMN))) == {TEST}
    assert out.column_names[-2:] == ["__row_key", "__split"]
