"""Raw baseline for the Spark engine: the model written directly against pyspark.ml (and xgboost.spark).

Standalone on purpose (imports no scaleclf code): starts a session like the engine does, reads
the same Parquet files (same partitions), splits with randomSplit, imputes, scales and one-hot
encodes with MLlib stages, fits, predicts the test split and prints one JSON line with the
seconds taken (session start included, as on the pipeline side) and the test AUC.
Usage: python jobs/raw_baselines/spark.py ARGS_JSON
"""

import json
import os
import sys
import tempfile
import time

from pyspark.ml import Pipeline
from pyspark.ml import classification as mc
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T


def estimator(name, p, seed, n, k, workers):
    reg = 1.0 / (p.get("C", 1.0) * n)
    if name == "logistic_regression":
        return mc.LogisticRegression(
            regParam=reg, maxIter=p["max_iter"], tol=min(p["tol"], 1e-6), standardization=False
        )
    if name == "linear_svm":
        svm = mc.LinearSVC(regParam=reg, maxIter=p["max_iter"], tol=p["tol"], standardization=False)  # as the engine
        return svm if k == 2 else mc.OneVsRest(classifier=svm, parallelism=workers)
    if name == "naive_bayes":
        return mc.NaiveBayes(modelType="gaussian")
    if name == "decision_tree":
        return mc.DecisionTreeClassifier(
            maxDepth=p["max_depth"], minInstancesPerNode=p["min_samples_leaf"], maxBins=256, seed=seed
        )
    if name == "random_forest":
        return mc.RandomForestClassifier(
            numTrees=p["n_estimators"],
            maxDepth=p["max_depth"],
            minInstancesPerNode=p["min_samples_leaf"],
            featureSubsetStrategy=p["max_features"],
            maxBins=256,
            seed=seed,
        )
    if name == "gbt":
        gbt = mc.GBTClassifier(
            maxIter=p["n_estimators"],
            stepSize=p["learning_rate"],
            maxDepth=p["max_depth"],
            minInstancesPerNode=p["min_samples_leaf"],
            maxBins=256,
            seed=seed,
        )
        return gbt if k == 2 else mc.OneVsRest(classifier=gbt, parallelism=workers)
    if name == "xgboost":
        from xgboost.spark import SparkXGBClassifier

        return SparkXGBClassifier(
            num_workers=workers,
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
            verbose=False,
        )
    raise SystemExit(f"raw spark baseline: no raw MLlib baseline for {name}")


def main():
    args = json.loads(sys.stdin.read())  # on stdin: the options may hold secrets, argv is public
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    start = time.perf_counter()
    workers = args["workers"] or os.cpu_count() or 2
    master = args["address"] or f"local[{workers}]"
    builder = SparkSession.builder.master(master).appName("raw-mllib")
    conf = {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.local.dir": tempfile.mkdtemp(prefix="raw-spark-"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": str(2 * workers),
        "spark.driver.memory": "2g",
    }
    for key, value in {**conf, **{k: str(v) for k, v in args["options"].items() if k.startswith("spark.")}}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.read.parquet(*args["paths"])
    label = args["label"]
    numeric_types = (T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.ShortType, T.ByteType, T.BooleanType)
    features = [f for f in frame.schema.fields if f.name != label]
    numeric = [f.name for f in features if isinstance(f.dataType, numeric_types)]
    categorical = [f.name for f in features if f.name not in numeric]
    frame = frame.select(*[F.col(c).cast("double") for c in numeric], *categorical, F.col(label).alias("label_raw"))
    test, valid = args["test_fraction"], args["valid_fraction"]
    train_df, _, test_df = frame.randomSplit([1.0 - test - valid, valid, test], seed=args["seed"])
    train_df = train_df.cache()
    stages = [
        StringIndexer(inputCol="label_raw", outputCol="label", stringOrderType="alphabetAsc"),
        Imputer(inputCols=numeric, outputCols=[f"{c}_i" for c in numeric]),
        VectorAssembler(inputCols=[f"{c}_i" for c in numeric], outputCol="num"),
        StandardScaler(inputCol="num", outputCol="num_s", withMean=True, withStd=True),
    ]
    parts = ["num_s"]
    for c in categorical:
        stages += [
            StringIndexer(inputCol=c, outputCol=f"{c}_x", handleInvalid="keep"),
            OneHotEncoder(inputCol=f"{c}_x", outputCol=f"{c}_v", handleInvalid="keep"),
        ]
        parts.append(f"{c}_v")
    stages.append(VectorAssembler(inputCols=parts, outputCol="features"))
    n = train_df.count()
    k = train_df.select("label_raw").distinct().count()
    stages.append(estimator(args["model"], args["params"], args["seed"], n, k, workers))
    model = Pipeline(stages=stages).fit(train_df)
    scored = model.transform(test_df)
    if k == 2:
        auc = BinaryClassificationEvaluator(rawPredictionCol="rawPrediction", metricName="areaUnderROC").evaluate(
            scored
        )
    else:  # MLlib has no multiclass AUC: one-vs-rest macro AUC as the pipeline reports it
        from pyspark.ml.functions import vector_to_array
        from sklearn.metrics import roc_auc_score

        got = scored.select("label", vector_to_array("probability").alias("p")).toPandas()
        auc = roc_auc_score(got["label"].astype(int), list(got["p"]), multi_class="ovr", average="macro")
    seconds = time.perf_counter() - start
    spark.stop()
    print(json.dumps({"seconds": seconds, "auc": float(auc), "rows": int(n)}))


if __name__ == "__main__":
    main()
