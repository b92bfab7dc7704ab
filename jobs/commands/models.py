"""``scaleclf models``: the model catalog with capabilities and the engines that run each model."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.commands import DebugOption, QuietOption

MatrixOption = Annotated[
    bool, typer.Option("--matrix", help="Print the support matrix (model x engine) as a Markdown table.")
]


def models(matrix: MatrixOption = False, quiet: QuietOption = False, debug: DebugOption = False) -> None:
    """Print every catalog model, what it can do, and how each engine runs it (or why not)."""
    if matrix:
        print(support_matrix())
        return
    from pipelines.engines import ENGINE_MODULES, available_engines, engine_models
    from pipelines.models.catalog import CATALOG

    engines = {name: engine_models(name) for name in available_engines()}
    for info in CATALOG.values():
        caps = ["binary", "multiclass" if info.multiclass else "", "sample weights" if info.sample_weights else ""]
        probs = "probabilities" if info.probabilities == "native" else "probabilities via Platt on valid"
        print(f"{info.name}: {info.summary}")
        print(f"  can: {', '.join(c for c in [*caps, probs] if c)}")
        print(f"  params: {', '.join(f'{k}={p.default}' for k, p in info.params.items())}")
        for name in ENGINE_MODULES:
            if name not in engines:
                print(f"  {name:<6} not available in this build")
                continue
            supported, refused = engines[name]
            how = supported.get(info.name) or f"refused: {refused.get(info.name, 'not implemented')}"
            print(f"  {name:<6} {how}")


def support_matrix() -> str:
    """Return the Markdown support matrix: each engine's implementation per model, refusals as footnotes."""
    from federated.support import federated_models
    from pipelines.engines import ENGINE_MODULES, engine_models
    from pipelines.models.catalog import CATALOG

    columns = {name: engine_models(name) for name in ENGINE_MODULES}
    columns["federated"] = federated_models()
    reasons: list[str] = []
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for model in CATALOG:
        cells = []
        for supported, refused in columns.values():
            if model in supported:
                cells.append(supported[model].replace("|", "\\|"))
                continue
            reason = refused.get(model, "not implemented")
            if reason not in reasons:
                reasons.append(reason)
            cells.append(f"refused ({reasons.index(reason) + 1})")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"({i}) {reason}." for i, reason in enumerate(reasons, 1)]
    return "\n".join(lines)
