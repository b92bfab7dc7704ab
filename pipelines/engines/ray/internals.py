"""The Ray engine's only use of Ray's private API, fenced here with an upgrade test (tests/ray/test_ray_internals.py).

Three things Ray's public API does not offer: a local instance that listens on 127.0.0.1 only
(``loopback_only``, through ``ray._private.ray_constants``), where an object's copies are
(``object_nodes``, ``ray.experimental.get_object_locations``), and Ray Train v2 trainers without
the per-fit helpers a scaleclf run does not need (``lean_trainer``, ``ray.train.v2._internal``).

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

A v2 trainer's ``fit()`` also replaces the process's SIGINT handler with one that asks the
controller to abort and then calls ``sys.exit(0)`` from inside ``ray.get``, whose signal check
turns a ``SystemExit`` into an unexpected exit: the command exited 1 without a word.
``lean_trainer`` leaves the driver's handlers alone (the engine makes both signals a
``KeyboardInterrupt`` around the fit, which ends ``ray.get`` at once) and, when the wait is
interrupted, stops the run itself (``stop_controller``) before the interrupt goes on: the
controller aborts its worker group, or is killed after ``ABORT_WAIT_S``.

This module is imported by the Train controller (it unpickles ``LocalScalingPolicy``), so it
imports nothing of scaleclf's and nothing heavy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.train.v2._internal.execution.scaling_policy.fixed import FixedScalingPolicy

ABORT_WAIT_S = 5.0  # how long an interrupted driver waits for the controller's graceful abort


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
        try:
            return base._initialize_and_run_controller(trainer, **kwargs)  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            controller = getattr(trainer, "_lean_controller", None)
            if controller is not None:
                stop_controller(controller)
            raise

    def keep_signal_handlers(trainer: Any, controller: Any) -> None:
        trainer._lean_controller = controller  # what run_controller stops when interrupted

    return type(
        f"Lean{base.__name__}",
        (base,),
        {
            "_create_default_callbacks": callbacks,
            "_initialize_and_run_controller": run_controller,
            "_register_sigint_handler": keep_signal_handlers,
        },
    )


def stop_controller(controller: Any, wait_s: float = ABORT_WAIT_S) -> None:
    """Abort a Train run's controller (it aborts its worker group, then exits), killing it after ``wait_s``."""
    import ray

    try:
        ray.wait([controller.abort.remote()], timeout=wait_s)
    finally:
        with contextlib.suppress(Exception):  # it may have exited already
            ray.kill(controller, no_restart=True)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make a local Ray started inside this block register and listen on 127.0.0.1 only.

    Ray replaces a node address of 127.0.0.1 by the machine's network address (the one routed
    to the internet) unless it believes the platform is single-node (``ENABLE_RAY_CLUSTER``
    false, as on macOS/Windows), so ``_node_ip_address="127.0.0.1"`` alone leaves the GCS,
    raylet and workers of a local instance on e.g. eth0's address. A private local instance
    never takes other nodes, so it is declared single-node while it starts (the node keeps the
    address afterwards). ``ray start`` clusters (infra/ray) keep their ``--node-ip-address``.
    """
    import ray._private.ray_constants as constants

    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before


def object_nodes(refs: list[Any]) -> list[list[str]]:
    """Return, for each object ref, the ids of the nodes holding a copy (empty when not known)."""
    from ray.experimental import get_object_locations

    where = get_object_locations(list(refs))
    return [list(where.get(ref, {}).get("node_ids", [])) for ref in refs]
