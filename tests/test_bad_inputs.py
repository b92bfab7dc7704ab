"""Bad configs and bad data: each gives one line naming the problem, a non-zero exit, no run dir."""

from __future__ import annotations

import itertools
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


# --- issue 17: the data, spec and artifact contract ------------------------------------------


def _raw_spec(tmp: Path, text: str) -> list[str]:
    (tmp / "job.yaml").write_text(text)
    return ["train", str(tmp / "job.yaml"), "--out", str(tmp / "runs")]


def case_duplicate_key(tmp: Path) -> list[str]:
    return _raw_spec(
        tmp, f"name: t\ndata: {{source: '{_good(tmp)}'}}\nmodel:\n  name: logistic_regression\n  name: xgboost\n"
    )


def case_duplicate_section(tmp: Path) -> list[str]:
    src = _good(tmp)
    return _raw_spec(tmp, f"data: {{source: '{src}'}}\nmodel: {{name: mlp}}\ndata: {{source: '{src}'}}\n")


def case_alias_bomb(tmp: Path) -> list[str]:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in itertools.pairwise("abcdefghi"):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return _raw_spec(tmp, "\n".join(levels) + "\n")


def case_alias_in_set(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "name=*a")


def case_merge_key_alias(tmp: Path) -> list[str]:
    return _raw_spec(tmp, f"base: &b {{name: mlp}}\ndata: {{source: '{_good(tmp)}'}}\nmodel:\n  <<: *b\n")


def case_run_name_parent(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "output.run_name=./../x")


def case_run_name_dotdot(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "output.run_name=..")


def case_run_name_absolute(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", f"output.run_name={tmp / 'elsewhere'}")


def case_run_name_hidden(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "output.run_name=.hidden")


def case_run_name_empty(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "output.run_name=' '")


def case_negative_class_weight(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.class_weight={0: 1, 1: -3}")


def case_zero_class_weight(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.class_weight={1: 0}")


def case_empty_class_weight(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.class_weight={}")


def case_class_weight_string_key_unknown(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.class_weight={cat: 2}")


def case_zero_costs(tmp: Path) -> list[str]:
    args = ["--set", "evaluation.threshold.strategy=cost", "--set", "evaluation.threshold.cost_fp=0"]
    return _train(tmp, base_spec(_good(tmp)), *args, "--set", "evaluation.threshold.cost_fn=0")


def case_negative_cost(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "evaluation.threshold.cost_fn=-1e-3")


def case_nan_threshold(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "evaluation.threshold.value=.nan")


def case_infinite_noise(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "federated.privacy.noise_multiplier=.inf")


def case_nan_param(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.params.C=.nan")


def case_exponent_out_of_range(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "model.params.C=-1e-5")


def case_split_exponent(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "data.split.valid=15e-1")


def case_rows_zero(tmp: Path) -> list[str]:
    return _train(tmp, base_spec("synthetic:higgs", rows=0))


def case_negative_seed(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "seed=-1")


def case_one_ece_bin(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "evaluation.ece_bins=1")


def case_zero_trials(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "tuning.n_trials=0")


def case_zero_workers(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "engine.workers=0")


def case_zero_max_categories(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "data.max_categories=0")


def case_set_into_a_value(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "seed.x=1")


def case_spec_is_a_list(tmp: Path) -> list[str]:
    return _raw_spec(tmp, "- data\n- model\n")


def case_spec_is_empty(tmp: Path) -> list[str]:
    return _raw_spec(tmp, "# nothing\n")


def case_unknown_local_engine_option(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp)), "--set", "engine.options={spark.executor.memory: 2g}")


def case_nan_label(tmp: Path) -> list[str]:
    labels = _good_table()["label"].astype(np.float64)
    labels[::40] = np.nan
    return _train(tmp, base_spec(_good(tmp, label=labels)))


def case_infinite_label(tmp: Path) -> list[str]:
    labels = _good_table()["label"].astype(np.float64)
    labels[3] = np.inf
    return _train(tmp, base_spec(_good(tmp, label=labels)))


def case_test_source_is_train(tmp: Path) -> list[str]:
    data = _good(tmp)
    return _train(tmp, base_spec(data, test_source=data))


def _two_files(tmp: Path, drop_from_second: str) -> str:
    folder = tmp / "parts"
    folder.mkdir()
    first, second = _good_table(200, seed=1), _good_table(200, seed=2)
    del second[drop_from_second]
    _parquet(folder / "part-0.parquet", first)
    _parquet(folder / "part-1.parquet", second)
    return str(folder)


def case_multi_file_missing_column(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_two_files(tmp, "c")))


def case_signing_key_file_missing(tmp: Path) -> list[str]:
    import os

    os.environ.pop("SCALECLF_SIGNING_KEY")  # the test restores both
    os.environ["SCALECLF_SIGNING_KEY_FILE"] = str(tmp / "no-such-key")
    (tmp / "spec.yaml").write_text("name: x\n")
    (tmp / "model").mkdir()
    (tmp / "model" / "manifest.json").write_text('{"format_version": 3, "files": {}}')
    return ["predict", str(tmp), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


def case_predict_run_without_manifest(tmp: Path) -> list[str]:
    (tmp / "spec.yaml").write_text("name: x\n")
    return ["predict", str(tmp), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


def case_predict_manifest_not_json(tmp: Path) -> list[str]:
    (tmp / "spec.yaml").write_text("name: x\n")
    (tmp / "model").mkdir()
    (tmp / "model" / "manifest.json").write_text("{not json")
    return ["predict", str(tmp), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


def case_predict_old_format(tmp: Path) -> list[str]:
    (tmp / "spec.yaml").write_text("name: x\n")
    (tmp / "model").mkdir()
    (tmp / "model" / "manifest.json").write_text('{"format_version": 2, "files": {}}')
    return ["predict", str(tmp), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


def _trained(tmp: Path, seed: int = 7) -> Path:
    """Return a run trained on the good table (signed with the key the test sets), outside runs/."""
    from jobs.cli import main

    spec = base_spec(_good(tmp))
    spec["seed"] = seed
    spec["output"]["dir"] = str(tmp / f"trained{seed}")
    path = tmp / f"train{seed}.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as done:
        main(["train", str(path), "--quiet"])
    assert done.value.code == 0
    (run_dir,) = (tmp / f"trained{seed}").iterdir()
    return run_dir


def case_predict_bool_in_numeric(tmp: Path) -> list[str]:
    run_dir = _trained(tmp)
    table = _good_table()
    table["a"] = table["a"] > 0
    data = _parquet(tmp / "bools.parquet", table)
    return ["predict", str(run_dir), "--data", data, "--out", str(tmp / "p.parquet")]


def case_predict_unlisted_file(tmp: Path) -> list[str]:
    run_dir = _trained(tmp)
    (run_dir / "model" / "stray.pkl").write_bytes(b"\x80\x04N.")
    return ["predict", str(run_dir), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


def case_predict_edited_spec(tmp: Path) -> list[str]:
    run_dir = _trained(tmp)
    spec = run_dir / "spec.yaml"
    spec.write_text(spec.read_text().replace("address: null", "address: tcp://203.0.113.9:8786"))
    return ["predict", str(run_dir), "--data", _good(tmp), "--out", str(tmp / "p.parquet")]


def case_evaluate_swapped_model(tmp: Path) -> list[str]:
    import shutil

    run_dir, other = _trained(tmp, 7), _trained(tmp, 8)
    shutil.copyfile(other / "model" / "estimator.skops", run_dir / "model" / "estimator.skops")
    return ["evaluate", str(run_dir), "--data", _good(tmp)]


def _latin1_csv(tmp: Path) -> str:
    cities = ["Berlin", "M\u00fcnchen"]
    rows = [f"{x:.3f},{cities[i % 2]},{i % 2}" for i, x in enumerate(_good_table()["a"])]
    (tmp / "latin.csv").write_bytes(("a,city,label\n" + "\n".join(rows) + "\n").encode("latin-1"))
    return str(tmp / "latin.csv")


def case_latin1_column(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_latin1_csv(tmp)))


def case_latin1_column_as_categorical(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_latin1_csv(tmp), categorical=["city"]))


def case_list_column_as_categorical(tmp: Path) -> list[str]:
    return _train(tmp, base_spec(_good(tmp, tags=pa.array([[1, 2]] * 400)), categorical=["tags"]))


def case_predict_out_inside_the_run(tmp: Path) -> list[str]:
    run_dir = _trained(tmp)
    return ["predict", str(run_dir), "--data", _good(tmp), "--out", str(run_dir / "scores.parquet")]


NEW_CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "duplicate key": (case_duplicate_key, "job.yaml line 5: duplicate key 'name'"),
    "duplicate section": (case_duplicate_section, "job.yaml line 3: duplicate key 'data'"),
    "alias bomb": (case_alias_bomb, "job.yaml line 2: YAML aliases (*a) are not allowed"),
    "alias in --set": (case_alias_in_set, "--set name: YAML aliases (*a) are not allowed"),
    "merge key alias": (case_merge_key_alias, "line 4: YAML aliases (*b) are not allowed"),
    "run_name ./../x": (case_run_name_parent, "output.run_name: must be one directory name inside output.dir"),
    "run_name ..": (case_run_name_dotdot, "output.run_name: must be one directory name"),
    "run_name absolute": (case_run_name_absolute, "output.run_name: must be one directory name"),
    "run_name hidden": (case_run_name_hidden, "output.run_name: must be one directory name"),
    "run_name blank": (case_run_name_empty, "output.run_name: must be one directory name"),
    "negative class weight": (case_negative_class_weight, "model.class_weight: the weight of label 1 must be > 0"),
    "zero class weight": (case_zero_class_weight, "model.class_weight: the weight of label 1 must be > 0"),
    "empty class weight": (case_empty_class_weight, "model.class_weight: give at least one label"),
    "class weight unknown string": (case_class_weight_string_key_unknown, "model.class_weight.cat: not a label value"),
    "zero costs": (case_zero_costs, "evaluation.threshold: cost_fp and cost_fn are both 0"),
    "negative cost": (case_negative_cost, "evaluation.threshold.cost_fn: Input should be greater than or equal to 0"),
    "nan threshold": (case_nan_threshold, "evaluation.threshold.value: Input should be a finite number"),
    "infinite noise": (case_infinite_noise, "federated.privacy.noise_multiplier: Input should be a finite number"),
    "nan param": (case_nan_param, "model.params.C: expected float"),
    "exponent out of range": (case_exponent_out_of_range, "model.params.C: must be >="),
    "split in exponent notation": (case_split_exponent, "data.split.valid: Input should be less than 1"),
    "rows zero": (case_rows_zero, "data.rows: Input should be greater than or equal to 1"),
    "negative seed": (case_negative_seed, "seed: Input should be greater than or equal to 0"),
    "one ece bin": (case_one_ece_bin, "evaluation.ece_bins: Input should be greater than or equal to 2"),
    "zero trials": (case_zero_trials, "tuning.n_trials: Input should be greater than or equal to 1"),
    "zero workers": (case_zero_workers, "engine.workers: Input should be greater than or equal to 1"),
    "zero max categories": (case_zero_max_categories, "data.max_categories: Input should be greater"),
    "--set into a value": (case_set_into_a_value, "--set seed.x: seed is a value, not a section"),
    "spec is a list": (case_spec_is_a_list, "expected a mapping of sections, got list"),
    "spec is empty": (case_spec_is_empty, "job.yaml is empty"),
    "unknown local engine option": (
        case_unknown_local_engine_option,
        "engine.options.spark.executor.memory: unknown option for local",
    ),
    "NaN label": (case_nan_label, "data.label: column 'label' has 7 missing values (null, NaN or infinite)"),
    "infinite label": (case_infinite_label, "data.label: column 'label' has 1 missing values (null, NaN or infinite)"),
    "test source is train": (case_test_source_is_train, "data.test_source: 400 of its 400 rows are also train/valid"),
    "multi-file missing column": (case_multi_file_missing_column, "column 'c' is missing from"),
    "predict: bool in a numeric column": (
        case_predict_bool_in_numeric,
        "--data: column 'a' is boolean (bool) but was numeric (double) in the training data",
    ),
    "predict: unlisted file": (case_predict_unlisted_file, "stray.pkl is not listed in the run's manifest"),
    "predict: edited spec": (case_predict_edited_spec, "spec.yaml does not match its sha256"),
    "evaluate: swapped model": (case_evaluate_swapped_model, "estimator.skops does not match its sha256"),
    "latin-1 column": (case_latin1_column, "column 'city' holds bytes (binary), not UTF-8 text"),
    "latin-1 column as categorical": (case_latin1_column_as_categorical, "column 'city' holds bytes (binary)"),
    "list column as categorical": (
        case_list_column_as_categorical,
        "column 'tags' has type list<element: int64>: nested",
    ),
    "predict: --out inside the run": (case_predict_out_inside_the_run, "scores.parquet is inside the run directory"),
    "signing key file missing": (case_signing_key_file_missing, "SCALECLF_SIGNING_KEY_FILE: cannot read"),
    "predict: no manifest": (
        case_predict_run_without_manifest,
        "not a scaleclf run directory (no model/manifest.json)",
    ),
    "predict: manifest not JSON": (case_predict_manifest_not_json, "manifest.json is not a valid manifest"),
    "predict: old model format": (case_predict_old_format, "model format 2; this scaleclf reads format 3"),
}

# Exit codes of the new cases (pipelines/errors.py): 2 config, 3 data, 5 run directory; the rest are 2.
EXIT_CODES = {name: 2 for name in NEW_CASES} | {
    "NaN label": 3,
    "infinite label": 3,
    "test source is train": 3,
    "multi-file missing column": 3,
    "predict: bool in a numeric column": 3,
    "latin-1 column": 3,
    "latin-1 column as categorical": 3,
    "list column as categorical": 3,
    "predict: unlisted file": 5,
    "predict: edited spec": 5,
    "evaluate: swapped model": 5,
    "predict: no manifest": 5,
    "predict: manifest not JSON": 5,
    "predict: old model format": 5,
}
CASES.update(NEW_CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_no_run_dir(name: str, tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALECLF_SIGNING_KEY", "bad-input-tests")  # no "unsigned" warning line
    monkeypatch.setenv("SCALECLF_SIGNING_KEY_FILE", "")  # recorded, so a case that sets it is undone
    make_args, expected = CASES[name]
    result = cli(*make_args(tmp_path))
    err_lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code != 0
    assert result.code == EXIT_CODES.get(name, result.code), result.err
    assert "Traceback" not in result.err + result.out
    assert len(err_lines) == 1, result.err
    assert err_lines[0].startswith("error: ")
    assert expected in err_lines[0]
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    assert not list(tmp_path.glob("**/.*.tmp-*"))


def test_case_list_is_long_enough() -> None:
    assert len(CASES) >= 20 and len(NEW_CASES) >= 40
