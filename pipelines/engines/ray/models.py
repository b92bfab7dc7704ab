"""The Ray engine's fitted models: an xgboost booster or numpy weights, with their math.

Everything here is plain numpy / xgboost so the same objects fit on Ray Train workers,
predict in Ray tasks or the driver and reload from a run directory without Ray.
The losses mirror scikit-learn's objectives (LogisticRegression, LinearSVC, MLPClassifier,
GaussianNB), which is what keeps the Ray engine's metrics next to the local engine's.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.engines.base import EngineModel
from pipelines.errors import ArtifactError

LINEAR = ("logistic_regression", "linear_svm", "rff_svm", "nystroem_svm")
BOOSTED = ("xgboost", "gbt", "random_forest")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# --- linear models: loss and gradient summed over rows (the all-reduce adds these up) ---


def linear_shape(model: str, n_features: int, n_classes: int) -> tuple[int, int]:
    """Return (rows, columns) of the weight matrix; the last row is the intercept."""
    k = 1 if n_classes == 2 else n_classes
    return n_features + 1, k


def linear_loss_grad(
    model: str, w: np.ndarray, x: np.ndarray, y: np.ndarray, sw: np.ndarray, n_classes: int
) -> tuple[float, np.ndarray]:
    """Return the data term (sum over rows, weighted) of the objective and its gradient."""
    d = x.shape[1]
    w = w.reshape(d + 1, -1)
    z = x @ w[:d] + w[d]
    if model == "logistic_regression":
        if n_classes == 2:
            t = (y == 1).astype(np.float64)[:, None]
            loss = float(sw @ (np.logaddexp(0.0, z[:, 0]) - t[:, 0] * z[:, 0]))
            r = (_sigmoid(z) - t) * sw[:, None]
        else:
            t = np.eye(n_classes)[y]
            zmax = z.max(axis=1, keepdims=True)
            lse = (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
            loss = float(sw @ (lse - (z * t).sum(axis=1)))
            r = (_softmax(z) - t) * sw[:, None]
    else:  # squared hinge, one-vs-rest like LinearSVC
        t = np.where((y == 1)[:, None], 1.0, -1.0) if n_classes == 2 else np.where(np.eye(n_classes)[y] > 0, 1.0, -1.0)
        margin = np.maximum(0.0, 1.0 - t * z)
        loss = float(sw @ (margin * margin).sum(axis=1))
        r = -2.0 * t * margin * sw[:, None]
    grad = np.vstack([x.T @ r, r.sum(axis=0, keepdims=True)])
    return loss, grad.ravel()


def linear_penalty(model: str, w: np.ndarray, n_features: int, c: float) -> tuple[float, np.ndarray]:
    """Return the L2 term scaled as scikit-learn scales it (loss is multiplied by C instead)."""
    w = w.reshape(n_features + 1, -1)
    mask = np.ones_like(w)
    if model == "logistic_regression":
        mask[n_features] = 0.0  # LogisticRegression leaves the intercept unpenalised
    # LinearSVC (liblinear) penalises its intercept as one more feature of value 1.
    penalised = w * mask
    return 0.5 * float((penalised * penalised).sum()) / c, (penalised / c).ravel()


# --- the MLP: ReLU hidden layers, logistic/softmax output, as sklearn's MLPClassifier ---


def mlp_init(sizes: list[int], rng: np.random.RandomState) -> list[np.ndarray]:
    """Return Glorot-uniform weights and biases, interleaved [W0, b0, W1, b1, ...]."""
    params = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        factor = 2.0 if i == len(sizes) - 2 and sizes[-1] == 1 else 6.0
        bound = np.sqrt(factor / (fan_in + fan_out))
        params += [rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)]
    return params


def mlp_forward(params: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Return the activations of every layer (input first, output logits last)."""
    acts = [x]
    for i in range(0, len(params), 2):
        z = acts[-1] @ params[i] + params[i + 1]
        acts.append(np.maximum(z, 0.0) if i + 2 < len(params) else z)
    return acts


def mlp_loss_grad(
    params: list[np.ndarray], x: np.ndarray, y: np.ndarray, sw: np.ndarray, n_classes: int
) -> tuple[float, list[np.ndarray]]:
    """Return the weighted log loss summed over rows and its gradient for every parameter."""
    acts = mlp_forward(params, x)
    z = acts[-1]
    if n_classes == 2:
        t = (y == 1).astype(np.float64)[:, None]
        loss = float(sw @ (np.logaddexp(0.0, z[:, 0]) - t[:, 0] * z[:, 0]))
        delta = (_sigmoid(z) - t) * sw[:, None]
    else:
        t = np.eye(n_classes)[y]
        p = _softmax(z)
        loss = float(-(sw @ np.log(np.clip((p * t).sum(axis=1), 1e-300, None))))
        delta = (p - t) * sw[:, None]
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i in range(len(params) - 2, -1, -2):
        grads[i] = acts[i // 2].T @ delta
        grads[i + 1] = delta.sum(axis=0)
        if i:
            delta = (delta @ params[i].T) * (acts[i // 2] > 0)
    return loss, grads


# --- the models ---


@dataclass
class BoosterModel(EngineModel):
    """An xgboost Booster (xgboost, gbt, random_forest); saved as xgboost JSON."""

    raw: bytes  # the booster in xgboost's JSON format (picklable, small)
    n_classes: int
    _booster: Any = field(default=None, repr=False, compare=False)

    @property
    def format(self) -> str:
        """Return "xgboost JSON"."""
        return "xgboost JSON"

    @property
    def booster(self) -> Any:
        """Return the xgboost Booster, built once per process."""
        if self._booster is None:
            import xgboost

            self._booster = xgboost.Booster(model_file=bytearray(self.raw))
            self._booster.set_param({"nthread": 1})
        return self._booster

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Return class probabilities (rows x classes)."""

        p = self.booster.inplace_predict(x) if x.shape[0] else np.empty((0, self.n_classes))
        p = np.asarray(p, dtype=np.float64)
        return np.column_stack([1.0 - p, p]) if self.n_classes == 2 and p.ndim == 1 else p.reshape(len(x), -1)

    def save(self, directory: Path) -> list[Path]:
        """Write ``xgboost.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "xgboost.json"
        path.write_bytes(self.raw)
        return [path]


@dataclass
class NumpyModel(EngineModel):
    """Numpy weights of a linear model, an MLP or Gaussian naive Bayes; saved as ``.npy`` files."""

    model_name: str
    arrays: list[np.ndarray]
    n_classes: int

    @property
    def format(self) -> str:
        """Return "numpy weights (.npy)"."""
        return "numpy weights (.npy)"

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Return probabilities, or decision scores for the SVMs (positive class only when binary)."""
        k = self.n_classes
        if self.model_name in LINEAR:
            w = self.arrays[0]
            z = x @ w[:-1] + w[-1]
            if self.model_name != "logistic_regression":
                return z
            return np.column_stack([1.0 - _sigmoid(z[:, 0]), _sigmoid(z[:, 0])]) if k == 2 else _softmax(z)
        if self.model_name == "mlp":
            z = mlp_forward(self.arrays, x)[-1]
            return np.column_stack([1.0 - _sigmoid(z[:, 0]), _sigmoid(z[:, 0])]) if k == 2 else _softmax(z)
        theta, var, log_prior = self.arrays  # naive_bayes
        jll = log_prior - 0.5 * np.log(2.0 * np.pi * var).sum(axis=1)
        jll = jll[None, :] - 0.5 * (((x[:, None, :] - theta[None]) ** 2) / var[None]).sum(axis=2)
        return _softmax(jll)

    def save(self, directory: Path) -> list[Path]:
        """Write ``weights_<i>.npy`` per array and ``weights.json`` describing them."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for i, arr in enumerate(self.arrays):
            path = directory / f"weights_{i}.npy"
            np.save(path, arr, allow_pickle=False)
            written.append(path)
        meta = directory / "weights.json"
        meta.write_text(json.dumps({"model": self.model_name, "arrays": len(self.arrays), "classes": self.n_classes}))
        return [meta, *written]


def load_ray_model(directory: Path, model_name: str, n_classes: int) -> EngineModel:
    """Return the model ``save`` wrote into ``directory``."""
    if model_name == "decision_tree":
        from pipelines.models.cart import CartModel

        return CartModel.load(directory)
    try:
        if model_name in BOOSTED:
            return BoosterModel((directory / "xgboost.json").read_bytes(), n_classes)
        meta = json.loads((directory / "weights.json").read_text())
        arrays = [np.load(directory / f"weights_{i}.npy", allow_pickle=False) for i in range(meta["arrays"])]
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"cannot load the Ray model in {directory}: {exc}") from exc
    return NumpyModel(model_name, arrays, n_classes)
