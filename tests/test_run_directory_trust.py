"""A run directory someone else edited is refused (exit 5) before anything in it is read or executed.

The manifest (model/manifest.json) lists the sha256 of every file of the run, spec.yaml and logs
included, and is signed with HMAC-SHA256 when SCALECLF_SIGNING_KEY(_FILE) is set. Each crafted
case below carries a payload that writes a marker file if it were ever unpickled: the marker must
never appear.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines import artifacts
from pipelines.artifacts import MANIFEST_PATH, SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, sha256_file
from tests.conftest import base_spec

pytestmark = pytest.mark.local

KEY = "test-signing-key-1"


class Payload:
    """Unpickling this object opens (creates) the marker file: proof that code from the run ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (builtins.open, (str(self.marker), "w"))


def _set_key(value: str | None) -> Iterator[None]:
    old = os.environ.get(SIGNING_KEY_ENV)
    if value is None:
        os.environ.pop(SIGNING_KEY_ENV, None)
    else:
        os.environ[SIGNING_KEY_ENV] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SIGNING_KEY_ENV, None)
        else:
            os.environ[SIGNING_KEY_ENV] = old


def _train(tmp: Path, seed: int) -> Path:
    from jobs.cli import main

    spec = base_spec("builtin:breast_cancer", label="target")
    spec["seed"] = seed
    spec["output"]["dir"] = str(tmp / f"runs{seed}")
    path = tmp / f"job{seed}.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as done:
        main(["train", str(path), "--quiet"])
    assert done.value.code == 0
    (run_dir,) = (tmp / f"runs{seed}").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def signed_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Return two local runs (seeds 7 and 8) signed with KEY."""
    tmp = tmp_path_factory.mktemp("signed")
    gen = _set_key(KEY)
    next(gen)
    try:
        return _train(tmp, 7), _train(tmp, 8)
    finally:
        next(gen, None)


@pytest.fixture
def run_copy(signed_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return a copy of the signed run to tamper with; the key is set and the once-only warning reset."""
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    monkeypatch.setattr(artifacts, "_unsigned_said", False)
    target = tmp_path / "run"
    shutil.copytree(signed_runs[0], target)
    return target


def _recompute_checksums(run_dir: Path, key: str | None = None) -> None:
    """Do what someone without the key can do: recompute every checksum (and sign with their own key)."""
    path = run_dir / MANIFEST_PATH
    manifest = json.loads(path.read_text())
    manifest["files"] = {
        p.relative_to(run_dir).as_posix(): sha256_file(p)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.relative_to(run_dir).as_posix() != MANIFEST_PATH
    }
    manifest["signature"] = None
    if key is not None:
        manifest["signature"] = {"algorithm": "hmac-sha256", "hmac": artifacts._signature(manifest, key.encode())}
    path.write_text(json.dumps(manifest))


def _predict(cli, run_dir: Path, tmp: Path):
    return cli("predict", run_dir, "--data", "builtin:breast_cancer", "--out", tmp / "scores.parquet")


def _assert_refused(result, tmp: Path, *names: str) -> None:
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 5, result.err
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for name in names:
        assert name in lines[0]
    assert "Traceback" not in result.err
    assert not (tmp / "scores.parquet").exists()


def _spark_stage_with_payload(run_dir: Path, marker: Path, *, escaped: bool = False) -> Path:
    """Add an xgboost.spark stage whose metadata carries a cloudpickled callback, as xgboost.spark writes it."""
    metadata = run_dir / "model" / "spark_model" / "stages" / "1_SparkXGBClassifierModel" / "metadata"
    metadata.mkdir(parents=True)
    blob = base64.encodebytes(pickle.dumps(Payload(marker))).decode("ascii")
    key = "serialized\\u005fcallbacks" if escaped else "serialized_callbacks"
    line = '{"class": "xgboost.spark.SparkXGBClassifierModel", "' + key + '": ' + json.dumps(blob) + "}\n"
    (metadata / "part-00000").write_text(line)
    return metadata / "part-00000"


def test_a_signed_run_loads_and_lists_every_file(signed_runs: tuple[Path, Path], cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    run_dir = signed_runs[0]
    manifest = json.loads((run_dir / MANIFEST_PATH).read_text())
    on_disk = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()} - {MANIFEST_PATH}
    assert set(manifest["files"]) == on_disk
    assert {"spec.yaml", "metrics.json", "predictions.parquet", "logs/scaleclf.log"} <= on_disk
    assert manifest["signature"]["algorithm"] == "hmac-sha256"
    result = _predict(cli, run_dir, tmp_path)
    assert result.code == 0, result.err
    assert "warning" not in result.err


def test_a_pickled_spark_callback_is_refused_and_never_runs(run_copy: Path, cli, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _spark_stage_with_payload(run_copy, marker)
    _recompute_checksums(run_copy)  # the checksums are right; the signature is gone
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "manifest.json is not signed")
    assert not marker.exists()


def test_a_manifest_signed_with_another_key_is_refused(run_copy: Path, cli, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _spark_stage_with_payload(run_copy, marker)
    _recompute_checksums(run_copy, key="attacker-key")
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "signature does not match")
    assert not marker.exists()


def test_a_dropped_in_pickle_is_an_unlisted_file(run_copy: Path, cli, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    (run_copy / "model" / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "model/model.pkl is not listed")
    assert not marker.exists()


def test_an_unlisted_file_is_refused(run_copy: Path, cli, tmp_path: Path) -> None:
    (run_copy / "notes.txt").write_text("hello")
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "notes.txt is not listed in the run's manifest")


def test_a_swapped_model_is_refused(run_copy: Path, signed_runs: tuple[Path, Path], cli, tmp_path: Path) -> None:
    other = signed_runs[1] / "model" / "estimator.skops"
    assert sha256_file(other) != sha256_file(run_copy / "model" / "estimator.skops")
    shutil.copyfile(other, run_copy / "model" / "estimator.skops")
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "model/estimator.skops does not match its sha256")


def test_a_swapped_model_with_recomputed_checksums_is_refused(run_copy: Path, signed_runs, cli, tmp_path) -> None:
    shutil.copyfile(signed_runs[1] / "model" / "estimator.skops", run_copy / "model" / "estimator.skops")
    _recompute_checksums(run_copy)
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "not signed")


def test_an_edited_spec_is_refused(run_copy: Path, cli, tmp_path: Path) -> None:
    spec = run_copy / "spec.yaml"
    spec.write_text(spec.read_text().replace("address: null", "address: spark://evil.example:7077"))
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "spec.yaml does not match its sha256")
    result = cli("evaluate", run_copy, "--data", "builtin:breast_cancer")
    _assert_refused(result, tmp_path, "spec.yaml does not match")


def test_a_missing_file_is_refused(run_copy: Path, cli, tmp_path: Path) -> None:
    (run_copy / "metrics.json").unlink()
    _assert_refused(
        _predict(cli, run_copy, tmp_path), tmp_path, "metrics.json is listed in the run's manifest but missing"
    )


def test_a_symlink_in_place_of_a_file_is_refused(run_copy: Path, cli, tmp_path: Path) -> None:
    target = run_copy / "predictions.parquet"
    shutil.move(target, tmp_path / "elsewhere.parquet")
    target.symlink_to(tmp_path / "elsewhere.parquet")
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "predictions.parquet is not a plain file")


def test_without_a_key_checksums_are_checked_and_the_user_told_once(run_copy: Path, cli, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV)
    ok = _predict(cli, run_copy, tmp_path)
    assert ok.code == 0, ok.err
    warnings = [line for line in ok.err.splitlines() if "signing key" in line]
    assert warnings == [
        "warning: no signing key (SCALECLF_SIGNING_KEY or SCALECLF_SIGNING_KEY_FILE): run directories are"
        " checked against their checksums only, not authenticated"
    ]
    (run_copy / "spec.yaml").write_text("edited")
    again = _predict(cli, run_copy, tmp_path / "x")
    assert again.code == 5 and "signing key" not in again.err and "spec.yaml does not match" in again.err


def test_the_key_can_come_from_a_file(run_copy: Path, cli, tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(key_file))
    assert _predict(cli, run_copy, tmp_path).code == 0
    key_file.write_text("another key\n")
    (tmp_path / "scores.parquet").unlink()
    _assert_refused(_predict(cli, run_copy, tmp_path), tmp_path, "signature does not match")


def test_an_unreadable_key_file_is_a_config_error(run_copy: Path, cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(tmp_path / "absent-key"))
    result = _predict(cli, run_copy, tmp_path)
    assert result.code == 2 and "SCALECLF_SIGNING_KEY_FILE: cannot read" in result.err


def test_escaped_serialized_keys_in_spark_metadata_are_found(tmp_path: Path) -> None:
    from pipelines.engines.spark.engine import refuse_pickled_state
    from pipelines.errors import ArtifactError

    marker = tmp_path / "PWNED"
    run_dir = tmp_path / "run"
    _spark_stage_with_payload(run_dir, marker, escaped=True)
    with pytest.raises(ArtifactError, match="pickled object"):
        refuse_pickled_state(run_dir / "model" / "spark_model")
    assert not marker.exists()
