"""Raw baseline for the Dask engine: the model written directly with dask, dask-ml and xgboost.dask.

Standalone on purpose (imports no scaleclf code): starts a LocalCluster (or connects to
``address``), reads the Parquet files with dask.dataframe, splits at random, scales with
dask-ml, fits with xgboost.dask (xgboost, gbt, random_forest) or dask-ml (logistic_regression,
naive_bayes), predicts the test split and prints one JSON line with the seconds taken and
the test AUC. Usage: python jobs/raw_baselines/dask.py ARGS_JSON
"""

# ruff: noqa: E402  (the imports must follow the sys.path fix below)
import json
import logging
import os
import sys
import time

# This file is named after its engine, so its own directory (sys.path[0] when run as a script)
# would shadow the dask package.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import dask.array as da
import dask.dataframe as dd
import numpy as np
import xgboost.dask as dxgb
from dask_ml.preprocessing import StandardScaler
from distributed import Client, LocalCluster
from sklearn.metrics import roc_auc_score

# The layout the Dask engine picks on its own: one single-threaded worker per core.
THREADS_PER_WORKER = 1


def xgboost_model(name, p, seed, n_classes):
    if name == "xgboost":
        return dxgb.DaskXGBClassifier(
            n_estimators=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            subsample=p["subsample"],
            colsample_bytree=p["colsample_bytree"],
            reg_lambda=p["reg_lambda"],
            min_child_weight=p["min_child_weight"],
            max_bin=p["max_bin"],
            tree_method="hist",
            random_state=seed,
        )
    if name == "gbt":
        return dxgb.DaskXGBClassifier(
            n_estimators=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            reg_lambda=0.0,
            tree_method="hist",
            random_state=seed,
        )
    if name == "random_forest":
        return dxgb.DaskXGBRFClassifier(
            n_estimators=p["n_estimators"], max_depth=p["max_depth"], tree_method="hist", random_state=seed
        )
    return None


def dask_ml_model(name, p):
    if name == "logistic_regression":
        from dask_ml.linear_model import LogisticRegression

        return LogisticRegression(C=p["C"], max_iter=p["max_iter"], tol=p["tol"], solver="lbfgs")
    if name == "naive_bayes":
        from dask_ml.naive_bayes import GaussianNB

        return GaussianNB()
    raise SystemExit(f"raw dask baseline: no raw dask / dask-ml model for {name}")


def main():
    args = json.loads(sys.stdin.read())  # on stdin: the options may hold secrets, argv is public
    start = time.perf_counter()
    if args["address"]:
        client = Client(args["address"])
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=args["workers"] or max(1, (os.cpu_count() or 1) // THREADS_PER_WORKER),
            threads_per_worker=THREADS_PER_WORKER,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        frame = dd.read_parquet(args["paths"], dtype_backend="pyarrow")
        label = args["label"]
        features = [c for c in frame.columns if c != label]
        # Same shares as the pipeline: fit on the train share, score the test share.
        train_share = 1.0 - args["test_fraction"] - args["valid_fraction"]
        train, _, test = frame.random_split(
            [train_share, args["valid_fraction"], args["test_fraction"]], random_state=args["seed"]
        )
        x_train = train[features].astype("float64").to_dask_array(lengths=True)
        y_train = train[label].astype("int32").to_dask_array(lengths=True)
        x_test = test[features].astype("float64").to_dask_array(lengths=True)
        y_test = test[label].astype("int32").to_dask_array(lengths=True)
        x_train, y_train, x_test, y_test = client.persist([x_train, y_train, x_test, y_test])
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
        n_classes = int(da.max(y_train).compute()) + 1
        model = xgboost_model(args["model"], args["params"], args["seed"], n_classes)
        if model is not None:
            model.client = client
        else:
            model = dask_ml_model(args["model"], args["params"])
        model.fit(x_train, y_train)
        proba = model.predict_proba(x_test)
        proba, truth = client.compute([proba, y_test], sync=True)
        proba = np.asarray(proba)
        auc = roc_auc_score(truth, proba[:, 1]) if n_classes == 2 else roc_auc_score(truth, proba, multi_class="ovr")
        rows = int(frame.shape[0].compute())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(json.dumps({"seconds": time.perf_counter() - start, "auc": float(auc), "rows": rows}))


if __name__ == "__main__":
    main()
