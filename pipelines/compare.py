"""``scaleclf compare``: one spec trained on several engines, judged by the same metrics on the same rows.

Every engine reads the same source, attaches the same row keys and split and hands its
predictions to the same evaluation, so the test metrics of the runs are directly comparable;
this module trains the spec (and, optionally, other catalog models) on each engine in turn and
tabulates every run's test metrics with its gap to the first engine's. A model an engine refuses
is listed with the reason; an engine that fails is listed with its one-line error and the
comparison goes on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, ScaleclfError
from pipelines.progress import Progress
from pipelines.spec import JobSpec, build_spec

METRICS = ("auc", "accuracy", "log_loss")


@dataclass
class Entry:
    """One model on one engine: its test metrics and timings, or why there are none."""

    model: str
    engine: str
    run_dir: str | None = None
    test: dict[str, float | None] | None = None
    gap: dict[str, float | None] | None = None  # engine minus the first engine, per metric
    fit_s: float | None = None
    total_s: float | None = None
    refused: str | None = None
    error: str | None = None


def _raw(spec: JobSpec) -> dict[str, Any]:
    return json.loads(spec.model_dump_json(exclude_none=True))


def spec_for(spec: JobSpec, model: str, engine: str, out: Path, addresses: dict[str, str]) -> JobSpec:
    """Return ``spec`` for ``model`` on ``engine``, writing under ``out``.

    The spec's model parameters apply to its own model (other models get the catalog's
    defaults); its engine section applies to its own engine (others get their defaults,
    ``engine.workers`` and an ``addresses`` entry).
    """
    raw = _raw(spec)
    if model != spec.model.name:
        raw["model"] = {k: v for k, v in raw["model"].items() if k not in ("params", "name")} | {"name": model}
    section = raw.get("engine", {})
    if section.get("name") != engine:
        section = {"name": engine} | ({"workers": section["workers"]} if section.get("workers") else {})
    if engine in addresses:
        section["address"] = addresses[engine]
    raw["engine"] = section
    raw["output"] = {**raw.get("output", {}), "dir": str(out / "runs"), "run_name": None}
    return build_spec(raw)


def compare(
    spec: JobSpec,
    engines: list[str],
    models: list[str],
    out: Path,
    addresses: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> list[Entry]:
    """Train every model on every engine; return one entry each, gaps against ``engines[0]``."""
    from pipelines.engines import ENGINE_MODULES, engine_models
    from pipelines.models.catalog import CATALOG
    from pipelines.run import train

    progress = progress or Progress(quiet=True)
    unknown = [e for e in engines if e not in ENGINE_MODULES]
    if not engines or unknown:
        known = ", ".join(ENGINE_MODULES)
        raise ConfigError(f"--engines: unknown engine {unknown[0] if unknown else '(none)'} (known: {known})")
    bad = [m for m in models if m not in CATALOG]
    if not models or bad:
        raise ConfigError(f"--models: unknown model {bad[0] if bad else '(none)'} (catalog: {', '.join(CATALOG)})")
    for engine in addresses or {}:
        if engine not in engines:
            raise ConfigError(f"--address: {engine} is not one of --engines ({', '.join(engines)})")
    refusals = {engine: engine_models(engine)[1] for engine in engines}
    addresses = addresses or {}
    entries: list[Entry] = []
    for model in models:
        reference: Entry | None = None
        for engine in engines:
            entry = Entry(model, engine)
            refused = refusals[engine].get(model)
            if refused:
                entry.refused = refused
            else:
                try:
                    job = spec_for(spec, model, engine, out, addresses)
                    with progress.stage(f"compare_{model}_{engine}", f"{model} on {engine}"):
                        run_dir = train(job, Progress(quiet=True))
                    metrics = json.loads((run_dir / "metrics.json").read_text())
                    entry.run_dir = str(run_dir)
                    entry.test = {m: metrics["test"].get(m) for m in METRICS}
                    entry.fit_s = metrics.get("timing", {}).get("fit_s")
                    entry.total_s = metrics.get("timing", {}).get("total_s")
                except ScaleclfError as exc:
                    entry.error = str(exc)
            if reference is None:
                reference = entry
            if entry.test and reference.test:
                entry.gap = {
                    m: (entry.test[m] - reference.test[m])  # type: ignore[operator]
                    if entry.test.get(m) is not None and reference.test.get(m) is not None
                    else None
                    for m in METRICS
                }
            entries.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(
        json.dumps({"engines": engines, "models": models, "entries": [asdict(e) for e in entries]}, indent=2)
    )
    return entries


def format_table(entries: list[Entry]) -> str:
    """Return the comparison as a fixed-width table (gaps against the first engine)."""

    def num(v: float | None, signed: bool = False) -> str:
        return "" if v is None else (f"{v:+.4f}" if signed else f"{v:.4f}")

    head = f"{'model':<20} {'engine':<7} {'test AUC':>9} {'gap':>8} {'accuracy':>9} {'gap':>8}"
    head += f" {'log loss':>9} {'fit s':>7}"
    lines = [head, "-" * len(head)]
    for e in entries:
        if e.test is None:
            why = f"refused: {e.refused}" if e.refused else f"error: {e.error}"
            lines.append(f"{e.model:<20} {e.engine:<7} {why}")
            continue
        gap = e.gap or {}
        lines.append(
            f"{e.model:<20} {e.engine:<7} {num(e.test['auc']):>9} {num(gap.get('auc'), True):>8}"
            f" {num(e.test['accuracy']):>9} {num(gap.get('accuracy'), True):>8} {num(e.test['log_loss']):>9}"
            f" {'' if e.fit_s is None else f'{e.fit_s:.1f}':>7}"
        )
    return "\n".join(lines)
