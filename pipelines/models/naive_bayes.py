"""Gaussian naive Bayes written once: per-block class moments, their sum, and GaussianNB's fit from them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipelines.errors import ArtifactError
from pipelines.models.fitted import EngineModel
from pipelines.models.links import softmax

NB_FILE = "naive_bayes.json"


def class_moments(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, n_classes: int) -> list[np.ndarray]:
    """Return a block's sufficient statistics: per class (weight, weighted sum, weighted sum of squares),
    then the unweighted row count, sum and sum of squares of every feature (for var_smoothing)."""
    w = np.ones(len(y)) if w is None else w
    onehot = np.zeros((len(y), n_classes))
    onehot[np.arange(len(y)), y] = w
    return [
        onehot.sum(axis=0),
        onehot.T @ x,
        onehot.T @ (x * x),
        np.array([float(len(y))]),
        x.sum(axis=0),
        (x * x).sum(axis=0),
    ]


def fit_naive_bayes(parts: Iterable[list[np.ndarray]], var_smoothing: float) -> NaiveBayesModel:
    """Return GaussianNB's fit from the summed moments: weighted class moments, epsilon from the
    unweighted variance of all features (as scikit-learn's GaussianNB)."""
    blocks = list(parts)
    count, s1, s2, n, t1, t2 = (np.sum([p[i] for p in blocks], axis=0) for i in range(6))
    theta = s1 / count[:, None]
    var = np.maximum(s2 / count[:, None] - theta * theta, 0.0)
    mean = t1 / n[0]
    epsilon = var_smoothing * float(np.max(t2 / n[0] - mean * mean))
    return NaiveBayesModel(theta, var + epsilon, count / count.sum(), {"var_smoothing": var_smoothing})


@dataclass
class NaiveBayesModel(EngineModel):
    """Per-class means, variances (smoothing included) and priors of a Gaussian naive Bayes."""

    theta: np.ndarray
    var: np.ndarray
    prior: np.ndarray
    settings: dict[str, Any]
    kind: ClassVar[str] = "naive_bayes"

    @property
    def format(self) -> str:
        """Return the native format in words."""
        return "scaleclf Gaussian naive Bayes JSON (means, variances, priors)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return class probabilities, computed as GaussianNB.predict_proba does."""
        jll = np.log(self.prior) - 0.5 * np.log(2.0 * np.pi * self.var).sum(axis=1)
        jll = jll[None, :] - 0.5 * (((x[:, None, :] - self.theta[None]) ** 2) / self.var[None]).sum(axis=2)
        return softmax(jll) if len(x) else np.empty((0, len(self.prior)))

    def native_params(self) -> dict[str, Any]:
        """Return the smoothing used and the fitted shapes."""
        return {**self.settings, "classes": len(self.prior)}

    def save(self, directory: Path) -> list[Path]:
        """Write ``naive_bayes.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / NB_FILE
        state = {
            "theta": self.theta.tolist(),
            "var": self.var.tolist(),
            "prior": self.prior.tolist(),
            "settings": self.settings,
        }
        path.write_text(json.dumps(state))
        return [path]

    @classmethod
    def load(cls, directory: Path) -> NaiveBayesModel:
        """Return the model ``save`` wrote."""
        try:
            s = json.loads((directory / NB_FILE).read_text())
            return cls(np.asarray(s["theta"]), np.asarray(s["var"]), np.asarray(s["prior"]), dict(s["settings"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"cannot load the naive Bayes model in {directory}: {exc}") from exc
