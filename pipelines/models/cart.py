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

from typing import Any

import numpy as np

from pipelines.models.fitted import SklearnModel
from pipelines.models.native import sklearn_estimator


def fit_cart(
    x: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int, class_weights: np.ndarray | None
) -> SklearnModel:
    """Return the DecisionTreeClassifier the local engine would fit on the same rows."""
    keep = y >= 0
    x, y = x[keep], y[keep]
    tree = sklearn_estimator("decision_tree", params, seed, 1)
    tree.fit(x, y, sample_weight=class_weights[y] if class_weights is not None else None)
    return SklearnModel(tree)
