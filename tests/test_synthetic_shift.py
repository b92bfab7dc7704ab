"""The synthetic generators' shift option: covariate and prior shift, cached apart, unshifted data unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data.synthetic import iter_rows, materialize, parse_name
from pipelines.errors import ConfigError


def _table(name: str, rows: int = 20_000, seed: int = 1) -> pa.Table:
    return pa.concat_tables(list(iter_rows(name, rows, seed=seed)))


def _digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_covariate_shift_moves_the_listed_columns_and_keeps_the_row_count() -> None:
    plain, shifted = _table("higgs"), _table("higgs?shift=1.5")
    assert shifted.num_rows == plain.num_rows == 20_000
    for col in parse_name("higgs")[0].shift_columns:
        a, b = (np.asarray(t.column(col), dtype=float) for t in (plain, shifted))
        assert b.mean() - a.mean() > 0.3 * a.std(), col
    # A column the shift does not select barely moves.
    a, b = (np.asarray(t.column("jet3_phi"), dtype=float) for t in (plain, shifted))
    assert abs(b.mean() - a.mean()) < 0.05 * a.std()


def test_prior_shift_sets_the_share_of_the_last_class() -> None:
    assert np.mean(np.asarray(_table("higgs?prior=0.25").column("label")) == 1) == pytest.approx(0.25, abs=0.01)
    churn = _table("churn?prior=0.6").column("churned").to_pylist()
    assert churn.count("yes") / len(churn) == pytest.approx(0.6, abs=0.01)


def test_shifted_data_are_cached_apart_and_unshifted_data_unchanged(tmp_path: Path) -> None:
    plain = materialize("moons", 3000, seed=2, cache_dir=tmp_path)
    shifted = materialize("moons?shift=1", 3000, seed=2, cache_dir=tmp_path)
    assert plain.name == "moons-rows3000-seed2-v1" and shifted.name == "moons-shift1-rows3000-seed2-v1"
    assert _digest(plain) != _digest(shifted)
    # The unshifted generator's output is the same as a direct write of its blocks.
    rows = pa.concat_tables(list(iter_rows("moons", 3000, seed=2)))
    assert pq.read_table(plain).equals(rows)
    assert pq.read_table(shifted).num_rows == 3000


@pytest.mark.parametrize(
    ("name", "message"),
    [("higgs?tilt=1", "unknown option"), ("higgs?shift=x", "must be a number"), ("higgs?prior=1.5", "between 0 and 1")],
)
def test_bad_shift_options_name_the_option(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_name(name)
