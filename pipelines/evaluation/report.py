"""``report.html``: one self-contained page per run (inline CSS, plots as data URIs, no scripts, no links).

The page is rendered from ``templates/report.html.j2`` (Jinja2, autoescaped). It reads only
``metrics.json``-shaped data, the resolved spec, the test predictions and, when the engine supplies
them, learning curves and feature importance, so any engine's run renders the same way. Other parts
of scaleclf (tuning, federated rounds, partitions) add their own blocks through :class:`ReportSection`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from pipelines.evaluation.importance import COEFFICIENT, GAIN, PERMUTATION, SHAP
from pipelines.evaluation.plots import PLOT_NAMES, write_importance, write_learning_curve, write_plots

MISSING = "—"
IMPURITY = "impurity decrease (training rows)"
HEADLINE = (
    ("auc", "AUC"),
    ("pr_auc", "PR AUC"),
    ("accuracy", "Accuracy"),
    ("f1", "F1"),
    ("log_loss", "Log loss"),
    ("ece", "ECE"),
)
PLOT_TITLES = {
    "roc": "ROC",
    "pr": "Precision-recall",
    "calibration": "Calibration",
    "confusion_matrix": "Confusion matrix",
    "threshold": "Precision, recall and F1 by threshold",
}
# "What to look at": one line under each plot, for a reader who has not met the plot before.
HINTS = {
    "roc": "How far the curve bows toward the top-left corner, above the dashed chance line. "
    "AUC summarises it and does not depend on the threshold.",
    "pr": "How long precision holds as recall grows, against the prevalence line (what a random "
    "model scores). It shows the cost of finding positives when they are rare.",
    "calibration": "Points on the diagonal mean a predicted 0.8 comes true 80% of the time. "
    "The histogram shows where predictions fall; bins with few rows are noisy.",
    "confusion_matrix": "The diagonal holds the correct predictions (colour is each true class's share); "
    "off-diagonal cells show which classes are taken for which.",
    "threshold": "How precision and recall trade as the threshold moves, and whether the chosen "
    "threshold (dashed red) sits where that trade suits the use.",
    "f1": "Classes whose F1 sits far below the macro average (dashed line) are the ones the model struggles with.",
    "learning_curve": "The gap between train and valid (overfitting when valid turns up while train "
    "keeps falling), and whether valid has flattened, i.e. more rounds would not help.",
    GAIN: "Which features the trees split on to reduce the loss. Gain favours features with many "
    "split points and says nothing about the direction of the effect.",
    COEFFICIENT: "Features with the largest weights on the standardised scale move the prediction most "
    "per standard deviation; correlated features share or trade their weight.",
    PERMUTATION: "How much the valid score drops when the feature's values are shuffled. Near zero or "
    "negative: the model does not rely on it (correlated features can mask each other).",
    SHAP: "The average size of each feature's contribution to the predicted log-odds over the rows "
    "explained; contributions add up to each row's prediction.",
    IMPURITY: "How much each feature's splits reduced the trees' impurity on the training rows; it favours "
    "features with many distinct values and says nothing about the direction of the effect.",
}
# Short kind names engines may use, mapped to the names the report shows.
KIND_NAMES = {"permutation": PERMUTATION, "shap": SHAP, "gain": GAIN, "coefficient": COEFFICIENT, "impurity": IMPURITY}
TOP_FEATURES = 20


@dataclass
class ReportSection:
    """An extra block of the report: a title (escaped here) and trusted HTML the caller has escaped."""

    title: str
    html: str


def write_report(
    run_dir: Path,
    *,
    metrics: dict[str, Any],
    spec_yaml: str,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    sections: list[ReportSection] | None = None,
    curves: dict[str, list[float]] | None = None,
    curve_axis: str = "round",
    curve_metric: str = "log loss",
    curves_missing: str | None = None,
    importance: list[tuple[str, float, str]] | None = None,
    importance_missing: str | None = None,
) -> Path:
    """Return the path of ``run_dir/report.html``, written with ``run_dir/plots/*.png``.

    Parameters
    ----------
    run_dir : Path
        The (temporary) run directory.
    metrics : dict
        The run's ``metrics.json`` content; optional keys may be missing and values None.
    spec_yaml : str
        The resolved job spec, shown verbatim.
    y, proba : np.ndarray
        Test class indices (n,) and probabilities (n, k) the plots are drawn from.
    classes : list[str]
        Class names in column order.
    sections : list[ReportSection] | None
        Extra blocks (tuning trials, federated rounds, partitions) placed before the spec.
    curves : dict[str, list[float]] | None
        Loss per round or epoch by curve name, e.g. ``{"train": [...], "valid": [...]}``.
    curve_axis, curve_metric : str
        What one step of the curves is ("round", "epoch", "iteration") and what they measure.
    curves_missing : str | None
        Why there are no curves (shown instead); a generic reason when None.
    importance : list[tuple[str, float, str]] | None
        ``(feature, value, kind)`` rows; kinds are those of ``pipelines.evaluation.importance``.
    importance_missing : str | None
        Why there is no importance (shown instead); a generic reason when None.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    run_dir = Path(run_dir)
    plots_dir = run_dir / "plots"
    paths = write_plots(plots_dir, y, proba, classes, _threshold_of(metrics))
    binary = proba.shape[1] == 2
    model = f"{metrics.get('model', MISSING)} on {metrics.get('engine', MISSING)}"
    context = {
        "title": model,
        "subtitle": [str(p) for p in (metrics.get("dataset"), metrics.get("task"), metrics.get("created")) if p],
        "cards": [(label, _fmt((metrics.get("test") or {}).get(key))) for key, label in HEADLINE],
        "metric_rows": _metric_rows(metrics),
        "metric_notes": _metric_notes(metrics),
        "plots": [_plot(paths[name], *_plot_text(name, binary)) for name in PLOT_NAMES if name in paths],
        "curves": _curves(plots_dir, curves, curve_axis, curve_metric, curves_missing, model),
        "importance": _importance(plots_dir, importance, importance_missing, model),
        "data": _data(metrics),
        "timings": [(k, _fmt(v, 3)) for k, v in (metrics.get("timing") or {}).items()],
        "sections": [{"title": s.title, "html": Markup(s.html)} for s in sections or []],
        "spec_yaml": spec_yaml,
        "missing": MISSING,
    }
    env = Environment(
        loader=PackageLoader("pipelines.evaluation", "templates"), autoescape=True, undefined=StrictUndefined
    )
    path = run_dir / "report.html"
    path.write_text(env.get_template("report.html.j2").render(context), encoding="utf-8")
    return path


def _threshold_of(metrics: dict[str, Any]) -> float:
    chosen = metrics.get("threshold")
    if isinstance(chosen, dict) and chosen.get("threshold") is not None:
        return float(chosen["threshold"])
    test_threshold = (metrics.get("test") or {}).get("threshold")
    return float(test_threshold) if test_threshold is not None else 0.5


def _fmt(value: Any, digits: int = 4) -> str:
    """Return a cell's text: None as a dash, floats rounded, everything else as text (escaped by the template)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}f}"
    return str(value)


def _plot(path: Path, title: str, hint: str) -> dict[str, str]:
    return {"title": title, "hint": hint, "data": base64.b64encode(Path(path).read_bytes()).decode("ascii")}


def _plot_text(name: str, binary: bool) -> tuple[str, str]:
    if name == "threshold" and not binary:
        return "F1 per class", "What to look at: " + HINTS["f1"]
    return PLOT_TITLES.get(name, name), "What to look at: " + HINTS[name]


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    test, valid = metrics.get("test") or {}, metrics.get("valid") or {}
    return [(n, _fmt(test.get(n)), _fmt(valid.get(n))) for n in dict.fromkeys([*test, *valid])]


def _metric_notes(metrics: dict[str, Any]) -> list[str]:
    notes = []
    chosen = metrics.get("threshold")
    if isinstance(chosen, dict):
        criterion = f" ({chosen['criterion']} {_fmt(chosen.get('value'))} on valid)" if chosen.get("criterion") else ""
        strategy = chosen.get("strategy", MISSING)
        notes.append(f"Threshold {_fmt(chosen.get('threshold'))} chosen by {strategy}{criterion}")
    if metrics.get("calibration"):
        notes.append(f"Calibration: {metrics['calibration']}")
    return notes


def _curves(
    plots_dir: Path,
    curves: dict[str, list[float]] | None,
    axis: str,
    metric: str,
    missing: str | None,
    model: str,
) -> dict[str, Any]:
    drawn = {name: list(values) for name, values in (curves or {}).items() if len(values) > 0}
    if not drawn:
        reason = missing or f"No learning curve for this run: {model} did not report a loss per round or epoch."
        return {"plot": None, "missing": reason, "axis": axis, "rows": []}
    path = write_learning_curve(plots_dir, drawn, axis, metric)
    rows = []
    for name, values in drawn.items():
        ys = np.asarray(values, dtype=np.float64)
        low = int(np.nanargmin(ys)) if np.isfinite(ys).any() else None
        rows.append(
            {
                "name": name,
                "n": len(ys),
                "first": _fmt(float(ys[0])),
                "last": _fmt(float(ys[-1])),
                "lowest": _fmt(float(ys[low])) if low is not None else MISSING,
                "at": low + 1 if low is not None else MISSING,
            }
        )
    title = f"Learning curves ({metric} per {axis})"
    return {"plot": _plot(path, title, "What to look at: " + HINTS["learning_curve"]), "axis": axis, "rows": rows}


def _importance(
    plots_dir: Path, rows: list[tuple[str, float, str]] | None, missing: str | None, model: str
) -> dict[str, Any]:
    if not rows:
        reason = missing or f"No feature importance for this run: {model} did not supply one."
        return {"groups": [], "missing": reason}
    rows = [(f, float(v), KIND_NAMES.get(str(kind).lower(), str(kind))) for f, v, kind in rows]
    paths = write_importance(plots_dir, rows, TOP_FEATURES)
    groups = []
    for kind, path in paths.items():
        ranked = sorted(((f, v) for f, v, k in rows if k == kind), key=lambda fv: -abs(fv[1]))[:TOP_FEATURES]
        hint = "What to look at: " + HINTS.get(kind, "the features with the largest values drive the model most.")
        groups.append(
            {
                "kind": kind,
                "plot": _plot(path, f"Feature importance: {kind}", hint),
                "rows": [(f, _fmt(v)) for f, v in ranked],
            }
        )
    return {"groups": groups, "missing": None}


def _data(metrics: dict[str, Any]) -> dict[str, Any]:
    counts = metrics.get("class_counts") or {}
    classes = [str(c) for c in metrics.get("classes") or []]
    return {
        "rows": [(k, _fmt(v)) for k, v in (metrics.get("rows") or {}).items()],
        "balance": _class_balance(counts, classes) if counts else None,
        "dropped": metrics.get("dropped_columns"),
    }


def _class_balance(counts: dict[str, dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    splits = list(counts)
    names = list(dict.fromkeys([*classes, *(str(c) for split in counts.values() for c in (split or {}))]))
    totals = {s: sum(v for v in (counts[s] or {}).values() if isinstance(v, int | float)) for s in splits}
    rows = []
    for name in names:
        cells = [name]
        for split in splits:
            n = (counts[split] or {}).get(name)
            share = f" ({n / totals[split]:.1%})" if isinstance(n, int | float) and totals[split] else ""
            cells.append(_fmt(n) + share)
        rows.append(cells)
    return {"splits": splits, "rows": rows}
