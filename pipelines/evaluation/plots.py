"""The five evaluation plots of a run (ROC, PR, calibration, confusion matrix, threshold) as PNG files.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never pyplot, so
plotting needs no display, leaves no global state behind and is safe in worker threads. Curves come
from :mod:`pipelines.evaluation.metrics`, so the plots show exactly what ``metrics.json`` reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.errors import DataError
from pipelines.evaluation.metrics import (
    average_precision,
    calibration_bins,
    check_predictions,
    confusion_matrix,
    per_class_scores,
    pr_curve,
    roc_auc,
    roc_curve,
    threshold_table,
)

PLOT_NAMES = ("roc", "pr", "calibration", "confusion_matrix", "threshold")
DPI = 100
# Beyond this many classes a legend hides the plot and cell numbers become unreadable.
_MAX_LEGEND = 10
_MAX_ANNOTATED = 15
_CALIBRATION_BINS = 10


def write_plots(
    plots_dir: Path, y: np.ndarray, proba: np.ndarray, classes: list[str], threshold: float
) -> dict[str, Path]:
    """Return ``{name: path}`` of roc.png, pr.png, calibration.png, confusion_matrix.png, threshold.png.

    Parameters
    ----------
    plots_dir : Path
        Directory to write into (created when missing).
    y : np.ndarray
        True class indices 0..k-1.
    proba : np.ndarray
        Probabilities (n, k); two columns make a binary task with the positive class in column 1.
    classes : list[str]
        Class names in column order, used for labels.
    threshold : float
        Binary decision threshold on ``p1`` (marked on the threshold plot; ignored for multiclass).
    """
    y, proba = check_predictions(y, proba)
    if len(classes) != proba.shape[1]:
        raise DataError(f"{len(classes)} class names given for {proba.shape[1]} probability columns")
    names = [_plain_text(c) for c in classes]
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    if proba.shape[1] == 2:
        y01, p1 = (y == 1).astype(np.int64), proba[:, 1]
        y_pred = (p1 >= threshold).astype(np.int64)
        figures = {
            "roc": _roc_figure([(names[1], y01, p1)]),
            "pr": _pr_figure([(names[1], y01, p1)]),
            "calibration": _calibration_figure(y01, p1, f"P({names[1]})", "Calibration of the positive class"),
            "confusion_matrix": _confusion_figure(y, y_pred, names, f"Confusion matrix (threshold {threshold:.3g})"),
            "threshold": _threshold_figure(y01, p1, threshold),
        }
    else:
        y_pred = np.argmax(proba, axis=1)
        per_class = [(names[j], (y == j).astype(np.int64), proba[:, j]) for j in range(len(names))]
        confidence = proba[np.arange(len(y)), y_pred]
        figures = {
            "roc": _roc_figure(per_class),
            "pr": _pr_figure(per_class),
            "calibration": _calibration_figure(
                (y_pred == y).astype(np.int64), confidence, "Top-label confidence", "Calibration of the predicted class"
            ),
            "confusion_matrix": _confusion_figure(y, y_pred, names, "Confusion matrix (argmax)"),
            "threshold": _f1_bar_figure(y, y_pred, names),
        }
    paths = {}
    for name in PLOT_NAMES:
        path = plots_dir / f"{name}.png"
        # No "Software" text chunk: the default one carries a URL and changes with the version.
        figures[name].savefig(path, dpi=DPI, metadata={"Software": None})
        paths[name] = path
    return paths


def _plain_text(name: object, limit: int = 24) -> str:
    # A "$" would switch matplotlib into mathtext (and an unpaired one fails to render).
    text = str(name)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _figure(width: float = 6.0, height: float = 5.0) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.35")


def _roc_figure(curves: list[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    figure = _figure()
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    drawn = 0
    for name, y01, score in curves:
        area = roc_auc(y01, score)
        if area is None:
            continue
        fpr, tpr, _ = roc_curve(y01, score)
        ax.plot(fpr, tpr, linewidth=1.8 if len(curves) == 1 else 1.2, label=f"{name} (AUC {area:.3f})")
        drawn += 1
    if not drawn:
        _note(ax, "ROC undefined: the split has a single class")
    title = "ROC curve" if len(curves) == 1 else f"ROC curves, one-vs-rest ({len(curves)} classes)"
    _finish(ax, title, "False positive rate", "True positive rate", len(curves), "lower right")
    return figure


def _pr_figure(curves: list[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    figure = _figure()
    ax = figure.add_subplot()
    drawn = 0
    for name, y01, score in curves:
        ap = average_precision(y01, score)
        if ap is None:
            continue
        precision, recall, _ = pr_curve(y01, score)
        line = ax.plot(
            recall,
            precision,
            drawstyle="steps-post",
            linewidth=1.8 if len(curves) == 1 else 1.2,
            label=f"{name} (AP {ap:.3f})",
        )
        if len(curves) == 1:
            ax.axhline(
                float(np.mean(y01)),
                linestyle="--",
                color=line[0].get_color(),
                alpha=0.5,
                linewidth=1,
                label=f"prevalence {np.mean(y01):.3f}",
            )
        drawn += 1
    if not drawn:
        _note(ax, "PR curve undefined: the split has no positive rows")
    title = "Precision-recall curve" if len(curves) == 1 else f"Precision-recall, one-vs-rest ({len(curves)} classes)"
    _finish(ax, title, "Recall", "Precision", len(curves), "lower left")
    return figure


def _finish(
    ax: Axes, title: str, xlabel: str, ylabel: str, n_curves: int, legend_at: Literal["lower right", "lower left"]
) -> None:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-0.01, 1.01), ylim=(-0.01, 1.02))
    ax.grid(alpha=0.3)
    if n_curves <= _MAX_LEGEND and ax.get_legend_handles_labels()[0]:
        ax.legend(loc=legend_at, fontsize=8)


def _calibration_figure(y01: np.ndarray, p: np.ndarray, xlabel: str, title: str) -> Figure:
    figure = _figure(6.0, 6.0)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fraction, mean_p, _ = calibration_bins(y01, p, _CALIBRATION_BINS)
    top.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfectly calibrated")
    top.plot(mean_p, fraction, marker="o", linewidth=1.8, label="model")
    top.set(title=title, ylabel="Observed frequency", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    bottom.hist(p, bins=np.linspace(0, 1, 2 * _CALIBRATION_BINS + 1), color="0.45")
    bottom.set(xlabel=xlabel, ylabel="Rows")
    return figure


def _confusion_figure(y: np.ndarray, y_pred: np.ndarray, names: list[str], title: str) -> Figure:
    k = len(names)
    size = min(4.5 + 0.35 * k, 14.0)
    figure = _figure(size + 1.0, size)
    ax = figure.add_subplot()
    counts = confusion_matrix(y, y_pred, k)
    support = counts.sum(axis=1, keepdims=True)
    # Colour by the share of each true class so rare classes stay visible; print the raw counts.
    share = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, label="Share of the true class", shrink=0.8)
    if k <= _MAX_ANNOTATED:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]}\n{share[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=12 if k <= 4 else 8,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ticks = np.arange(k)
    ax.set_xticks(ticks, names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set(title=title, xlabel="Predicted class", ylabel="True class")
    return figure


def _threshold_figure(y01: np.ndarray, p1: np.ndarray, threshold: float) -> Figure:
    figure = _figure(7.0, 5.0)
    ax = figure.add_subplot()
    table = threshold_table(y01, p1)
    inside = table["threshold"] <= 1.0
    for key in ("precision", "recall", "f1"):
        ax.plot(
            table["threshold"][inside],
            table[key][inside],
            drawstyle="steps-pre",
            linewidth=1.6,
            label=key if key != "f1" else "F1",
        )
    ax.axvline(threshold, color="crimson", linestyle="--", linewidth=1.2, label=f"chosen threshold {threshold:.3g}")
    ax.set(
        title="Precision, recall and F1 by threshold (positive if p ≥ threshold)",
        xlabel="Threshold on P(positive)",
        ylabel="Score",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return figure


def _f1_bar_figure(y: np.ndarray, y_pred: np.ndarray, names: list[str]) -> Figure:
    k = len(names)
    figure = _figure(min(4.0 + 0.4 * k, 16.0), 5.0)
    ax = figure.add_subplot()
    scores = per_class_scores(y, y_pred, k)
    bars = ax.bar(np.arange(k), scores["f1"], color="steelblue")
    if k <= _MAX_ANNOTATED:
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    seen = (scores["support"] > 0) | (np.bincount(y_pred, minlength=k) > 0)
    macro = float(np.mean(scores["f1"][seen]))
    ax.axhline(macro, color="crimson", linestyle="--", linewidth=1.2, label=f"macro F1 {macro:.3f}")
    ax.set_xticks(np.arange(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=8)
    ax.set(title="F1 per class (argmax predictions)", xlabel="Class", ylabel="F1", ylim=(0, 1.15))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return figure


def write_learning_curve(plots_dir: Path, curves: dict[str, list[float]], axis: str, metric: str) -> Path:
    """Return the path of ``learning_curve.png``: one line per curve (train, valid) over rounds or epochs."""
    figure = _figure(7.0, 4.5)
    ax = figure.add_subplot()
    best: tuple[str, int, float] | None = None
    for name, values in curves.items():
        ys = np.asarray(values, dtype=np.float64)
        xs = np.arange(1, len(ys) + 1)
        ax.plot(xs, ys, marker="o" if len(ys) <= 30 else None, markersize=3, linewidth=1.6, label=_plain_text(name))
        if name == "valid" and np.isfinite(ys).any():
            i = int(np.nanargmin(ys))
            best = (name, i + 1, float(ys[i]))
    if best is not None:
        ax.axvline(best[1], color="0.5", linestyle=":", linewidth=1.2, label=f"lowest valid at {axis} {best[1]}")
    ax.set(title=f"Learning curves: {metric} per {axis}", xlabel=axis.capitalize(), ylabel=metric)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _save(figure, Path(plots_dir) / "learning_curve.png")


def write_importance(plots_dir: Path, rows: list[tuple[str, float, str]], top: int = 20) -> dict[str, Path]:
    """Return ``{kind: path}`` of one horizontal bar chart per importance kind, the ``top`` largest features."""
    paths: dict[str, Path] = {}
    kinds = list(dict.fromkeys(kind for _, _, kind in rows))
    for index, kind in enumerate(kinds):
        chosen = sorted(((f, v) for f, v, k in rows if k == kind), key=lambda fv: -abs(fv[1]))[:top]
        names = [_plain_text(f, 32) for f, _ in chosen][::-1]
        values = np.array([v for _, v in chosen][::-1], dtype=np.float64)
        figure = _figure(7.0, max(2.5, 0.28 * len(chosen) + 1.4))
        ax = figure.add_subplot()
        ax.barh(np.arange(len(values)), values, color=np.where(values < 0, "indianred", "steelblue"))
        ax.set_yticks(np.arange(len(values)), names, fontsize=8)
        ax.axvline(0, color="0.3", linewidth=0.8)
        total = len({f for f, _, k in rows if k == kind})
        shown = f"top {len(chosen)} of {total} features" if len(chosen) < total else f"{total} features"
        ax.set(title=f"{_plain_text(kind, 60)}, {shown}", xlabel=_plain_text(kind, 60))
        ax.grid(axis="x", alpha=0.3)
        paths[kind] = _save(figure, Path(plots_dir) / f"importance_{index + 1}.png")
    return paths


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    return path
