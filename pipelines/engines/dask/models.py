"""The catalog's models on Dask: block-wise linear models, Gaussian naive Bayes, xgboost.dask.

Every model here is fitted from per-partition blocks ``(x, y, keys)`` that live on the Dask
workers. Linear models and naive Bayes send a small task per block (a gradient, or sufficient
statistics) and sum the results on the driver, so no row ever leaves its worker; the
tree models train with ``xgboost.dask`` on a ``DaskQuantileDMatrix`` built from those blocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.engines.base import EngineModel

Block = tuple[np.ndarray, np.ndarray, np.ndarray]  # (features, class index, row key)
# Sum over blocks of one task's result: the engine supplies it (it owns the client).
Reduce = Callable[[Callable[..., Any], tuple[Any, ...]], list[Any]]

LINEAR_FILE = "linear.json"
NB_FILE = "naive_bayes.json"
XGB_FILE = "xgboost.json"


# --- linear models: logistic (as scikit-learn's lbfgs) and squared hinge (as LinearSVC) ------


def _logistic_terms(z: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (loss per row, d loss / d z) of the binomial (one column) or multinomial loss."""
    if n_classes == 2:
        s = z[:, 0]
        # log(1 + exp(s)) - y s, written to stay finite for large |s|.
        loss = np.logaddexp(0.0, s) - y * s
        p = 0.5 * (1.0 + np.tanh(0.5 * s))
        return loss, (p - y)[:, None]
    top = z.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    loss = lse - z[np.arange(len(y)), y]
    grad = np.exp(z - lse[:, None])
    grad[np.arange(len(y)), y] -= 1.0
    return loss, grad


def _hinge_terms(z: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (loss per row, d loss / d z) of the squared hinge, one-vs-rest per column."""
    if n_classes == 2:
        t = (2.0 * y - 1.0)[:, None]
    else:
        t = -np.ones_like(z)
        t[np.arange(len(y)), y] = 1.0
    margin = np.maximum(0.0, 1.0 - t * z)
    return (margin * margin).sum(axis=1), -2.0 * t * margin


def block_loss(
    block: Block, theta: np.ndarray, kind: str, n_classes: int, class_weights: np.ndarray | None
) -> tuple[float, np.ndarray, float]:
    """Return (weighted loss sum, its gradient w.r.t. theta, weight sum) over one block's rows.

    ``theta`` is (outputs, features + 1): coefficients with the intercept in the last column.
    """
    x, y, _ = block
    if len(y) == 0:
        return 0.0, np.zeros_like(theta), 0.0
    w = class_weights[y] if class_weights is not None else np.ones(len(y))
    z = x @ theta[:, :-1].T + theta[:, -1]
    terms = _logistic_terms if kind == "logistic" else _hinge_terms
    loss, dz = terms(z, y, n_classes)
    dz *= w[:, None]
    grad = np.empty_like(theta)
    grad[:, :-1] = dz.T @ x
    grad[:, -1] = dz.sum(axis=0)
    return float(w @ loss), grad, float(w.sum())


@dataclass
class LinearModel(EngineModel):
    """Coefficients (outputs x features) and intercepts of a logistic or linear SVM model."""

    kind: str  # "logistic" or "hinge"
    coef: np.ndarray
    intercept: np.ndarray
    n_classes: int

    @property
    def format(self) -> str:
        """Return the native format in words."""
        return "scaleclf linear model JSON (coefficients, intercepts)"

    def outputs(self, x: np.ndarray, output: str) -> np.ndarray:
        """Return probabilities (logistic) or decision scores (hinge) for ``x``."""
        z = x @ self.coef.T + self.intercept
        if self.kind == "hinge":
            return z[:, 0] if self.n_classes == 2 else z
        if self.n_classes == 2:
            p = 0.5 * (1.0 + np.tanh(0.5 * z[:, 0]))
            return np.column_stack([1.0 - p, p])
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def save(self, directory: Path) -> list[Path]:
        """Write ``linear.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LINEAR_FILE
        state = {
            "kind": self.kind,
            "n_classes": self.n_classes,
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }
        path.write_text(json.dumps(state))
        return [path]

    @classmethod
    def load(cls, directory: Path) -> LinearModel:
        """Return the model ``save`` wrote."""
        s = json.loads((directory / LINEAR_FILE).read_text())
        return cls(s["kind"], np.asarray(s["coef"], dtype=np.float64), np.asarray(s["intercept"]), s["n_classes"])


def fit_linear(
    reduce: Reduce,
    kind: str,
    n_features: int,
    n_classes: int,
    params: dict[str, Any],
    class_weights: np.ndarray | None,
) -> LinearModel:
    """Return the linear model minimising scikit-learn's objective, by L-BFGS over block sums.

    Logistic: (1/W) sum w_i loss_i + ||coef||^2 / (2 C W) with a free intercept, the objective
    and stopping rule of ``LogisticRegression(solver="lbfgs")``. Hinge: LinearSVC's primal,
    sum C w_i sqhinge_i + ||(coef, intercept)||^2 / 2 (liblinear regularises the bias too),
    scaled by 1/(C W) so ``tol`` means the same as for the logistic loss.
    """
    from scipy.optimize import minimize

    outputs = 1 if n_classes == 2 else n_classes
    shape = (outputs, n_features + 1)
    fit_intercept = kind == "hinge" or bool(params.get("fit_intercept", True))
    c = float(params["C"])

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(shape)
        if not fit_intercept:
            theta = theta.copy()
            theta[:, -1] = 0.0
        parts = reduce(block_loss, (theta, kind, n_classes, class_weights))
        total = sum(p[2] for p in parts)
        loss = sum(p[0] for p in parts) / total
        grad = sum(p[1] for p in parts) / total
        penalised = theta if kind == "hinge" else theta[:, :-1]
        loss += 0.5 * float((penalised * penalised).sum()) / (c * total)
        if kind == "hinge":
            grad += theta / (c * total)
        else:
            grad[:, :-1] += theta[:, :-1] / (c * total)
        if not fit_intercept:
            grad[:, -1] = 0.0
        return loss, grad.ravel()

    result = minimize(
        objective,
        np.zeros(int(np.prod(shape))),
        method="L-BFGS-B",
        jac=True,
        options={"maxiter": params["max_iter"], "maxls": 50, "gtol": params["tol"], "ftol": 64 * np.finfo(float).eps},
    )
    theta = result.x.reshape(shape)
    return LinearModel(
        kind, theta[:, :-1].copy(), theta[:, -1].copy() if fit_intercept else np.zeros(outputs), n_classes
    )


# --- Gaussian naive Bayes from per-block sufficient statistics --------------------------------


def block_nb_stats(block: Block, n_classes: int, class_weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Return per-class (weight, weighted sum, weighted sum of squares) and unweighted moments."""
    x, y, _ = block
    w = class_weights[y] if class_weights is not None else np.ones(len(y))
    onehot = np.zeros((len(y), n_classes))
    onehot[np.arange(len(y)), y] = w
    return (
        onehot.sum(axis=0),
        onehot.T @ x,
        onehot.T @ (x * x),
        np.array([float(len(y))]),
        x.sum(axis=0),
        (x * x).sum(axis=0),
    )


@dataclass
class NaiveBayesModel(EngineModel):
    """Per-class means, variances (smoothing included) and priors of a Gaussian naive Bayes."""

    theta: np.ndarray
    var: np.ndarray
    prior: np.ndarray

    @property
    def format(self) -> str:
        """Return the native format in words."""
        return "scaleclf Gaussian naive Bayes JSON (means, variances, priors)"

    def outputs(self, x: np.ndarray, output: str) -> np.ndarray:
        """Return class probabilities, computed as GaussianNB.predict_proba does."""
        jll = np.log(self.prior) - 0.5 * np.log(2.0 * np.pi * self.var).sum(axis=1)
        jll = jll[None, :] - 0.5 * (((x[:, None, :] - self.theta[None]) ** 2) / self.var[None]).sum(axis=2)
        jll -= jll.max(axis=1, keepdims=True)
        p = np.exp(jll)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, directory: Path) -> list[Path]:
        """Write ``naive_bayes.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / NB_FILE
        path.write_text(
            json.dumps({"theta": self.theta.tolist(), "var": self.var.tolist(), "prior": self.prior.tolist()})
        )
        return [path]

    @classmethod
    def load(cls, directory: Path) -> NaiveBayesModel:
        """Return the model ``save`` wrote."""
        s = json.loads((directory / NB_FILE).read_text())
        return cls(np.asarray(s["theta"]), np.asarray(s["var"]), np.asarray(s["prior"]))


def fit_naive_bayes(
    reduce: Reduce, n_classes: int, var_smoothing: float, class_weights: np.ndarray | None
) -> NaiveBayesModel:
    """Return GaussianNB's fit (weighted class moments, epsilon from the unweighted variance)."""
    parts = reduce(block_nb_stats, (n_classes, class_weights))
    count, s1, s2, n, t1, t2 = (sum(p[i] for p in parts) for i in range(6))
    theta = s1 / count[:, None]
    var = np.maximum(s2 / count[:, None] - theta * theta, 0.0)
    mean = t1 / n[0]
    epsilon = var_smoothing * float(np.max(t2 / n[0] - mean * mean))
    return NaiveBayesModel(theta, var + epsilon, count / count.sum())


# --- tree models through xgboost.dask ---------------------------------------------------------


def xgboost_params(
    name: str, p: dict[str, Any], n_features: int, n_classes: int, prior: float, seed: int
) -> tuple[dict[str, Any], int]:
    """Return (booster params, boosting rounds) mapping a catalog tree model onto xgboost.

    ``prior`` is the train share of the positive class; a single tree starting from it has the
    same hessian everywhere, which makes min_samples_leaf a min_child_weight exactly.
    """
    import xgboost.dask as dxgb

    objective = (
        {"objective": "binary:logistic"} if n_classes == 2 else {"objective": "multi:softprob", "num_class": n_classes}
    )
    hessian = prior * (1.0 - prior) if n_classes == 2 else 1.0 / n_classes * (1.0 - 1.0 / n_classes)
    if name == "xgboost":
        est = dxgb.DaskXGBClassifier(
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            subsample=p["subsample"],
            colsample_bytree=p["colsample_bytree"],
            reg_lambda=p["reg_lambda"],
            min_child_weight=p["min_child_weight"],
            max_bin=p["max_bin"],
        )
        rounds = p["n_estimators"]
    elif name == "gbt":
        # HistGradientBoosting: no L2 on leaves, 255 bins, leaves of at least min_samples_leaf rows.
        est = dxgb.DaskXGBClassifier(
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            reg_lambda=0.0,
            min_child_weight=p["min_samples_leaf"] * hessian,
            max_bin=256,
        )
        rounds = p["n_estimators"]
    elif name == "random_forest":
        share = {"sqrt": np.sqrt(n_features), "log2": np.log2(max(n_features, 2)), "all": n_features}
        est = dxgb.DaskXGBRFClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_child_weight=p["min_samples_leaf"] * hessian,
            colsample_bynode=min(1.0, max(1.0, float(share[p["max_features"]])) / n_features),
            subsample=0.632,  # the share of distinct rows in a bootstrap sample
        )
        rounds = 1
    else:
        raise AssertionError(f"no xgboost mapping for {name}")
    params = {k: v for k, v in est.get_xgb_params().items() if v is not None}
    params.update(objective, tree_method="hist", seed=seed)
    if name == "random_forest" and n_classes > 2:
        # One tree with a leaf value per class, as a CART tree has, instead of a tree per class:
        # per-class trees scored 0.03 higher accuracy than scikit-learn's forest on the multiclass
        # scenario (20k rows, 3 seeds); one multi-output tree is within 0.008.
        params["multi_strategy"] = "multi_output_tree"
    return params, rounds


@dataclass
class XGBoostModel(EngineModel):
    """An xgboost Booster trained by ``xgboost.dask.train``."""

    booster: Any
    n_classes: int

    @property
    def format(self) -> str:
        """Return "xgboost JSON"."""
        return "xgboost JSON"

    def outputs(self, x: np.ndarray, output: str) -> np.ndarray:
        """Return class probabilities for ``x``."""
        p = np.asarray(self.booster.inplace_predict(x), dtype=np.float64)
        return np.column_stack([1.0 - p, p]) if self.n_classes == 2 else p.reshape(len(x), self.n_classes)

    def save(self, directory: Path) -> list[Path]:
        """Write ``xgboost.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / XGB_FILE
        self.booster.save_model(path)
        return [path]

    @classmethod
    def load(cls, directory: Path, n_classes: int) -> XGBoostModel:
        """Return the model ``save`` wrote."""
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(directory / XGB_FILE)
        return cls(booster, n_classes)


def fit_xgboost(client: Any, x: Any, y: Any, w: Any, params: dict[str, Any], rounds: int, threads: int) -> XGBoostModel:
    """Return the booster trained by xgboost.dask on a DaskQuantileDMatrix of dask arrays x, y, w."""
    import xgboost.dask as dxgb

    matrix = dxgb.DaskQuantileDMatrix(client, x, y, weight=w, max_bin=params.get("max_bin", 256))
    out = dxgb.train(client, {**params, "nthread": threads}, matrix, num_boost_round=rounds, verbose_eval=False)
    booster = out["booster"]
    booster.set_param({"nthread": threads})
    return XGBoostModel(booster, params.get("num_class", 2))
