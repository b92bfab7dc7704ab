"""The model layer: every catalog parameter reaches every library form of its model, and the shared maths
equal scikit-learn's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC

from pipelines.engines import ENGINE_NAMES, engine_class
from pipelines.models.catalog import CATALOG
from pipelines.models.naive_bayes import class_moments, fit_naive_bayes
from pipelines.models.native import UNUSED, Problem, native_params
from pipelines.models.network import fit_lbfgs, linear_settings, loss_and_grad
from tests.conformance import NON_DEFAULT

PROBLEM = Problem(n_features=30, n_classes=2, class_counts=(600.0, 400.0), weighted_rows=1000.0, seed=3)


def _forms() -> list[tuple[str, str]]:
    """Return every (library, model) some engine runs."""
    forms = set()
    for engine in ENGINE_NAMES:
        cls = engine_class(engine)
        forms |= {(cls.LIBRARY[m], m) for m in cls.MODELS}
    return sorted(forms)


@pytest.mark.parametrize(("library", "model"), _forms())
def test_every_catalog_parameter_reaches_the_native_form(library: str, model: str) -> None:
    # Adding a catalog parameter without translating it fails here (or must be declared unused,
    # which the engine then refuses when set).
    defaults = CATALOG[model].resolve_params({})
    base = native_params(library, model, defaults, PROBLEM)
    unused = UNUSED.get((library, model), {})
    for key, value in NON_DEFAULT[model].items():
        assert value != defaults[key], f"NON_DEFAULT[{model}][{key}] is the default"
        changed = native_params(library, model, {**defaults, key: value}, PROBLEM)
        if key in unused:
            assert changed == base, f"{key} is declared unused on {library} but changes {model}'s native form"
        else:
            assert changed != base, f"{model}.{key} does not reach its {library} form"
    assert set(NON_DEFAULT[model]) == set(CATALOG[model].params), f"NON_DEFAULT misses a parameter of {model}"


def test_every_engine_declares_a_library_for_every_model_it_runs() -> None:
    for engine in ENGINE_NAMES:
        cls = engine_class(engine)
        assert set(cls.LIBRARY) >= set(cls.MODELS), engine
        assert not set(cls.MODELS) & set(cls.REFUSED), engine


def _data(seed: int = 0, n: int = 800, d: int = 6, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    logits = x @ rng.normal(size=(d, k))
    return x, logits.argmax(axis=1).astype(np.int32)


def _lbfgs(model: str, x: np.ndarray, y: np.ndarray, k: int, params: dict[str, Any]) -> list[np.ndarray]:
    settings = linear_settings(model, {**CATALOG[model].resolve_params({}), **params})
    w = np.ones(len(y))

    def totals(p: list[np.ndarray]) -> tuple[float, list[np.ndarray], float]:
        loss, grads = loss_and_grad(p, x, y, w, settings["loss"], k)
        return loss, grads, float(len(y))

    weights, _, curve = fit_lbfgs(totals, x.shape[1], k, settings)
    assert curve and curve[-1] <= curve[0]
    return weights


@pytest.mark.parametrize("k", [2, 3])
def test_lbfgs_on_the_network_objective_is_scikit_learns_logistic_regression(k: int) -> None:
    x, y = _data(k=k)
    coef, bias = _lbfgs("logistic_regression", x, y, k, {"C": 0.7, "tol": 1e-10, "max_iter": 2000})
    ref = LogisticRegression(C=0.7, tol=1e-10, max_iter=2000).fit(x, y)
    if k == 2:
        np.testing.assert_allclose(coef[:, 0], ref.coef_[0], atol=1e-4)
        np.testing.assert_allclose(bias, ref.intercept_, atol=1e-4)
    else:
        # scikit-learn's multinomial coefficients are defined up to a shift shared by the classes.
        np.testing.assert_allclose(coef.T - coef.T.mean(0), ref.coef_ - ref.coef_.mean(0), atol=1e-4)


def test_lbfgs_squared_hinge_is_linear_svcs_primal() -> None:
    x, y = _data(seed=1)
    coef, bias = _lbfgs("linear_svm", x, y, 2, {"C": 0.5, "tol": 1e-10, "max_iter": 5000})
    ref = LinearSVC(C=0.5, tol=1e-10, max_iter=100000, dual=False).fit(x, y)
    np.testing.assert_allclose(coef[:, 0], ref.coef_[0], atol=2e-3)
    np.testing.assert_allclose(bias, ref.intercept_, atol=2e-3)


def test_naive_bayes_from_block_moments_is_gaussian_nb() -> None:
    x, y = _data(seed=2, k=3)
    parts = [class_moments(x[i::4], y[i::4], None, 3) for i in range(4)]
    model = fit_naive_bayes(parts, 1e-6)
    ref = GaussianNB(var_smoothing=1e-6).fit(x, y)
    np.testing.assert_allclose(model.predict(x), ref.predict_proba(x), atol=1e-9)
    assert model.predict(x[:0]).shape == (0, 3)
