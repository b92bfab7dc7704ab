"""Raw baseline for the Ray engine: Ray Train's XGBoostTrainer as its documentation writes it.

Standalone on purpose (imports no scaleclf code): a fresh local Ray, Ray Data reads the
Parquet files and splits them at random, each Ray Train worker materialises its shard to
pandas and builds a DMatrix, ``RayTrainReportCallback`` reports every round, and the test
split is scored with the booster from the final checkpoint. Prints one JSON line with the
seconds taken and the test AUC. Only xgboost is written here (the model this engine's
bench compares). Usage: python jobs/raw_baselines/ray.py ARGS_JSON
"""

import json
import os
import shutil
import sys
import tempfile
import time

# This file is named ray.py: keep its own directory off the path so `import ray` finds Ray.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
# A single-node Ray: it then stays on 127.0.0.1 instead of the machine's network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402
import ray  # noqa: E402
import ray.data  # noqa: E402
import ray.train  # noqa: E402
import xgboost  # noqa: E402
from ray.train import RunConfig, ScalingConfig  # noqa: E402
from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402


def train_fn_per_worker(config):
    label = config["label"]
    train_df = ray.train.get_dataset_shard("train").materialize().to_pandas()
    x, y = train_df.drop(columns=[label]), train_df[label]
    dtrain = xgboost.DMatrix(x, label=y)
    xgboost.train(
        config["params"],
        dtrain=dtrain,
        num_boost_round=config["rounds"],
        callbacks=[RayTrainReportCallback()],
    )


def main():
    args = json.loads(sys.stdin.read())  # on stdin: the options may hold secrets, argv is public
    if args["model"] != "xgboost":
        raise SystemExit(f"raw ray baseline: only xgboost is written against Ray Train here, not {args['model']}")
    start = time.perf_counter()
    cpus = int((args.get("options") or {}).get("num_cpus") or os.cpu_count())
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    label, p = args["label"], args["params"]
    ds = ray.data.read_parquet(args["paths"])
    train_share = 1.0 - args["test_fraction"] - args["valid_fraction"]
    train_ds, rest = ds.train_test_split(test_size=1.0 - train_share, shuffle=True, seed=args["seed"])
    test_share = args["test_fraction"] / (args["test_fraction"] + args["valid_fraction"])
    _, test_ds = rest.train_test_split(test_size=test_share, seed=args["seed"])
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "eta": p["learning_rate"],
        "max_depth": p["max_depth"],
        "subsample": p["subsample"],
        "colsample_bytree": p["colsample_bytree"],
        "lambda": p["reg_lambda"],
        "min_child_weight": p["min_child_weight"],
        "max_bin": p["max_bin"],
        "seed": args["seed"],
    }
    workers = args["workers"] or 1
    storage = tempfile.mkdtemp(prefix="raw-ray-")
    try:
        trainer = XGBoostTrainer(
            train_fn_per_worker,
            train_loop_config={"label": label, "params": params, "rounds": p["n_estimators"]},
            datasets={"train": train_ds},
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": max(1, cpus // workers)}),
            run_config=RunConfig(storage_path=storage, name="raw"),
        )
        result = trainer.fit()
        booster = RayTrainReportCallback.get_model(result.checkpoint)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    test = test_ds.to_pandas()
    proba = booster.inplace_predict(test.drop(columns=[label]))
    auc = roc_auc_score(np.asarray(test[label]), proba)
    rows = ds.count()
    ray.shutdown()
    print(json.dumps({"seconds": time.perf_counter() - start, "auc": float(auc), "rows": int(rows)}), flush=True)
    # Ray's native io threads outlive ray.shutdown(); skip the C++ static teardown they can crash in,
    # as Ray's own workers do (the scaleclf side does the same in pipelines/process_exit.py).
    os._exit(0)


if __name__ == "__main__":
    main()
