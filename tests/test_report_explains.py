"""The report explains the model: learning curves, feature importance, and why a section is empty."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluation.importance import (
    COEFFICIENT,
    GAIN,
    PERMUTATION,
    SHAP,
    coefficient_importance,
    permutation_importance,
    shap_summary,
)
from pipelines.evaluation.report import write_report
from tests.test_report import predictions, run_metrics

pytestmark = pytest.mark.local


def _section(page: str, anchor: str) -> str:
    """Return the HTML between the heading with ``id=anchor`` and the next h2."""
    found = re.search(rf'<h2 id="{anchor}">.*?</h2>(.*?)(?=<h2)', page, re.S)
    assert found, f"no section {anchor}"
    return found.group(1)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def test_report_shows_learning_curves_and_importance_with_what_to_look_at(tmp_path: Path) -> None:
    y, proba = predictions(2)
    train = [0.69 * 0.9**i for i in range(40)]
    valid = [0.69 * 0.92**i + 0.004 * max(0, i - 25) for i in range(40)]
    rows = [("x_mass", 0.31, GAIN), ("x_pt", 0.12, GAIN), ("<b>odd</b>", 0.02, GAIN), ("x_mass", 0.05, PERMUTATION)]
    path = write_report(
        tmp_path,
        metrics=run_metrics(y, proba, ["no", "yes"]),
        spec_yaml="name: t\n",
        y=y,
        proba=proba,
        classes=["no", "yes"],
        curves={"train": train, "valid": valid},
        curve_axis="round",
        importance=rows,
    )
    page = path.read_text()
    curves = _section(page, "learning-curves")
    assert curves.count("data:image/png;base64,") == 1 and "What to look at" in _text(curves)
    lowest = int(np.argmin(valid)) + 1
    assert re.search(rf"<td>valid</td><td>40</td>.*?<td>{lowest}</td>", curves, re.S)
    importance = _section(page, "feature-importance")
    assert importance.count("data:image/png;base64,") == 2  # one chart per kind
    assert f"<h3>{GAIN}</h3>" in importance and f"<h3>{PERMUTATION}</h3>" in importance
    gain_table = importance.split(f"<h3>{PERMUTATION}</h3>")[0]
    assert [c for c in re.findall(r"<tr><td>(.*?)</td>", gain_table)] == ["x_mass", "x_pt", "&lt;b&gt;odd&lt;/b&gt;"]
    assert "<b>odd</b>" not in page
    assert _text(importance).count("What to look at") == 2
    assert (tmp_path / "plots" / "learning_curve.png").is_file()
    assert (tmp_path / "plots" / "importance_1.png").is_file() and (tmp_path / "plots" / "importance_2.png").is_file()
    # Every plot on the page carries its "what to look at" line: 5 evaluation plots + 1 curve + 2 importance.
    assert page.count("data:image/png;base64,") == 8 == _text(page).count("What to look at")


def test_report_names_the_short_kinds_engines_use(tmp_path: Path) -> None:
    y, proba = predictions(2)
    rows = [("a", 0.4, "shap"), ("b", 0.1, "shap"), ("a", 0.2, "impurity"), ("b", 0.3, "permutation")]
    write_report(
        tmp_path, metrics=run_metrics(y, proba, ["n", "y"]), spec_yaml="", y=y, proba=proba, classes=["n", "y"],
        importance=rows,
    )  # fmt: skip
    text = _text(_section((tmp_path / "report.html").read_text(), "feature-importance"))
    for shown in (SHAP, PERMUTATION, "impurity decrease (training rows)"):
        assert f"Feature importance: {shown}" in text
    assert text.count("What to look at") == 3 and "largest values drive the model" not in text


def test_report_says_why_sections_are_empty(tmp_path: Path) -> None:
    y, proba = predictions(3)
    classes = ["a", "b", "c"]
    write_report(
        tmp_path,
        metrics=run_metrics(y, proba, classes),
        spec_yaml="name: t\n",
        y=y,
        proba=proba,
        classes=classes,
        curves_missing="naive_bayes does not iterate: it is fitted in one pass.",
    )
    page = (tmp_path / "report.html").read_text()
    assert "naive_bayes does not iterate" in _text(_section(page, "learning-curves"))
    assert "No feature importance for this run" in _text(_section(page, "feature-importance"))
    assert page.count("data:image/png;base64,") == 5
    assert not (tmp_path / "plots" / "learning_curve.png").exists()


def test_permutation_importance_equals_scikit_learns_on_the_same_model_and_rows() -> None:
    from sklearn.datasets import make_classification
    from sklearn.inspection import permutation_importance as sk_permutation_importance
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=600, n_features=6, n_informative=3, random_state=0)
    model = LogisticRegression().fit(x[:400], y[:400])
    for ours, theirs in (("auc", "roc_auc"), ("log_loss", "neg_log_loss"), ("accuracy", "accuracy")):
        got = permutation_importance(model.predict_proba, x[400:], y[400:], ours, n_repeats=4, seed=3)
        want = sk_permutation_importance(model, x[400:], y[400:], scoring=theirs, n_repeats=4, random_state=3)
        np.testing.assert_allclose(got.drops, want.importances, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.mean, want.importances_mean, rtol=1e-10, atol=1e-12)
    informative = np.argsort(-got.mean)[:3]
    assert got.mean[informative].min() > got.mean[np.setdiff1d(np.arange(6), informative)].max()
    rows = got.rows([f"f{j}" for j in range(6)])
    assert rows[0] == ("f0", pytest.approx(got.mean[0]), PERMUTATION)


def test_permutation_importance_on_multiclass_auc_matches_scikit_learn() -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    x, y = make_classification(n_samples=500, n_features=5, n_informative=3, n_classes=3, random_state=1)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(x[:300], y[:300])
    got = permutation_importance(model.predict_proba, x[300:], y[300:], "auc", n_repeats=3, seed=0)
    want = sk_permutation_importance(model, x[300:], y[300:], scoring="roc_auc_ovr", n_repeats=3, random_state=0)
    np.testing.assert_allclose(got.mean, want.importances_mean, rtol=1e-10, atol=1e-12)


def test_shap_summary_is_the_mean_absolute_xgboost_contribution() -> None:
    import xgboost

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(int)
    booster = xgboost.train({"max_depth": 3, "objective": "binary:logistic"}, xgboost.DMatrix(x, y), 20)
    contribs = booster.predict(xgboost.DMatrix(x), pred_contribs=True)
    margin = booster.predict(xgboost.DMatrix(x), output_margin=True)
    np.testing.assert_allclose(contribs.sum(axis=1), margin, rtol=1e-4, atol=1e-4)  # SHAP adds up to the margin
    rows = shap_summary(contribs, ["a", "b", "c", "d"])
    assert [r[2] for r in rows] == [SHAP] * 4
    np.testing.assert_allclose([r[1] for r in rows], np.abs(contribs[:, :4]).mean(axis=0), rtol=1e-5)
    assert rows[0][1] > rows[1][1] > max(rows[2][1], rows[3][1])  # x0 drives the label, then x1
    multiclass = rng.normal(size=(10, 3, 5))
    np.testing.assert_allclose(
        [r[1] for r in shap_summary(multiclass, list("abcd"))], np.abs(multiclass[..., :4]).mean(axis=(0, 1))
    )
    with pytest.raises(Exception, match="do not match 3 features"):
        shap_summary(contribs, ["a", "b", "c"])


def test_coefficient_importance_averages_classes() -> None:
    rows = coefficient_importance(np.array([[1.0, -2.0], [-3.0, 0.0]]), ["u", "v"])
    assert rows == [("u", 2.0, COEFFICIENT), ("v", 1.0, COEFFICIENT)]
