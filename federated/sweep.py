"""``scaleclf federate SPEC --sweep KEY=V1,V2,...``: one run per value, utility against epsilon.

Every value gets its own complete run directory; the sweep directory beside them
(``<output.dir>/<name>-sweep-<time>``) holds ``sweep.json`` (per value: epsilon under both
accountants, rounds run, test metrics, run directory) and ``sweep.png`` (test AUC and accuracy
against epsilon).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError
from pipelines.progress import Progress


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """Return the key and the values of ``KEY=V1,V2,...``; raise a ConfigError naming the option."""
    key, sep, rest = text.partition("=")
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if not sep or not key.strip() or not values:
        raise ConfigError(f"config error: --sweep: expected KEY=V1,V2,... (got {text!r})")
    return key.strip(), values


def run_sweep(config: Path, overrides: list[str], key: str, values: list[str], progress: Progress) -> Path:
    """Run the spec once per value of ``key``; return the sweep directory with sweep.json and sweep.png."""
    from federated.simulation import federate
    from pipelines.artifacts import write_json
    from pipelines.spec import load_spec

    points: list[dict[str, Any]] = []
    parent = None
    for value in values:
        spec = load_spec(config, [*overrides, f"{key}={value}"])
        parent = Path(spec.output.dir)
        run = federate(spec, progress)
        metrics = json.loads((run / "metrics.json").read_text())
        privacy = metrics["federated"].get("privacy", {})
        point = {
            "value": value,
            "epsilon": privacy.get("epsilon"),
            "epsilon_rdp": privacy.get("epsilon_rdp"),
            "epsilon_pld": privacy.get("epsilon_pld"),
            "rounds": metrics["federated"]["rounds"],
            "test": {k: metrics["test"].get(k) for k in ("auc", "accuracy", "log_loss")},
            "run": str(run),
        }
        points.append(point)
        eps = "—" if point["epsilon"] is None else f"{point['epsilon']:.3f}"
        progress.note(f"{key}={value}: epsilon {eps}, {point['rounds']} rounds, test auc {point['test']['auc']:.4f}")
    assert parent is not None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = parent / f"{load_spec(config, overrides).name}-sweep-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"key": key, "points": points})
    plot_sweep(points, key, out / "sweep.png")
    return out


def plot_sweep(points: list[dict[str, Any]], key: str, path: Path) -> None:
    """Write test AUC and accuracy against epsilon (values named beside the points)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    shown = [p for p in points if p["epsilon"] is not None]
    for metric in ("auc", "accuracy"):
        ax.plot([p["epsilon"] for p in shown], [p["test"][metric] for p in shown], marker="o", label=f"test {metric}")
    for p in shown:
        ax.annotate(
            str(p["value"]), (p["epsilon"], p["test"]["auc"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set(xlabel="epsilon spent", ylabel="test metric", title=f"Utility against epsilon ({key.split('.')[-1]})")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
