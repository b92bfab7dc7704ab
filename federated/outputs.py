"""The run directory of a federated run: the centralized layout plus history, partitions and report pages."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pipelines.artifacts import write_json
from pipelines.data.split import TEST, VALID
from pipelines.engines.local.engine import LocalData, LocalEngine
from pipelines.progress import Progress
from pipelines.run import Predictions, class_counts, evaluate_splits, save_model, split_rows, write_predictions

if TYPE_CHECKING:
    from federated.server_app import History
    from federated.simulation import FederatedJob


def _evaluate(job: FederatedJob, valid: Predictions, test: Predictions) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """Return (postprocess, test probabilities, {test, valid} metrics): the pipeline's own evaluation."""
    result = evaluate_splits(job.spec, job.ctx, valid, test)
    return result.post, result.p_test, result.metrics


def centralized_baseline(job: FederatedJob) -> dict[str, Any]:
    """Return the test/valid metrics of the same model trained by the local engine on the pooled rows."""
    from federated.simulation import split_predictions

    table = pa.concat_tables([*(c.table for c in job.federation.clients), job.federation.test])
    engine = LocalEngine(job.spec.engine, job.spec.seed)
    model = engine.fit(LocalData(table), job.ctx)
    _, _, metrics = _evaluate(job, split_predictions(job, model, VALID), split_predictions(job, model, TEST))
    return metrics


def write_outputs(job: FederatedJob, arrays: Any, history: History, tmp: Path, progress: Progress) -> dict[str, Any]:
    """Write metrics.json, predictions, model/, history.json, partitions.json and the report into ``tmp``."""
    from federated.partition import write_statistics
    from federated.simulation import final_model, split_predictions, utc_now

    spec, ctx, fed = job.spec, job.ctx, job.fed
    with progress.stage("predict_s", "predicted the valid and test splits with the global model"):
        model = final_model(job, arrays)
        valid = split_predictions(job, model, VALID)
        test = split_predictions(job, model, TEST)
    with progress.stage("evaluate_s", "evaluated"):
        post, p_test, split_metrics = _evaluate(job, valid, test)
        rounds = history.to_list()
        last = rounds[-1] if rounds else {}
        federated: dict[str, Any] = {
            "strategy": fed.strategy,
            "execution": fed.execution,
            "clients": fed.clients,
            "rounds": len([r for r in rounds if r["round"] > 0]),
            "rounds_requested": fed.rounds,
            "partition": fed.partition.model_dump(mode="json"),
            "preprocess": fed.preprocess,
            "final_federated_evaluation": last.get("federated_evaluation", {}),
            "bytes_sent": sum(r["bytes_sent"] for r in rounds),
            "bytes_received": sum(r["bytes_received"] for r in rounds),
            "failed_client_replies": sum(r["failed_train"] + r["failed_evaluate"] for r in rounds),
            "failed_rounds": [r["round"] for r in rounds if r["failed"]],
        }
        privacy = privacy_record(job, rounds)
        if privacy is not None:
            keys = (
                "dp",
                "secure_aggregation",
                "epsilon",
                "epsilon_rdp",
                "epsilon_pld",
                "delta",
                "accountant",
                "target_epsilon",
                "within_budget",
                "stopped_by_budget",
                "neighbouring",
                "preprocess",
            )
            federated["privacy"] = {k: privacy[k] for k in keys if k in privacy}
        if fed.centralized_baseline:
            baseline = centralized_baseline(job)
            federated["centralized_baseline"] = baseline
            federated["gap"] = {
                k: _gap(split_metrics["test"].get(k), baseline["test"].get(k)) for k in ("auc", "accuracy", "log_loss")
            }
        metrics: dict[str, Any] = {
            "engine": "federated",
            "model": job.info.name,
            "task": ctx.task.kind,
            "dataset": spec.data.source,
            "classes": [str(c) for c in ctx.task.classes],
            "rows": split_rows(job.federation.profile),
            "class_counts": class_counts(job.federation.profile),
            **split_metrics,
            "threshold": post.threshold.to_dict() if post.threshold else None,
            "calibration": spec.model.calibration,
            "params": ctx.params,
            "dropped_columns": list(ctx.preprocessor.dropped),
            "engine_info": {"engine": "federated", "flower": _flwr_version(), "simulation": _simulation(fed.execution)},
            "federated": federated,
            "created": utc_now(),
        }
    with progress.stage("write_s", "wrote the model, predictions, history and partitions"):
        (tmp / "spec.yaml").write_text(spec.to_yaml())
        # The global model is saved in the local engine's format so predict/evaluate reload it.
        save_model(tmp / "model", model, ctx, post, job.plan, spec, "local")
        write_predictions(tmp / "predictions.parquet", test, p_test, ctx.task, post.decision_threshold)
        write_json(tmp / "history.json", {"strategy": fed.strategy, "clients": fed.clients, "rounds": rounds})
        stats = write_statistics(tmp / "partitions.json", job.federation, fed)
        if privacy is not None:
            write_json(tmp / "privacy.json", privacy)
    if spec.output.report:
        metrics["timing"] = _timing(progress, job)
        with progress.stage("report_s", "wrote the report"):
            _write_report(tmp, job, metrics, test.y, p_test, rounds, stats)
    metrics["timing"] = _timing(progress, job)
    write_json(tmp / "metrics.json", metrics)
    return metrics


def privacy_record(job: FederatedJob, rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return privacy.json (None when neither DP nor secure aggregation is on): epsilon actually spent."""
    plan = job.privacy
    if not plan.on and not plan.secure_aggregation:
        return None
    trained = [r for r in rounds if r["round"] > 0]
    replies = [0 if r["failed"] else r["train_replies"] for r in trained] if plan.dp == "distributed" else None
    # Which preprocessing statistics the model was fitted with: only "given" ones are not data-dependent.
    return {**plan.to_json(len(trained), replies), "preprocess": job.fed.preprocess}


def _simulation(execution: str) -> str:
    """Return how the clients ran, in words (federated.execution)."""
    return "batched NumPy clients in one process" if execution == "batched" else "in-process Ray"


def _gap(fed: float | None, central: float | None) -> float | None:
    return None if fed is None or central is None else round(fed - central, 6)


def _timing(progress: Progress, job: FederatedJob) -> dict[str, float]:
    import time

    return {
        **{k: round(v, 4) for k, v in progress.timings.items()},
        "total_s": round(time.perf_counter() - job.started, 4),
    }


def _flwr_version() -> str:
    from importlib.metadata import version

    return version("flwr")


def _png(fig: Any, path: Path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(path.stem)}' style='max-width:720px' src='data:image/png;base64,{data}'>"


def learning_curve_html(rounds: list[dict[str, Any]], plots: Path) -> str:
    """Return the learning-curve page: test metrics and federated validation per round."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2)
    xs = [r["round"] for r in rounds]
    for key in ("auc", "accuracy"):
        ys = [r["centralized_evaluation"].get(key) for r in rounds]
        if any(y is not None for y in ys):
            left.plot(xs, [np.nan if y is None else y for y in ys], marker="o", label=f"test {key}")
    fed_acc = [(r["round"], r["federated_evaluation"].get("accuracy")) for r in rounds if r["federated_evaluation"]]
    if fed_acc:
        left.plot(*zip(*fed_acc, strict=True), marker="s", linestyle="--", label="client valid accuracy")
    left.set(xlabel="round", title="Global model by round")
    left.legend(fontsize=8)
    for key, label in (("train_metrics", "client train loss"), ("federated_evaluation", "client valid loss")):
        pts = [(r["round"], r[key].get("loss", r[key].get("train-loss"))) for r in rounds if r[key]]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            right.plot(*zip(*pts, strict=True), marker="o", label=label)
    test_loss = [(r["round"], r["centralized_evaluation"].get("log_loss")) for r in rounds]
    if any(v is not None for _, v in test_loss):
        right.plot(*zip(*[p for p in test_loss if p[1] is not None], strict=True), marker="^", label="test log loss")
    right.set(xlabel="round", title="Loss")
    right.legend(fontsize=8)
    image = _png(fig, plots / "learning_curve.png")
    header = "<tr><th>round</th><th>clients</th><th>failed</th><th>test auc</th><th>valid acc</th>"
    header += "<th>sent MB</th><th>received MB</th><th>s</th></tr>"
    body = "".join(
        f"<tr><td>{r['round']}</td><td>{r['train_replies']}{' (failed)' if r['failed'] else ''}</td>"
        f"<td>{r['failed_train']}</td>"
        f"<td>{_f(r['centralized_evaluation'].get('auc'))}</td><td>{_f(r['federated_evaluation'].get('accuracy'))}</td>"
        f"<td>{r['bytes_sent'] / 1e6:.3f}</td><td>{r['bytes_received'] / 1e6:.3f}</td>"
        f"<td>{r['duration_s']:.2f}</td></tr>"
        for r in rounds
    )
    return f"{image}<table>{header}{body}</table>"


def privacy_curve_html(rounds: list[dict[str, Any]], plots: Path) -> str:
    """Return the utility-against-epsilon plot: the global model's test metrics at the epsilon spent by each round."""
    from matplotlib.figure import Figure

    pts = [(r["epsilon"]["rdp"], r["epsilon"]["pld"], r["centralized_evaluation"]) for r in rounds if r.get("epsilon")]
    if not pts:
        return ""
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    for metric in ("auc", "accuracy"):
        ys = [m.get(metric) for _, _, m in pts]
        if any(y is not None for y in ys):
            ax.plot([e for e, _, _ in pts], ys, marker="o", label=f"test {metric} (epsilon rdp)")
    ax.set(xlabel="epsilon spent (rdp)", ylabel="test metric", title="Utility against epsilon, round by round")
    ax.legend(fontsize=8)
    return _png(fig, plots / "privacy_curve.png")


def partitions_html(stats: dict[str, Any], plots: Path) -> str:
    """Return the partition page: label histogram per client and a size table."""
    from matplotlib.figure import Figure

    clients = stats["clients"]
    classes = stats["classes"]
    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    bottom = np.zeros(len(clients))
    for cls in classes:
        counts = np.array([c["labels"].get(cls, 0) for c in clients], dtype=float)
        ax.bar([c["client"] for c in clients], counts, bottom=bottom, label=str(cls)[:20])
        bottom += counts
    ax.set(xlabel="client", ylabel="train rows", title=f"Partition ({stats['scheme']['scheme']}): labels per client")
    if len(classes) <= 10:
        ax.legend(fontsize=8)
    image = _png(fig, plots / "partitions.png")
    shown = clients[:50]
    header = "<tr><th>client</th><th>train</th><th>valid</th>" + "".join(
        f"<th>{html.escape(c)}</th>" for c in classes[:10]
    )
    body = "".join(
        f"<tr><td>{c['client']}</td><td>{c['train_rows']}</td><td>{c['valid_rows']}</td>"
        + "".join(f"<td>{c['labels'].get(k, 0)}</td>" for k in classes[:10])
        + "</tr>"
        for c in shown
    )
    more = f"<p>{len(clients) - len(shown)} more clients in partitions.json</p>" if len(clients) > len(shown) else ""
    return f"{image}<table>{header}</tr>{body}</table>{more}"


def _f(v: Any) -> str:
    return "—" if v is None else f"{v:.4f}"


def _write_report(
    tmp: Path,
    job: FederatedJob,
    metrics: dict[str, Any],
    y: np.ndarray,
    proba: np.ndarray,
    rounds: list[dict[str, Any]],
    stats: dict[str, Any],
) -> None:
    from pipelines.evaluation.report import ReportSection, write_report

    fed = metrics["federated"]
    sections = [
        ReportSection(
            f"Federated learning curve ({fed['strategy']}, {fed['clients']} clients)",
            learning_curve_html(rounds, tmp / "plots"),
        ),
        ReportSection("Partition statistics", partitions_html(stats, tmp / "plots")),
    ]
    if "centralized_baseline" in fed:
        base = fed["centralized_baseline"]["test"]
        rows = "".join(
            f"<tr><td>{k}</td><td>{_f(metrics['test'].get(k))}</td><td>{_f(base.get(k))}</td><td>{_f(fed['gap'].get(k))}</td></tr>"
            for k in ("auc", "accuracy", "log_loss")
        )
        sections.append(
            ReportSection(
                "Federated vs centralized (pooled rows, local engine)",
                f"<table><tr><th>test metric</th><th>federated</th><th>centralized</th><th>gap</th></tr>{rows}</table>",
            )
        )
    if "privacy" in fed:
        priv = fed["privacy"]
        cells = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in priv.items()
        )
        curve = privacy_curve_html(rounds, tmp / "plots")
        sections.append(
            ReportSection("Privacy (privacy.json has the full accounting)", f"<table>{cells}</table>{curve}")
        )
    write_report(
        tmp,
        metrics=metrics,
        spec_yaml=job.spec.to_yaml(),
        y=y,
        proba=proba,
        classes=[str(c) for c in job.ctx.task.classes],
        sections=sections,
    )
