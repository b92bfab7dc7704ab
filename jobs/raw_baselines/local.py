"""Raw baseline for the local engine: the model written directly in scikit-learn / xgboost.

Standalone on purpose (imports no scaleclf code): reads the Parquet files, splits at random,
imputes and scales, fits, predicts the test split and prints one JSON line with the seconds
taken and the test AUC. Usage: python jobs/raw_baselines/local.py ARGS_JSON
"""

import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def estimator(name, p, seed, n_jobs):
    if name == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=p["C"], max_iter=p["max_iter"], tol=p["tol"], random_state=seed)
    if name == "linear_svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC

        return CalibratedClassifierCV(LinearSVC(C=p["C"], max_iter=p["max_iter"], tol=p["tol"]), cv=3)
    if name == "naive_bayes":
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB(var_smoothing=p["var_smoothing"])
    if name == "decision_tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(
            max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"], random_state=seed
        )
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        mf = None if p["max_features"] == "all" else p["max_features"]
        return RandomForestClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=mf,
            n_jobs=n_jobs,
            random_state=seed,
        )
    if name == "gbt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_leaf_nodes=None,
            early_stopping=False,
            random_state=seed,
        )
    if name == "xgboost":
        import xgboost

        return xgboost.XGBClassifier(
            n_estimators=p["n_estimators"],
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            subsample=p["subsample"],
            colsample_bytree=p["colsample_bytree"],
            reg_lambda=p["reg_lambda"],
            min_child_weight=p["min_child_weight"],
            max_bin=p["max_bin"],
            tree_method="hist",
            n_jobs=n_jobs,
            random_state=seed,
        )
    if name == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=tuple(p["hidden_layer_sizes"]),
            alpha=p["alpha"],
            learning_rate_init=p["learning_rate_init"],
            max_iter=p["max_iter"],
            batch_size=p["batch_size"],
            random_state=seed,
        )
    if name in ("rff_svm", "nystroem_svm"):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.kernel_approximation import Nystroem, RBFSampler
        from sklearn.svm import LinearSVC

        gamma = p["gamma"] if p["gamma"] is not None else "scale"
        kernel = (
            RBFSampler(gamma=1.0 if gamma == "scale" else gamma, n_components=p["n_components"], random_state=seed)
            if name == "rff_svm"
            else Nystroem(gamma=None if gamma == "scale" else gamma, n_components=p["n_components"], random_state=seed)
        )
        return make_pipeline(kernel, CalibratedClassifierCV(LinearSVC(C=p["C"], max_iter=p["max_iter"]), cv=3))
    raise SystemExit(f"raw local baseline: unknown model {name}")


def main():
    args = json.loads(sys.stdin.read())  # on stdin: the options may hold secrets, argv is public
    start = time.perf_counter()
    table = pq.ParquetDataset(args["paths"]).read()
    label = args["label"]
    y = np.asarray(table.column(label).to_numpy(zero_copy_only=False))
    features = [c for c in table.column_names if c != label]
    kinds = {c: table.schema.field(c).type for c in features}
    numeric = [
        c
        for c in features
        if pa.types.is_integer(kinds[c]) or pa.types.is_floating(kinds[c]) or pa.types.is_boolean(kinds[c])
    ]
    categorical = [c for c in features if c not in numeric]
    frame = table.select(features).to_pandas()
    # Same shares as the pipeline: fit on the train share, score the test share.
    train_size = 1.0 - args["test_fraction"] - args["valid_fraction"]
    x_train, x_rest, y_train, y_rest = train_test_split(
        frame, y, train_size=train_size, random_state=args["seed"], stratify=y
    )
    test_share = args["test_fraction"] / (args["test_fraction"] + args["valid_fraction"])
    x_test, y_test = x_rest.iloc[: int(len(x_rest) * test_share)], y_rest[: int(len(x_rest) * test_share)]
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
                ),
                categorical,
            ),
        ]
    )
    model = make_pipeline(
        prep, estimator(args["model"], args["params"], args["seed"], args["workers"] or os.cpu_count())
    )
    model.fit(x_train, y_train)
    proba = model.predict_proba(x_test)
    classes = model.classes_
    if len(classes) == 2:
        auc = roc_auc_score(y_test == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)
    print(json.dumps({"seconds": time.perf_counter() - start, "auc": float(auc), "rows": int(table.num_rows)}))


if __name__ == "__main__":
    main()
