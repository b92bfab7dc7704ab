"""The Flower ClientApp: local training and evaluation of one client's partition.

The server's ConfigRecord names the directory of client files (``partitions-dir``); the
client reads ``client-NNNN.npz`` for its ``partition-id`` and ``meta.json`` (model, network
shape, hyper-parameters) once per process and keeps them cached.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federated.models import NetSpec, loss_and_grad, outputs, train_local, xgb_params

app = ClientApp()


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
    client = int(cast(int, context.node_config["partition-id"]))
    directory = str(config["partitions-dir"])
    meta = load_meta(directory)
    server_round = int(cast(int, config["server-round"]))
    if client in meta["fail_clients"] and server_round in meta["fail_rounds"]:
        raise InjectedClientFailure(f"client {client} fails in round {server_round} (federated.fail_clients)")
    return config, client, meta, load_client(directory, client)


def _reply(msg: Message, arrays: ArrayRecord | None, metrics: dict[str, float]) -> Message:
    content = RecordDict({"metrics": MetricRecord(cast(Any, metrics))})
    if arrays is not None:
        content["arrays"] = arrays
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train on the client's train rows from the global model; reply with the new model."""
    config, client, meta, data = _setup(msg, context)
    x, y, w = data["x_train"], data["y_train"], data["w_train"]
    server_round = int(cast(int, config["server-round"]))
    seed = meta["seed"] * 100_003 + client * 1_009 + server_round
    if meta["model"] == "xgboost":
        arrays, loss = _train_xgboost(_model_bytes(msg), x, y, w, meta, seed)
    else:
        spec = NetSpec.from_dict(meta["net"])
        start = _arrays(msg).to_numpy_ndarrays()
        params, loss = train_local(
            spec,
            start,
            x.astype(np.float64),
            y,
            w.astype(np.float64),
            epochs=meta["local_epochs"],
            batch_size=meta["batch_size"],
            lr=meta["learning_rate"],
            mu=float(cast(float, config.get("proximal-mu", 0.0))),
            seed=seed,
        )
        arrays = ArrayRecord(params)
    return _reply(msg, arrays, {"num-examples": len(y), "train-loss": float(loss), "client": client})


def _train_xgboost(
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
    _config, client, meta, data = _setup(msg, context)
    x, y, w = data["x_valid"], data["y_valid"], data["w_valid"]
    if not len(y):
        raise ValueError(f"client {client} holds no validation rows")
    if meta["model"] == "xgboost":
        from federated.models import xgb_outputs

        proba = xgb_outputs(_model_bytes(msg), x, meta["n_classes"])
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))))
        pred = proba.argmax(axis=1)
    else:
        spec = NetSpec.from_dict(meta["net"])
        params = _arrays(msg).to_numpy_ndarrays()
        loss, _ = loss_and_grad(spec, params, x.astype(np.float64), y, w.astype(np.float64))
        values = outputs(spec, params, x.astype(np.float64))
        pred = (values > 0).astype(int) if values.ndim == 1 else values.argmax(axis=1)
    accuracy = float(np.mean(pred == y))
    return _reply(msg, None, {"num-examples": len(y), "loss": float(loss), "accuracy": accuracy, "client": client})
