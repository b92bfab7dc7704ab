"""Federated runs end to end: prepare clients, run the Flower simulation, write the run directory.

``federate(spec)`` (``scaleclf federate``) runs the ServerApp and ClientApp in-process with
Flower's simulation runtime on a fresh local Ray sized from this machine; ``run_job`` is the
same job driven by ``flwr run .``. Both write the run directory a centralized run writes,
plus ``history.json`` and ``partitions.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from federated.models import FEDERATED_MODELS, NetSpec, net_spec, outputs, to_estimator, xgb_outputs
from federated.partition import Federation, federate_data, write_client_files
from federated.preprocess import check_given_columns, load_given
from federated.privacy import PrivacyPlan, check_privacy, plan_privacy
from pipelines.artifacts import RunDirectory, run_name
from pipelines.data.schema import DataPlan, make_plan
from pipelines.data.split import KEY_COLUMN, TRAIN, VALID
from pipelines.engines.base import EngineModel, FitContext
from pipelines.engines.local.engine import LocalEngine
from pipelines.errors import ConfigError, EngineError, ScaleclfError
from pipelines.evaluation.metrics import compute_metrics
from pipelines.logs import run_logs
from pipelines.models.catalog import ModelInfo, get_model
from pipelines.models.fitted import BoosterModel, SklearnModel
from pipelines.models.links import margins_to_proba
from pipelines.progress import Progress
from pipelines.run import Predictions, class_weights
from pipelines.spec import FederatedSpec, JobSpec, load_spec

CURVE_METRICS = ("auc", "pr_auc", "accuracy", "log_loss")


@dataclass
class FederatedJob:
    """A federated job ready to run: clients written to disk, test rows and fitted context."""

    spec: JobSpec
    plan: DataPlan
    federation: Federation
    info: ModelInfo
    ctx: FitContext
    net: NetSpec | None
    partitions_dir: Path
    progress: Progress
    privacy: PrivacyPlan
    started: float = field(default_factory=time.perf_counter)

    @property
    def fed(self) -> FederatedSpec:
        """Return the spec's federated section."""
        assert self.spec.federated is not None
        return self.spec.federated

    def initial_arrays(self) -> Any:
        """Return the initial global model as a Flower ArrayRecord (xgboost: an empty booster)."""
        from flwr.app import ArrayRecord

        if self.net is None:
            return ArrayRecord([np.frombuffer(b"", dtype=np.uint8)])
        return ArrayRecord(self.net.init(self.spec.seed))

    def values(self, arrays: Any, x: np.ndarray) -> np.ndarray:
        """Return the global model's probabilities or decision scores for a feature matrix."""
        if self.net is None:
            model = arrays["0"].numpy().tobytes()
            if not model:
                return np.full((len(x), self.ctx.task.n_classes), 1.0 / self.ctx.task.n_classes)
            return xgb_outputs(model, x, self.ctx.task.n_classes)
        return outputs(self.net, arrays.to_numpy_ndarrays(), x)

    def centralized_metrics(self, arrays: Any) -> dict[str, float]:
        """Return the shared metrics of the global model on the global test split (scores: sigmoid)."""
        x, y = self.test_xy
        values = self.values(arrays, x)
        proba = margins_to_proba(values, self.ctx.task.n_classes) if self.ctx.output == "scores" else values
        metrics = compute_metrics(y, proba, ece_bins=self.spec.evaluation.ece_bins)
        keep = CURVE_METRICS if self.ctx.output == "proba" else ("auc", "pr_auc", "accuracy")
        return {k: float(metrics[k]) for k in keep if metrics.get(k) is not None}  # type: ignore[arg-type]

    @property
    def test_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the preprocessed test matrix and class indices (cached)."""
        if not hasattr(self, "_test_xy"):
            test = self.federation.test
            self._test_xy = (self.ctx.preprocessor.transform(test), self.ctx.task.encode(test.column(self.plan.label)))
        return self._test_xy


def prepare_job(
    spec: JobSpec,
    progress: Progress,
    workdir: Path,
    partition: Callable[..., Federation] = federate_data,
    client_files: bool = True,
) -> FederatedJob:
    """Return the job: data partitioned, preprocessing fitted from client profiles, client files written.

    ``partition`` and ``client_files`` let batched execution (federated/batched.py) partition in
    one pass and keep the clients' rows in memory instead of one file per ClientApp.
    """
    fed = spec.federated
    if fed is None:
        raise ConfigError("config error: federated: the spec has no federated section (see conf/federated_*.yaml)")
    info = get_model(spec.model.name)
    if info.name not in FEDERATED_MODELS:
        raise ConfigError(
            f"config error: model.name: {info.name} is not trained federatedly (allowed: {', '.join(FEDERATED_MODELS)})"
        )
    if spec.tuning.enabled:
        raise ConfigError("config error: tuning.enabled: tuning is not supported by scaleclf federate")
    if spec.model.calibration != "none" and info.probabilities != "calibrated":
        raise ConfigError("config error: model.calibration: federated runs support only calibration none")
    from federated.server_app import check_strategy

    check_strategy(fed, info.name)
    check_privacy(fed, info.name)
    params = info.resolve_params(spec.model.params)
    given = load_given(fed)  # a bad file is refused before any data is read
    if given is not None and given.class_counts is None and spec.model.class_weight == "balanced":
        raise ConfigError(
            f"config error: federated.preprocess_from: {given.path}: model.class_weight: balanced needs class_counts"
        )
    plan = make_plan(spec.data, spec.seed)
    if given is not None:
        check_given_columns(given, plan)
    table = LocalEngine(spec.engine, spec.seed).load(plan).table
    federation = partition(table, plan, fed, spec.seed, given)
    task = federation.task
    if info.name == "xgboost" and task.n_classes > 2:
        raise ConfigError(
            "config error: model.name: federated xgboost is binary only (Flower's tree aggregation"
            " appends one tree per client and round)"
        )
    if fed.strategy == "fedxgb_bagging" and fed.local_epochs != 1:
        raise ConfigError("config error: federated.local_epochs: fedxgb_bagging grows one tree per client and round")
    weights = class_weights(task, spec.model.class_weight)
    stats = federation.statistics()["clients"]
    privacy = plan_privacy(fed, [c["train_rows"] for c in stats])
    if privacy.rounds < fed.rounds:
        progress.note(
            f"privacy budget: {privacy.rounds} of {fed.rounds} rounds fit target_epsilon"
            f" {fed.privacy.target_epsilon:g} ({privacy.accountant})"
        )
    n_train = int(federation.profile.rows.get("train", 0))
    net = (
        None
        if info.name == "xgboost"
        else net_spec(info.name, params, federation.preprocessor.n_features, task.n_classes, n_train)
    )
    if net is not None:
        privacy.dimension = int(sum(a.size for a in net.init(spec.seed)))
    ctx = FitContext(task, federation.preprocessor, info, params, weights, None, spec.seed)
    if client_files:
        write_client_files(federation, workdir, weights)
    meta = {
        "model": info.name,
        "params": params,
        "n_classes": task.n_classes,
        "net": net.to_dict() if net else None,
        "strategy": fed.strategy,
        "local_epochs": fed.local_epochs,
        "batch_size": fed.batch_size,
        "learning_rate": fed.learning_rate,
        "seed": spec.seed,
        "fail_clients": fed.fail_clients,
        "fail_rounds": fed.fail_rounds,
        "privacy": privacy.client_meta(),
    }
    (workdir / "meta.json").write_text(json.dumps(meta))
    return FederatedJob(spec, plan, federation, info, ctx, net, workdir, progress, privacy)


def backend_config(fed: FederatedSpec) -> dict[str, Any]:
    """Return the simulation backend config: a fresh local Ray with this machine's cores."""
    cpus = fed.simulation.cpus or os.cpu_count() or 1
    return {
        "client_resources": {"num_cpus": fed.simulation.cpus_per_client, "num_gpus": 0.0},
        "init_args": {
            # "local" starts a private Ray even when a `ray start` cluster runs on this machine.
            "address": "local",
            "num_cpus": cpus,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": fed.simulation.object_store_mb * 1024 * 1024,
            "logging_level": "error",
            "log_to_driver": False,
        },
    }


RunRounds = Callable[[FederatedJob], tuple[Any, Any]]


def federate(spec: JobSpec, progress: Progress | None = None) -> Path:
    """Run a federated job in an in-process Flower simulation; return the completed run directory."""
    if spec.federated is not None and spec.federated.execution == "batched":
        from federated.batched import federate_batched

        return federate_batched(spec, progress or Progress(quiet=True))
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from federated.client_app import app as client_app
    from federated.server_app import run_rounds
    from pipelines.engines.ray.internals import loopback_only

    progress = progress or Progress(quiet=True)

    def simulate(job: FederatedJob) -> tuple[Any, Any]:
        outcome: dict[str, Any] = {}
        server = ServerApp()

        @server.main()
        def _main(grid: Grid, context: Any) -> None:
            try:
                outcome["result"] = run_rounds(grid, job, context)
            except ScaleclfError as exc:  # raised again below, outside Flower's runtime
                outcome["error"] = exc

        with loopback_only():  # the simulation's own Ray listens on 127.0.0.1 only
            run_simulation(
                server_app=server,
                client_app=client_app,
                num_supernodes=job.fed.clients,
                backend_config=backend_config(job.fed),
            )
        if "error" in outcome:
            raise outcome["error"]
        if "result" not in outcome:
            raise RuntimeError("the Flower simulation ended without a result")
        result: tuple[Any, Any] = outcome["result"]
        return result

    return execute(spec, progress, simulate)


def run_job(spec_path: str, overrides: list[str], rounds: RunRounds) -> Path:
    """Run the spec at ``spec_path`` with ``rounds`` driving the strategy (``flwr run .``)."""
    spec = load_spec(spec_path, overrides)
    return execute(spec, Progress(quiet=False), rounds)


def execute(
    spec: JobSpec, progress: Progress, rounds: RunRounds, prepare: Callable[..., FederatedJob] = prepare_job
) -> Path:
    """Prepare the job with ``prepare``, run its rounds with ``rounds`` and write the run directory."""
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)
    started = time.perf_counter()
    parent = Path(spec.output.dir)
    strategy = spec.federated.strategy if spec.federated else "fedavg"
    name = spec.output.run_name or run_name(parent, spec.name, spec.model.name, f"federated-{strategy}")
    workdir = Path(tempfile.mkdtemp(prefix="scaleclf-fl-"))
    try:
        with RunDirectory(parent, name) as tmp, run_logs(tmp, progress):
            with progress.stage("load_s", f"partitioned {spec.data.source}"):
                job = prepare(spec, progress, workdir)
                job.started = started
            fed = job.fed
            with progress.stage("fit_s", f"ran {job.privacy.rounds} rounds of {fed.strategy} on {fed.clients} clients"):
                arrays, history = rounds(job)
            from federated.outputs import write_outputs

            written = write_outputs(job, arrays, history, tmp, progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    headline = written["federated"].get("privacy", {})
    if headline.get("within_budget") is False:
        raise EngineError(
            f"federated.privacy.target_epsilon: the run spent epsilon {headline['epsilon']:.4g} >"
            f" {job.fed.privacy.target_epsilon:g} ({headline['accountant']}); run directory: {parent / name}"
        )
    return parent / name


def final_model(job: FederatedJob, arrays: Any) -> EngineModel:
    """Return the global model as the local engine's model (scikit-learn estimator or xgboost booster)."""
    if job.net is None:
        return BoosterModel(bytes(arrays["0"].numpy().tobytes()), job.ctx.task.n_classes)
    est = to_estimator(job.info.name, job.net, arrays.to_numpy_ndarrays(), job.spec.seed, job.ctx.params)
    return SklearnModel(est, job.ctx.output)


def split_predictions(job: FederatedJob, model: EngineModel, split: int) -> Predictions:
    """Return the global model's outputs on the clients' rows of ``split`` (VALID) or the test rows."""
    if split in (TRAIN, VALID):
        table = pa.concat_tables([c.rows(split) for c in job.federation.clients])
    else:
        table = job.federation.test
    values = model.predict(job.ctx.features(table))
    keys = np.asarray(table.column(KEY_COLUMN).to_numpy())
    return Predictions(keys, job.ctx.task.encode(table.column(job.plan.label)), values)


def utc_now() -> str:
    """Return the local time as ISO text (as the centralized metrics.json)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
