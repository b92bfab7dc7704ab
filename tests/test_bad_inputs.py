"""Bad configs and bad data: each gives one line naming the problem, a non-zero exit, no run dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import base_spec

pytestmark = pytest.mark.local


def _good_table(n: int = 400, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return {"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] + rng.normal(size=n) > 0).astype(np.int64)}


def _parquet(path: Path, columns: dict[str, object]) -> str:
    pq.write_table(pa.table(columns), path)
    return str(path)


def _spec(tmp: Path, spec: dict) -> str:
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _train(tmp: Path, spec: dict, *extra: str) -> list[str]:
    return ["train", _spec(tmp, spec), "--out", str(tmp / "runs"), *extra]


def _good(tmp: Path, **columns: object) -> str:
    return _parquet(tmp / "data.parquet", {**_good_table(), **columns})


def case_missing_config(tmp: Path) -> list[str]:
    return ["train", str(tmp / "nope.yaml")]


def case_invalid_yaml(tmp: Path) -> list[str]:
    (tmp / "job.yaml").write_text("data: [unclosed\n")
    return ["train", str(tmp / "job.yaml")]


def case_unknown_section(tmp: Path) -> list[str]:
    return _train(tmp, {**base_spec(_good(tmp)), "modle": {}})


def case_unknown_data_key(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "data.sorce=x.parquet")


def case_unknown_model(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.name=deep_forest")


def case_unknown_param(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.params.lr=0.1")


def case_param_wrong_type(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.params.C=strong")


def case_param_out_of_range(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.params.C=-1")


def case_unknown_engine(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "engine.name=hadoop")


def case_unknown_engine_option(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--engine", "hadoop")


def case_set_without_value(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.params.C")


def case_split_not_one(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "data.split.train=0.9")


def case_bad_calibration(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.calibration=platt")


def case_bad_threshold_strategy(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "evaluation.threshold.strategy=youden")


def case_tuning_unknown_param(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "tuning.enabled=true", "--set", "tuning.space={depth: [1, 2]}")


def case_synthetic_without_rows(tmp: Path) -> list[str]:
    return _train(tmp, base_spec("synthetic:higgs"))


def case_unknown_synthetic(tmp: Path) -> list[str]:
    return _train(tmp, {**base_spec("synthetic:galaxy"), "data": {"source": "synthetic:galaxy", "rows": 100}})


def case_downloadable_builtin(tmp: Path) -> list[str]:
    return _train(tmp, base_spec("builtin:covtype", label="target"))


def case_source_missing(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(str(tmp / "absent.parquet")))


def case_empty_file(tmp: Path) -> list[str]:
    (tmp / "empty.parquet").write_bytes(b"")
    return _train(tmp, base_spec(str(tmp / "empty.parquet")))


def case_corrupt_parquet(tmp: Path) -> list[str]:
    (tmp / "bad.parquet").write_bytes(b"PAR1 this is not really parquet at all PAR1")
    return _train(tmp, base_spec(str(tmp / "bad.parquet")))


def case_csv_header_only(tmp: Path) -> list[str]:
    (tmp / "head.csv").write_text("a,b,label\n")
    return _train(tmp, base_spec(str(tmp / "head.csv")))


def case_missing_label(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp), label="target"))


def case_single_class(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp, label=np.zeros(400, dtype=np.int64))))


def case_all_missing_column(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp, d=pa.array([None] * 400, pa.float64()))))


def case_infinite_values(tmp: Path) -> list[str]:
    values = np.zeros(400)
    values[::7] = np.inf
    return _train(tmp, base_spec(_good(tmp, d=values)))


def case_label_with_nulls(tmp: Path) -> list[str]:
    labels = pa.array([None if i % 50 == 0 else i % 2 for i in range(400)], pa.int64())
    return _train(tmp, base_spec(_good(tmp, label=labels)))


def case_unseen_test_label(tmp: Path) -> list[str]:
    test = _good_table(100, seed=1)
    test["label"] = np.full(100, 7, dtype=np.int64)
    spec = base_spec(_good(tmp), test_source=_parquet(tmp / "test.parquet", test))
    return _train(tmp, spec)


def case_string_label_without_positive(tmp: Path) -> list[str]:
    labels = np.where(_good_table()["label"] == 1, "churn", "stay")
    return _train(tmp, base_spec(_good(tmp, label=labels)))


def case_positive_label_not_a_value(tmp: Path) -> list[str]:
    labels = np.where(_good_table()["label"] == 1, "churn", "stay")
    return _train(tmp, base_spec(_good(tmp, label=labels), positive_label="yes"))


def case_feature_not_in_data(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp), features=["a", "zz"]))


def case_unsupported_column_type(tmp: Path) -> list[str]:
    stamps = pa.array(np.arange(400).astype("datetime64[s]"))
    return _train(tmp, base_spec(_good(tmp, when=stamps)))


def case_class_weight_unknown_label(tmp: Path) -> list[str]:
    spec = base_spec(_good(tmp))
    spec["model"]["class_weight"] = {"5": 2.0}
    return _train(tmp, spec)


def case_predict_not_a_run(tmp: Path) -> list[str]:
    return ["predict", str(tmp), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "missing config": (case_missing_config, "nope.yaml does not exist"),
    "invalid yaml": (case_invalid_yaml, "invalid YAML"),
    "unknown section": (case_unknown_section, "modle: unknown key"),
    "unknown data key": (case_unknown_data_key, "data.sorce: unknown key"),
    "unknown model": (case_unknown_model, "model.name: unknown model 'deep_forest'"),
    "unknown param": (case_unknown_param, "model.params.lr: unknown parameter"),
    "param wrong type": (case_param_wrong_type, "model.params.C: expected float"),
    "param out of range": (case_param_out_of_range, "model.params.C: must be >="),
    "unknown engine": (case_unknown_engine, "engine.name: 'hadoop' is not allowed"),
    "unknown --engine": (case_unknown_engine_option, "'hadoop' is not one of 'local', 'spark', 'dask', 'ray'"),
    "--set without value": (case_set_without_value, "expected KEY=VALUE"),
    "split not summing to 1": (case_split_not_one, "data.split: train + valid + test must be 1"),
    "bad calibration": (case_bad_calibration, "model.calibration: 'platt' is not allowed"),
    "bad threshold strategy": (case_bad_threshold_strategy, "evaluation.threshold.strategy"),
    "tuning unknown param": (case_tuning_unknown_param, "tuning.space.depth: unknown parameter"),
    "synthetic without rows": (case_synthetic_without_rows, "data.rows: required"),
    "unknown synthetic": (case_unknown_synthetic, "galaxy"),
    "downloadable builtin": (case_downloadable_builtin, "covtype"),
    "source missing": (case_source_missing, "absent.parquet does not exist"),
    "empty file": (case_empty_file, "is empty"),
    "corrupt parquet": (case_corrupt_parquet, "cannot read"),
    "csv header only": (case_csv_header_only, "has no rows"),
    "missing label": (case_missing_label, "data.label: column 'target' is not in"),
    "single class": (case_single_class, "single class"),
    "all-missing column": (case_all_missing_column, "column 'd' has no values in the train split"),
    "infinite values": (case_infinite_values, "column 'd' has"),
    "label with nulls": (case_label_with_nulls, "missing values"),
    "unseen test label": (case_unseen_test_label, "never occur in train"),
    "string label, no positive": (case_string_label_without_positive, "data.positive_label: required"),
    "positive label not a value": (case_positive_label_not_a_value, "data.positive_label: 'yes' is not a value"),
    "feature not in data": (case_feature_not_in_data, "data.features: column 'zz'"),
    "unsupported column type": (case_unsupported_column_type, "column 'when' has type timestamp"),
    "class weight unknown label": (case_class_weight_unknown_label, "model.class_weight.5: not a label value"),
    "predict: not a run": (case_predict_not_a_run, "not a scaleclf run directory"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_no_run_dir(name: str, tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_args, expected = CASES[name]
    result = cli(*make_args(tmp_path))
    err_lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code != 0
    assert "Traceback" not in result.err + result.out
    assert len(err_lines) == 1, result.err
    assert err_lines[0].startswith("error: ")
    assert expected in err_lines[0]
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_case_list_is_long_enough() -> None:
    assert len(CASES) >= 20
