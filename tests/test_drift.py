"""Drift statistics: PSI and BH against their definitions, and the verdict over 20 fresh and 20 shifted samples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.stats import false_discovery_control, ks_2samp

from pipelines.data.schema import make_plan
from pipelines.data.sources import read_table, resolve_source
from pipelines.drift import (
    DriftThresholds,
    benjamini_hochberg,
    categorical_drift,
    compare_features,
    numeric_drift,
    psi,
    reference_sample,
    verdict,
)
from pipelines.spec import build_spec

SEEDS = range(1, 21)


def test_psi_matches_its_definition_and_bh_matches_scipy() -> None:
    ref, cur = np.array([50.0, 30.0, 20.0]), np.array([30.0, 30.0, 40.0])
    p, q = ref / ref.sum(), cur / cur.sum()
    assert psi(ref, cur) == pytest.approx(np.sum((q - p) * np.log(q / p)))
    assert psi(ref, ref) == 0.0
    p_values = np.random.default_rng(0).uniform(0, 0.2, 28)
    np.testing.assert_allclose(benjamini_hochberg(p_values), false_discovery_control(p_values, method="bh"))


def test_feature_tests_are_scipy_tests() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 3000), rng.normal(0.3, 1, 2000)
    found = numeric_drift("x", a, b, bins=10)
    assert found.p_value == pytest.approx(ks_2samp(a, b).pvalue) and found.psi > 0.05
    same = categorical_drift("c", ["a", "b", None] * 400, ["a", "b", None] * 300)
    moved = categorical_drift("c", ["a", "b"] * 500, ["a"] * 900 + ["b"] * 100)
    assert same.p_value > 0.99 and same.psi < 1e-9
    assert moved.p_value < 1e-10 and moved.psi > 0.5


@pytest.fixture(scope="module")
def reference() -> tuple[pa.Table, list[str], list[str]]:
    spec = build_spec({"data": {"source": "synthetic:higgs", "rows": 6000}, "model": {"name": "naive_bayes"}})
    plan = make_plan(spec.data, spec.seed)
    return reference_sample(plan, 20_000, 6000), list(plan.numeric), list(plan.categorical)


def _verdict(reference: tuple[pa.Table, list[str], list[str]], name: str, seed: int) -> str:
    ref, numeric, categorical = reference
    current = read_table(resolve_source(f"synthetic:{name}", rows=2000, generator_seed=seed))
    limits = DriftThresholds()
    return verdict(compare_features(ref, current, numeric, categorical, limits), None, None, limits, {}).verdict


def test_fresh_rows_are_not_flagged_and_a_shifted_copy_is_over_20_seeds(reference) -> None:
    """Acceptance: false-positive rate 0/20 on fresh unshifted rows, detection 20/20 on shift=2."""
    fresh = [_verdict(reference, "higgs", seed) for seed in SEEDS]
    shifted = [_verdict(reference, "higgs?shift=2", seed) for seed in SEEDS]
    assert fresh.count("drift") == 0, fresh
    assert shifted.count("drift") == len(SEEDS), shifted
