"""The Ray engine's fence around Ray's private API (upgrade checks), what it trims from each Ray Train fit,
and how training workers get their rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy
from ray.train.v2.api.config import RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from pipelines.engines.ray.engine import RayEngine, ingest_mode
from pipelines.engines.ray.internals import LocalScalingPolicy
from pipelines.run import train
from pipelines.spec import build_spec
from tests.conftest import REPO


class _Trainer:
    """Stands in for a Ray Train v2 trainer where running its controller would need a cluster."""

    def _create_default_callbacks(self) -> list[Any]:
        return []

    def _initialize_and_run_controller(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs


def test_ray_still_has_every_private_name_the_fence_uses() -> None:
    # pipelines/engines/ray/internals.py is the only module touching Ray's private API; a Ray upgrade
    # that moves one of these would silently bring back what it works around (the cleaner, the
    # autoscaler requests, a local instance listening on the machine's address).
    import ray._private.ray_constants as constants
    from ray.experimental import get_object_locations

    assert callable(DataParallelTrainer._create_default_callbacks)
    assert callable(DataParallelTrainer._initialize_and_run_controller)
    assert callable(DataParallelTrainer._register_sigint_handler)
    assert callable(FixedScalingPolicy._send_resource_request)
    assert callable(FixedScalingPolicy._cancel_resource_request)
    assert isinstance(constants.ENABLE_RAY_CLUSTER, bool)
    assert callable(get_object_locations)


def _engine(**options: Any) -> RayEngine:
    job = build_spec(
        {
            "name": "lean",
            "data": {"source": "synthetic:higgs", "label": "label"},
            "model": {"name": "xgboost"},
            "engine": {"name": "ray", "options": options},
        }
    )
    return RayEngine(job.engine, 0)


@pytest.mark.parametrize("keep", [False, True])
def test_the_engines_trainers_start_no_cleaner_unless_asked_for(tmp_path: Path, keep: bool) -> None:
    # Ray's own trainer and callback list, through the engine: nothing needs a running Ray.
    options = {"placement_group_cleaner": True} if keep else {}
    trainer = _engine(**options)._trainer_class(DataParallelTrainer)(
        lambda: None, scaling_config=ScalingConfig(num_workers=1), run_config=RunConfig(storage_path=str(tmp_path))
    )
    made = trainer._create_default_callbacks()
    assert any(isinstance(cb, PlacementGroupCleanerCallback) for cb in made) is keep
    assert any(type(cb).__name__ == "BackendSetupCallback" for cb in made)  # the rest is Ray's, untouched


def test_only_a_local_instance_skips_the_autoscaler_requests() -> None:
    policy = FixedScalingPolicy(ScalingConfig(num_workers=2))
    engine = _engine()
    engine._local = True  # what on_start sets after starting its own instance
    swapped = engine._trainer_class(_Trainer)()._initialize_and_run_controller(scaling_policy=policy)
    assert type(swapped["scaling_policy"]) is LocalScalingPolicy
    assert swapped["scaling_policy"].scaling_config.num_workers == 2
    assert swapped["scaling_policy"]._send_resource_request() is None  # no AutoscalingCoordinator actor
    engine._local = False  # joined a cluster (engine.address, ray job submit): Ray's own policy
    kept = engine._trainer_class(_Trainer)()._initialize_and_run_controller(scaling_policy=policy)
    assert kept["scaling_policy"] is policy


@pytest.mark.parametrize(
    ("setting", "blocks", "workers", "used"),
    [
        ("blocks", 2, 1, "blocks"),
        ("blocks", 2, 2, "blocks"),
        ("blocks", 1, 2, "fragments"),  # fewer blocks than workers
        ("blocks", 3, 2, "fragments"),  # uneven shares
        ("fragments", 2, 2, "fragments"),
        ("dataset", 2, 2, "dataset"),
    ],
)
def test_workers_take_blocks_only_where_they_divide_evenly(setting: str, blocks: int, workers: int, used: str) -> None:
    assert ingest_mode(setting, blocks, workers) == used


def test_the_train_loop_imports_xgboost_without_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from pipelines.engines.ray.train_loops import import_xgboost_alone\n"
        "xgb = import_xgboost_alone()\n"
        "assert 'sklearn' not in sys.modules, 'sklearn was imported'\n"
        "import sklearn\n"  # still importable afterwards
        "print(xgb.__name__, sklearn.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["xgboost", "sklearn"]


def test_fresh_local_xgboost_fit_takes_the_loaded_blocks(tmp_path: Path) -> None:
    # A fresh local instance (no engine.address): the lean trainer and the single-worker backend;
    # both ingests train on the same rows in the same order, so they grow the same trees.
    aucs = {}
    for ingest in ("blocks", "fragments"):
        job = {
            "name": "lean",
            "seed": 3,
            "data": {"source": "synthetic:higgs", "label": "label", "rows": 30000},
            "model": {"name": "xgboost", "params": {"n_estimators": 30}},
            "engine": {"name": "ray", "workers": 1, "options": {"ingest": ingest, "num_cpus": 2}},
            "output": {"dir": str(tmp_path), "report": False},
        }
        facts = json.loads((train(build_spec(job)) / "metrics.json").read_text())
        assert facts["engine_info"]["address"] == "local"
        assert facts["engine_info"]["last_fit"]["ingest"] == ingest
        assert facts["engine_info"]["last_fit"]["round"] == 30
        aucs[ingest] = facts["test"]["auc"]
    assert aucs["blocks"] == pytest.approx(aucs["fragments"], abs=1e-12)
