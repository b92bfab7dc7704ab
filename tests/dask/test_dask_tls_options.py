"""engine.options.tls_*: a tls:// scheduler needs them, all three, readable; each mistake is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import base_spec

pytestmark = pytest.mark.dask


def _train(cli, tmp_path: Path, *sets: str):
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps(base_spec("builtin:breast_cancer", label="target")))
    args = [a for s in sets for a in ("--set", s)]
    return cli("train", spec, "--engine", "dask", *args, "--out", tmp_path / "runs")


def test_a_tls_scheduler_without_certificates_is_one_line(cli, tmp_path: Path) -> None:
    result = _train(cli, tmp_path, "engine.address=tls://127.0.0.1:8799")
    assert result.code == 4, result.err
    assert result.err == (
        "error: engine.address: tls://127.0.0.1:8799 needs TLS settings: set engine.options.tls_ca_file,"
        " tls_cert and tls_key\n"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_tls_options_name_the_missing_or_unreadable_file(cli, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    result = _train(cli, tmp_path, "engine.address=tls://127.0.0.1:8799", f"engine.options.tls_ca_file={ca}")
    assert result.code == 4
    assert result.err == "error: engine.options.tls_cert: missing (TLS needs tls_ca_file, tls_cert and tls_key)\n"
    result = _train(
        cli,
        tmp_path,
        "engine.address=tls://127.0.0.1:8799",
        f"engine.options.tls_ca_file={ca}",
        f"engine.options.tls_cert={ca}",
        f"engine.options.tls_key={tmp_path / 'nope.key'}",
    )
    assert result.code == 4
    assert result.err == f"error: engine.options.tls_key: cannot read {tmp_path / 'nope.key'}\n"
