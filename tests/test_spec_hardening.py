"""The spec loader refuses what would silently mislead (duplicate keys, aliases) and accepts usual notations."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.errors import ConfigError
from pipelines.spec import apply_overrides, build_spec, load_yaml, read_yaml
from tests.conftest import REPO, base_spec

pytestmark = pytest.mark.local


def _bomb(levels: int = 9) -> str:
    """Return the classic 'billion laughs' in YAML: nine lists of nine aliases per level."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in itertools.pairwise("abcdefghijklmnop"[:levels]):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_fast_without_expanding(tmp_path: Path) -> None:
    text = _bomb()
    assert len(text.encode()) <= 460  # the 454-byte bomb of the issue expands to 10^8 items
    (tmp_path / "bomb.yaml").write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml line 2: YAML aliases \(\*a\) are not allowed"):
        read_yaml(tmp_path / "bomb.yaml")
    assert time.perf_counter() - started < 0.5


def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("data:\n  source: a.parquet\n  label: y\n  label: z\nmodel: {name: mlp}\n")
    with pytest.raises(ConfigError, match=r"job.yaml line 4: duplicate key 'label'"):
        read_yaml(tmp_path / "job.yaml")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-5", 1e-5), ("15e-2", 0.15), (".5", 0.5), ("1E+3", 1000.0), ("-2.5e-1", -0.25), ("3.", 3.0), ("7", 7)],
)
def test_usual_float_notations_are_numbers(text: str, value: float) -> None:
    got = load_yaml(text)
    assert got == value and type(got) is type(value)
    spec = apply_overrides(base_spec("x.parquet"), [f"model.params.tol={text}"])
    assert spec["model"]["params"]["tol"] == value


def test_tol_in_exponent_notation_validates_from_a_file_and_from_set(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "data: {source: x.parquet}\nmodel: {name: logistic_regression, params: {tol: 1e-5}}\n"
    )
    assert build_spec(read_yaml(tmp_path / "job.yaml")).model.params["tol"] == 1e-5
    raw = apply_overrides(read_yaml(tmp_path / "job.yaml"), ["model.params.tol=15e-2", "data.split.valid=.15"])
    assert build_spec(raw).model.params["tol"] == 0.15


def _labelled(tmp: Path, labels: np.ndarray) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    path = tmp / "d.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "label": labels}), path)
    return str(path)


@pytest.mark.parametrize("kind", ["int", "float", "str"])
def test_class_weight_keys_match_labels_of_any_type(kind: str, tmp_path: Path, cli) -> None:
    y = (np.arange(400) % 3 == 0).astype(np.int64)
    labels = {"int": y, "float": y.astype(np.float64), "str": np.where(y == 1, "1", "0")}[kind]
    spec = base_spec(_labelled(tmp_path, labels), positive_label="1" if kind == "str" else None)
    spec["model"]["class_weight"] = {1: 2.5}  # what YAML gives for `{1: 2.5}`
    spec["output"]["dir"] = str(tmp_path / "runs")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    result = cli("train", tmp_path / "job.yaml", "--quiet")
    assert result.code == 0, result.err
    manifest = json.loads((Path(result.last_line) / "model" / "manifest.json").read_text())
    assert manifest["class_weights"] == [1.0, 2.5]


def test_a_run_name_already_taken_is_refused_before_any_work(tmp_path: Path, cli) -> None:
    spec = base_spec(_labelled(tmp_path, (np.arange(400) % 2).astype(np.int64)))
    spec["output"] |= {"dir": str(tmp_path / "runs"), "run_name": "taken"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "mine.txt").write_text("keep me")
    result = cli("train", tmp_path / "job.yaml")
    assert result.code == 2
    assert result.err.strip() == f"error: config error: output.run_name: {tmp_path / 'runs' / 'taken'} already exists"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["taken"]
    assert (tmp_path / "runs" / "taken" / "mine.txt").read_text() == "keep me"


def test_two_runs_with_one_name_the_second_is_refused_while_the_first_trains(tmp_path: Path) -> None:
    spec = base_spec("synthetic:higgs", model="random_forest", rows=20000)
    spec["output"] |= {"dir": str(tmp_path / "runs"), "run_name": "shared"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "jobs.cli", "train", str(tmp_path / "job.yaml"), "--quiet"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "SCALECLF_SIGNING_KEY": "k"}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "runs" / "shared").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused; make it longer"
    finally:
        out, err = first.communicate(timeout=300)
    assert second.returncode == 2 and "output.run_name" in second.stderr and "already exists" in second.stderr
    assert first.returncode == 0, err
    assert out.strip().splitlines()[-1] == str(tmp_path / "runs" / "shared")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["shared"]


def test_a_generated_name_taken_meanwhile_becomes_the_next_one(tmp_path: Path) -> None:
    from pipelines.artifacts import RunDirectory

    (tmp_path / "job-mlp-local-20261203-120000").mkdir()  # another process reserved it after run_name() chose it
    directory = RunDirectory(tmp_path, "job-mlp-local-20261203-120000", generated=True)
    with directory as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert directory.final.name == "job-mlp-local-20261203-120000-2"
    assert (directory.final / "metrics.json").is_file() and not list(tmp_path.glob(".*"))
