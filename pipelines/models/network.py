"""Networks written once: the linear models and the MLP as layers of weights, their losses and training steps.

Logistic regression and the linear SVMs are networks with no hidden layer; the MLP adds ReLU
hidden layers. Parameters are a list ``[W0, b0, W1, b1, ...]`` (``W`` is fan-in x fan-out). The
output loss is the logistic loss (binomial with one output for two classes, multinomial
otherwise) or the squared hinge one-vs-rest (LinearSVC's loss). Everything returns SUMS over rows
so that the engines can add them up across blocks, workers or clients; the objectives below
divide by the total weight as scikit-learn does. Used by the Dask and Ray engines (L-BFGS over
block sums, data-parallel Adam) and by the federated clients.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipelines.errors import ArtifactError
from pipelines.models.fitted import EngineModel
from pipelines.models.links import log_sum_exp, margins_to_proba, sigmoid, softmax

LOGISTIC = "logistic"
SQUARED_HINGE = "squared_hinge"
NETWORK_FILE = "network.json"
# Data term, its gradients and the total row weight, summed over every row the engine holds.
Totals = Callable[[list[np.ndarray]], tuple[float, list[np.ndarray], float]]


def output_loss(model: str) -> str:
    """Return the output loss of a catalog model trained as a network."""
    return SQUARED_HINGE if model in ("linear_svm", "rff_svm", "nystroem_svm") else LOGISTIC


def n_outputs(n_classes: int) -> int:
    """Return 1 for two classes (the positive class's margin), else one output per class."""
    return 1 if n_classes == 2 else n_classes


def layer_sizes(n_features: int, hidden: tuple[int, ...] | list[int], n_classes: int) -> list[int]:
    """Return the width of every layer, input first."""
    return [n_features, *hidden, n_outputs(n_classes)]


def init_params(sizes: list[int], rng: np.random.RandomState | None = None) -> list[np.ndarray]:
    """Return zeros (``rng`` None: linear models) or scikit-learn's Glorot-uniform init for ReLU layers.

    The draws follow MLPClassifier's order (weights then biases, layer by layer, bound
    sqrt(6 / (fan_in + fan_out))), so one RandomState replays scikit-learn's initial network.
    """
    params: list[np.ndarray] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        if rng is None:
            params += [np.zeros((fan_in, fan_out)), np.zeros(fan_out)]
        else:
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            params += [rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)]
    return params


def forward(params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return the output margins (rows x outputs) and every layer's input activations."""
    acts = [x]
    h = x
    last = len(params) // 2 - 1
    for i in range(last + 1):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < last:
            h = np.maximum(h, 0.0)
            acts.append(h)
    return h, acts


def output_terms(loss: str, z: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's loss and its gradient with respect to the margins ``z`` (unweighted)."""
    rows = np.arange(len(y))
    if loss == LOGISTIC and n_classes == 2:
        s, t = z[:, 0], (y == 1).astype(np.float64)
        return np.logaddexp(0.0, s) - t * s, (sigmoid(s) - t)[:, None]
    if loss == LOGISTIC:
        lse = log_sum_exp(z)
        grad = np.exp(z - lse[:, None])
        grad[rows, y] -= 1.0
        return lse - z[rows, y], grad
    t = -np.ones_like(z)
    if n_classes == 2:
        t[:, 0] = np.where(y == 1, 1.0, -1.0)
    else:
        t[rows, y] = 1.0
    margin = np.maximum(0.0, 1.0 - t * z)
    return (margin * margin).sum(axis=1), -2.0 * t * margin


def backward(params: list[np.ndarray], acts: list[np.ndarray], delta: np.ndarray) -> list[np.ndarray]:
    """Return the gradient of every parameter given the output delta (rows x outputs)."""
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i in range(len(params) // 2 - 1, -1, -1):
        grads[2 * i] = acts[i].T @ delta
        grads[2 * i + 1] = delta.sum(axis=0)
        if i:
            delta = (delta @ params[2 * i].T) * (acts[i] > 0)
    return grads


def loss_and_grad(
    params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray, loss: str, n_classes: int
) -> tuple[float, list[np.ndarray]]:
    """Return the weighted loss summed over the rows and its gradient for every parameter."""
    if len(y) == 0:
        return 0.0, [np.zeros_like(p) for p in params]
    z, acts = forward(params, x)
    per_row, dz = output_terms(loss, z, y, n_classes)
    return float(w @ per_row), backward(params, acts, dz * w[:, None])


def clipped_grad_sum(
    params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray, loss: str, n_classes: int, bound: float
) -> tuple[float, list[np.ndarray]]:
    """Return the summed loss and the sum of the rows' gradients, each row's clipped to L2 norm ``bound``.

    A row's weight gradient in a layer is the outer product ``a delta^T`` whose norm is
    ``|a| |delta|`` (plus ``|delta|`` for the bias), so the per-row norms come from one backward
    pass without materialising per-row gradients; scaling a row's output delta scales all of
    its gradients. Used by DP-SGD.
    """
    if len(y) == 0:
        return 0.0, [np.zeros_like(p) for p in params]
    z, acts = forward(params, x)
    per_row, delta = output_terms(loss, z, y, n_classes)
    delta = delta * w[:, None]
    deltas: list[np.ndarray] = [np.empty(0)] * (len(params) // 2)
    sq_norm = np.zeros(len(y))
    for i in range(len(params) // 2 - 1, -1, -1):
        deltas[i] = delta
        sq_norm += (np.sum(acts[i] ** 2, axis=1) + 1.0) * np.sum(delta**2, axis=1)
        if i:
            delta = (delta @ params[2 * i].T) * (acts[i] > 0)
    factor = np.minimum(1.0, bound / np.maximum(np.sqrt(sq_norm), 1e-12))
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i, d in enumerate(deltas):
        scaled = d * factor[:, None]
        grads[2 * i] = acts[i].T @ scaled
        grads[2 * i + 1] = scaled.sum(axis=0)
    return float(w @ per_row), grads


def outputs(params: list[np.ndarray], x: np.ndarray, loss: str, n_classes: int) -> np.ndarray:
    """Return class probabilities (logistic loss) or decision scores (squared hinge; binary: one per row)."""
    if x.shape[0] == 0:
        width = n_outputs(n_classes)
        if loss == SQUARED_HINGE:
            return np.empty(0) if width == 1 else np.empty((0, width))
        return np.empty((0, n_classes))
    z, _ = forward(params, x)
    if loss == SQUARED_HINGE:
        return z[:, 0] if z.shape[1] == 1 else z
    return margins_to_proba(z, n_classes) if n_classes == 2 else softmax(z)


def flatten(params: list[np.ndarray]) -> np.ndarray:
    """Return the parameters as one vector."""
    return np.concatenate([p.ravel() for p in params])


def unflatten(flat: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """Return ``flat`` cut into arrays shaped like ``like``."""
    out, at = [], 0
    for p in like:
        out.append(flat[at : at + p.size].reshape(p.shape))
        at += p.size
    return out


# --- linear models: full-batch L-BFGS on scikit-learn's objectives ---------------------------


def linear_settings(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return what the L-BFGS trainer uses from a linear model's catalog parameters."""
    return {
        "loss": output_loss(model),
        "C": float(params["C"]),
        "max_iter": int(params["max_iter"]),
        "tol": float(params["tol"]),
        # LinearSVC (liblinear) always fits its intercept, penalised like a feature.
        "fit_intercept": bool(params.get("fit_intercept", True)),
    }


def fit_lbfgs(
    totals: Totals,
    n_features: int,
    n_classes: int,
    settings: dict[str, Any],
    *,
    start: np.ndarray | None = None,
    callback: Callable[[np.ndarray], None] | None = None,
) -> tuple[list[np.ndarray], int, list[float]]:
    """Return the linear network minimising scikit-learn's objective, the iterations and the objective per iteration.

    Logistic: (1/W) sum w_i loss_i + ||coef||^2 / (2 C W), intercept free (LogisticRegression,
    lbfgs, with its stopping rule). Squared hinge: LinearSVC's primal C sum w_i loss_i +
    ||(coef, intercept)||^2 / 2 scaled by 1/(C W), so ``tol`` means the same for both.
    ``totals`` sums the data term over every row the engine holds; ``callback`` gets the flat
    parameters after each iteration (checkpoints, progress).
    """
    from scipy.optimize import minimize

    shape = init_params(layer_sizes(n_features, (), n_classes))
    hinge = settings["loss"] == SQUARED_HINGE
    fit_intercept = hinge or settings["fit_intercept"]
    c = settings["C"]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        coef, bias = unflatten(flat, shape)
        if not fit_intercept:
            bias = np.zeros_like(bias)
        loss, (g_coef, g_bias), total = totals([coef, bias])
        scale = 1.0 / (c * total)
        value = loss / total + 0.5 * scale * float((coef * coef).sum() + (bias * bias).sum() * hinge)
        g_coef = g_coef / total + scale * coef
        g_bias = g_bias / total + scale * bias * hinge if fit_intercept else np.zeros_like(g_bias)
        return value, flatten([g_coef, g_bias])

    curve: list[float] = []

    def record(intermediate_result: Any) -> None:  # scipy passes the iterate by this parameter name
        curve.append(float(intermediate_result.fun))
        if callback is not None:
            callback(np.asarray(intermediate_result.x))

    result = minimize(
        objective,
        np.zeros(sum(p.size for p in shape)) if start is None else start,
        method="L-BFGS-B",
        jac=True,
        callback=record,
        options={
            "maxiter": settings["max_iter"],
            "maxls": 50,
            "gtol": settings["tol"],
            "ftol": 64 * np.finfo(float).eps,
        },
    )
    coef, bias = unflatten(result.x, shape)
    return [coef.copy(), bias.copy() if fit_intercept else np.zeros_like(bias)], int(result.nit), curve


# --- the MLP: scikit-learn's MLPClassifier (ReLU, Adam) ---------------------------------------


def mlp_settings(params: dict[str, Any]) -> dict[str, Any]:
    """Return what the Adam trainer uses from the MLP's catalog parameters."""
    return {
        "loss": LOGISTIC,
        "hidden_layer_sizes": [int(h) for h in params["hidden_layer_sizes"]],
        "alpha": float(params["alpha"]),
        "learning_rate_init": float(params["learning_rate_init"]),
        "max_iter": int(params["max_iter"]),
        "batch_size": int(params["batch_size"]),
    }


@dataclass
class Adam:
    """Adam with scikit-learn's update (bias correction folded into the step size)."""

    lr: float
    m: list[np.ndarray]
    v: list[np.ndarray]
    t: int = 0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    @classmethod
    def start(cls, params: list[np.ndarray], lr: float) -> Adam:
        """Return a fresh optimiser state for ``params``."""
        return cls(lr, [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params])

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:
        """Return the parameters after one step along ``grads``."""
        self.t += 1
        rate = self.lr * np.sqrt(1.0 - self.beta2**self.t) / (1.0 - self.beta1**self.t)
        out = []
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g
            self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g
            out.append(p - rate * self.m[i] / (np.sqrt(self.v[i]) + self.eps))
        return out


# --- the fitted network ----------------------------------------------------------------------


@dataclass
class NetworkModel(EngineModel):
    """The weights of a linear model or an MLP with the loss they were trained for."""

    params: list[np.ndarray]
    loss: str
    n_classes: int
    settings: dict[str, Any] = field(default_factory=dict)  # what the trainer used (catalog params translated)
    curves: dict[str, Any] | None = None
    kind: ClassVar[str] = "network"

    @property
    def format(self) -> str:
        """Return the native format in words."""
        return "scaleclf network (JSON + .npy weights)"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return probabilities (logistic loss) or decision scores (squared hinge)."""
        return outputs(self.params, np.asarray(x, dtype=np.float64), self.loss, self.n_classes)

    def native_importance(self) -> tuple[np.ndarray, str] | None:
        """Return mean |coefficient| for a linear model (no hidden layer), else None."""
        return (np.abs(self.params[0]).mean(axis=1), "coefficient") if len(self.params) == 2 else None

    def native_params(self) -> dict[str, Any]:
        """Return the trainer's settings and the layer widths read from the weights."""
        hidden = [int(p.shape[1]) for p in self.params[0:-2:2]]
        return {**self.settings, "hidden_layer_sizes": hidden, "layers": len(self.params) // 2}

    def save(self, directory: Path) -> list[Path]:
        """Write ``network.json`` and one ``network_<i>.npy`` per array."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for i, arr in enumerate(self.params):
            path = directory / f"network_{i}.npy"
            np.save(path, np.asarray(arr, dtype=np.float64), allow_pickle=False)
            written.append(path)
        meta = directory / NETWORK_FILE
        state = {"loss": self.loss, "n_classes": self.n_classes, "arrays": len(self.params), "settings": self.settings}
        meta.write_text(json.dumps(state))
        return [meta, *written]

    @classmethod
    def load(cls, directory: Path) -> NetworkModel:
        """Return the network ``save`` wrote."""
        try:
            meta = json.loads((directory / NETWORK_FILE).read_text())
            arrays = [np.load(directory / f"network_{i}.npy", allow_pickle=False) for i in range(meta["arrays"])]
            return cls(arrays, meta["loss"], int(meta["n_classes"]), dict(meta.get("settings", {})))
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"cannot load the network in {directory}: {exc}") from exc
