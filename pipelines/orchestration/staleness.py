"""Which assets are stale or missing: Dagster's own resolver, the one its UI's "Materialize stale" uses.

Dagster exposes staleness publicly only to sensors and schedules (``RunRequest(stale_assets_only=
True)``), which need its daemon; the in-process CLI asks the same resolver directly. Its private
imports are fenced in this module; ``tests/test_pipeline_dagster.py`` fails when an upgrade moves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import DATA_VERSION_TAG, CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class AssetState:
    """An asset's status (fresh, stale or missing) and why it is stale."""

    key: dg.AssetKey
    status: str
    causes: tuple[str, ...]


def record_source_versions(instance: dg.DagsterInstance, versions: dict[dg.AssetKey, str]) -> None:
    """Record source data versions as run-less observations: what observing the source assets stores.

    The CLI computes the same hashes as the observable source assets (``assets.source_versions``)
    and so needs no observation run, which was a third of an up-to-date rerun's time.
    """
    for key, version in versions.items():
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, tags={DATA_VERSION_TAG: version}))


def asset_states(assets: Sequence[Any], instance: dg.DagsterInstance) -> list[AssetState]:
    """Return the state of every materialisable asset, in topological order."""
    graph = AssetGraph.from_assets(list(assets))
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    states = []
    for key in graph.toposorted_asset_keys:
        if key not in graph.materializable_asset_keys:
            continue
        status = resolver.get_status(key)
        causes = tuple(f"{c.key.asset_key.to_user_string()} {c.reason}" for c in resolver.get_stale_causes(key))
        states.append(AssetState(key, status.value.lower(), causes))
    return states


def downstream(assets: Sequence[Any], keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
    """Return ``keys`` and every asset downstream of them."""
    graph = AssetGraph.from_assets(list(assets))
    out = set(keys)
    for key in graph.toposorted_asset_keys:
        if key in graph.materializable_asset_keys and graph.get(key).parent_keys & out:
            out.add(key)
    return out


FRESH = StaleStatus.FRESH.value.lower()
