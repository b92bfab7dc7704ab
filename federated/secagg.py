"""SecAgg+ rounds: Flower's legacy workflow with SecAggPlusWorkflow, recorded like the other runs.

In Flower 1.41 SecAgg+ exists only in the legacy workflow API: a ``LegacyContext`` holding a
legacy strategy (``flwr.server.strategy.FedAvg``/``FedProx``), run by ``DefaultWorkflow`` with
``SecAggPlusWorkflow`` as its fit workflow. Each client quantizes its model (weighted by its
``num_examples`` / ``max_weight``), masks it with pairwise and private masks whose seeds are
secret-shared among ``num_shares`` clients, and the server unmasks only the sum; so the
strategy's ``aggregate_fit`` receives, from every surviving client, the same already averaged
model and nothing else (clients blank their FitRes metrics and report ``num_examples`` 1 in the
clear: client_app._secagg_dispatch). A client that drops out mid-round is unmasked from
``reconstruction_threshold`` shares and the round finishes without it; the server refuses to
unmask a sum of fewer than ``min_train_clients`` masked models (the round fails), and the rounds
run under the RoundGuard (federated/budget.py).

Values are clipped to ``+-clipping_range * max_weight / num_examples`` before quantization;
``max_weight`` is set to the largest client's ``num_examples`` (1 under distributed DP, where
clients report 1 so the sum is unweighted), so every value within ``+-clipping_range`` is
aggregated exactly up to the quantization step ``2 * clipping_range / quantization_range``.
Clients count the values outside that range and log the count on their side (a count sent to
the server would be outside the sum).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import ConfigRecord
from flwr.common import Parameters, ndarrays_to_parameters
from flwr.server import strategy as legacy

from federated.server_app import History, _shown

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, Context
    from flwr.serverapp import Grid

    from federated.simulation import FederatedJob


def _parameters_bytes(parameters: Parameters) -> int:
    return sum(len(t) for t in parameters.tensors)


def _weighted(results: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    """Return the num_examples-weighted mean of each metric (the client id and clip count excluded)."""
    total = sum(n for n, _ in results)
    keys = {k for _, m in results for k in m if k not in ("client", "num-examples", "secagg-clipped")}
    return {k: sum(n * float(m[k]) for n, m in results if k in m) / total for k in sorted(keys)} if total else {}


def _by_rows(pairs: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    """Return client metrics weighted by their rows (``num-examples``; SecAgg+ may report 1)."""
    return _weighted([(int(m.get("num-examples", n)), m) for n, m in pairs])


def make_legacy_strategy(job: FederatedJob, history: History) -> legacy.FedAvg:
    """Return the legacy FedAvg/FedProx that records rounds into ``history`` and evaluates centrally."""
    fed = job.fed
    base: type[legacy.FedAvg] = legacy.FedProx if fed.strategy == "fedprox" else legacy.FedAvg
    partitions = str(job.partitions_dir)
    rounds = job.privacy.rounds

    def fit_config(server_round: int) -> dict[str, Any]:
        return {"partitions-dir": partitions, "server-round": server_round}

    def evaluate_fn(server_round: int, ndarrays: list[np.ndarray], config: dict[str, Any]) -> tuple[float, dict]:
        from flwr.app import ArrayRecord

        strategy.latest = [np.asarray(a) for a in ndarrays]
        rec = history.at(server_round)
        rec.centralized_evaluation = job.centralized_metrics(ArrayRecord(strategy.latest))
        rec.duration_s = time.perf_counter() - rec.started
        job.progress.note(f"round {server_round}/{rounds} (SecAgg+): " + _shown(rec))
        return float(rec.centralized_evaluation.get("log_loss", 0.0)), dict(rec.centralized_evaluation)

    class Recording(base):  # type: ignore[valid-type, misc]
        latest: list[np.ndarray]
        sampled: dict[int, int]

        def configure_fit(self, server_round: int, parameters: Parameters, client_manager: Any) -> Any:
            pairs = super().configure_fit(server_round, parameters, client_manager)
            rec = history.at(server_round)
            rec.bytes_sent += sum(_parameters_bytes(ins.parameters) for _, ins in pairs)
            self.sampled = getattr(self, "sampled", {})
            self.sampled[server_round] = len(pairs)
            return pairs

        def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
            rec = history.at(server_round)
            # Clients send no plaintext metrics under SecAgg+ (client_app._secagg_dispatch strips them):
            # the server counts the replies whose masked models were summed, nothing more.
            rec.train_replies = len(results)
            rec.failed_train = self.sampled.get(server_round, len(results)) - len(results)
            # Every survivor's FitRes carries the same unmasked average; count one model per reply.
            rec.bytes_received += sum(_parameters_bytes(res.parameters) for _, res in results)
            return super().aggregate_fit(server_round, results, failures)

        def aggregate_evaluate(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
            rec = history.at(server_round)
            metrics = [(int(res.num_examples), {**res.metrics, "loss": res.loss}) for _, res in results]
            rec.evaluate_clients = sorted(int(m["client"]) for _, m in metrics)
            rec.failed_evaluate = len(failures)
            rec.federated_evaluation = _weighted(metrics)
            return super().aggregate_evaluate(server_round, results, failures)

    kwargs: dict[str, Any] = {
        "fraction_fit": fed.fraction_train,
        # Federated evaluation replies (loss, accuracy, rows) would reach the server in the clear.
        "fraction_evaluate": 0.0,
        "min_fit_clients": fed.min_train_clients,
        "min_evaluate_clients": max(1, min(fed.min_evaluate_clients, fed.clients)),
        # Rounds after the first need only min_train_clients nodes: the first waits for all of them
        # (RoundGuard.wait_for_clients), and a SuperNode lost for good (its host killed) must not
        # block every later round in the client manager's wait for fed.clients nodes.
        "min_available_clients": fed.min_train_clients,
        "evaluate_fn": evaluate_fn,
        "on_fit_config_fn": fit_config,
        "on_evaluate_config_fn": fit_config,
        "fit_metrics_aggregation_fn": _by_rows,
        "evaluate_metrics_aggregation_fn": _by_rows,
        "initial_parameters": ndarrays_to_parameters(job.initial_arrays().to_numpy_ndarrays()),
        "accept_failures": True,
    }
    if base is legacy.FedProx:
        kwargs["proximal_mu"] = fed.proximal_mu
    strategy = Recording(**kwargs)
    strategy.latest = job.initial_arrays().to_numpy_ndarrays()
    return strategy


def run_secagg_rounds(grid: Grid, context: Context, job: FederatedJob) -> tuple[ArrayRecord, History]:
    """Run the job's rounds with SecAgg+; return the final model and the recorded history.

    The rounds are Flower's DefaultWorkflow loop with the RoundGuard around every round: the
    server waits for all clients before round 1, a round that could take epsilon past the budget
    does not run, and too many failed rounds stop the run (federated/budget.py).
    """
    from flwr.app import ArrayRecord
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.compat.app_utils import start_update_client_manager_thread
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key
    from flwr.server.workflow.default_workflows import (
        default_centralized_evaluation_workflow,
        default_evaluate_workflow,
        default_init_params_workflow,
    )

    from federated.budget import RoundGuard

    secagg = job.fed.privacy.secure_aggregation
    history = History()
    guard = RoundGuard(job, history)
    strategy = make_legacy_strategy(job, history)
    legacy_context = LegacyContext(
        context=context, config=ServerConfig(num_rounds=job.privacy.rounds), strategy=strategy
    )
    floor = job.privacy.min_replies

    class FloorSecAggPlus(SecAggPlusWorkflow):  # type: ignore[misc]
        """SecAgg+ that refuses to unmask a sum of fewer than min_train_clients clients."""

        sampled_at_setup = 0

        def setup_stage(self, grid: Grid, context: Any, state: Any) -> bool:
            ok = bool(super().setup_stage(grid, context, state))
            self.sampled_at_setup = len(state.sampled_node_ids)
            return ok

        def share_keys_stage(self, grid: Grid, context: Any, state: Any) -> bool:
            """Share keys; only the nodes that took part can be unmasked as dead later.

            Flower's unmask stage names every node sampled at setup as dead when it is gone, but the
            survivors hold key shares only of nodes that shared keys: a node lost during setup (a
            SuperNode's host killed) made every survivor fail on the missing share (KeyError) and
            the round aggregate nothing.
            """
            ok = bool(super().share_keys_stage(grid, context, state))
            state.sampled_node_ids = set(state.active_node_ids)
            return ok

        def collect_masked_vectors_stage(self, grid: Grid, context: Any, state: Any) -> bool:
            ok = bool(super().collect_masked_vectors_stage(grid, context, state))
            rec = history.at(max(history.rounds))
            rec.failed_train = self.sampled_at_setup - len(state.active_node_ids)
            return ok

        def unmask_stage(self, grid: Grid, context: Any, state: Any) -> bool:
            if len(state.active_node_ids) < floor:
                job.progress.warn(
                    f"SecAgg+: only {len(state.active_node_ids)} masked models arrived, fewer than"
                    f" min_train_clients {floor}; the sum is not unmasked"
                )
                return False
            return bool(super().unmask_stage(grid, context, state))

    fit = FloorSecAggPlus(
        num_shares=secagg.num_shares,
        reconstruction_threshold=secagg.reconstruction_threshold,
        max_weight=job.privacy.secagg_max_weight,
        clipping_range=secagg.clipping_range,
        quantization_range=secagg.quantization_range,
    )
    thread, f_stop, c_done = start_update_client_manager_thread(grid, legacy_context.client_manager)
    try:
        c_done.wait()
        guard.wait_for_clients(grid)
        default_init_params_workflow(grid, legacy_context)
        cfg = ConfigRecord({Key.START_TIME: time.perf_counter()})
        legacy_context.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        for server_round in range(1, job.privacy.rounds + 1):
            if not guard.before_round(server_round):
                break
            cfg[Key.CURRENT_ROUND] = server_round
            history.at(server_round)
            fit(grid, legacy_context)
            guard.after_round(server_round)
            default_centralized_evaluation_workflow(grid, legacy_context)
            default_evaluate_workflow(grid, legacy_context)
    finally:
        f_stop.set()
        thread.join()
    return ArrayRecord(strategy.latest), history
