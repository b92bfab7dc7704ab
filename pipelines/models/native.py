"""Each catalog model's translation to the libraries it runs on, written once.

A model is described once in the catalog (``model.params``); here each library's form of it is
derived: scikit-learn estimators (the local engine, exact CART on Ray and Dask, federated
exports), xgboost booster parameters (xgboost everywhere, and gbt / random_forest where an
engine boosts with xgboost), MLlib estimator parameters (Spark), and the settings of the NumPy
trainers (``pipelines.models.network``, ``naive_bayes``). Engines build their native objects
from these dicts and never spell a native parameter themselves; the parameter-reach test reads
the fitted native objects back and compares them with these dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.models.network import linear_settings, mlp_settings

SKLEARN, XGBOOST, MLLIB, NUMPY = "sklearn", "xgboost", "mllib", "numpy"
LINEAR_MODELS = ("logistic_regression", "linear_svm", "rff_svm", "nystroem_svm")
TREE_ENSEMBLES = ("xgboost", "gbt", "random_forest")
# Parameters a library's form of a model has no counterpart for: an engine using that library
# refuses an explicitly set value at validation (pipelines.models.catalog.check_model_spec).
UNUSED: dict[tuple[str, str], dict[str, str]] = {
    (MLLIB, "mlp"): {
        "alpha": "MLlib's MultilayerPerceptronClassifier has no L2 penalty",
        "learning_rate_init": "MLlib's MultilayerPerceptronClassifier trains with L-BFGS, which takes no step size",
        "batch_size": "MLlib's L-BFGS uses every row at each step (its blockSize only stacks rows for speed)",
    },
    (MLLIB, "naive_bayes"): {
        "var_smoothing": "MLlib's gaussian NaiveBayes fixes its variance smoothing (1e-9 of the largest variance)",
    },
}


@dataclass(frozen=True)
class Problem:
    """What a translation needs to know about the data: widths, classes, train rows, seed."""

    n_features: int  # model input width (after any kernel feature map)
    n_classes: int
    class_counts: tuple[float, ...]  # train rows per class
    weighted_rows: float  # sum of the train rows' class weights (rows when unweighted)
    seed: int

    @property
    def positive_share(self) -> float:
        """Return the train share of the last class (the positive class of a binary task)."""
        return float(self.class_counts[-1]) / max(float(sum(self.class_counts)), 1.0)


def features_per_split(setting: str, n_features: int) -> int:
    """Return how many features a tree tries per split, rounded down as scikit-learn rounds it."""
    if setting == "all":
        return n_features
    count = math.sqrt(n_features) if setting == "sqrt" else math.log2(max(n_features, 1))
    return max(1, int(count))


def sklearn_params(model: str, params: dict[str, Any], seed: int, n_jobs: int) -> tuple[str, dict[str, Any]]:
    """Return (estimator class path, constructor arguments) of the scikit-learn form of ``model``."""
    p = params
    if model == "logistic_regression":
        return "sklearn.linear_model.LogisticRegression", {
            "C": p["C"],
            "max_iter": p["max_iter"],
            "tol": p["tol"],
            "fit_intercept": p["fit_intercept"],
            "random_state": seed,
        }
    if model in ("linear_svm", "rff_svm", "nystroem_svm"):
        return "sklearn.svm.LinearSVC", {"C": p["C"], "max_iter": p["max_iter"], "tol": p["tol"], "random_state": seed}
    if model == "naive_bayes":
        return "sklearn.naive_bayes.GaussianNB", {"var_smoothing": p["var_smoothing"]}
    if model == "decision_tree":
        return "sklearn.tree.DecisionTreeClassifier", {
            "max_depth": p["max_depth"],
            "min_samples_leaf": p["min_samples_leaf"],
            "random_state": seed,
        }
    if model == "random_forest":
        return "sklearn.ensemble.RandomForestClassifier", {
            "n_estimators": p["n_estimators"],
            "max_depth": p["max_depth"],
            "min_samples_leaf": p["min_samples_leaf"],
            "max_features": None if p["max_features"] == "all" else p["max_features"],
            "n_jobs": n_jobs,
            "random_state": seed,
        }
    if model == "gbt":
        return "sklearn.ensemble.HistGradientBoostingClassifier", {
            "max_iter": p["n_estimators"],
            "learning_rate": p["learning_rate"],
            "max_depth": p["max_depth"],
            "min_samples_leaf": p["min_samples_leaf"],
            "max_leaf_nodes": None,
            "early_stopping": False,
            "random_state": seed,
        }
    if model == "mlp":
        return "sklearn.neural_network.MLPClassifier", {
            "hidden_layer_sizes": tuple(p["hidden_layer_sizes"]),
            "alpha": p["alpha"],
            "learning_rate_init": p["learning_rate_init"],
            "max_iter": p["max_iter"],
            "batch_size": p["batch_size"],
            "random_state": seed,
        }
    raise AssertionError(f"{model} has no scikit-learn form")


def sklearn_estimator(model: str, params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    """Return the unfitted scikit-learn estimator (xgboost: its scikit-learn API) for ``model``."""
    import importlib

    if model == "xgboost":
        import xgboost

        booster, rounds = xgboost_params(model, params, None)
        booster = {k: v for k, v in booster.items() if k not in ("objective", "num_class")}
        return xgboost.XGBClassifier(n_estimators=rounds, n_jobs=n_jobs, **booster, seed=seed)
    path, kwargs = sklearn_params(model, params, seed, n_jobs)
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**kwargs)


def xgboost_params(model: str, params: dict[str, Any], problem: Problem | None) -> tuple[dict[str, Any], int]:
    """Return (booster parameters, boosting rounds) of ``model`` boosted with xgboost (hist).

    gbt takes HistGradientBoosting's settings (no L2 on leaves, 255 bins); random_forest is one
    round of ``n_estimators`` parallel trees on 63.2 % row samples (a bootstrap's distinct
    rows) and the scikit-learn share of features per split. A tree started from the class
    prior has the same hessian p(1-p) everywhere, which makes ``min_samples_leaf`` a
    ``min_child_weight`` exactly. ``problem`` None (the local XGBClassifier) leaves out what
    depends on the data.
    """
    p = params
    out: dict[str, Any] = {"tree_method": "hist"}
    if problem is not None:
        k = problem.n_classes
        out |= {"objective": "binary:logistic"} if k == 2 else {"objective": "multi:softprob", "num_class": k}
        out["seed"] = problem.seed
        prior = problem.positive_share if k == 2 else 1.0 / k
        hessian = prior * (1.0 - prior)
    if model == "xgboost":
        out |= {
            "eta": p["learning_rate"],
            "max_depth": p["max_depth"],
            "subsample": p["subsample"],
            "colsample_bytree": p["colsample_bytree"],
            "lambda": p["reg_lambda"],
            "min_child_weight": p["min_child_weight"],
            "max_bin": p["max_bin"],
        }
        return out, int(p["n_estimators"])
    assert problem is not None, f"{model} on xgboost needs the problem's shape"
    if model == "gbt":
        out |= {
            "eta": p["learning_rate"],
            "max_depth": p["max_depth"],
            "lambda": 0.0,
            "min_child_weight": p["min_samples_leaf"] * hessian,
            "max_bin": 256,
        }
        return out, int(p["n_estimators"])
    if model == "random_forest":
        n = problem.n_features
        out |= {
            "eta": 1.0,
            "num_parallel_tree": p["n_estimators"],
            "max_depth": p["max_depth"],
            "min_child_weight": p["min_samples_leaf"] * hessian,
            "colsample_bynode": min(1.0, features_per_split(p["max_features"], n) / n),
            "subsample": 0.632,
            "lambda": 1e-5,
        }
        if problem.n_classes > 2:
            # One tree with a leaf value per class, as a CART tree has, instead of a tree per class:
            # per-class trees scored 0.03 higher accuracy than scikit-learn's forest on the multiclass
            # scenario (20k rows, 3 seeds); one multi-output tree is within 0.008.
            out["multi_strategy"] = "multi_output_tree"
        return out, 1
    raise AssertionError(f"{model} has no xgboost form")


def mllib_params(model: str, params: dict[str, Any], problem: Problem) -> tuple[str, dict[str, Any]]:
    """Return (pyspark.ml.classification class, its parameters) of the MLlib form of ``model``.

    MLlib averages the loss over rows where scikit-learn sums it, so ``regParam = 1 / (C n)``
    (n the weighted train rows) gives the same optimum. Features arrive standardised as the local
    engine scales them, hence ``standardization=False``. For multiclass the Spark engine wraps
    LinearSVC and GBTClassifier (OneVsRest or softmax boosting); the parameters stay these.
    """
    p, k, seed = params, problem.n_classes, problem.seed
    if model == "logistic_regression":
        return "LogisticRegression", {
            "regParam": 1.0 / (p["C"] * problem.weighted_rows),
            "elasticNetParam": 0.0,
            "maxIter": p["max_iter"],
            # MLlib's tol is a relative change of the loss, scikit-learn's a gradient norm: a hundred
            # times tighter reaches scikit-learn's optimum at the default (parity within 0.002).
            "tol": p["tol"] / 100.0,
            "fitIntercept": p["fit_intercept"],
            "standardization": False,
            "family": "binomial" if k == 2 else "multinomial",
        }
    if model in ("linear_svm", "rff_svm", "nystroem_svm"):
        # The spec's tol as MLlib's: tightening it to 1e-6 doubled the OneVsRest fits (kernel SVMs at
        # 20k rows: 37 -> 76 s) and moved test accuracy by at most 0.0013.
        return "LinearSVC", {
            "regParam": 1.0 / (p["C"] * problem.weighted_rows),
            "maxIter": p["max_iter"],
            "tol": p["tol"],
            "standardization": False,
        }
    if model == "naive_bayes":
        return "NaiveBayes", {"modelType": "gaussian"}
    trees = {"maxBins": 256, "seed": seed}
    if model == "decision_tree":
        return "DecisionTreeClassifier", {
            "maxDepth": p["max_depth"],
            "minInstancesPerNode": p["min_samples_leaf"],
            **trees,
        }
    if model == "random_forest":
        return "RandomForestClassifier", {
            "numTrees": p["n_estimators"],
            "maxDepth": p["max_depth"],
            "minInstancesPerNode": p["min_samples_leaf"],
            # As a count: MLlib's own "sqrt" and "log2" round up, which tries more features per split.
            "featureSubsetStrategy": "all"
            if p["max_features"] == "all"
            else str(features_per_split(p["max_features"], problem.n_features)),
            "bootstrap": True,
            **trees,
        }
    if model == "gbt":
        return "GBTClassifier", {
            "maxIter": p["n_estimators"],
            "stepSize": p["learning_rate"],
            "maxDepth": p["max_depth"],
            "minInstancesPerNode": p["min_samples_leaf"],
            **trees,
        }
    if model == "mlp":
        return "MultilayerPerceptronClassifier", {
            "layers": [problem.n_features, *p["hidden_layer_sizes"], k],
            "maxIter": p["max_iter"] * 4,  # L-BFGS steps; scikit-learn's max_iter counts Adam epochs
            "solver": "l-bfgs",
            "seed": seed,
        }
    raise AssertionError(f"{model} has no MLlib form")


def iterations(model: str, params: dict[str, Any]) -> tuple[int, str] | None:
    """Return (the most steps, what a step is) of a fit that iterates, for its progress bar."""
    if model in ("xgboost", "gbt"):
        return int(params["n_estimators"]), "boosting rounds"
    if model == "mlp":
        return int(params["max_iter"]), "epochs"
    if model in LINEAR_MODELS:
        return int(params["max_iter"]), "L-BFGS iterations (at most)"
    return None


def numpy_settings(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return the settings of the NumPy trainer of ``model`` (network or naive Bayes)."""
    if model in LINEAR_MODELS:
        return linear_settings(model, params)
    if model == "mlp":
        return mlp_settings(params)
    if model == "naive_bayes":
        return {"var_smoothing": float(params["var_smoothing"])}
    raise AssertionError(f"{model} has no NumPy trainer")


def kernel_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return a kernel model's feature-map settings (``pipelines.models.kernels``); gamma None is the default."""
    if model not in ("rff_svm", "nystroem_svm"):
        return {}
    return {"feature_map.n_components": params["n_components"], "feature_map.gamma": params["gamma"]}


def native_params(library: str, model: str, params: dict[str, Any], problem: Problem) -> dict[str, Any]:
    """Return the native settings of ``model`` on ``library`` (what the fitted object must show).

    Kernel models add their feature map's settings, which every engine applies the same way.
    """
    return kernel_params(model, params) | _library_params(library, model, params, problem)


def _library_params(library: str, model: str, params: dict[str, Any], problem: Problem) -> dict[str, Any]:
    if library == SKLEARN:
        if model == "xgboost":
            return xgboost_params(model, params, problem)[0] | {"rounds": xgboost_params(model, params, problem)[1]}
        return sklearn_params(model, params, problem.seed, 1)[1]
    if library == XGBOOST:
        booster, rounds = xgboost_params(model, params, problem)
        return booster | {"rounds": rounds}
    if library == MLLIB:
        return mllib_params(model, params, problem)[1]
    return numpy_settings(model, params)
