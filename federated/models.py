"""Models clients train: the model layer's networks (logistic regression, linear SVM, MLP) and xgboost boosters.

A network's parameters are a list of arrays (weights and biases per layer) that Flower
strategies average; its maths (forward pass, losses, gradients, per-row clipping, Adam) are
``pipelines.models.network``'s, the same the Dask and Ray engines use. The local objective is the
weighted mean loss of the client's rows plus ``l2 / 2 * |W|^2`` and, for FedProx,
``mu / 2 * |W - W_global|^2``. The regularisation ``l2 = 1 / (C * N)`` makes the federated
objective the one scikit-learn minimises. The final global model is exported as the scikit-learn
estimator the local engine saves, so ``scaleclf predict`` / ``evaluate`` reload federated runs
like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.models import network
from pipelines.models.fitted import BoosterModel
from pipelines.models.native import Problem, sklearn_estimator, xgboost_params

NETWORK_MODELS = ("logistic_regression", "linear_svm", "mlp")
FEDERATED_MODELS = (*NETWORK_MODELS, "xgboost")


@dataclass(frozen=True)
class NetSpec:
    """Shape and loss of a network: input width, hidden layers, outputs and the loss."""

    n_features: int
    hidden: tuple[int, ...]
    n_classes: int
    loss: str  # network.LOGISTIC or network.SQUARED_HINGE
    l2: float

    @property
    def n_outputs(self) -> int:
        """Return 1 for a binary model (the positive class's score), else one output per class."""
        return network.n_outputs(self.n_classes)

    def init(self, seed: int) -> list[np.ndarray]:
        """Return initial parameters: zeros for linear models, scikit-learn's Glorot init for the MLP."""
        sizes = network.layer_sizes(self.n_features, self.hidden, self.n_classes)
        return network.init_params(sizes, np.random.RandomState(seed) if self.hidden else None)

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-ready data."""
        return {
            "n_features": self.n_features,
            "hidden": list(self.hidden),
            "n_classes": self.n_classes,
            "loss": self.loss,
            "l2": self.l2,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetSpec:
        """Return the NetSpec that ``to_dict`` described."""
        return cls(d["n_features"], tuple(d["hidden"]), d["n_classes"], d["loss"], d["l2"])


def net_spec(model: str, params: dict[str, Any], n_features: int, n_classes: int, n_train: int) -> NetSpec:
    """Return the network for a catalog model and the global number of train rows."""
    loss = network.output_loss(model)
    if model == "mlp":
        return NetSpec(n_features, tuple(params["hidden_layer_sizes"]), n_classes, loss, params["alpha"] / n_train)
    return NetSpec(n_features, (), n_classes, loss, 1.0 / (params["C"] * n_train))


def outputs(spec: NetSpec, params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Return class probabilities (logistic loss) or decision scores (hinge loss) for ``x``."""
    return network.outputs(params, x, spec.loss, spec.n_classes)


def loss_and_grad(
    spec: NetSpec, params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[float, list[np.ndarray]]:
    """Return the weighted mean data loss of a batch and its gradient (no regularisation)."""
    n = max(len(y), 1)
    total, grads = network.loss_and_grad(params, x, y, w, spec.loss, spec.n_classes)
    return total / n, [g / n for g in grads]


def clipped_grad_sum(
    spec: NetSpec, params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray, bound: float
) -> tuple[float, list[np.ndarray]]:
    """Return the summed data loss of a batch and the sum of its rows' gradients, each clipped to ``bound``."""
    return network.clipped_grad_sum(params, x, y, w, spec.loss, spec.n_classes, bound)


def train_local(
    spec: NetSpec,
    start: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    mu: float,
    seed: int,
    dpsgd: tuple[float, float] | None = None,
) -> tuple[list[np.ndarray], float]:
    """Return the parameters after ``epochs`` of minibatch Adam from ``start``, and the last epoch's loss.

    The proximal term ``mu / 2 * |W - start|^2`` (FedProx) keeps the client near the global model.
    ``dpsgd = (clipping_norm, noise_multiplier)`` makes every step DP-SGD: a Poisson sample of
    rows at rate ``batch_size / n``, each row's gradient clipped, Gaussian noise of std
    ``noise_multiplier * clipping_norm`` added to the sum, divided by the expected batch size;
    the noise and the sampling come from the operating system's CSPRNG (``federated.privacy.SystemNoise``),
    not ``seed``.
    """
    params = [p.astype(np.float64, copy=True) for p in start]
    adam = network.Adam.start(params, lr)
    rng: Any = np.random.default_rng(seed)
    if dpsgd is not None:  # DP-SGD's sampling and noise come from the OS CSPRNG, never from ``seed``
        from federated.privacy import noise_rng

        rng = noise_rng()
    epoch_loss = 0.0
    n = len(y)
    rate = min(1.0, batch_size / max(n, 1))
    for _ in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for lo in range(0, n, batch_size):
            if dpsgd is None:
                idx = order[lo : lo + batch_size]
                loss, grads = loss_and_grad(spec, params, x[idx], y[idx], w[idx])
                total += loss * len(idx)
            else:
                bound, z = dpsgd
                idx = np.flatnonzero(rng.random(n) < rate)
                loss_sum, sums = clipped_grad_sum(spec, params, x[idx], y[idx], w[idx], bound)
                total += loss_sum
                expected = rate * n
                grads = [(g + rng.normal(0.0, z * bound, size=g.shape)) / expected for g in sums]
            # Weights, not biases, are regularised (as scikit-learn); FedProx pulls towards ``start``.
            grads = [
                g + (spec.l2 * p if j % 2 == 0 else 0.0) + (mu * (p - start[j]) if mu else 0.0)
                for j, (p, g) in enumerate(zip(params, grads, strict=True))
            ]
            params = adam.step(params, grads)
        epoch_loss = total / max(n, 1)
    return params, epoch_loss


def to_estimator(model: str, spec: NetSpec, params: list[np.ndarray], seed: int, model_params: dict[str, Any]) -> Any:
    """Return the fitted scikit-learn estimator (as the local engine builds) holding ``params``."""
    est = sklearn_estimator(model, model_params, seed, 1)
    classes = np.arange(spec.n_classes)
    if model == "mlp":
        est.coefs_ = [np.asarray(p) for p in params[0::2]]
        est.intercepts_ = [np.asarray(p) for p in params[1::2]]
        est.n_layers_ = len(params) // 2 + 1
        est.n_outputs_ = spec.n_outputs
        est.out_activation_ = "logistic" if spec.n_outputs == 1 else "softmax"
        est.n_iter_ = 0
        est.t_ = 0
        from sklearn.preprocessing import LabelBinarizer

        est._label_binarizer = LabelBinarizer().fit(classes)
    else:
        est.coef_ = np.asarray(params[0]).T.copy()
        est.intercept_ = np.asarray(params[1]).copy()
        if model == "logistic_regression":
            est.n_iter_ = np.array([0])
    est.classes_ = classes
    est.n_features_in_ = spec.n_features
    return est


def xgb_params(model_params: dict[str, Any], n_classes: int, seed: int) -> dict[str, Any]:
    """Return xgboost.train parameters: the model layer's xgboost form, one thread, a fixed intercept."""
    problem = Problem(0, n_classes, (1.0,) * n_classes, float(n_classes), seed)
    params, _ = xgboost_params("xgboost", model_params, problem)
    # A fixed intercept: xgboost would estimate it from each client's labels, and a client
    # holding one class (label skew) would give the whole ensemble an infinite margin.
    params.update(base_score=0.5, nthread=1, eval_metric="logloss" if n_classes == 2 else "mlogloss")
    return params


def xgb_outputs(model_bytes: bytes, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Return class probabilities of the booster serialised in ``model_bytes``."""
    return BoosterModel(bytes(model_bytes), n_classes).predict(np.asarray(x, dtype=np.float32))
