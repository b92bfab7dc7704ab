"""CLI commands beyond train: data generation, the model catalog, bench, URI sources, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, base_spec

pytestmark = pytest.mark.local


def test_data_generate_writes_the_rows_and_prints_the_path(tmp_path: Path, cli) -> None:
    out = tmp_path / "churn.parquet"
    result = cli("data", "generate", "churn", "--rows", "1234", "--out", out, "--quiet")
    assert result.code == 0, result.err
    assert result.last_line == str(out)
    table = pq.read_table(out)
    assert table.num_rows == 1234 and "churned" in table.column_names


def test_data_generate_refuses_an_unknown_task(tmp_path: Path, cli) -> None:
    result = cli("data", "generate", "galaxy", "--rows", "10", "--out", tmp_path / "x.parquet")
    assert result.code == 2 and "higgs" in result.err and not (tmp_path / "x.parquet").exists()


def test_models_lists_capabilities_and_engines(cli) -> None:
    result = cli("models")
    assert result.code == 0
    assert "rff_svm: random Fourier features" in result.out
    assert "local  sklearn LogisticRegression" in result.out


def test_bench_prints_the_table_and_writes_bench_json(tmp_path: Path, cli) -> None:
    result = cli(
        "bench",
        REPO / "conf" / "bench.yaml",
        "--engines",
        "local",
        "--rows",
        "3000",
        "--repeats",
        "1",
        "--out",
        tmp_path / "bench",
        "--quiet",
    )
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    row = report["results"][0]
    assert row["engine"] == "local" and row["rows"] == 3000
    assert (
        row["pipeline_s"] > 0 and row["raw_s"] > 0 and row["ratio"] == pytest.approx(row["pipeline_s"] / row["raw_s"])
    )
    assert 0.6 < row["pipeline_auc"] < 0.8 and 0.6 < row["raw_auc"] < 0.8
    assert row["pipeline_peak_mb"] > 50 and row["raw_peak_mb"] > 50
    assert (tmp_path / "bench" / "bench.png").is_file()
    assert "local" in result.out and "ratio" in result.out
    # Against the single-process (local raw) baseline of the same size: for local, the ratio itself.
    assert row["vs_single"] == pytest.approx(row["ratio"]) and "x single" in result.out
    assert report["baselines"] == ["local"]


def test_bench_times_only_the_pipeline_of_engines_left_out_of_baselines(tmp_path: Path, cli) -> None:
    args = ["bench", REPO / "conf" / "bench.yaml", "--engines", "local", "--rows", "2000", "--repeats", "1"]
    result = cli(*args, "--baselines", "", "--out", tmp_path / "b", "--quiet")
    assert result.code == 0, result.err
    row = json.loads((tmp_path / "b" / "bench.json").read_text())["results"][0]
    assert row["pipeline_s"] > 0 and row["raw_s"] is None and row["ratio"] is None and row["vs_single"] is None
    assert row["runs"]["raw"] == [] and len(row["runs"]["pipeline"]) == 1
    refused = cli(*args, "--baselines", "ray", "--out", tmp_path / "c", "--quiet")
    assert refused.code == 2 and "--baselines: ray is not one of --engines" in refused.err
    assert not (tmp_path / "c").exists()


def test_compare_tabulates_each_engines_test_metrics_from_its_own_run(tmp_path: Path, cli) -> None:
    config = tmp_path / "spec.yaml"
    config.write_text(
        "name: cmp\ndata: {source: 'builtin:breast_cancer', label: target}\n"
        "model: {name: decision_tree, params: {max_depth: 3}}\nengine: {name: local, workers: 1}\n"
    )
    out = tmp_path / "cmp"
    models = "decision_tree,naive_bayes"
    result = cli("compare", config, "--engines", "local,local", "--models", models, "--out", out, "--quiet")
    assert result.code == 0, result.err
    report = json.loads((out / "compare.json").read_text())
    entries = report["entries"]
    assert [(e["model"], e["engine"]) for e in entries] == [
        ("decision_tree", "local"),
        ("decision_tree", "local"),
        ("naive_bayes", "local"),
        ("naive_bayes", "local"),
    ]
    for entry in entries:  # each figure is the run's own metrics.json, and one engine twice agrees with itself
        metrics = json.loads((Path(entry["run_dir"]) / "metrics.json").read_text())
        assert entry["test"]["auc"] == metrics["test"]["auc"] and entry["gap"]["auc"] == 0.0
    spec_text = (Path(entries[0]["run_dir"]) / "spec.yaml").read_text()
    assert "max_depth: 3" in spec_text  # the spec's params for its own model
    assert "naive_bayes" in result.out and "decision_tree" in result.out


def test_compare_lists_a_refused_model_with_the_reason_and_names_bad_options(tmp_path: Path, cli) -> None:
    config = tmp_path / "spec.yaml"
    config.write_text("name: cmp\ndata: {source: 'builtin:breast_cancer', label: target}\nmodel: {name: mlp}\n")
    result = cli("compare", config, "--engines", "local,dask", "--out", tmp_path / "c", "--quiet")
    assert result.code == 0, result.err
    entries = json.loads((tmp_path / "c" / "compare.json").read_text())["entries"]
    assert entries[1]["engine"] == "dask" and "data-parallel" in entries[1]["refused"]
    assert "refused:" in result.out
    bad = cli("compare", config, "--engines", "local,flink", "--out", tmp_path / "d")
    assert bad.code == 2 and "--engines" in bad.err and "flink" in bad.err
    bad = cli("compare", config, "--engines", "local", "--address", "spark", "--out", tmp_path / "d")
    assert bad.code == 2 and "--address" in bad.err


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_uri_sources(scheme: str, tmp_path: Path) -> None:
    import fsspec

    from pipelines.data.synthetic import write_dataset
    from pipelines.progress import Progress
    from pipelines.run import train
    from pipelines.spec import build_spec

    local = tmp_path / "moons.parquet"
    write_dataset("moons", 2000, local)
    if scheme == "file":
        uri = local.as_uri()
    else:
        uri = "memory://scaleclf-test/moons.parquet"
        with fsspec.open(uri, "wb") as fh:
            fh.write(local.read_bytes())
    raw = base_spec(uri)
    raw["output"]["dir"] = str(tmp_path / "runs")
    run_dir = train(build_spec(raw), Progress(quiet=True))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["rows"]["total"] == 2000


def test_console_script_help_and_one_line_errors(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("scaleclf")
    ok = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "train" in ok.stdout and "federate" in ok.stdout
    bad = subprocess.run([exe, "train", tmp_path / "missing.yaml"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: config file {tmp_path / 'missing.yaml'} does not exist"]
