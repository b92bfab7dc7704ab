"""Exact CART (scikit-learn's DecisionTreeClassifier) fitted in one task, for the Ray and Dask engines.

CART's exact split search needs every row of a node, sorted per feature; no data-parallel
version of it gives the same tree (histogram trees such as one xgboost tree choose among
binned thresholds and score splits by a second-order gain, which changed multiclass accuracy by
0.01-0.06 against the local engine). So Ray and Dask fit ``decision_tree`` as the local engine
does, in one task on one worker that receives the train rows' preprocessed blocks; reading,
preprocessing and prediction stay parallel. The train split must fit in that worker's memory
(features are float32, as scikit-learn's trees use internally).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.engines.base import EngineModel

FILE = "estimator.skops"
TRUSTED = ["sklearn.tree._tree.Tree"]


def fit_cart(
    x: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int, class_weights: np.ndarray | None
) -> CartModel:
    """Return the DecisionTreeClassifier the local engine would fit on the same rows."""
    from sklearn.tree import DecisionTreeClassifier

    keep = y >= 0
    x, y = x[keep], y[keep]
    tree = DecisionTreeClassifier(
        max_depth=params["max_depth"], min_samples_leaf=params["min_samples_leaf"], random_state=seed
    )
    tree.fit(x, y, sample_weight=class_weights[y] if class_weights is not None else None)
    return CartModel(tree)


@dataclass
class CartModel(EngineModel):
    """A fitted scikit-learn decision tree; saved with skops, reloaded with only its own types trusted."""

    estimator: Any

    @property
    def format(self) -> str:
        """Return "scikit-learn estimator (skops)", as the local engine's."""
        return "scikit-learn estimator (skops)"

    def outputs(self, x: np.ndarray, output: str = "proba") -> np.ndarray:
        """Return class probabilities (rows x classes); a tree gives no decision scores."""
        if x.shape[0] == 0:
            return np.empty((0, len(self.estimator.classes_)))
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)

    def save(self, directory: Path) -> list[Path]:
        """Write ``estimator.skops``."""
        import skops.io as sio

        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILE
        sio.dump(self.estimator, path)
        return [path]

    @classmethod
    def load(cls, directory: Path) -> CartModel:
        """Return the tree ``save`` wrote; any type other than a tree's is refused."""
        import skops.io as sio

        from pipelines.errors import ArtifactError

        path = directory / FILE
        try:
            untrusted = set(sio.get_untrusted_types(file=path))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot load the decision tree in {directory}: {exc}") from exc
        unexpected = sorted(untrusted - set(TRUSTED))
        if unexpected:
            raise ArtifactError(f"{path} contains types scaleclf does not load: {', '.join(unexpected)}")
        return cls(sio.load(path, trusted=sorted(untrusted)))
