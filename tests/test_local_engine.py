"""The local engine end to end: every catalog model, the run directory, predict/evaluate, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.models.catalog import CATALOG
from pipelines.progress import Progress
from pipelines.run import train
from pipelines.spec import build_spec
from tests.conftest import REPO, base_spec
from tests.scenarios import FAST, SCENARIOS, Scenario

pytestmark = pytest.mark.local

RUN_FILES = [
    "spec.yaml",
    "metrics.json",
    "predictions.parquet",
    "model/manifest.json",
    "model/preprocess.json",
    "model/postprocess.json",
    "report.html",
    "plots/roc.png",
    "plots/pr.png",
    "plots/calibration.png",
    "plots/confusion_matrix.png",
    "plots/threshold.png",
]
METRIC_KEYS = {
    "auc",
    "pr_auc",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "brier",
    "ece",
}


def _train(raw: dict, tmp: Path) -> tuple[Path, dict]:
    raw = json.loads(json.dumps(raw))
    raw["output"] = {**raw.get("output", {}), "dir": str(tmp / "runs")}
    run_dir = train(build_spec(raw), Progress(quiet=True))
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_every_catalog_model_reaches_its_floor(scenario: Scenario, tmp_path: Path) -> None:
    run_dir, metrics = _train(scenario.spec("local"), tmp_path)
    assert metrics["test"][scenario.metric] >= scenario.min_score
    assert metrics["task"] == ("multiclass" if scenario.metric == "accuracy" else "binary")
    assert set(metrics["test"]) >= METRIC_KEYS and set(metrics["valid"]) >= METRIC_KEYS
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text())
    assert manifest["model"] == scenario.model and set(manifest["files"]) >= {
        f"model/{f}" for f in manifest["native_files"]
    }


def test_cli_train_writes_every_run_file_and_prints_the_run_dir_last(tmp_path: Path, cli) -> None:
    result = cli(
        "train",
        REPO / "conf" / "quickstart.yaml",
        "--set",
        "data.rows=4000",
        "--set",
        "model.params.n_estimators=20",
        "--out",
        tmp_path / "runs",
    )
    assert result.code == 0, result.err
    run_dir = Path(result.last_line)
    assert run_dir.parent == tmp_path / "runs"
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"load_s", "fit_s", "predict_s", "total_s"} <= set(metrics["timing"])
    assert metrics["engine"] == "local" and metrics["model"] == "xgboost"
    assert metrics["rows"]["test"] == pq.read_metadata(run_dir / "predictions.parquet").num_rows
    assert metrics["threshold"]["strategy"] == "max_f1"
    assert "report.html" in result.err
    assert not list((tmp_path / "runs").glob(".*"))  # no temporary directory left


def test_predict_and_evaluate_reproduce_the_test_split(tmp_path: Path, cli) -> None:
    spec = base_spec("synthetic:churn", label="churned", model="gbt", rows=3000, positive_label="yes")
    spec["model"]["params"] = {"n_estimators": 30}
    run_dir, metrics = _train(spec, tmp_path)
    result = cli("evaluate", run_dir, "--data", "synthetic:churn", "--quiet")
    assert result.code == 0, result.err
    evaluated = json.loads(result.out)
    assert evaluated["split"] == "test"
    for key, value in metrics["test"].items():
        assert evaluated["metrics"][key] == pytest.approx(value, rel=0, abs=1e-12), key
    out = tmp_path / "scored.parquet"
    assert cli("predict", run_dir, "--data", "synthetic:churn", "--out", out, "--quiet").code == 0
    original = pq.read_table(run_dir / "predictions.parquet").sort_by("row_key")
    again = pq.read_table(out).sort_by("row_key")
    assert original.equals(again)


def test_predict_without_label_scores_every_row(tmp_path: Path, cli) -> None:
    from pipelines.data.synthetic import write_dataset

    data = tmp_path / "higgs.parquet"
    write_dataset("higgs", 2000, data)
    run_dir, _ = _train(base_spec(str(data)), tmp_path)
    unlabeled = tmp_path / "unlabeled.parquet"
    pq.write_table(pq.read_table(data).drop_columns(["label"]).slice(0, 300), unlabeled)
    out = tmp_path / "p.parquet"
    result = cli("predict", run_dir, "--data", unlabeled, "--out", out)
    assert result.code == 0, result.err
    scored = pq.read_table(out)
    assert scored.num_rows == 300 and "label" not in scored.column_names
    np.testing.assert_allclose(pc_sum(scored), 1.0)


def pc_sum(table: pa.Table) -> np.ndarray:
    """Return the per-row sum of the proba_* columns."""
    cols = [c for c in table.column_names if c.startswith("proba_")]
    return np.sum([np.asarray(table.column(c)) for c in cols], axis=0)


def test_string_label_categoricals_and_missing_match_sklearn(tmp_path: Path, cli) -> None:
    """Acceptance: a Parquet file with a string label; LR AUC within 0.005 of a sklearn pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from pipelines.data.split import TEST, TRAIN, assign_split, row_keys
    from pipelines.data.synthetic import write_dataset

    data = tmp_path / "churn.parquet"
    write_dataset("churn", 20_000, data)
    result = cli(
        "train",
        REPO / "conf" / "churn.yaml",
        "--set",
        f"data.source={data}",
        "--set",
        "data.label=churned",
        "--set",
        "data.positive_label=yes",
        "--set",
        "model.class_weight=null",
        "--out",
        tmp_path / "runs",
    )
    assert result.code == 0, result.err
    ours = json.loads((Path(result.last_line) / "metrics.json").read_text())["test"]["auc"]

    table = pq.read_table(data)
    features = [c for c in table.column_names if c != "churned"]
    split = assign_split(row_keys(table, table.column_names), seed=42, valid=0.15, test=0.15)
    frame = table.to_pandas()
    numeric = [c for c in features if frame[c].dtype.kind in "fiub"]
    categorical = [c for c in features if c not in numeric]
    frame[categorical] = frame[categorical].astype(object).fillna("missing")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    y = (frame["churned"] == "yes").to_numpy()
    model.fit(frame.loc[split == TRAIN, features], y[split == TRAIN])
    reference = roc_auc_score(y[split == TEST], model.predict_proba(frame.loc[split == TEST, features])[:, 1])
    assert abs(ours - reference) < 0.005


def test_fixed_test_source_is_the_whole_test_split(tmp_path: Path) -> None:
    from pipelines.data.synthetic import write_dataset

    write_dataset("moons", 3000, tmp_path / "train.parquet")
    write_dataset("moons", 800, tmp_path / "test.parquet", seed=9)
    spec = base_spec(str(tmp_path / "train.parquet"), model="nystroem_svm", test_source=str(tmp_path / "test.parquet"))
    _, metrics = _train(spec, tmp_path)
    assert metrics["rows"]["test"] == 800
    assert metrics["rows"]["train"] + metrics["rows"]["valid"] == 3000
    assert metrics["test"]["auc"] > 0.9


def test_class_weights_raise_minority_recall(tmp_path: Path) -> None:
    spec = base_spec("synthetic:imbalanced", rows=20_000)
    _, plain = _train(spec, tmp_path)
    spec["model"]["class_weight"] = "balanced"
    _, weighted = _train(spec, tmp_path)
    assert weighted["test"]["recall"] > plain["test"]["recall"] + 0.2


def test_calibration_and_cost_threshold_are_fitted_on_valid(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "conf" / "imbalanced.yaml").read_text())
    spec["data"]["rows"] = 20_000
    spec["model"]["params"]["n_estimators"] = 40
    spec["output"] = {"report": False}
    run_dir, metrics = _train(spec, tmp_path)
    post = json.loads((run_dir / "model" / "postprocess.json").read_text())
    assert post["calibrator"]["method"] == "isotonic"
    assert metrics["threshold"]["strategy"] == "cost" and 0 < metrics["threshold"]["threshold"] < 0.5


def test_tuning_records_every_trial_and_keeps_the_best(tmp_path: Path) -> None:
    spec = yaml.safe_load((REPO / "conf" / "tuning.yaml").read_text())
    spec["data"]["rows"] = 5000
    spec["tuning"]["n_trials"] = 3
    spec["output"] = {"report": True}
    run_dir, metrics = _train(spec, tmp_path)
    trials = json.loads((run_dir / "tuning.json").read_text())["trials"]
    assert len(trials) == 3 and all(t["valid"]["auc"] is not None for t in trials)
    best = max(trials, key=lambda t: t["valid"]["auc"])
    assert metrics["params"]["max_depth"] == best["params"]["max_depth"]
    assert metrics["valid"]["auc"] == pytest.approx(best["valid"]["auc"], abs=1e-12)
    assert "Tuning (3 trials" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize("layout", ["csv", "directory", "glob"])
def test_csv_directories_and_globs_read_the_same_rows(layout: str, tmp_path: Path) -> None:
    from pipelines.data.synthetic import write_dataset

    write_dataset("circles", 4000, tmp_path / "one.parquet")
    table = pq.read_table(tmp_path / "one.parquet")
    parts = tmp_path / "parts"
    parts.mkdir()
    if layout == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, tmp_path / "one.csv")
        source = str(tmp_path / "one.csv")
    else:
        for i in range(3):
            pq.write_table(table.slice(i * 1500, 1500), parts / f"part-{i}.parquet")
        source = str(parts) if layout == "directory" else str(parts / "part-*.parquet")
    _, reference = _train(base_spec(str(tmp_path / "one.parquet")), tmp_path)
    _, metrics = _train(base_spec(source), tmp_path)
    assert metrics["rows"] == reference["rows"]
    assert metrics["test"]["auc"] == pytest.approx(reference["test"]["auc"], abs=1e-9)


def test_tampered_model_is_refused(tmp_path: Path, cli) -> None:
    run_dir, _ = _train(base_spec("builtin:breast_cancer", label="target"), tmp_path)
    preprocess = run_dir / "model" / "preprocess.json"
    preprocess.write_text(preprocess.read_text().replace('"mean": ', '"mean": 1'))
    result = cli("evaluate", run_dir, "--data", "builtin:breast_cancer")
    assert result.code == 5
    assert "does not match its sha256" in result.err and len(result.err.strip().splitlines()) == 1


def test_mlflow_logs_params_metrics_artifacts_and_a_loadable_model(tmp_path: Path, monkeypatch, cli) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'ml.db'}")
    spec = base_spec("builtin:wine", label="target")
    spec["output"] = {"mlflow": True, "mlflow_experiment": "wine", "report": True, "dir": str(tmp_path / "runs")}
    config = tmp_path / "wine.yaml"
    config.write_text(json.dumps(spec))
    result = cli("train", config)
    assert result.code == 0, result.err
    run_dir = Path(result.last_line)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'ml.db'}")
    runs = mlflow.search_runs(experiment_names=["wine"], output_format="list")
    assert len(runs) == 1
    logged = runs[0]
    assert f"MLflow run {logged.info.run_id}, model models:/" in result.err
    assert logged.data.metrics["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert logged.data.params["model.name"] == "logistic_regression"
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(logged.info.run_id)}
    assert {"metrics.json", "report.html", "spec.yaml", "plots"} <= names
    # The pyfunc model predicts what predict writes; the native flavor is scikit-learn's (skops).
    out = tmp_path / "p.parquet"
    assert cli("predict", run_dir, "--data", "builtin:wine", "--split", "all", "--out", out, "-q").code == 0
    from pipelines.data.sources import read_table, resolve_source

    rows = read_table(resolve_source("builtin:wine")).to_pandas()
    got = mlflow.pyfunc.load_model(f"runs:/{logged.info.run_id}/model").predict(rows)
    want = pq.read_table(out)
    for cls in ("0", "1", "2"):
        np.testing.assert_allclose(got[f"proba_{cls}"], want.column(f"proba_{cls}").to_numpy(), rtol=0, atol=1e-9)
    native = mlflow.sklearn.load_model(f"runs:/{logged.info.run_id}/native_model")
    assert type(native).__name__ == "LogisticRegression"


@pytest.mark.parametrize("model", sorted(CATALOG))
def test_balanced_class_weight_works_for_every_model(model: str, tmp_path: Path) -> None:
    spec = base_spec("synthetic:imbalanced", model=model, rows=6000)
    spec["model"]["params"] = dict(FAST.get(model, {}))
    plain_dir, plain = _train(spec, tmp_path)
    spec["model"]["class_weight"] = "balanced"
    weighted_dir, weighted = _train(spec, tmp_path)
    manifest = json.loads((weighted_dir / "model" / "manifest.json").read_text())
    counts = np.asarray(manifest["task"]["class_counts"], dtype=float)
    np.testing.assert_allclose(manifest["class_weights"], counts.sum() / (2 * counts))
    p_plain = pq.read_table(plain_dir / "predictions.parquet").column("proba_1").to_numpy()
    p_weighted = pq.read_table(weighted_dir / "predictions.parquet").column("proba_1").to_numpy()
    # Up-weighting the rare positives must move probability mass towards them.
    assert p_weighted.mean() > p_plain.mean()
    assert weighted["test"]["recall"] >= plain["test"]["recall"]
