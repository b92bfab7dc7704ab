"""Models clients train: numpy networks (logistic regression, linear SVM, MLP) and xgboost boosters.

A network's parameters are a list of arrays (weights and biases per layer) that Flower
strategies average. Logistic regression is a network with no hidden layer and the logistic
loss; the linear SVM is the same with the squared hinge loss (as LinearSVC); the MLP adds
ReLU hidden layers. The local objective is the weighted mean loss of the client's rows plus
``l2 / 2 * |W|^2`` and, for FedProx, ``mu / 2 * |W - W_global|^2``. The regularisation
``l2 = 1 / (C * N)`` makes the federated objective the one scikit-learn minimises.
The final global model is exported as the scikit-learn estimator the local engine saves,
so ``scaleclf predict`` / ``evaluate`` reload federated runs like any other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

NETWORK_MODELS = ("logistic_regression", "linear_svm", "mlp")
FEDERATED_MODELS = (*NETWORK_MODELS, "xgboost")


@dataclass(frozen=True)
class NetSpec:
    """Shape and loss of a network: input width, hidden layers, outputs and the loss."""

    n_features: int
    hidden: tuple[int, ...]
    n_classes: int
    loss: str  # "logistic" or "squared_hinge"
    l2: float

    @property
    def n_outputs(self) -> int:
        """Return 1 for a binary model (the positive class's score), else one output per class."""
        return 1 if self.n_classes == 2 else self.n_classes

    def init(self, seed: int) -> list[np.ndarray]:
        """Return initial parameters: zeros for linear models, Glorot-uniform weights for the MLP."""
        sizes = [self.n_features, *self.hidden, self.n_outputs]
        rng = np.random.default_rng(seed)
        params = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            if self.hidden:
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                params.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            else:
                params.append(np.zeros((fan_in, fan_out)))
            params.append(np.zeros(fan_out))
        return params

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
    if model == "mlp":
        return NetSpec(
            n_features, tuple(params["hidden_layer_sizes"]), n_classes, "logistic", params["alpha"] / n_train
        )
    loss = "squared_hinge" if model == "linear_svm" else "logistic"
    return NetSpec(n_features, (), n_classes, loss, 1.0 / (params["C"] * n_train))


def forward(spec: NetSpec, params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return the output scores (rows x outputs) and the activations of every layer."""
    acts = [x]
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return h, acts


def outputs(spec: NetSpec, params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Return class probabilities (logistic loss) or decision scores (hinge loss) for ``x``."""
    scores, _ = forward(spec, params, x)
    if spec.loss == "squared_hinge":
        return scores[:, 0] if spec.n_outputs == 1 else scores
    if spec.n_outputs == 1:
        p = _sigmoid(scores[:, 0])
        return np.column_stack([1.0 - p, p])
    return _softmax(scores)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def loss_and_grad(
    spec: NetSpec, params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[float, list[np.ndarray]]:
    """Return the weighted mean data loss of a batch and its gradient (no regularisation)."""
    scores, acts = forward(spec, params, x)
    n = len(y)
    if spec.loss == "logistic" and spec.n_outputs == 1:
        p = _sigmoid(scores[:, 0])
        t = (y == 1).astype(np.float64)
        eps = 1e-12
        loss = -np.sum(w * (t * np.log(p + eps) + (1 - t) * np.log(1 - p + eps))) / n
        delta = ((p - t) * w / n)[:, None]
    elif spec.loss == "logistic":
        p = _softmax(scores)
        loss = -np.sum(w * np.log(p[np.arange(n), y] + 1e-12)) / n
        p[np.arange(n), y] -= 1.0
        delta = p * (w / n)[:, None]
    else:
        t = -np.ones_like(scores)
        if spec.n_outputs == 1:
            t[:, 0] = np.where(y == 1, 1.0, -1.0)
        else:
            t[np.arange(n), y] = 1.0
        margin = np.maximum(0.0, 1.0 - t * scores)
        loss = np.sum(w[:, None] * margin**2) / n
        delta = -2.0 * t * margin * (w / n)[:, None]
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i in range(len(params) // 2 - 1, -1, -1):
        grads[2 * i] = acts[i].T @ delta
        grads[2 * i + 1] = delta.sum(axis=0)
        if i:
            delta = (delta @ params[2 * i].T) * (acts[i] > 0)
    return float(loss), grads


def clipped_grad_sum(
    spec: NetSpec, params: list[np.ndarray], x: np.ndarray, y: np.ndarray, w: np.ndarray, bound: float
) -> tuple[float, list[np.ndarray]]:
    """Return the summed data loss of a batch and the sum of its rows' gradients, each clipped to ``bound``.

    A row's gradient is linear in its output delta, and a layer's weight gradient for one row is
    the outer product ``a delta^T`` whose norm is ``|a| |delta|``; so the per-row norms come from
    one backward pass without materialising per-row gradients, and scaling each row's output
    delta by its clip factor scales all of its layer gradients.
    """
    n = len(y)
    if n == 0:
        return 0.0, [np.zeros_like(p) for p in params]
    loss, _ = loss_and_grad(spec, params, x, y, w)
    scores, acts = forward(spec, params, x)
    delta = _output_delta(spec, scores, y, w)
    deltas: list[np.ndarray] = [np.empty(0)] * (len(params) // 2)
    sq_norm = np.zeros(n)
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
    return loss * n, grads


def _output_delta(spec: NetSpec, scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Return each row's gradient of its weighted loss with respect to the output scores."""
    n = len(y)
    if spec.loss == "logistic" and spec.n_outputs == 1:
        p = _sigmoid(scores[:, 0])
        return ((p - (y == 1)) * w)[:, None]
    if spec.loss == "logistic":
        p = _softmax(scores)
        p[np.arange(n), y] -= 1.0
        return p * w[:, None]
    t = -np.ones_like(scores)
    if spec.n_outputs == 1:
        t[:, 0] = np.where(y == 1, 1.0, -1.0)
    else:
        t[np.arange(n), y] = 1.0
    return -2.0 * t * np.maximum(0.0, 1.0 - t * scores) * w[:, None]


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
    the noise and the sampling use operating-system entropy, not ``seed``.
    """
    params = [p.astype(np.float64, copy=True) for p in start]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    rng = np.random.default_rng(seed) if dpsgd is None else np.random.default_rng()
    b1, b2, eps, step = 0.9, 0.999, 1e-8, 0
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
            step += 1
            for j, (p, g) in enumerate(zip(params, grads, strict=True)):
                if j % 2 == 0:  # weights, not biases, are regularised (as scikit-learn)
                    g = g + spec.l2 * p
                if mu:
                    g = g + mu * (p - start[j])
                m[j] = b1 * m[j] + (1 - b1) * g
                v[j] = b2 * v[j] + (1 - b2) * g * g
                p -= lr * (m[j] / (1 - b1**step)) / (np.sqrt(v[j] / (1 - b2**step)) + eps)
        epoch_loss = total / max(n, 1)
    return params, epoch_loss


def to_estimator(model: str, spec: NetSpec, params: list[np.ndarray], seed: int, model_params: dict[str, Any]) -> Any:
    """Return the fitted scikit-learn estimator (as the local engine builds) holding ``params``."""
    from pipelines.engines.local.engine import build_estimator

    est = build_estimator(model, model_params, seed, 1)
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
    """Return xgboost.train parameters matching the local engine's XGBClassifier."""
    p = model_params
    out: dict[str, Any] = {
        "eta": p["learning_rate"],
        "max_depth": p["max_depth"],
        "subsample": p["subsample"],
        "colsample_bytree": p["colsample_bytree"],
        "lambda": p["reg_lambda"],
        "min_child_weight": p["min_child_weight"],
        "max_bin": p["max_bin"],
        "tree_method": "hist",
        # A fixed intercept: xgboost would estimate it from each client's labels, and a client
        # holding one class (label skew) would give the whole ensemble an infinite margin.
        "base_score": 0.5,
        "nthread": 1,
        "seed": seed,
    }
    if n_classes == 2:
        out.update(objective="binary:logistic", eval_metric="logloss")
    else:
        out.update(objective="multi:softprob", num_class=n_classes, eval_metric="mlogloss")
    return out


def xgb_outputs(model_bytes: bytes, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Return class probabilities of the booster serialised in ``model_bytes``."""
    import xgboost

    bst = xgboost.Booster(params={"nthread": 1})
    bst.load_model(bytearray(model_bytes))
    p = bst.predict(xgboost.DMatrix(x))
    return np.column_stack([1.0 - p, p]) if n_classes == 2 else np.asarray(p)


def xgb_estimator(model_bytes: bytes) -> Any:
    """Return the XGBClassifier holding the booster serialised in ``model_bytes``."""
    import xgboost

    est = xgboost.XGBClassifier()
    est.load_model(bytearray(model_bytes))
    return est
