"""``scaleclf bench``: the same spec through scaleclf and through a raw-engine baseline, alternating.

Every measurement runs in a fresh child process (one process tree per run, so caches and
JIT warm-up do not favour either side). The parent samples the child tree's resident memory
for the peak. The pipeline child runs ``pipelines.run.train`` without the HTML report; the
raw child is a standalone script in ``jobs/raw_baselines/<engine>.py`` that imports no
scaleclf code: it reads the same Parquet files, splits, scales, fits the same model with
the same parameters directly against the engine and computes AUC with scikit-learn.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipelines.errors import ConfigError, EngineError
from pipelines.progress import Progress
from pipelines.spec import JobSpec, build_spec

RAW_DIR = Path(__file__).resolve().parent.parent / "jobs" / "raw_baselines"


@dataclass
class Measurement:
    """One child run: what it reported plus the peak memory of its process tree."""

    kind: str  # "pipeline" or "raw"
    seconds: float | None
    auc: float | None
    peak_rss_mb: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_child(
    cmd: list[str], kind: str, timeout: float, payload: str | None = None, memory_cap: int | None = None
) -> Measurement:
    """Return the Measurement of one child command that prints a JSON result as its last line.

    ``payload`` (the spec or the baseline's arguments, JSON) goes to the child's stdin, not its
    command line, where every user of the machine could read the secrets it may hold (``ps``).
    ``memory_cap`` (bytes) runs the child under ``pipelines.memory_cap.MemoryCap``.
    """
    from pipelines.memory_cap import MemoryCap

    cap = MemoryCap(memory_cap) if memory_cap else None
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            preexec_fn=cap.enter if cap else None,
        )
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            ps = psutil.Process(child.pid)
            while not stop.is_set():
                try:
                    peak = max(peak, _tree_rss(ps))
                except psutil.Error:
                    return
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out, _ = child.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, _ = child.communicate()
        finally:
            stop.set()
            sampler.join()
            if cap is not None:
                cap.close()
        err.seek(0)
        tail = err.read().strip().splitlines()[-1:] or [""]
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        return Measurement(kind, None, None, peak / 2**20, error=f"exit {child.returncode}: {tail[0][:300]}")
    result = json.loads(lines[-1])
    return Measurement(kind, result["seconds"], result.get("auc"), peak / 2**20, detail=result)


def _pipeline_cmd(spec: JobSpec) -> tuple[list[str], str]:
    return [sys.executable, "-m", "pipelines.bench", "child"], json.dumps(spec.model_dump(mode="json"))


def _raw_cmd(engine: str, spec: JobSpec, source_paths: list[str]) -> tuple[list[str], str]:
    script = RAW_DIR / f"{engine}.py"
    if not script.is_file():
        raise ConfigError(f"--engines: no raw baseline for engine {engine} ({script} is missing)")
    args = {
        "paths": source_paths,
        "label": spec.data.label,
        "model": spec.model.name,
        "params": _resolved_params(spec),
        "seed": spec.seed,
        "test_fraction": spec.data.split.test,
        "valid_fraction": spec.data.split.valid,
        "address": spec.engine.address,
        "workers": spec.engine.workers,
        "options": spec.engine.options,
    }
    return [sys.executable, str(script)], json.dumps(args)


def _resolved_params(spec: JobSpec) -> dict[str, Any]:
    from pipelines.models.catalog import get_model

    return get_model(spec.model.name).resolve_params(spec.model.params)


def bench(
    spec: JobSpec,
    engines: list[str],
    rows: list[int | None],
    out: Path,
    repeats: int = 3,
    timeout: float = 3600.0,
    progress: Progress | None = None,
    baselines: list[str] | None = None,
    memory_cap: int | None = None,
) -> dict[str, Any]:
    """Run pipeline and raw children alternately per engine and size; write bench.json and a plot.

    ``baselines`` names the engines whose raw baseline runs (default: every engine); the others
    time only the pipeline (the naive Ray Train baseline alone takes ~450 s at 1M rows). Each row
    also gives its pipeline against the single-process baseline (local raw) of the same size,
    where that ran. ``memory_cap`` (bytes) runs every child under that cap
    (``pipelines.memory_cap``); with several sizes a log-log plot of time and peak memory
    against rows is written beside the bar chart (``bench_scaling.png``).
    """
    from pipelines.data.sources import resolve_source

    progress = progress or Progress(quiet=True)
    with_raw = set(engines if baselines is None else baselines)
    unknown = sorted(with_raw - set(engines))
    if unknown:
        raise ConfigError(f"--baselines: {unknown[0]} is not one of --engines ({', '.join(engines)})")
    results = []
    picks = []
    with tempfile.TemporaryDirectory(prefix="scaleclf-bench-") as scratch:
        for n in rows:
            raw = spec.model_dump(mode="json")
            if n is not None:
                raw["data"]["rows"] = n
            for engine in engines:
                raw["engine"]["name"] = engine
                raw["output"] = {**raw["output"], "dir": str(Path(scratch) / "runs"), "report": False, "mlflow": False}
                job = build_spec(raw)
                with progress.stage("prepare_s", f"prepared {job.data.source} ({n or 'all'} rows)"):
                    source = resolve_source(
                        job.data.source, rows=job.data.rows, generator_seed=job.data.generator_seed, fmt=job.data.format
                    )
                runs: dict[str, list[Measurement]] = {"pipeline": [], "raw": []}
                for r in range(repeats):
                    # Alternate which side goes first so drift (thermal, caches) hits both.
                    order = ["pipeline", "raw"] if r % 2 == 0 else ["raw", "pipeline"]
                    for kind in order if engine in with_raw else ["pipeline"]:
                        cmd, payload = (
                            _pipeline_cmd(job) if kind == "pipeline" else _raw_cmd(engine, job, list(source.paths))
                        )
                        with progress.stage("run_s", f"{engine} {kind} repeat {r + 1}/{repeats}"):
                            m = run_child(cmd, kind, timeout, payload, memory_cap)
                        if m.error:
                            progress.warn(f"{engine} {kind} failed: {m.error}")
                        runs[kind].append(m)
                results.append(_summarise(engine, job, n, runs))
            picks.append(_auto_pick(job, engines, [r for r in results if r["rows"] == n], memory_cap))
        _versus_single_process(results)
    report = {
        "spec": spec.name,
        "model": spec.model.name,
        "dataset": spec.data.source,
        "repeats": repeats,
        "baselines": sorted(with_raw),
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "memory_cap": None if memory_cap is None else {"bytes": memory_cap, "how": _cap_kind(memory_cap)},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
        "auto": picks,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    _plot(report, out / "bench.png")
    if len({r["rows"] for r in results}) > 1:
        _plot_scaling(report, out / "bench_scaling.png")
    if all(r["pipeline_s"] is None for r in results):
        raise EngineError(f"every pipeline run failed; see {out / 'bench.json'}")
    return report


def _auto_pick(job: JobSpec, engines: list[str], measured: list[dict[str, Any]], cap: int | None) -> dict[str, Any]:
    """Return the engine ``engine.name: auto`` picks among the benched ones for this size, and the fastest measured."""
    from pipelines.cost import estimate, plan_rows

    rows, columns = plan_rows(job)
    memory = int(0.8 * cap) if cap else job.resources.memory_bytes
    estimates = [estimate(e, job.model.name, rows, columns, memory) for e in engines]
    fitting = [e for e in estimates if e.peak_mb * 2**20 <= memory] or estimates
    picked = min(fitting, key=lambda e: e.seconds).engine
    timed = {r["engine"]: r["pipeline_s"] for r in measured if r["pipeline_s"]}
    fastest = min(timed, key=timed.__getitem__) if timed else None
    return {
        "rows": rows,
        "picked": picked,
        "fastest": fastest,
        "picked_over_fastest": timed[picked] / timed[fastest] if fastest and picked in timed else None,
    }


def _median(values: list[float | None]) -> float | None:
    ok = [v for v in values if v is not None]
    return statistics.median(ok) if ok else None


def _summarise(engine: str, job: JobSpec, n: int | None, runs: dict[str, list[Measurement]]) -> dict[str, Any]:
    pipe = _median([m.seconds for m in runs["pipeline"]])
    raw = _median([m.seconds for m in runs["raw"]])
    return {
        "engine": engine,
        "rows": n,
        "model": job.model.name,
        "pipeline_s": pipe,
        "raw_s": raw,
        "ratio": pipe / raw if pipe and raw else None,
        "pipeline_auc": _median([m.auc for m in runs["pipeline"]]),
        "raw_auc": _median([m.auc for m in runs["raw"]]),
        "pipeline_peak_mb": max(m.peak_rss_mb for m in runs["pipeline"]),
        "raw_peak_mb": max((m.peak_rss_mb for m in runs["raw"]), default=None),
        "runs": {k: [m.__dict__ for m in v] for k, v in runs.items()},
    }


def _versus_single_process(results: list[dict[str, Any]]) -> None:
    """Set each result's ``vs_single``: its pipeline seconds over the local raw baseline's, same size."""
    single = {r["rows"]: r["raw_s"] for r in results if r["engine"] == "local" and r["raw_s"]}
    for r in results:
        base = single.get(r["rows"])
        r["vs_single"] = r["pipeline_s"] / base if base and r["pipeline_s"] else None


def format_table(report: dict[str, Any]) -> str:
    """Return the bench results as an aligned text table."""

    def f(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    head = (
        f"{'engine':<8} {'rows':>9} {'pipeline s':>11} {'raw s':>9} {'ratio':>6} {'x single':>8} "
        f"{'AUC pipe':>9} {'AUC raw':>8} {'peak MB p/r':>14}"
    )
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        lines.append(
            f"{r['engine']:<8} {f(r['rows'], 'd'):>9} {f(r['pipeline_s'], '.2f'):>11} {f(r['raw_s'], '.2f'):>9} "
            f"{f(r['ratio'], '.3f'):>6} {f(r.get('vs_single'), '.2f'):>8} {f(r['pipeline_auc'], '.4f'):>9} "
            f"{f(r['raw_auc'], '.4f'):>8} {f(r['pipeline_peak_mb'], '.0f'):>6}/{f(r['raw_peak_mb'], '.0f'):<6}"
        )
    for pick in report.get("auto", []):
        ratio = pick["picked_over_fastest"]
        lines.append(
            f"engine.name auto at {pick['rows']} rows picks {pick['picked']}"
            f" (fastest measured: {pick['fastest'] or '—'}, {f(ratio, '.2f')}x)"
        )
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = report["results"]
    labels = [f"{r['engine']}\n{r['rows'] or ''}" for r in results]
    xs = range(len(results))
    fig = Figure(figsize=(max(6.5, 1.6 * len(results)), 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar([x - 0.2 for x in xs], [r["pipeline_s"] or 0 for r in results], width=0.4, label="scaleclf")
    ax.bar([x + 0.2 for x in xs], [r["raw_s"] or 0 for r in results], width=0.4, label="raw engine")
    for x, r in zip(xs, results, strict=True):
        if r["ratio"]:
            ax.annotate(f"{r['ratio']:.2f}x", (x, max(r["pipeline_s"] or 0, r["raw_s"] or 0)), ha="center", va="bottom")
    ax.margins(y=0.3)  # room above the tallest bar for its ratio label and the legend
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("median seconds")
    ax.set_title(f"scaleclf vs raw engine\n{report['model']} on {report['dataset']}", fontsize=11)
    ax.legend(loc="upper left", fontsize=9)
    fig.savefig(path, metadata={"Software": None})


def _cap_kind(limit: int) -> str:
    from pipelines.memory_cap import MemoryCap

    cap = MemoryCap(limit)
    try:
        return cap.kind
    finally:
        cap.close()


def _plot_scaling(report: dict[str, Any], path: Path) -> None:
    """Write a log-log plot of median seconds and peak memory against rows, one line per engine."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for engine in dict.fromkeys(r["engine"] for r in report["results"]):
        rows = sorted((r for r in report["results"] if r["engine"] == engine and r["rows"]), key=lambda r: r["rows"])
        timed = [r for r in rows if r["pipeline_s"]]
        axes[0].plot([r["rows"] for r in timed], [r["pipeline_s"] for r in timed], "o-", label=engine)
        axes[1].plot([r["rows"] for r in rows], [r["pipeline_peak_mb"] for r in rows], "o-", label=engine)
    for ax, label in zip(axes, ("median seconds", "peak MB (process tree)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows")
        ax.set_ylabel(label)
        ax.legend(fontsize=9)
    cap = report.get("memory_cap")
    peaks = [r["pipeline_peak_mb"] for r in report["results"]] + ([cap["bytes"] / 2**20] if cap else [])
    # At least a decade of memory: a flat line must look flat, not fill the panel.
    axes[1].set_ylim(min(100.0, min(peaks) / 2), max(peaks) * 2)
    if cap:
        axes[1].axhline(cap["bytes"] / 2**20, color="grey", linestyle="--", linewidth=1, label="memory cap")
        axes[1].legend(fontsize=9)
    capped = f", capped at {cap['bytes'] / 2**30:.1f} GiB ({cap['how']})" if cap else ""
    fig.suptitle(f"{report['model']} on {report['dataset']}{capped}", fontsize=11)
    fig.savefig(path, metadata={"Software": None})


def _child(spec_json: str) -> None:
    from pipelines.engines import create_engine
    from pipelines.run import train

    spec = build_spec(json.loads(spec_json))
    create_engine(spec.engine, spec.seed).preload(spec.model.name)
    start = time.perf_counter()
    run_dir = train(spec)
    seconds = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(
        json.dumps(
            {
                "seconds": seconds,
                "auc": metrics["test"].get("auc"),
                "timing": metrics["timing"],
                "rows": metrics["rows"],
                "layout": metrics.get("engine_info", {}).get("memory", {}).get("layout"),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "child":
        from pipelines.process_exit import run_main

        run_main(_child, sys.stdin.read())
    else:
        sys.exit("usage: python -m pipelines.bench child < SPEC_JSON")
