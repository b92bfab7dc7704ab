"""Kernel feature maps approximate the RBF kernel and survive save/load exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.models.kernels import FeatureMap, fit_nystroem_features, fit_rff_features, landmark_priority

pytestmark = pytest.mark.local


def _rbf(x: np.ndarray, gamma: float) -> np.ndarray:
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-gamma * sq)


def test_rff_approximates_the_kernel() -> None:
    x = np.random.default_rng(0).normal(size=(200, 5))
    fmap = fit_rff_features(5, 4000, gamma=0.2, seed=1)
    z = fmap.transform(x)
    assert np.abs(z @ z.T - _rbf(x, 0.2)).mean() < 0.02


def test_nystroem_is_exact_on_its_landmarks_and_matches_sklearn() -> None:
    from sklearn.kernel_approximation import Nystroem

    x = np.random.default_rng(0).normal(size=(300, 4))
    fmap = fit_nystroem_features(x[:50], gamma=0.3)
    z = fmap.transform(x[:50])
    np.testing.assert_allclose(z @ z.T, _rbf(x[:50], 0.3), atol=1e-6)
    reference = Nystroem(gamma=0.3, n_components=50).fit(x[:50])
    zr = reference.transform(x)
    np.testing.assert_allclose(fmap.transform(x) @ fmap.transform(x).T, zr @ zr.T, atol=1e-6)


def test_blocks_and_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(40_000, 3))
    fmap = fit_rff_features(3, 16, gamma=None, seed=5)
    assert fmap.gamma == pytest.approx(1 / 3)
    whole = fmap.transform(x)
    np.testing.assert_allclose(whole[:100], fmap.transform(x[:100]))
    fmap.save(tmp_path)
    np.testing.assert_array_equal(FeatureMap.load(tmp_path).transform(x), whole)


def test_landmark_priority_is_a_deterministic_permutation() -> None:
    keys = np.arange(1000, dtype=np.uint64)
    a, b = landmark_priority(keys, 1), landmark_priority(keys, 2)
    assert len(set(a.tolist())) == 1000
    assert not np.array_equal(np.argsort(a)[:10], np.argsort(b)[:10])
    np.testing.assert_array_equal(a, landmark_priority(keys, 1))
