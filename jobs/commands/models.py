"""``scaleclf models``: the model catalog with capabilities and the engines that run each model."""

from __future__ import annotations


def models() -> None:
    """Print every catalog model, what it can do, and how each engine runs it (or why not)."""
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
