"""The shared scenario table: data x model x expected quality, run on every engine.

Engine test modules parametrise ``SCENARIOS`` over their engine; the local engine is the
reference the others are compared with (same split, same preprocessing, same metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.models.catalog import CATALOG


@dataclass(frozen=True)
class Scenario:
    """One dataset + model with the least quality the local engine must reach on it."""

    source: str
    rows: int | None
    model: str
    min_score: float  # test AUC (binary) or accuracy (multiclass)
    label: str = "label"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Return a readable test id."""
        return f"{self.model}-{self.source.split(':')[-1]}"

    @property
    def metric(self) -> str:
        """Return the metric the floor applies to."""
        return "accuracy" if "multiclass" in self.source or "digits" in self.source else "auc"

    def spec(self, engine: str = "local", seed: int = 11) -> dict[str, Any]:
        """Return the job spec mapping for this scenario on ``engine``."""
        data: dict[str, Any] = {"source": self.source, "label": self.label}
        if self.rows is not None:
            data["rows"] = self.rows
        return {
            "name": self.id,
            "seed": seed,
            "data": data,
            "model": {"name": self.model, "params": dict(self.params)},
            "engine": {"name": engine},
            "output": {"dir": "runs", "report": False},
        }


# Small but not tiny: enough rows that engines agree to within the acceptance tolerances.
FAST = {
    "random_forest": {"n_estimators": 50, "max_depth": 10},
    "gbt": {"n_estimators": 60},
    "xgboost": {"n_estimators": 80},
    "mlp": {"hidden_layer_sizes": [32], "max_iter": 30},
    "rff_svm": {"n_components": 200},
    "nystroem_svm": {"n_components": 200},
}
# Floors sit ~0.04 below what the local engine reached with the FAST params on 8,000 rows
# over two seeds (the quality a model must show on any engine, not a tight tolerance).
BINARY_FLOOR = {
    "logistic_regression": 0.65,
    "linear_svm": 0.65,
    "naive_bayes": 0.65,
    "decision_tree": 0.61,
    "random_forest": 0.74,
    "gbt": 0.77,
    "xgboost": 0.76,
    "mlp": 0.68,
    "rff_svm": 0.67,
    "nystroem_svm": 0.70,
}
MULTICLASS_FLOOR = {
    "logistic_regression": 0.50,
    "linear_svm": 0.49,
    "naive_bayes": 0.58,
    "decision_tree": 0.58,
    "random_forest": 0.64,
    "gbt": 0.71,
    "xgboost": 0.71,
    "mlp": 0.61,
    "rff_svm": 0.56,
    "nystroem_svm": 0.64,
}

SCENARIOS: list[Scenario] = [
    *(Scenario("synthetic:higgs", 8000, m, BINARY_FLOOR[m], params=FAST.get(m, {})) for m in CATALOG),
    *(Scenario("synthetic:multiclass", 8000, m, MULTICLASS_FLOOR[m], params=FAST.get(m, {})) for m in CATALOG),
]
