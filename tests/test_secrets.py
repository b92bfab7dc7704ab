"""Secret-looking keys are redacted wherever a spec is written or logged, and kept off command lines."""

from __future__ import annotations

import pytest
import yaml

from pipelines.bench import _pipeline_cmd, _raw_cmd
from pipelines.spec import REDACTED, build_spec, is_secret_key, redact
from tests.conftest import base_spec

pytestmark = pytest.mark.local

SECRET = "S3CR3T-do-not-write"


@pytest.mark.parametrize(
    "key",
    [
        "spark.hadoop.fs.s3a.secret.key",
        "spark.hadoop.fs.s3a.access.key",
        "spark.authenticate.secret",
        "password",
        "db_password",
        "apiToken",
        "sslKey",
        "credentials_file",
        "spark.ssl.keyStorePassword",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["key", "keep", "max_features", "monkey", "keytab", "spark.executor.memory", "tokenizer"]
)
def test_keys_that_only_look_like_secrets(key: str) -> None:
    assert not is_secret_key(key)


def _spark_spec() -> object:
    spec = base_spec("x.parquet", key="id")
    spec["engine"] = {
        "name": "spark",
        "address": "spark://user:hunter2@127.0.0.1:7077",
        "options": {"spark.hadoop.fs.s3a.secret.key": SECRET, "spark.executor.memory": "2g"},
    }
    return build_spec(spec)


def test_the_written_spec_redacts_secrets_and_keeps_everything_else() -> None:
    spec = _spark_spec()
    written = yaml.safe_load(spec.to_yaml())
    assert written["engine"]["options"] == {"spark.hadoop.fs.s3a.secret.key": REDACTED, "spark.executor.memory": "2g"}
    assert written["engine"]["address"] == "spark://user:***@127.0.0.1:7077"
    assert written["data"]["key"] == "id"
    assert SECRET not in spec.to_yaml() and SECRET not in str(spec.public_dump())
    reloaded = build_spec(written).without_redacted()
    assert reloaded.engine.options == {"spark.executor.memory": "2g"}


def test_redact_reaches_any_depth() -> None:
    assert redact({"a": [{"token": "t", "n": 1}], "b": {"x": {"password": None}}}) == {
        "a": [{"token": REDACTED, "n": 1}],
        "b": {"x": {"password": None}},
    }


def test_bench_children_get_the_spec_on_stdin_not_argv() -> None:
    spec = _spark_spec()
    cmd, payload = _pipeline_cmd(spec)
    assert SECRET not in " ".join(cmd) and SECRET in payload
    cmd, payload = _raw_cmd("spark", spec, ["x.parquet"])
    assert SECRET not in " ".join(cmd) and SECRET in payload
