"""``report.html``: one self-contained page per run (inline CSS, plots as data URIs, no scripts, no links).

The page reads only ``metrics.json``-shaped data, the resolved spec and the test predictions, so any
engine's run renders the same way. Other parts of scaleclf (tuning, federated rounds, partitions)
add their own blocks through :class:`ReportSection`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.evaluation.plots import PLOT_NAMES, write_plots

MISSING = "—"
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
    "threshold": "Threshold / per-class F1",
}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1d2330;
       background: #f5f6f8; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 28px 0 10px; border-bottom: 1px solid #d5d9e0; padding-bottom: 4px; }
.sub { color: #5b6475; margin: 0 0 18px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #d5d9e0; border-radius: 8px; padding: 12px 14px; }
.card .label { color: #5b6475; font-size: 0.85em; }
.card .value { font-size: 1.6em; font-weight: 600; margin-top: 4px; }
table { border-collapse: collapse; background: #fff; margin: 6px 0; }
th, td { border: 1px solid #d5d9e0; padding: 5px 10px; text-align: right; font-variant-numeric: tabular-nums; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef0f4; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid #d5d9e0; border-radius: 8px; padding: 8px; }
figure img { width: 100%; height: auto; }
figcaption { color: #5b6475; font-size: 0.9em; text-align: center; }
pre { background: #fff; border: 1px solid #d5d9e0; padding: 12px; overflow-x: auto; font-size: 0.85em; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
"""


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
    """
    run_dir = Path(run_dir)
    threshold = _threshold_of(metrics)
    plots = write_plots(run_dir / "plots", y, proba, classes, threshold)
    page = _page(metrics, spec_yaml, plots, sections or [])
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _threshold_of(metrics: dict[str, Any]) -> float:
    chosen = metrics.get("threshold")
    if isinstance(chosen, dict) and chosen.get("threshold") is not None:
        return float(chosen["threshold"])
    test_threshold = (metrics.get("test") or {}).get("threshold")
    return float(test_threshold) if test_threshold is not None else 0.5


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    """Return a table cell's text: None as a dash, floats rounded, everything else as text."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}f}"
    return _esc(value)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Return an HTML table; cells are already-escaped strings."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(metrics: dict[str, Any], spec_yaml: str, plots: dict[str, Path], sections: list[ReportSection]) -> str:
    model, engine = metrics.get("model", MISSING), metrics.get("engine", MISSING)
    title = f"{model} on {engine}"
    subtitle = " · ".join(
        _esc(part) for part in (metrics.get("dataset"), metrics.get("task"), metrics.get("created")) if part
    )
    blocks = [
        f"<h1>{_esc(title)}</h1><p class='sub'>{subtitle}</p>",
        _headline(metrics.get("test") or {}),
        "<h2>Metrics: test vs valid</h2>" + _metrics_table(metrics),
        "<h2>Plots (test split)</h2>" + _plot_grid(plots),
        "<h2>Data</h2>" + _data_summary(metrics),
        "<h2>Timings</h2>" + _timings(metrics.get("timing") or {}),
    ]
    blocks += [f"<h2>{_esc(s.title)}</h2>{s.html}" for s in sections]
    blocks.append(f"<h2>Resolved spec</h2><pre>{_esc(spec_yaml)}</pre>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>scaleclf: {_esc(title)}</title><style>{_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(blocks) + "\n</main></body></html>\n"
    )


def _headline(test: dict[str, Any]) -> str:
    cards = "".join(
        f"<div class='card'><div class='label'>test {label}</div><div class='value'>{_fmt(test.get(key))}</div></div>"
        for key, label in HEADLINE
    )
    return f"<div class='cards'>{cards}</div>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    test, valid = metrics.get("test") or {}, metrics.get("valid") or {}
    names = list(dict.fromkeys([*test, *valid]))
    table = _table(["metric", "test", "valid"], ([_esc(n), _fmt(test.get(n)), _fmt(valid.get(n))] for n in names))
    notes = []
    chosen = metrics.get("threshold")
    if isinstance(chosen, dict):
        notes.append(
            f"Threshold {_fmt(chosen.get('threshold'))} chosen by {_esc(chosen.get('strategy', MISSING))}"
            + (
                f" ({_esc(chosen['criterion'])} {_fmt(chosen.get('value'))} on valid)"
                if chosen.get("criterion")
                else ""
            )
        )
    if metrics.get("calibration"):
        notes.append(f"Calibration: {_esc(metrics['calibration'])}")
    return table + "".join(f"<p>{n}</p>" for n in notes)


def _plot_grid(plots: dict[str, Path]) -> str:
    figures = []
    for name in PLOT_NAMES:
        if name not in plots:
            continue
        data = base64.b64encode(Path(plots[name]).read_bytes()).decode("ascii")
        caption = _esc(PLOT_TITLES.get(name, name))
        image = f"<img alt='{caption}' src='data:image/png;base64,{data}'>"
        figures.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    return f"<div class='plots'>{''.join(figures)}</div>"


def _data_summary(metrics: dict[str, Any]) -> str:
    parts = []
    rows = metrics.get("rows") or {}
    if rows:
        parts.append(_table(["split", "rows"], ([_esc(k), _fmt(v)] for k, v in rows.items())))
    counts = metrics.get("class_counts") or {}
    if counts:
        parts.append(_class_balance(counts, [str(c) for c in metrics.get("classes") or []]))
    dropped = metrics.get("dropped_columns")
    if dropped:
        parts.append("<p>Dropped columns: " + ", ".join(f"<code>{_esc(c)}</code>" for c in dropped) + "</p>")
    elif dropped is not None:
        parts.append("<p>Dropped columns: none</p>")
    return f"<div class='row'>{''.join(parts)}</div>" if parts else f"<p>{MISSING}</p>"


def _class_balance(counts: dict[str, dict[str, Any]], classes: list[str]) -> str:
    splits = list(counts)
    names = list(dict.fromkeys([*classes, *(str(c) for split in counts.values() for c in (split or {}))]))
    totals = {s: sum(v for v in (counts[s] or {}).values() if isinstance(v, int | float)) for s in splits}
    rows = []
    for name in names:
        cells = [_esc(name)]
        for split in splits:
            n = (counts[split] or {}).get(name)
            share = f" ({n / totals[split]:.1%})" if isinstance(n, int | float) and totals[split] else ""
            cells.append(_fmt(n) + share)
        rows.append(cells)
    return _table(["class", *(_esc(s) for s in splits)], rows)


def _timings(timing: dict[str, Any]) -> str:
    if not timing:
        return f"<p>{MISSING}</p>"
    return _table(["stage", "seconds"], ([_esc(k), _fmt(v, 3)] for k, v in timing.items()))
