"""Ray Train v2 trainers without the per-fit helpers a scaleclf run does not need.

Every ``fit()`` of a Ray Train v2 trainer starts a controller actor, a synchronization actor and
the worker actors, and on top of them, by default:

- a detached ``PlacementGroupCleaner`` actor that frees the run's placement group should the
  controller die while the driver lives on. scaleclf's driver waits on the controller, and Ray
  removes a job's placement groups when the job ends;
- a resource request to Ray Data's detached ``AutoscalingCoordinator`` actor, which tells a
  cluster autoscaler about the training workers' demand. The controller waits for its answer
  before it starts the worker group. A local instance started by scaleclf has no autoscaler.

Each of those actors is a Python process that imports Ray before it answers: on a 2-core machine
~2.5–3 s on the critical path before the training loop runs and ~2.5–4 s of CPU per fit (measured
in BENCHMARKS.md). ``lean_trainer`` drops the cleaner unless ``engine.options.placement_group_cleaner``
is true, and the coordinator request when scaleclf started the Ray instance itself.

This module is imported by the Train controller (it unpickles ``LocalScalingPolicy``), so it
imports nothing of scaleclf's and nothing heavy.
"""

from __future__ import annotations

from typing import Any

from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy


class LocalScalingPolicy(FixedScalingPolicy):
    """A fixed-size worker group on an instance without an autoscaler: no coordinator requests."""

    def _send_resource_request(self) -> None:
        return None

    def _cancel_resource_request(self) -> None:
        return None


def lean_trainer(base: type, *, placement_group_cleaner: bool, local: bool) -> type:
    """Return a subclass of the Ray Train v2 trainer ``base`` without the helpers named above.

    ``placement_group_cleaner`` keeps Ray's cleaner actor; ``local`` (scaleclf started this Ray
    instance) replaces the fixed scaling policy by ``LocalScalingPolicy``.
    """

    def callbacks(trainer: Any) -> list[Any]:
        made = base._create_default_callbacks(trainer)  # type: ignore[attr-defined]
        if placement_group_cleaner:
            return list(made)
        return [cb for cb in made if not isinstance(cb, PlacementGroupCleanerCallback)]

    def run_controller(trainer: Any, **kwargs: Any) -> Any:
        policy = kwargs.get("scaling_policy")
        if local and type(policy) is FixedScalingPolicy:
            kwargs["scaling_policy"] = LocalScalingPolicy(policy.scaling_config)
        return base._initialize_and_run_controller(trainer, **kwargs)  # type: ignore[attr-defined]

    return type(
        f"Lean{base.__name__}",
        (base,),
        {"_create_default_callbacks": callbacks, "_initialize_and_run_controller": run_controller},
    )
