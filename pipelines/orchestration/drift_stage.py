"""The drift stage: new data and its scores against the training reference, a report page and a verdict."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.data.schema import numeric_values
from pipelines.data.sources import open_dataset, resolve_source
from pipelines.drift import (
    DriftResult,
    DriftThresholds,
    compare_features,
    live_metrics,
    score_drift,
    score_of,
    verdict,
)
from pipelines.orchestration.spec import PipelineSpec

PLOTTED_FEATURES = 6


def thresholds(spec: PipelineSpec) -> DriftThresholds:
    """Return the verdict's thresholds from the pipeline's drift section."""
    d = spec.drift
    return DriftThresholds(psi=d.psi, alpha=d.alpha, min_features=d.min_features, metric_drop=d.metric_drop)


def probabilities(table: pa.Table) -> np.ndarray:
    """Return the ``proba_*`` columns of a predictions table as a matrix."""
    return np.column_stack([np.asarray(table.column(c)) for c in table.column_names if c.startswith("proba_")])


def drift_stage(
    spec: PipelineSpec, data: dict[str, Any], scores: dict[str, Any], new_source: str, out: Path
) -> dict[str, Any]:
    """Compare the new rows and their scores with the training reference; write drift.json and drift.html."""
    limits = thresholds(spec)
    reference = pq.read_table(data["reference"])
    features = [*data["numeric"], *data["categorical"]]
    current = open_dataset(resolve_source(new_source, field_name="new_data.source")).head(
        spec.drift.max_rows, columns=features
    )
    found = compare_features(reference, current, data["numeric"], data["categorical"], limits)
    run_dir = Path(scores["run_dir"])
    ref_pred = pq.read_table(run_dir / "predictions.parquet")
    new_pred = pq.read_table(scores["path"])
    ref_scores, new_scores = score_of(probabilities(ref_pred)), score_of(probabilities(new_pred))
    score = score_drift(ref_scores, new_scores, limits)
    live = _live(run_dir, new_pred, spec.champion.metric, limits)
    rows = {"reference": reference.num_rows, "current": current.num_rows, "scored": new_pred.num_rows}
    result = verdict(found, score, live, limits, rows)
    directory = out / "drift"
    (directory / "plots").mkdir(parents=True, exist_ok=True)
    (directory / "drift.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    plots = write_plots(directory / "plots", result, reference, current, ref_scores, new_scores)
    write_report(directory / "drift.html", result, plots, new_source)
    flagged = [f.name for f in result.features if f.drifted]
    return {
        "verdict": result.verdict,
        "reasons": result.reasons,
        "drifted_features": flagged,
        "score_psi": score["psi"],
        "live": live,
        "report": str(directory / "drift.html"),
        "json": str(directory / "drift.json"),
    }


def _live(run_dir: Path, new_pred: pa.Table, metric: str, limits: DriftThresholds) -> dict[str, Any] | None:
    if "label" not in new_pred.column_names:
        return None
    from pipelines.scoring import load_run

    run = load_run(run_dir)
    reference = json.loads((run_dir / "metrics.json").read_text())["test"]
    y = run.ctx.task.encode(new_pred.column("label"))
    return live_metrics(y, probabilities(new_pred), run.post.decision_threshold, reference, metric, limits)


def _figure(width: float = 5.0, height: float = 3.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def write_plots(
    directory: Path,
    result: DriftResult,
    reference: pa.Table,
    current: pa.Table,
    ref_scores: np.ndarray,
    new_scores: np.ndarray,
) -> list[str]:
    """Write the PSI bar chart, the score histograms and the most shifted features' histograms."""
    names = []
    fig = _figure(7.0, max(2.5, 0.22 * len(result.features)))
    ax = fig.add_subplot()
    ordered = sorted(result.features, key=lambda f: f.psi)
    ax.barh([f.name for f in ordered], [f.psi for f in ordered], color=["C3" if f.drifted else "C0" for f in ordered])
    ax.axvline(result.thresholds["psi"], color="k", linestyle="--", linewidth=1, label="PSI threshold")
    ax.set_xlabel("PSI (red: drifted)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(directory / "psi.png")
    names.append("psi.png")
    names.append(_histogram(directory, "score", ref_scores, new_scores, "predicted score"))
    numeric = {f.name for f in result.features if f.kind == "numeric"}
    top = [f.name for f in sorted(result.features, key=lambda f: -f.psi) if f.name in numeric][:PLOTTED_FEATURES]
    for name in top:
        ref = numeric_values(reference.column(name))
        cur = numeric_values(current.column(name))
        names.append(_histogram(directory, f"feature_{name}", ref[~np.isnan(ref)], cur[~np.isnan(cur)], name))
    return names


def _histogram(directory: Path, stem: str, ref: np.ndarray, cur: np.ndarray, label: str) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    both = np.concatenate([ref, cur]) if len(ref) + len(cur) else np.zeros(1)
    edges = np.histogram_bin_edges(both, bins=40, range=(np.quantile(both, 0.005), np.quantile(both, 0.995)))
    ax.hist(ref, bins=edges.tolist(), density=True, alpha=0.5, label="training reference")
    ax.hist(cur, bins=edges.tolist(), density=True, alpha=0.5, label="new data")
    ax.set_xlabel(label)
    ax.legend()
    fig.tight_layout()
    fig.savefig(directory / f"{stem}.png")
    return f"{stem}.png"


def write_report(path: Path, result: DriftResult, plots: list[str], source: str) -> None:
    """Write the drift report page: verdict, thresholds, live metrics, the feature table and the plots."""
    t = result.thresholds
    rows = "".join(
        f"<tr{' class=drift' if f.drifted else ''}><td>{html.escape(f.name)}</td><td>{f.kind}</td><td>{f.test}</td>"
        f"<td>{f.statistic:.4g}</td><td>{f.p_value:.3g}</td><td>{f.q_value:.3g}</td><td>{f.psi:.4f}</td>"
        f"<td>{'yes' if f.drifted else ''}</td></tr>"
        for f in sorted(result.features, key=lambda f: -f.psi)
    )
    score = result.scores or {}
    live = result.live
    live_html = (
        f"<p>Live {live['metric']} on {live['rows']} labelled rows: {live['current']:.4f}"
        f" (test split at training: {live['reference']:.4f}; drop allowed {t['metric_drop']}).</p>"
        if live and live.get("current") is not None
        else "<p>No labels in the new data: no live metrics.</p>"
    )
    images = "".join(f'<img src="plots/{name}" alt="{html.escape(name)}">' for name in plots)
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in result.reasons) or "<li>nothing crossed a threshold</li>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Drift report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}td,th{{padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}}tr.drift{{background:#fdd}}img{{max-width:520px;margin:4px}}
.verdict{{font-size:1.4em;font-weight:bold}}</style></head><body>
<h1>Drift report</h1>
<p class="verdict">Verdict: {html.escape(result.verdict.replace("_", " "))}</p><ul>{reasons}</ul>
<p>New data: {html.escape(source)} ({result.rows["current"]} rows compared, {result.rows["scored"]} scored) against
{result.rows["reference"]} training rows.</p>
<p>Thresholds: a feature drifts when its two-sample test (KS numeric, chi-squared categorical) has a
Benjamini-Hochberg q-value below {t["alpha"]} <b>and</b> its PSI is at least {t["psi"]}; the verdict is drift
when {t["min_features"]} or more features drift, when the predicted scores drift by the same rule
(PSI {score.get("psi", 0):.4f}, KS p {score.get("p_value", 1):.3g}), or when the live metric drops by more
than {t["metric_drop"]}.</p>
{live_html}
<table><tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p</th><th>q (BH)</th><th>PSI</th>
<th>drifted</th></tr>{rows}</table>
<h2>Plots</h2>{images}
</body></html>
"""
    path.write_text(page)
