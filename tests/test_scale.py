"""Bounded memory on the local engine: streamed fits equal in-memory ones, and peak memory does not grow with rows."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import base_spec

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def higgs_in_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return 20k HIGGS-like rows as Parquet in row groups of 3000: seven units for the streamed fits."""
    from pipelines.data.synthetic import write_dataset

    out = tmp_path_factory.mktemp("scale-data")
    [written] = write_dataset("higgs", 20_000, out / "whole.parquet", seed=0)
    pq.write_table(pq.read_table(written), out / "higgs.parquet", row_group_size=3000)
    return out / "higgs.parquet"


def _train(
    cli, tmp_path: Path, model: str, *settings: str, source: str = "synthetic:higgs", quiet: bool = True
) -> tuple[int, str, dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(base_spec(source, model=model, rows=20_000)))
    sets = [a for s in settings for a in ("--set", s)]
    result = cli("train", spec, "--out", tmp_path / "runs", *(["--quiet"] if quiet else []), *sets)
    if result.code:
        return result.code, result.err, {}
    return 0, result.err, json.loads((Path(result.last_line) / "metrics.json").read_text())


# The bound each model's streamed fit keeps to its in-memory fit on the same rows (test AUC).
STREAMED_EQUALS = [
    ("logistic_regression", 1e-6),  # the same objective, L-BFGS over spilled float32 batches
    ("naive_bayes", 1e-6),  # the same moments summed batch by batch
    ("xgboost", 0.01),  # external-memory quantiles (conformance bound)
    ("linear_svm", 0.01),  # LinearSVC's primal by L-BFGS instead of liblinear's dual
]


@pytest.mark.parametrize(("model", "bound"), STREAMED_EQUALS, ids=[m for m, _ in STREAMED_EQUALS])
def test_a_streamed_fit_scores_as_the_in_memory_fit(
    tmp_path: Path, cli, higgs_in_units: Path, monkeypatch: pytest.MonkeyPatch, model: str, bound: float
) -> None:
    from pipelines.engines.local import stream

    monkeypatch.setattr(stream, "SPILL_BATCH_ROWS", 5000)  # four spilled batches of two units each
    spill = tmp_path / "spill"
    spill.mkdir()
    fits = {}
    for layout in ("never", "always"):
        code, err, metrics = _train(
            cli,
            tmp_path / layout,
            model,
            f"engine.options.streaming={layout}",
            f"engine.options.spill_dir={spill}",
            source=str(higgs_in_units),
        )
        assert code == 0, err
        fits[layout] = metrics
    assert fits["never"]["engine_info"]["memory"]["layout"] == "in_memory"
    assert fits["always"]["engine_info"]["memory"]["layout"] == "streamed"
    assert fits["always"]["rows"] == fits["never"]["rows"]
    assert abs(fits["always"]["test"]["auc"] - fits["never"]["test"]["auc"]) <= bound
    assert list(spill.iterdir()) == [], "the spilled train features outlive the run"


def test_a_csv_source_streams_block_by_block_with_the_same_fit_and_the_same_errors(
    tmp_path: Path, cli, higgs_in_units: Path
) -> None:
    import pyarrow.csv as pacsv

    from pipelines.data.reader import csv_blocks, source_units
    from pipelines.data.schema import make_plan
    from pipelines.spec import build_spec

    csv = tmp_path / "higgs.csv"
    pacsv.write_csv(pq.read_table(higgs_in_units), csv)
    plan = make_plan(build_spec(base_spec(str(csv))).data, 7)
    assert len(list(csv_blocks(plan, source_units(plan.source)[0], plan.source))) > 2
    aucs = []
    for layout in ("never", "always"):
        code, err, metrics = _train(
            cli, tmp_path / layout, "logistic_regression", f"engine.options.streaming={layout}", source=str(csv)
        )
        assert code == 0, err
        aucs.append(metrics["test"]["auc"])
    assert abs(aucs[0] - aucs[1]) <= 1e-6
    lines = csv.read_text().splitlines()
    lines[15_000] = "oops," + lines[15_000].split(",", 1)[1]  # a text value deep in a float column, past block one
    csv.write_text("\n".join(lines) + "\n")
    errors = [
        _train(cli, tmp_path / f"bad-{s}", "logistic_regression", f"engine.options.streaming={s}", source=str(csv))
        for s in ("never", "always")
    ]
    assert errors[0][0] == errors[1][0] == 3
    assert errors[0][1] == errors[1][1] and str(csv) in errors[1][1]


def test_auto_streams_once_the_table_passes_half_of_resources_memory(tmp_path: Path, cli) -> None:
    # 20k HIGGS-like rows are estimated at ~308 MB in memory (300 MB of it the libraries).
    code, err, roomy = _train(cli, tmp_path / "a", "logistic_regression", "resources.memory=4GiB")
    assert code == 0, err
    code, err, tight = _train(cli, tmp_path / "b", "logistic_regression", "resources.memory=500MB")
    assert code == 0, err
    assert roomy["engine_info"]["memory"]["layout"] == "in_memory"
    assert tight["engine_info"]["memory"]["layout"] == "streamed"
    assert tight["engine_info"]["memory"]["budget_bytes"] == 500_000_000


def test_a_model_that_needs_every_row_refuses_beyond_resources_memory(tmp_path: Path, cli) -> None:
    code, err, _ = _train(cli, tmp_path, "decision_tree", "resources.memory=200MB")
    assert code == 2
    assert err.startswith("error: resources.memory: decision_tree on the local engine needs every train row")
    assert "estimated 0.3 GiB > resources.memory 0.2 GiB" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resources_memory_must_be_a_size(tmp_path: Path, cli) -> None:
    code, err, _ = _train(cli, tmp_path, "logistic_regression", "resources.memory=lots")
    assert code == 2 and "resources.memory" in err and "8GiB" in err


# --- slow: the same fit on 20x more rows under a cap the larger in-memory table would exceed --------

CAP = 1 << 30  # 1 GiB of RLIMIT_DATA (or cgroup memory.max): 4M rows in memory need ~2 GB


def _capped_run(model: str, rows: int, streaming: str, params: dict | None = None):
    from pipelines.bench import _pipeline_cmd, run_child
    from pipelines.spec import build_spec

    raw = base_spec("synthetic:higgs", model=model, rows=rows)
    raw["model"]["params"] = params or {}
    raw["engine"]["options"] = {"streaming": streaming}
    raw["output"]["dir"] = os.environ["SCALECLF_CACHE"] + "/scale-runs"
    cmd, payload = _pipeline_cmd(build_spec(raw))
    assert cmd[0] == sys.executable
    return run_child(cmd, "pipeline", timeout=900, payload=payload, memory_cap=CAP)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "params", "margin_mb"),
    # What still grows when streaming is the valid/test predictions the evaluation collects: ~29
    # bytes a row for logistic regression (+110 MB at 4M rows, measured on both sides of the 100 MB
    # margin this had), against ~1.8 GB for the in-memory path.
    [("logistic_regression", {}, 200), ("xgboost", {"n_estimators": 20}, 250)],
    ids=["logistic_regression", "xgboost"],
)
def test_peak_memory_does_not_grow_with_rows(model: str, params: dict, margin_mb: int) -> None:
    small = _capped_run(model, 200_000, "always", params)
    large = _capped_run(model, 4_000_000, "always", params)
    assert small.error is None and large.error is None, (small.error, large.error)
    assert large.detail["layout"] == small.detail["layout"] == "streamed"
    assert large.detail["rows"]["total"] == 4_000_000
    assert large.peak_rss_mb < small.peak_rss_mb + margin_mb, (small.peak_rss_mb, large.peak_rss_mb)
    # The cap is real: the in-memory path on the large table does not fit under it.
    in_memory = _capped_run(model, 4_000_000, "never", params)
    assert in_memory.error is not None


# --- the cost model and engine.name: auto ---------------------------------------------------------


def test_auto_picks_the_engine_the_cost_model_expects_fastest_and_records_estimate_and_actual(
    tmp_path: Path, cli
) -> None:
    code, err, metrics = _train(cli, tmp_path, "logistic_regression", "engine.name=auto", quiet=False)
    assert code == 0, err
    assert "engine.name auto: local (estimates: local ~" in err
    cost = metrics["cost"]
    assert cost["chosen_by"] == "auto" and cost["engine"] == "local" == metrics["engine"]
    fastest = min(cost["estimates"], key=lambda e: e["seconds"])
    assert fastest["engine"] == "local" and {e["engine"] for e in cost["estimates"]} >= {"local", "dask"}
    assert cost["actual"]["seconds"] > 0 and cost["actual"]["peak_mb"] > 100
    run_dir = next((tmp_path / "runs").iterdir())
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["engine"]["name"] == "local"


def test_a_run_on_a_named_engine_prints_and_records_its_estimate(tmp_path: Path, cli) -> None:
    code, err, metrics = _train(cli, tmp_path, "naive_bayes")
    assert code == 0, err
    assert metrics["cost"]["chosen_by"] == "spec" and [e["engine"] for e in metrics["cost"]["estimates"]] == ["local"]


def test_the_estimate_streams_the_local_engine_past_half_the_budget_and_auto_refuses_what_fits_nowhere() -> None:
    from pipelines.cost import choose, estimate
    from pipelines.errors import ConfigError
    from pipelines.spec import build_spec

    big = estimate("local", "logistic_regression", 100_000_000, 28, 16 << 30)
    assert big.layout == "streamed" and big.peak_mb < 4096  # in memory: ~45 GB; measured streamed: 2.7 GB
    assert estimate("local", "decision_tree", 100_000_000, 28, 16 << 30).layout == "in_memory"
    # Dask's streamed layout keeps float32 feature blocks: measured 15.2 GB at 100M rows, ~47 GB in memory.
    dask = estimate("dask", "logistic_regression", 100_000_000, 28, 24 << 30)
    assert dask.layout == "streamed" and 12_000 < dask.peak_mb < 18_000
    assert estimate("dask", "logistic_regression", 1_000_000, 28, 24 << 30).layout == "distributed"
    assert estimate("dask", "decision_tree", 100_000_000, 28, 24 << 30).layout == "distributed"
    assert (
        estimate("dask", "logistic_regression", 10_000_000, 56, 16 << 30).seconds
        > estimate("dask", "logistic_regression", 10_000_000, 28, 16 << 30).seconds
    )
    spec = build_spec(
        {**base_spec("synthetic:higgs", model="decision_tree", rows=1000), "resources": {"memory": "100MB"}}
        | {"engine": {"name": "auto"}}
    )
    with pytest.raises(ConfigError, match=r"engine.name: auto: no engine fits decision_tree on 100000000 rows"):
        choose(spec, 100_000_000, 28)


@pytest.mark.parametrize(
    ("model", "rows", "fastest"),
    [
        # The fastest engine measured idle on this machine (BENCHMARKS.md, auto against the fastest).
        ("logistic_regression", 10_000_000, "local"),  # 28.5 s against Dask's 50.0 s (A1)
        ("xgboost", 10_000_000, "local"),  # 134.6 s against 144.7 s (A2)
        ("logistic_regression", 100_000_000, "local"),  # streamed: 292 s against 361 s (M5, DM2)
        ("xgboost", 100_000_000, "dask"),  # streamed: 1,506 s against 1,783 s on one machine (DM4, M5 reruns)
    ],
)
def test_auto_picks_the_engine_measured_fastest_in_the_bench_rows(model: str, rows: int, fastest: str) -> None:
    from pipelines.cost import choose
    from pipelines.spec import build_spec

    raw = base_spec("synthetic:higgs", model=model, rows=1000) | {"engine": {"name": "auto"}}
    spec = build_spec(raw | {"resources": {"memory": "20GiB"}})  # 80 % of this machine's available memory
    picked, _ = choose(spec, rows, 28)
    assert picked == fastest


def test_bench_says_which_engine_auto_picks_at_each_size_and_how_it_ran(tmp_path: Path, cli) -> None:
    from tests.conftest import REPO

    args = ["bench", REPO / "conf" / "bench.yaml", "--rows", "2000,3000", "--repeats", "1", "--baselines", ""]
    result = cli(*args, "--out", tmp_path / "b", "--quiet")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert [(p["rows"], p["picked"], p["fastest"]) for p in report["auto"]] == [
        (2000, "local", "local"),
        (3000, "local", "local"),
    ]
    assert "engine.name auto at 3000 rows picks local (fastest measured: local, 1.00x)" in result.out
    assert (tmp_path / "b" / "bench_scaling.png").is_file()
