"""The Flower ClientApp: local training and evaluation of one client's partition.

The server's ConfigRecord names the directory of client files (``partitions-dir``); the
client reads ``client-NNNN.npz`` for its ``partition-id`` and ``meta.json`` (model, network
shape, hyper-parameters) once per process and keeps them cached.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federated.models import NetSpec, loss_and_grad, outputs, train_local, xgb_params
from federated.privacy import noise_rng, privatize_update

LEGACY_FIT = "fitins.parameters"
LEGACY_EVALUATE = "evaluateins.parameters"


def _secagg_dispatch(msg: Message, context: Context, call_next: Any) -> Message:
    """Send SecAgg+ protocol messages through Flower's secaggplus_mod; all others straight to the handlers.

    The FitRes the mod sends back beside the masked model would carry the client's row count
    (its SecAgg+ weight) and metrics in plaintext: both are blanked here, after the mod has used
    the weight inside the masked sum, so the server learns only the sum.
    """
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if RECORD_KEY_CONFIGS not in msg.content.config_records:
        return cast(Message, call_next(msg, context))
    out = cast(Message, secaggplus_mod(msg, context, call_next))
    content = out.content
    if "fitres.num_examples" in content.metric_records:
        content.metric_records["fitres.num_examples"] = MetricRecord({"num_examples": 1})
        content.config_records["fitres.metrics"] = ConfigRecord({})
    return out


app = ClientApp(mods=[_secagg_dispatch])


class InjectedClientFailure(RuntimeError):
    """Raised by a client listed in ``federated.fail_clients`` (fault-tolerance testing)."""


@lru_cache(maxsize=8)
def load_meta(directory: str) -> dict[str, Any]:
    """Return the federation's ``meta.json`` (model, network, training settings)."""
    meta: dict[str, Any] = json.loads((Path(directory) / "meta.json").read_text())
    return meta


@lru_cache(maxsize=256)
def load_client(directory: str, client: int) -> dict[str, np.ndarray]:
    """Return the client's arrays: x/y/w for its train and valid rows."""
    with np.load(Path(directory) / f"client-{client:04d}.npz") as f:
        return {k: f[k] for k in f.files}


def _arrays(msg: Message) -> ArrayRecord:
    return cast(ArrayRecord, msg.content["arrays"])


def _model_bytes(msg: Message) -> bytes:
    return bytes(cast(Any, _arrays(msg)["0"]).numpy().tobytes())


def _setup(msg: Message, context: Context) -> tuple[ConfigRecord, int, dict[str, Any], dict[str, np.ndarray]]:
    config = cast(ConfigRecord, msg.content["config"])
    return (config, *_client(config, context))


def _client(config: Any, context: Context) -> tuple[int, dict[str, Any], dict[str, np.ndarray]]:
    """Return the client id, the federation's meta and the client's arrays; raise an injected failure."""
    client = int(cast(int, context.node_config["partition-id"]))
    directory = str(config["partitions-dir"])
    meta = load_meta(directory)
    server_round = int(cast(int, config["server-round"]))
    if client in meta["fail_clients"] and server_round in meta["fail_rounds"]:
        raise InjectedClientFailure(f"client {client} fails in round {server_round} (federated.fail_clients)")
    return client, meta, load_client(directory, client)


def _reply(msg: Message, arrays: ArrayRecord | None, metrics: dict[str, float]) -> Message:
    content = RecordDict({"metrics": MetricRecord(cast(Any, metrics))})
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train on the client's train rows from the global model; reply with the new model."""
    if LEGACY_FIT in msg.content.array_records:
        return _train_secagg(msg, context)
    config, client, meta, data = _setup(msg, context)
    x, y, w = data["x_train"], data["y_train"], data["w_train"]
    server_round = int(cast(int, config["server-round"]))
    seed = meta["seed"] * 100_003 + client * 1_009 + server_round
    if meta["model"] == "xgboost":
        arrays, loss = train_xgboost(_model_bytes(msg), x, y, w, meta, seed)
    else:
        start = _arrays(msg).to_numpy_ndarrays()
        params, loss = train_network(start, data, meta, float(cast(float, config.get("proximal-mu", 0.0))), seed)
        arrays = ArrayRecord(params)
    if (meta.get("privacy") or {}).get("dp") == "local":
        # Local DP: the server averages the noised updates unweighted and learns nothing else.
        return _reply(msg, arrays, {"num-examples": 1})
    return _reply(msg, arrays, {"num-examples": len(y), "train-loss": float(loss), "client": client})


def train_network(
    start: list[np.ndarray], data: dict[str, np.ndarray], meta: dict[str, Any], mu: float, seed: int
) -> tuple[list[np.ndarray], float]:
    """Return a client's network after local training from ``start`` and its loss, privatized as the spec says.

    dpsgd clips and noises every step; local and distributed DP clip and noise the update
    ``trained - start`` before it leaves the client (federated/privacy.py).
    """
    spec = NetSpec.from_dict(meta["net"])
    privacy = meta.get("privacy") or {"dp": "none"}
    dpsgd = (privacy["clipping_norm"], privacy["noise_multiplier"]) if privacy["dp"] == "dpsgd" else None
    params, loss = train_local(
        spec,
        start,
        data["x_train"].astype(np.float64),
        data["y_train"],
        data["w_train"].astype(np.float64),
        epochs=meta["local_epochs"],
        batch_size=meta["batch_size"],
        lr=meta["learning_rate"],
        mu=mu,
        seed=seed,
        dpsgd=dpsgd,
    )
    if privacy["dp"] in ("local", "distributed"):
        params = privatize_update(start, params, privacy, noise_rng())
    return params, loss


def _train_secagg(msg: Message, context: Context) -> Message:
    """Train for a SecAgg+ round: the legacy FitIns in, a FitRes out (secaggplus_mod masks its model).

    Under distributed DP the client reports ``num_examples`` 1, so SecAgg+ sums the clipped,
    noised models unweighted; otherwise FedAvg's weighting by train rows happens inside SecAgg+.
    """
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins

    fitins = recorddict_to_fitins(msg.content, keep_input=True)
    config = dict(fitins.config)
    client, meta, data = _client(config, context)
    server_round = int(cast(int, config["server-round"]))
    seed = meta["seed"] * 100_003 + client * 1_009 + server_round
    start = parameters_to_ndarrays(fitins.parameters)
    params, _loss = train_network(start, data, meta, float(cast(float, config.get("proximal_mu", 0.0))), seed)
    privacy = meta["privacy"]
    rows = len(data["y_train"])
    reported = 1 if privacy["dp"] == "distributed" else rows
    limit = privacy["secagg_clipping_range"] * privacy["secagg_max_weight"] / reported
    clipped = int(sum(int(np.sum(np.abs(p) > limit)) for p in params))
    if clipped:  # logged on the client: a count sent to the server would be outside the sum
        logging.getLogger("scaleclf.federated").warning(
            "client %d round %d: %d model values exceed"
            " federated.privacy.secure_aggregation.clipping_range and are clipped by SecAgg+",
            client,
            server_round,
            clipped,
        )
    fitres = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters(params), reported, {})
    return Message(fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


def train_xgboost(
    global_model: bytes, x: np.ndarray, y: np.ndarray, w: np.ndarray, meta: dict[str, Any], seed: int
) -> tuple[ArrayRecord, float]:
    import xgboost

    params = xgb_params(meta["params"], meta["n_classes"], seed)
    dtrain = xgboost.DMatrix(x, label=y, weight=w)
    local_rounds = meta["local_epochs"]
    bst = None
    if global_model:
        bst = xgboost.Booster(params=params)
        bst.load_model(bytearray(global_model))
    bst = xgboost.train(params, dtrain, num_boost_round=local_rounds, xgb_model=bst)
    loss = float(bst.eval(dtrain).split(":")[-1])
    if meta["strategy"] == "fedxgb_bagging":
        # Bagging sends only the trees grown this round; the server appends them to the ensemble.
        total = bst.num_boosted_rounds()
        bst = bst[total - local_rounds : total]
    raw = bst.save_raw("json")
    return ArrayRecord([np.frombuffer(bytes(raw), dtype=np.uint8)]), loss


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the client's validation rows (loss and accuracy)."""
    if LEGACY_EVALUATE in msg.content.array_records:
        return _evaluate_legacy(msg, context)
    _config, client, meta, data = _setup(msg, context)
    loss, accuracy = _evaluate_model(client, meta, data, _arrays(msg))
    y = data["y_valid"]
    return _reply(msg, None, {"num-examples": len(y), "loss": float(loss), "accuracy": accuracy, "client": client})


def _evaluate_legacy(msg: Message, context: Context) -> Message:
    """Evaluate for the legacy workflow of SecAgg+ runs: EvaluateIns in, EvaluateRes out."""
    from flwr.common import Code, EvaluateRes, Status, parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import evaluateres_to_recorddict, recorddict_to_evaluateins

    ins = recorddict_to_evaluateins(msg.content, keep_input=True)
    client, meta, data = _client(dict(ins.config), context)
    loss, accuracy = _evaluate_model(client, meta, data, ArrayRecord(parameters_to_ndarrays(ins.parameters)))
    res = EvaluateRes(
        Status(Code.OK, "ok"), float(loss), len(data["y_valid"]), {"accuracy": accuracy, "client": client}
    )
    return Message(evaluateres_to_recorddict(res), reply_to=msg)


def _evaluate_model(
    client: int, meta: dict[str, Any], data: dict[str, np.ndarray], arrays: ArrayRecord
) -> tuple[float, float]:
    """Return the global model's weighted loss and accuracy on the client's validation rows."""
    x, y, w = data["x_valid"], data["y_valid"], data["w_valid"]
    if not len(y):
        raise ValueError(f"client {client} holds no validation rows")
    if meta["model"] == "xgboost":
        from federated.models import xgb_outputs

        proba = xgb_outputs(bytes(cast(Any, arrays["0"]).numpy().tobytes()), x, meta["n_classes"])
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))))
        pred = proba.argmax(axis=1)
    else:
        spec = NetSpec.from_dict(meta["net"])
        params = arrays.to_numpy_ndarrays()
        loss, _ = loss_and_grad(spec, params, x.astype(np.float64), y, w.astype(np.float64))
        values = outputs(spec, params, x.astype(np.float64))
        pred = (values > 0).astype(int) if values.ndim == 1 else values.argmax(axis=1)
    return float(loss), float(np.mean(pred == y))
