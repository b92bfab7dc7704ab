"""The conformance matrix: data cases x catalog models, run by every engine's tests.

Each cell either trains on the engine and matches the local engine on the same rows within the
bound (test AUC, or accuracy for multiclass: 0.002 for logistic_regression, 0.01 otherwise, the
MLP 0.02 where the engine's algorithm differs), or is refused at spec validation with the reason
the table expects — never a failure at fit or predict time. ``make test`` runs the fast tier;
the rest of the matrix is marked ``slow`` (``make test-all``). The local engine runs the same
table against each model's quality floor (tests/test_conformance_local.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from pipelines.data.synthetic import iter_rows
from pipelines.errors import ConfigError
from pipelines.models.catalog import CATALOG
from pipelines.run import train
from pipelines.spec import build_spec

ROWS = 6000
LARGE_ROWS = 20000
LARGE = {
    "spark": ("decision_tree", "random_forest", "gbt", "mlp", "rff_svm", "nystroem_svm"),
    "ray": ("random_forest",),
    "dask": ("random_forest",),
}
MODELS = tuple(CATALOG)
# Small but enough rows that engines agree within the bounds (as the parity tests always used).
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "decision_tree": {"max_depth": 6},
    "random_forest": {"n_estimators": 50, "max_depth": 10},
    "gbt": {"n_estimators": 60},
    "xgboost": {"n_estimators": 80},
    "mlp": {"hidden_layer_sizes": [32], "max_iter": 30},
    "rff_svm": {"n_components": 200},
    "nystroem_svm": {"n_components": 200},
}
# MLlib's MLP (sigmoid layers, L-BFGS) is compared where scikit-learn's Adam has converged: the
# catalog's defaults (64 units, 50 epochs), as the parity tests always did.
ENGINE_PARAMS: dict[tuple[str, str], dict[str, Any]] = {("spark", "mlp"): {}}
# Every catalog parameter away from its default (the "params" case and the parameter-reach test).
NON_DEFAULT: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 0.3, "max_iter": 300, "tol": 1e-5, "fit_intercept": False},
    "linear_svm": {"C": 0.5, "max_iter": 500, "tol": 1e-5},
    "naive_bayes": {"var_smoothing": 1e-6},
    "decision_tree": {"max_depth": 5, "min_samples_leaf": 7},
    "random_forest": {"n_estimators": 30, "max_depth": 8, "min_samples_leaf": 3, "max_features": "log2"},
    "gbt": {"n_estimators": 50, "learning_rate": 0.15, "max_depth": 4, "min_samples_leaf": 25},
    "xgboost": {
        "n_estimators": 60,
        "learning_rate": 0.15,
        "max_depth": 4,
        "subsample": 0.9,
        "colsample_bytree": 0.8,
        "reg_lambda": 2.0,
        "min_child_weight": 2.0,
        "max_bin": 128,
    },
    "mlp": {
        "hidden_layer_sizes": [24, 12],
        "alpha": 1e-3,
        "learning_rate_init": 2e-3,
        "max_iter": 25,
        "batch_size": 128,
    },
    "rff_svm": {"n_components": 150, "gamma": 0.05, "C": 0.5, "max_iter": 500, "tol": 1e-5},
    "nystroem_svm": {"n_components": 150, "gamma": 0.05, "C": 0.5, "max_iter": 500, "tol": 1e-5},
}
BOUND = {"logistic_regression": 0.002}
DEFAULT_BOUND = 0.01
# Where an engine's algorithm is not scikit-learn's, the measured gap is the bound, stated here
# and in BENCHMARKS.md: MLlib's MLP is sigmoid + L-BFGS against ReLU + Adam; Ray's data-parallel
# Adam does not stop early as MLPClassifier does.
KNOWN_GAPS = {("spark", "mlp"): 0.02, ("ray", "mlp"): 0.02}


@dataclass(frozen=True)
class DataCase:
    """One way of giving an engine data and settings; ``spec`` returns the job-spec sections it sets."""

    name: str
    spec: Callable[[Path, int], dict[str, Any]]  # (data directory, rows) -> spec sections
    multiclass: bool = False


def _write(files: Path, name: str, rows: int, seed: int, parts: int = 1, fmt: str = "parquet") -> Path:
    """Write ``rows`` of synthetic ``name`` as one file or a directory of ``parts`` files (cached per session)."""
    table = pa.concat_tables(list(iter_rows(name, rows, seed)))
    if parts == 1:
        path = files / f"{name}-{rows}-{seed}.{fmt}"
        if not path.exists():
            pq.write_table(table, path) if fmt == "parquet" else pacsv.write_csv(table, path)
        return path
    path = files / f"{name}-{rows}-{seed}-{parts}parts"
    if not path.exists():
        path.mkdir()
        step = -(-rows // parts)
        for i in range(parts):
            pq.write_table(table.slice(i * step, step), path / f"part-{i:03d}.parquet", row_group_size=step)
    return path


def _split_test(files: Path, name: str, rows: int, test_rows: int) -> tuple[Path, Path]:
    table = pa.concat_tables(list(iter_rows(name, rows, 3)))
    train, test = files / f"{name}-{rows}-fixed-train.parquet", files / f"{name}-{rows}-fixed-test.parquet"
    if not train.exists():
        pq.write_table(table.slice(0, rows - test_rows), train)
        pq.write_table(table.slice(rows - test_rows), test)
    return train, test


def _fixed_test(files: Path, rows: int) -> dict[str, Any]:
    train, test = _split_test(files, "higgs", rows, rows // 4)
    return {"data": {"source": str(train), "test_source": str(test)}}


def _churn(files: Path, rows: int) -> dict[str, Any]:
    return {"data": {"source": str(_write(files, "churn", rows, 2)), "label": "churned", "positive_label": "yes"}}


def _higgs(files: Path, rows: int) -> dict[str, Any]:
    return {"data": {"source": str(_write(files, "higgs", rows, 1))}}


CASES: dict[str, DataCase] = {
    c.name: c
    for c in [
        DataCase("parquet", _higgs),
        DataCase("parquet_dir", lambda f, n: {"data": {"source": str(_write(f, "higgs", n, 1, parts=4))}}),
        DataCase("csv", lambda f, n: {"data": {"source": str(_write(f, "higgs", n, 1, fmt="csv"))}}),
        DataCase("test_source", _fixed_test),
        DataCase("string_labels", _churn),
        DataCase(
            "categoricals_missing",
            lambda f, n: {"data": {**_churn(f, n)["data"], "categorical": ["support_calls", "contract"]}},
        ),
        DataCase("class_weight", lambda f, n: {**_higgs(f, n), "model": {"class_weight": "balanced"}}),
        DataCase("isotonic", lambda f, n: {**_higgs(f, n), "model": {"calibration": "isotonic"}}),
        DataCase("max_f1", lambda f, n: {**_higgs(f, n), "evaluation": {"threshold": {"strategy": "max_f1"}}}),
        DataCase("multiclass", lambda f, n: {"data": {"source": str(_write(f, "multiclass", n, 1))}}, multiclass=True),
        DataCase("tiny", lambda f, n: {"data": {"source": str(_write(f, "higgs", 300, 5, parts=6))}}),
        DataCase("params", _higgs),
    ]
}


@dataclass(frozen=True)
class Cell:
    """One (data case, model) cell of the matrix on one engine."""

    case: str
    model: str
    engine: str
    refusal: str | None = None  # the words the refusal must contain; None = must match local
    marks: tuple[Any, ...] = field(default=())

    @property
    def id(self) -> str:
        """Return the test id."""
        return f"{self.case}-{self.model}"


# Cells an engine refuses at validation, and the words its reason must contain.
REFUSED: dict[tuple[str, str, str | None], str] = {
    ("dask", "mlp", None): "no data-parallel MLP on Dask",
    ("spark", "mlp", "class_weight"): "takes no row weights",
    # Non-default parameters MLlib has no counterpart for are refused, not ignored.
    ("spark", "mlp", "params"): "not used by mlp on engine spark",
    ("spark", "naive_bayes", "params"): "not used by naive_bayes on engine spark",
}
# The fast tier (make test): every model on the binary Parquet file and with non-default params,
# the cheap models on multiclass, every other data case with logistic regression, and xgboost on
# the fixed test file (the case that broke distributed xgboost); xgboost's other data cases are in
# the slow tier, so that CI can also run the hosts tier within its time.
FAST_MULTICLASS = {"logistic_regression", "linear_svm", "naive_bayes", "decision_tree"}
FAST_DATA_MODELS = {"logistic_regression"}
FAST_XGBOOST_CASES = {"test_source"}
# Multiclass cases the slow tier runs only where they cost minutes (Spark's trees, kernel SVMs).


def rows_for(cell: Cell) -> int:
    """Return the rows of the cell's data: more where an engine's algorithm differs from scikit-learn's.

    Trees on bins (MLlib), MLlib's GBT and MLP and the OneVsRest SVMs on Spark, and the xgboost
    forest on Ray and Dask, differ from scikit-learn by their algorithm; on 20,000 rows that gap is
    the algorithm's and not the sample's (the bounds held there in the earlier parity tests).
    """
    return LARGE_ROWS if cell.model in LARGE.get(cell.engine, ()) else ROWS


def _fast(case: str, model: str) -> bool:
    if case in ("parquet", "params"):
        return True
    if case == "multiclass":
        return model in FAST_MULTICLASS
    return model in FAST_DATA_MODELS or (model == "xgboost" and case in FAST_XGBOOST_CASES)


def cells(engine: str) -> list[Any]:
    """Return the matrix for ``engine`` as pytest params (slow cells marked)."""
    out = []
    for case in CASES:
        for model in MODELS:
            refusal = REFUSED.get((engine, model, case)) or REFUSED.get((engine, model, None))
            cell = Cell(case, model, engine, refusal)
            marks = [] if refusal or _fast(case, model) else [pytest.mark.slow]
            out.append(pytest.param(cell, marks=marks, id=cell.id))
    return out


def spec_for(cell: Cell, files: Path, engine: str, out: Path, address: str | None = None) -> dict[str, Any]:
    """Return the job-spec mapping of ``cell`` on ``engine``."""
    case = CASES[cell.case]
    parts = case.spec(files, rows_for(cell))
    params = (
        NON_DEFAULT[cell.model]
        if cell.case == "params"
        else ENGINE_PARAMS.get((cell.engine, cell.model), FAST_PARAMS.get(cell.model, {}))
    )
    spec: dict[str, Any] = {
        "name": f"conf-{cell.case}",
        "seed": 5,
        "data": {"label": "label", **parts.get("data", {})},
        "model": {"name": cell.model, "params": dict(params), **parts.get("model", {})},
        "engine": {"name": engine, "workers": 2, "address": address} if engine != "local" else {"name": "local"},
        "output": {"dir": str(out), "report": False},
    }
    if "evaluation" in parts:
        spec["evaluation"] = parts["evaluation"]
    return spec


def metric_of(metrics: dict[str, Any], multiclass: bool) -> float:
    """Return the compared metric: test accuracy for multiclass, test AUC for binary."""
    return float(metrics["test"]["accuracy" if multiclass else "auc"])


def run_cell(
    cell: Cell, files: Path, engine: str, out: Path, address: str | None = None
) -> dict[str, Any] | ConfigError:
    """Return the run's metrics.json (plus its directory under "_dir"), or the ConfigError that refused it."""
    try:
        job = build_spec(spec_for(cell, files, engine, out, address))
    except ConfigError as exc:
        return exc
    run_dir = train(job)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["_dir"] = str(run_dir)
    return metrics


def check_cell(
    cell: Cell, files: Path, out: Path, local: Callable[[Cell], dict[str, Any]], address: str | None = None
) -> None:
    """Assert that ``cell`` is refused with its expected reason, or matches the local engine within its bound."""
    got = run_cell(cell, files, cell.engine, out, address)
    if cell.refusal is not None:
        assert isinstance(got, ConfigError), f"{cell.id} on {cell.engine} was expected to be refused"
        assert cell.refusal in str(got), str(got)
        return
    assert not isinstance(got, ConfigError), f"{cell.id} on {cell.engine} refused: {got}"
    ref = local(cell)
    assert got["rows"] == ref["rows"], (got["rows"], ref["rows"], got["_dir"], ref["_dir"])
    keys = sorted(pq.read_table(Path(got["_dir"]) / "predictions.parquet").column("row_key").to_pylist())
    assert keys == sorted(pq.read_table(Path(ref["_dir"]) / "predictions.parquet").column("row_key").to_pylist())
    if cell.case == "params":
        check_reach(cell, Path(got["_dir"]))
    multiclass = CASES[cell.case].multiclass
    bound = KNOWN_GAPS.get((cell.engine, cell.model), BOUND.get(cell.model, DEFAULT_BOUND))
    a, b = metric_of(got, multiclass), metric_of(ref, multiclass)
    assert abs(a - b) <= bound, f"{cell.id}: {cell.engine} {a:.4f} vs local {b:.4f} (bound {bound})"


def reload(run_dir: Path) -> tuple[Any, Any, Any]:
    """Return (engine class, fit context, model) reloaded from ``run_dir`` without starting an engine."""
    from pipelines.engines import engine_class
    from pipelines.scoring import load_run

    run = load_run(run_dir)
    cls = engine_class(run.manifest["engine"])
    model = cls(run.spec.engine, run.ctx.seed).load_model(run_dir / "model", run.ctx, run.manifest["native_kind"])
    return cls, run.ctx, model


def same(a: Any, b: Any) -> bool:
    """Return True when a native setting read back equals the translation's (floats as float32 may store them)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return str(a).lower() == str(b).lower()
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


def check_reach(cell: Cell, run_dir: Path) -> None:
    """Assert that every native setting the model layer derives from the params shows on the fitted model."""
    from pipelines.models.native import native_params

    cls, ctx, model = reload(run_dir)
    library = cls.LIBRARY[cell.model]
    expected = native_params(library, cell.model, ctx.params, ctx.problem)
    got = model.native_params()
    if ctx.feature_map is not None:
        got |= {"feature_map.n_components": ctx.feature_map.n_components, "feature_map.gamma": ctx.feature_map.gamma}
        if expected.get("feature_map.gamma") is None:
            expected.pop("feature_map.gamma", None)  # the default: 1 / n_features
    missing = {k: v for k, v in expected.items() if k not in got or not same(got[k], v)}
    assert not missing, (
        f"{cell.engine} {cell.model}: {missing} expected, fitted model has { ({k: got.get(k) for k in missing}) }"
    )


def _csv_with_a_long_row(files: Path) -> Path:
    """Return a CSV whose rows past the first megabyte hold one field too many."""
    path = files / "extra-field.csv"
    if not path.exists():
        table = pa.concat_tables(list(iter_rows("higgs", 12000, 7)))
        pacsv.write_csv(table, path)
        text = path.read_text().splitlines()
        text[-5] += ",1.0"
        path.write_text("\n".join(text) + "\n")
    return path


def _dir_missing_a_column(files: Path) -> Path:
    """Return a directory of Parquet files whose second file lacks a feature column."""
    path = files / "missing-column"
    if not path.exists():
        path.mkdir()
        table = pa.concat_tables(list(iter_rows("higgs", 2000, 8)))
        pq.write_table(table.slice(0, 1000), path / "part-0.parquet")
        pq.write_table(table.slice(1000).drop_columns(["m_bb"]), path / "part-1.parquet")
    return path


def _dir_with_a_text_column(files: Path) -> Path:
    """Return a directory of Parquet files where one file holds text in a numeric column."""
    path = files / "type-clash"
    if not path.exists():
        path.mkdir()
        table = pa.concat_tables(list(iter_rows("higgs", 2000, 9)))
        pq.write_table(table.slice(0, 1000), path / "part-0.parquet")
        second = table.slice(1000)
        index = second.schema.get_field_index("m_bb")
        text = pa.array([f"x{i}" for i in range(second.num_rows)])
        pq.write_table(second.set_column(index, "m_bb", text), path / "part-1.parquet")
    return path


def _nan_labels(files: Path) -> Path:
    """Return a Parquet file whose float label holds NaN (not null) in a few rows."""
    path = files / "nan-label.parquet"
    if not path.exists():
        table = pa.concat_tables(list(iter_rows("higgs", 2000, 10)))
        label = table.column("label").to_numpy().astype("float64")
        label[::97] = float("nan")
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", pa.array(label)), path)
    return path


def _higgs_with(files: Path, name: str, column: str, change: Callable[[np.ndarray], None]) -> Path:
    """Return a Parquet file of higgs rows whose ``column`` (as float64) was changed in place by ``change``."""
    path = files / f"{name}.parquet"
    if not path.exists():
        table = pa.concat_tables(list(iter_rows("higgs", 2000, 10)))
        values = table.column(column).to_numpy().astype("float64")
        change(values)
        pq.write_table(table.set_column(table.schema.get_field_index(column), column, pa.array(values)), path)
    return path


def _set(values: np.ndarray, where: slice, value: float) -> None:
    values[where] = value


BAD_INPUTS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "csv_extra_field": lambda f: {"source": str(_csv_with_a_long_row(f))},
    "file_missing_a_column": lambda f: {"source": str(_dir_missing_a_column(f))},
    "text_in_a_numeric_column": lambda f: {"source": str(_dir_with_a_text_column(f))},
    "nan_labels": lambda f: {"source": str(_nan_labels(f))},
    "infinite_labels": lambda f: {
        "source": str(_higgs_with(f, "inf-label", "label", lambda v: _set(v, slice(3, None, 101), float("inf"))))
    },
    "infinite_feature": lambda f: {
        "source": str(_higgs_with(f, "inf-feature", "m_bb", lambda v: _set(v, slice(None, None, 50), float("-inf"))))
    },
    "all_missing_feature": lambda f: {
        "source": str(_higgs_with(f, "nan-feature", "m_bb", lambda v: _set(v, slice(None), float("nan"))))
    },
    # The fixed test file is the training file itself: every test row is a train or valid row.
    "test_source_is_train": lambda f: {
        "source": str(_write(f, "higgs", 3000, 11)),
        "test_source": str(_write(f, "higgs", 3000, 11)),
    },
}
# The start of each refusal's one line (the whole line must be the same on every engine).
BAD_INPUT_ERRORS = {
    "csv_extra_field": "exit 3: data.source: cannot read",
    "file_missing_a_column": "exit 3: data.source: column 'm_bb' is missing from",
    "text_in_a_numeric_column": "exit 3: data.source: the files of",
    "nan_labels": "exit 3: data.label: column 'label' has 15 missing values (null, NaN or infinite) in the train split",
    "infinite_labels": "exit 3: data.label: column 'label' has 13 missing values (null, NaN or infinite) in the train",
    "infinite_feature": "exit 3: column 'm_bb' has 26 infinite values in the train split",
    "all_missing_feature": "exit 3: column 'm_bb' has no values in the train split",
    "test_source_is_train": "exit 3: data.test_source: 3000 of its 3000 rows are also train/valid rows",
}


def bad_input_error(kind: str, files: Path, engine: str, out: Path, address: str | None = None) -> str:
    """Return the one-line error (with its exit code) ``engine`` gives for bad input ``kind``."""
    from pipelines.errors import ScaleclfError

    spec = {
        "name": f"bad-{kind}",
        "seed": 5,
        "data": {**BAD_INPUTS[kind](files), "label": "label"},
        "model": {"name": "logistic_regression"},
        "engine": {"name": engine, "workers": 2, "address": address} if engine != "local" else {"name": "local"},
        "output": {"dir": str(out), "report": False},
    }
    try:
        train(build_spec(spec))
    except ScaleclfError as exc:
        assert not list(out.iterdir()) if out.exists() else True, f"{engine} left {list(out.iterdir())}"
        return f"exit {exc.exit_code}: {exc}"
    raise AssertionError(f"{engine} accepted {kind}")
