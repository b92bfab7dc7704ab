"""The Flower ServerApp: builds the strategy from the spec, runs the rounds and records history.

``flwr run .`` starts ``app`` below (its run config names the job spec); ``scaleclf
federate`` runs the same ``run_rounds`` inside an in-process simulation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as fs

from federated.budget import RoundGuard, StopRounds
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    from federated.privacy import PrivacyPlan
    from federated.simulation import FederatedJob
    from pipelines.spec import FederatedSpec

app = ServerApp()


@dataclass
class RoundRecord:
    """What happened in one round: clients, bytes, duration and metrics."""

    round: int
    started: float = field(default_factory=time.perf_counter)
    train_clients: list[int] = field(default_factory=list)
    train_replies: int = 0
    failed: bool = False
    epsilon: dict[str, float] = field(default_factory=dict)
    failed_train: int = 0
    evaluate_clients: list[int] = field(default_factory=list)
    failed_evaluate: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    train_metrics: dict[str, float] = field(default_factory=dict)
    federated_evaluation: dict[str, float] = field(default_factory=dict)
    centralized_evaluation: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the round as JSON-ready data (``started`` is internal)."""
        out = dict(self.__dict__)
        out.pop("started")
        out["duration_s"] = round(self.duration_s, 4)
        return out


@dataclass
class History:
    """Per-round records of a federated run, filled in by the recording strategy."""

    rounds: dict[int, RoundRecord] = field(default_factory=dict)

    def at(self, server_round: int) -> RoundRecord:
        """Return the record of ``server_round``, creating it when the round starts."""
        if server_round not in self.rounds:
            self.rounds[server_round] = RoundRecord(server_round)
        return self.rounds[server_round]

    def to_list(self) -> list[dict[str, Any]]:
        """Return the rounds in order as JSON-ready data."""
        return [self.rounds[k].to_dict() for k in sorted(self.rounds)]


def _client_ids(replies: list[Message]) -> list[int]:
    """Return the client ids the replies name (none under local or distributed DP: ids are not sent)."""
    metrics = [cast(MetricRecord, m.content["metrics"]) for m in replies if not m.has_error()]
    return sorted(int(cast(int, m["client"])) for m in metrics if "client" in m)


def _payload_bytes(content: RecordDict) -> int:
    """Return the bytes of a message's records (arrays, metrics and config)."""
    return sum(record.count_bytes() for record in content.values())


def aggregate_client_metrics(records: list[RecordDict], weighted_by_key: str) -> MetricRecord:
    """Return the weighted mean of each reply metric (the client id is not a metric)."""
    totals: dict[str, float] = {}
    weight_sum = 0.0
    for record in records:
        metrics = next(iter(record.metric_records.values()))
        weight = float(metrics[weighted_by_key])  # type: ignore[arg-type]
        weight_sum += weight
        for key, value in metrics.items():
            if key not in ("client", weighted_by_key):
                totals[key] = totals.get(key, 0.0) + weight * float(value)  # type: ignore[arg-type]
    return MetricRecord({k: v / weight_sum for k, v in totals.items()} if weight_sum else {})


def _recording(cls: type[fs.Strategy]) -> type[fs.Strategy]:
    """Return a subclass of a Flower strategy that records every round into ``self.history``."""

    class Recording(cls):  # type: ignore[valid-type, misc]
        history: History
        privacy: PrivacyPlan | None = None
        guard: RoundGuard | None = None
        latest: ArrayRecord | None = None
        _global: list[Any]

        def configure_train(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            self.latest = arrays
            if self.guard is not None:
                if server_round == 1:
                    self.guard.wait_for_clients(grid)
                if not self.guard.before_round(server_round):
                    raise StopRounds
            if self.privacy is not None and self.privacy.dp == "central":
                messages = self._configure_central_dp(server_round, arrays, config, grid)
            else:
                messages = list(super().configure_train(server_round, arrays, config, grid))
            self.history.at(server_round).bytes_sent += sum(_payload_bytes(m.content) for m in messages)
            return messages

        def _configure_central_dp(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> list[Message]:
            """Poisson-sample the clients (rate fraction_train), as the DP-FedAvg accounting assumes."""
            from flwr.app import MessageType

            from federated.privacy import noise_rng, poisson_sample

            self._global = arrays.to_numpy_ndarrays()
            while len(nodes := list(grid.get_node_ids())) < self.min_available_nodes:
                time.sleep(0.1)
            assert self.privacy is not None
            sampled = poisson_sample(nodes, self.privacy.client_rate, noise_rng())
            config["server-round"] = server_round
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
            return list(self._construct_messages(record, sampled, MessageType.TRAIN))

        def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
            replies = list(replies)
            rec = self.history.at(server_round)
            ok = [m for m in replies if not m.has_error()]
            rec.train_clients = _client_ids(ok)
            rec.train_replies = len(ok)
            rec.failed_train = len(replies) - len(ok)
            rec.bytes_received += sum(_payload_bytes(m.content) for m in ok)
            metrics: Any
            if self.guard is not None and len(ok) < self.guard.plan.min_replies:
                return None, None  # a failed round: the global model stays (RoundGuard.after_round reports it)
            if self.privacy is not None and self.privacy.dp == "central":
                arrays, metrics = self._aggregate_central_dp(ok)
            else:
                arrays, metrics = super().aggregate_train(server_round, replies)
            rec.train_metrics = dict(metrics or {})
            return arrays, metrics

        def _aggregate_central_dp(self, ok: list[Message]) -> tuple[ArrayRecord, MetricRecord]:
            """Return the DP-FedAvg model: clipped updates, Gaussian noise, fixed denominator q N."""
            from federated.privacy import central_aggregate, noise_rng

            plan = self.privacy
            assert plan is not None
            models = [cast(ArrayRecord, m.content["arrays"]).to_numpy_ndarrays() for m in ok]
            new = central_aggregate(
                self._global, models, plan.clipping_norm, plan.noise_multiplier, plan.expected_clients, noise_rng()
            )
            metrics = aggregate_client_metrics([m.content for m in ok], "num-examples") if ok else MetricRecord()
            return ArrayRecord(new), metrics

        def configure_evaluate(
            self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
        ) -> Iterable[Message]:
            messages = list(super().configure_evaluate(server_round, arrays, config, grid))
            self.history.at(server_round).bytes_sent += sum(_payload_bytes(m.content) for m in messages)
            return messages

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
            replies = list(replies)
            rec = self.history.at(server_round)
            ok = [m for m in replies if not m.has_error()]
            rec.evaluate_clients = _client_ids(ok)
            rec.failed_evaluate = len(replies) - len(ok)
            rec.bytes_received += sum(_payload_bytes(m.content) for m in ok)
            metrics = super().aggregate_evaluate(server_round, replies)
            rec.federated_evaluation = dict(metrics or {})
            return metrics

    Recording.__name__ = cls.__name__
    return Recording


def check_strategy(fed: FederatedSpec, model: str) -> None:
    """Raise a ConfigError when the strategy cannot train the model (tree vs parameter aggregation)."""
    xgb = fed.strategy.startswith("fedxgb_")
    if (model == "xgboost") != xgb:
        allowed = "fedxgb_bagging, fedxgb_cyclic" if model == "xgboost" else "fedavg, fedprox, fedadam, fedavgm, "
        allowed += "" if model == "xgboost" else "fedtrimmedavg, krum"
        raise ConfigError(f"config error: federated.strategy: {fed.strategy} cannot train {model} (allowed: {allowed})")


def make_strategy(fed: FederatedSpec, model: str) -> fs.Strategy:
    """Return the recording Flower strategy the spec names, checked against the model."""
    check_strategy(fed, model)
    common: dict[str, Any] = {
        "fraction_train": fed.fraction_train,
        "fraction_evaluate": fed.fraction_evaluate,
        # The first round waits for every client (RoundGuard.wait_for_clients); later rounds need only
        # min_train_clients nodes, so a SuperNode lost for good does not block them forever.
        "min_available_nodes": fed.min_train_clients,
        "train_metrics_aggr_fn": aggregate_client_metrics,
        "evaluate_metrics_aggr_fn": aggregate_client_metrics,
    }
    if fed.strategy != "fedxgb_cyclic":
        common["min_train_nodes"] = fed.min_train_clients
        common["min_evaluate_nodes"] = min(fed.min_evaluate_clients, fed.clients)
    extra: dict[str, Any] = {}
    cls: type[fs.Strategy]
    if fed.strategy == "fedavg":
        cls = fs.FedAvg
    elif fed.strategy == "fedprox":
        cls, extra = fs.FedProx, {"proximal_mu": fed.proximal_mu}
    elif fed.strategy == "fedadam":
        eta = fed.server_learning_rate or 0.01
        cls, extra = fs.FedAdam, {"eta": eta, "eta_l": fed.learning_rate}
    elif fed.strategy == "fedavgm":
        lr = fed.server_learning_rate or 1.0
        cls, extra = fs.FedAvgM, {"server_learning_rate": lr, "server_momentum": fed.server_momentum}
    elif fed.strategy == "fedtrimmedavg":
        cls, extra = fs.FedTrimmedAvg, {"beta": fed.trim_beta}
    elif fed.strategy == "krum":
        cls, extra = fs.Krum, {"num_malicious_nodes": fed.malicious_clients}
    elif fed.strategy == "fedxgb_bagging":
        cls = fs.FedXgbBagging
    else:
        cls = fs.FedXgbCyclic
    strategy = _recording(cls)(**common, **extra)
    strategy.history = History()  # type: ignore[attr-defined]
    return strategy


def run_rounds(grid: Grid, job: FederatedJob, context: Context) -> tuple[ArrayRecord, History]:
    """Run the spec's strategy for the planned rounds; return the final model and history.

    With secure aggregation the rounds run in Flower's legacy workflow (federated/secagg.py).
    """
    if job.privacy.secure_aggregation:
        from federated.secagg import run_secagg_rounds

        return run_secagg_rounds(grid, context, job)
    fed = job.fed
    strategy = make_strategy(fed, job.info.name)
    strategy.privacy = job.privacy if job.privacy.on else None  # type: ignore[attr-defined]
    rounds = job.privacy.rounds
    history: History = strategy.history  # type: ignore[attr-defined]
    guard = RoundGuard(job, history)
    strategy.guard = guard  # type: ignore[attr-defined]
    if job.privacy.dp in ("local", "distributed"):
        # Clients' evaluation replies (loss, accuracy, rows) would reach the server in the clear.
        strategy.fraction_evaluate = 0.0  # type: ignore[attr-defined]
    initial = job.initial_arrays()

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        rec = history.at(server_round)
        if server_round > 0:
            guard.after_round(server_round)
        rec.centralized_evaluation = job.centralized_metrics(arrays)
        rec.duration_s = time.perf_counter() - rec.started
        job.progress.note(f"round {server_round}/{rounds}: " + _shown(rec))
        return MetricRecord(cast(Any, rec.centralized_evaluation))

    config = ConfigRecord({"partitions-dir": str(job.partitions_dir)})
    try:
        result = strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=rounds,
            train_config=config,
            evaluate_config=ConfigRecord({"partitions-dir": str(job.partitions_dir)}),
            evaluate_fn=evaluate,
        )
    except StopRounds:  # the budget ended training before a round: the model of the last round run
        latest = strategy.latest  # type: ignore[attr-defined]
        return (latest if latest is not None and len(latest) else initial), history
    final = result.arrays if result.arrays is not None and len(result.arrays) else initial
    return final, history


def _shown(rec: RoundRecord) -> str:
    test = ", ".join(f"{k} {v:.4f}" for k, v in rec.centralized_evaluation.items() if k in ("auc", "log_loss"))
    if not rec.round:
        return f"initial model: test {test}"
    failed = f", {rec.failed_train} failed" if rec.failed_train else ""
    eps = f"; epsilon {rec.epsilon['rdp']:.3f} (rdp)" if rec.epsilon else ""
    return f"{rec.train_replies} clients trained{failed}{' (round failed)' if rec.failed else ''}{eps}; test {test}"


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the job spec named by the run config key ``spec`` and write its run directory."""
    from federated.simulation import run_job

    spec_path = str(context.run_config.get("spec", "conf/federated_logreg.yaml"))
    overrides = [s for s in str(context.run_config.get("overrides", "")).split(";") if s.strip()]
    run_dir = run_job(spec_path, overrides, lambda job: run_rounds(grid, job, context))
    print(f"run directory: {run_dir.resolve()}", flush=True)
