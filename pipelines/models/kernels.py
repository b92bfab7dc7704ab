"""Kernel feature maps (random Fourier features, Nystroem) fitted once, applied on any engine.

A map is a few numpy arrays plus JSON metadata; ``transform`` is a pure function of a batch,
so Spark (``mapInArrow``), Dask (``map_blocks``) and Ray (``map_batches``) apply the very map
the driver fitted. Nystroem landmarks are chosen by row key (``landmark_priority``), so every
engine picks the same landmark rows without moving data to the driver first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.data.split import mix64
from pipelines.errors import ArtifactError

BLOCK_ROWS = 16_384  # rows per block in transform: bounds the rows x components temporary


def default_gamma(n_features: int) -> float:
    """Return the RBF width used when ``gamma`` is null: 1 / n_features on standardised data."""
    return 1.0 / max(n_features, 1)


def landmark_priority(keys: np.ndarray, seed: int) -> np.ndarray:
    """Return a per-row priority; the train rows with the smallest values become landmarks."""
    salt = np.uint64((seed * 0x2545F4914F6CDD1D + 0x1B873593) % (1 << 64))
    return mix64(keys ^ salt)


def _rbf(x: np.ndarray, y: np.ndarray, gamma: float) -> np.ndarray:
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.exp(-gamma * np.maximum(sq, 0.0))


@dataclass(frozen=True)
class FeatureMap:
    """A fitted kernel feature map: ``kind`` is "rff" or "nystroem"."""

    kind: str
    gamma: float
    arrays: dict[str, np.ndarray]

    @property
    def n_components(self) -> int:
        """Return the number of output features."""
        return int(self.arrays["offset"].shape[0] if self.kind == "rff" else self.arrays["landmarks"].shape[0])

    def transform(self, x: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
        """Return the mapped features of ``x`` (rows x n_components), computed block by block."""
        out = np.empty((x.shape[0], self.n_components), dtype=dtype)
        for start in range(0, x.shape[0], BLOCK_ROWS):
            block = np.asarray(x[start : start + BLOCK_ROWS], dtype=np.float64)
            out[start : start + BLOCK_ROWS] = self._map(block)
        return out

    def _map(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        if self.kind == "rff":
            proj = x @ a["weights"] + a["offset"]
            return np.sqrt(2.0 / len(a["offset"])) * np.cos(proj)
        return _rbf(x, a["landmarks"], self.gamma) @ a["normalization"].T

    def save(self, directory: Path) -> list[Path]:
        """Write ``feature_map.json`` and one ``.npy`` per array; return the written paths."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, arr in self.arrays.items():
            path = directory / f"feature_map_{name}.npy"
            np.save(path, arr, allow_pickle=False)
            written.append(path)
        meta = {
            "kind": self.kind,
            "gamma": self.gamma,
            "arrays": sorted(self.arrays),
            "n_components": self.n_components,
        }
        (directory / "feature_map.json").write_text(json.dumps(meta, indent=2))
        return [directory / "feature_map.json", *written]

    @classmethod
    def load(cls, directory: Path) -> FeatureMap:
        """Return the map saved in ``directory`` (arrays loaded without pickle)."""
        try:
            meta = json.loads((directory / "feature_map.json").read_text())
            arrays = {n: np.load(directory / f"feature_map_{n}.npy", allow_pickle=False) for n in meta["arrays"]}
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"cannot load the kernel feature map in {directory}: {exc}") from exc
        return cls(kind=meta["kind"], gamma=float(meta["gamma"]), arrays=arrays)


def fit_rff_features(n_features: int, n_components: int, gamma: float | None, seed: int) -> FeatureMap:
    """Return random Fourier features approximating exp(-gamma * ||x - y||^2)."""
    g = default_gamma(n_features) if gamma is None else float(gamma)
    rng = np.random.default_rng([seed, 0x5FF])
    weights = rng.normal(0.0, np.sqrt(2.0 * g), size=(n_features, n_components))
    offset = rng.uniform(0.0, 2.0 * np.pi, size=n_components)
    return FeatureMap("rff", g, {"weights": weights, "offset": offset})


def fit_nystroem_features(landmarks: np.ndarray, gamma: float | None) -> FeatureMap:
    """Return the Nystroem map for the given landmark rows (already preprocessed).

    The map is ``K(x, L) @ K(L, L)^{-1/2}``, the same construction as scikit-learn's Nystroem.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    g = default_gamma(landmarks.shape[1]) if gamma is None else float(gamma)
    k = _rbf(landmarks, landmarks, g)
    u, s, vt = np.linalg.svd(k)
    s = np.maximum(s, 1e-12)
    normalization = (u / np.sqrt(s)) @ vt
    return FeatureMap("nystroem", g, {"landmarks": landmarks, "normalization": normalization})
