"""Synthetic generators: determinism, prefix property, label balance, learnability, atomic writes; builtin sets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipelines.data import synthetic
from pipelines.data.builtin import BUILTIN, DOWNLOADABLE, load_builtin
from pipelines.data.synthetic import (
    BLOCK_ROWS,
    GENERATORS,
    SyntheticTask,
    get_task,
    iter_rows,
    materialize,
    write_dataset,
)
from pipelines.errors import ConfigError

# Enough rows for stable rates and scores, few enough that the file runs in well under a minute.
N = 50_000


def _table(name: str, rows: int = N, seed: int = 0) -> pa.Table:
    return pa.concat_tables(iter_rows(name, rows, seed=seed))


def _xy(name: str, rows: int = N) -> tuple[np.ndarray, np.ndarray]:
    table = _table(name, rows)
    task = get_task(name)
    x = np.column_stack([table[c].to_numpy() for c in table.column_names if c != task.label])
    return x, table[task.label].to_numpy()


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cut = int(0.7 * len(y))
    return x[:cut], x[cut:], y[:cut], y[cut:]


def _auc(model, x: np.ndarray, y: np.ndarray) -> float:
    xtr, xte, ytr, yte = _split(x, y)
    return float(roc_auc_score(yte, model.fit(xtr, ytr).predict_proba(xte)[:, 1]))


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- determinism and the prefix property -------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    paths = [write_dataset("churn", 1000, tmp_path / f"{i}.parquet", seed=s)[0] for i, s in enumerate([3, 3, 4])]
    first, again, other = (p.read_bytes() for p in paths)
    assert first == again
    assert first != other


@pytest.mark.parametrize("name", list(GENERATORS))
def test_rows_are_a_prefix_whatever_the_chunking(name: str) -> None:
    short = pa.concat_tables(iter_rows(name, BLOCK_ROWS + 1234, seed=5, chunk_rows=9_999))
    long = pa.concat_tables(iter_rows(name, 2 * BLOCK_ROWS + 7, seed=5, chunk_rows=BLOCK_ROWS))
    assert short.equals(long.slice(0, short.num_rows))
    task = get_task(name)
    assert short.num_columns == task.n_features + 1
    assert short.column_names[-1] == task.label


@pytest.mark.parametrize(("rows", "chunk"), [(1, 10), (10, 3), (BLOCK_ROWS, 1_000), (BLOCK_ROWS + 1, BLOCK_ROWS)])
def test_row_counts_are_exact(rows: int, chunk: int) -> None:
    sizes = [t.num_rows for t in iter_rows("moons", rows, chunk_rows=chunk)]
    assert sum(sizes) == rows
    assert all(s == chunk for s in sizes[:-1]) and 0 < sizes[-1] <= chunk


def test_blocks_are_fixed_and_tasks_independent() -> None:
    task = get_task("moons")
    assert task.block(1, 0).num_rows == BLOCK_ROWS
    assert not task.block(0, 0).equals(task.block(1, 0))
    circles = get_task("circles").block(0, 0)
    assert not np.array_equal(task.block(0, 0)["x2"].to_numpy(), circles["x2"].to_numpy())


# --- label balance and learnability ------------------------------------------------------------

BALANCE = {  # task: (class whose share is checked, low, high)
    "higgs": (1, 0.50, 0.56),
    "imbalanced": (1, 0.01, 0.05),
    "moons": (1, 0.47, 0.53),
    "circles": (1, 0.47, 0.53),
    "churn": ("yes", 0.20, 0.30),
}


@pytest.mark.parametrize("name", list(BALANCE))
def test_label_balance(name: str) -> None:
    cls, low, high = BALANCE[name]
    labels = _table(name)[get_task(name).label]
    share = pc.sum(pc.equal(labels, pa.scalar(cls))).as_py() / len(labels)
    assert low <= share <= high, f"{name}: share of {cls!r} is {share:.3f}"


def test_multiclass_has_five_balanced_enough_classes() -> None:
    counts = np.bincount(_table("multiclass")["label"].to_numpy(), minlength=5) / N
    assert len(counts) == 5 and counts.min() > 0.10 and counts.max() < 0.30


def _linear() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def test_higgs_rewards_trees_like_the_real_set() -> None:
    x, y = _xy("higgs")
    linear = _auc(_linear(), x, y)
    trees = _auc(HistGradientBoostingClassifier(random_state=0), x, y)
    assert 0.64 <= linear <= 0.74, linear
    assert 0.78 <= trees <= 0.87, trees
    assert trees - linear >= 0.08


def test_imbalanced_is_learnable() -> None:
    x, y = _xy("imbalanced")
    assert 0.85 <= _auc(HistGradientBoostingClassifier(random_state=0), x, y) <= 0.95


def test_multiclass_needs_nonlinear_models() -> None:
    xtr, xte, ytr, yte = _split(*_xy("multiclass", 30_000))
    linear = accuracy_score(yte, _linear().fit(xtr, ytr).predict(xte))
    trees = accuracy_score(yte, HistGradientBoostingClassifier(random_state=0).fit(xtr, ytr).predict(xte))
    assert 0.72 <= trees <= 0.9, trees
    assert trees - linear >= 0.1, (linear, trees)


@pytest.mark.parametrize(("name", "gap"), [("moons", 0.04), ("circles", 0.3)])
def test_kernel_tasks_beat_linear_models_but_stay_noisy(name: str, gap: float) -> None:
    x, y = _xy(name, 20_000)
    linear = _auc(_linear(), x, y)
    kernel = _auc(
        make_pipeline(StandardScaler(), Nystroem(n_components=200, random_state=0), LogisticRegression(max_iter=500)),
        x,
        y,
    )
    assert kernel - linear >= gap, (linear, kernel)
    assert kernel < 0.99


def test_churn_mixes_types_with_nulls_and_is_learnable() -> None:
    table = _table("churn")
    schema = table.schema
    assert schema.field("churned").type == pa.string()
    assert set(pc.unique(table["churned"]).to_pylist()) == {"yes", "no"}
    assert sum(pa.types.is_string(schema.field(c).type) for c in table.column_names[:-1]) >= 3
    assert any(pa.types.is_boolean(f.type) for f in schema)
    for column in ["tenure_months", "monthly_charges", "total_charges", "support_calls", "data_usage_gb", "age"]:
        assert 0.04 <= table[column].null_count / N <= 0.10, column
    assert table["plan"].null_count > 0 and table["payment_method"].null_count > 0
    assert all(len(pc.unique(table[c])) > 1 for c in table.column_names)  # no constant column
    rare = pc.value_counts(table["plan"]).to_pylist()
    assert min(r["counts"] for r in rare if r["values"] is not None) / N < 0.02
    encoded = [
        pc.dictionary_encode(table[c]).combine_chunks().indices if pa.types.is_string(table[c].type) else table[c]
        for c in table.column_names[:-1]
    ]
    x = np.column_stack([pc.cast(c, pa.float64()).to_numpy(zero_copy_only=False) for c in encoded])
    y = (table["churned"].to_numpy(zero_copy_only=False) == "yes").astype(int)
    assert _auc(HistGradientBoostingClassifier(random_state=0), x, y) >= 0.75


# --- writing -----------------------------------------------------------------------------------


def test_write_parquet_round_trips_with_one_row_group_per_block(tmp_path: Path) -> None:
    rows = BLOCK_ROWS + 10
    (path,) = write_dataset("higgs", rows, tmp_path / "h.parquet")
    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    assert pq.read_table(path).equals(_table("higgs", rows))
    assert _files_under(tmp_path) == ["h.parquet"]


def test_write_csv_round_trips(tmp_path: Path) -> None:
    (path,) = write_dataset("churn", 2_000, tmp_path / "c.csv", seed=2)
    expected = _table("churn", 2_000, seed=2)
    options = pacsv.ConvertOptions(
        column_types=expected.schema, strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    assert pacsv.read_csv(path, convert_options=options).equals(expected)
    assert _files_under(tmp_path) == ["c.csv"]


def test_write_directory_of_parts(tmp_path: Path) -> None:
    rows = 8 * BLOCK_ROWS + 5  # one more block than a part holds
    paths = write_dataset("moons", rows, tmp_path / "moons")
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.ParquetFile(paths[0]).metadata.num_row_groups == 8
    assert pq.read_table(tmp_path / "moons").num_rows == rows
    # Writing again replaces the earlier parts, it does not mix with them.
    assert len(write_dataset("moons", 10, tmp_path / "moons")) == 1
    assert _files_under(tmp_path) == ["moons", "moons/part-00000.parquet"]


def test_write_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"out: .*mine"):
        write_dataset("moons", 10, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("out", ["x.parquet", "x.csv", "x"])
def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str) -> None:
    original = SyntheticTask.block

    def interrupted(self: SyntheticTask, index: int, seed: int) -> pa.Table:
        if index == 1:
            raise KeyboardInterrupt
        return original(self, index, seed)

    monkeypatch.setattr(SyntheticTask, "block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dataset("moons", 2 * BLOCK_ROWS, tmp_path / out)
    assert _files_under(tmp_path) == []


# --- materialize -------------------------------------------------------------------------------


def test_materialize_is_cached(tmp_path: Path) -> None:
    first = materialize("circles", 1_000, seed=1, cache_dir=tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in first.iterdir()}
    again = materialize("circles", 1_000, seed=1, cache_dir=tmp_path)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in again.iterdir()} == mtimes
    assert pq.read_table(first).equals(_table("circles", 1_000, seed=1))
    assert materialize("circles", 1_001, seed=1, cache_dir=tmp_path) != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_materialize_uses_scaleclf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALECLF_CACHE", str(tmp_path))
    assert materialize("moons", 10).parent == tmp_path / "synthetic"


def test_materialize_keeps_the_copy_of_a_concurrent_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = synthetic._write_parts
    winner: list[int] = []

    def racing(blocks: Iterator[pa.Table], directory: Path) -> list[Path]:
        # Another process finishes the same dataset while this one is still writing.
        monkeypatch.setattr(synthetic, "_write_parts", original)
        done = materialize("moons", 500, 0, cache_dir=tmp_path)
        winner.append((done / "part-00000.parquet").stat().st_ino)
        return original(blocks, directory)

    monkeypatch.setattr(synthetic, "_write_parts", racing)
    result = materialize("moons", 500, cache_dir=tmp_path)
    assert (result / "part-00000.parquet").stat().st_ino == winner[0]
    assert _files_under(tmp_path) == [result.name, f"{result.name}/part-00000.parquet"]
    assert pq.read_table(result).equals(_table("moons", 500))


# --- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda tmp: get_task("galaxy"),
        lambda tmp: iter_rows("galaxy", 10),
        lambda tmp: write_dataset("galaxy", 10, tmp / "g.parquet"),
        lambda tmp: materialize("galaxy", 10, cache_dir=tmp),
    ],
)
def test_unknown_task_names_the_allowed_ones(tmp_path: Path, call) -> None:
    with pytest.raises(ConfigError) as err:
        call(tmp_path)
    assert "galaxy" in str(err.value) and all(name in str(err.value) for name in GENERATORS)
    assert "\n" not in str(err.value)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("rows", [0, -5])
def test_rows_below_one_is_a_config_error(tmp_path: Path, rows: int) -> None:
    for call in (
        lambda: iter_rows("moons", rows),
        lambda: write_dataset("moons", rows, tmp_path / "m.parquet"),
        lambda: materialize("moons", rows, cache_dir=tmp_path),
    ):
        with pytest.raises(ConfigError, match="rows: must be an integer >= 1"):
            call()
    assert not os.listdir(tmp_path)


def test_bad_seed_and_chunk_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="seed"):
        iter_rows("moons", 10, seed=-1)
    with pytest.raises(ConfigError, match="chunk_rows"):
        iter_rows("moons", 10, chunk_rows=0)


# --- builtin (bundled with scikit-learn) -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rows", "features", "classes"),
    [("breast_cancer", 569, 30, 2), ("digits", 1797, 64, 10), ("wine", 178, 13, 3), ("iris", 150, 4, 3)],
)
def test_builtin_shapes_and_classes(name: str, rows: int, features: int, classes: int) -> None:
    table = load_builtin(name)
    assert table.num_rows == rows == BUILTIN[name].rows
    assert table.num_columns == features + 1
    assert table.schema.field("target").type == pa.int64()
    assert len(pc.unique(table["target"])) == classes
    assert all(c.replace("_", "").isalnum() and c == c.lower() for c in table.column_names)


def test_builtin_names_are_sanitised() -> None:
    assert load_builtin("iris").column_names[:2] == ["sepal_length_cm", "sepal_width_cm"]
    assert "od280_od315_of_diluted_wines" in load_builtin("wine").column_names


@pytest.mark.parametrize("name", ["covtype", "kddcup99", "20newsgroups", "california_housing", "rcv1"])
def test_downloadable_sets_are_refused(name: str) -> None:
    assert name in DOWNLOADABLE
    with pytest.raises(ConfigError, match=f"builtin:{name} .*needs a download"):
        load_builtin(name)


def test_unknown_builtin_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_builtin("titanic")
    assert all(name in str(err.value) for name in BUILTIN)
