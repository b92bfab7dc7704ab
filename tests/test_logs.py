"""Quiet runs: library output goes to logs/ in the run directory; the terminal keeps the progress lines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, base_spec, terminal_noise

pytestmark = pytest.mark.local

NOISY_RUN = textwrap.dedent(
    """
    import logging, os, sys, warnings
    from pathlib import Path
    from pipelines.logs import run_logs
    from pipelines.progress import Progress

    progress = Progress(verbose=sys.argv[2] == "verbose")
    with run_logs(Path(sys.argv[1]), progress):
        os.write(2, b"native line on fd 2\\n")
        print("library print on stdout")
        logging.getLogger("somelib").warning("library logger warning")
        warnings.warn("library future warning", FutureWarning)
        progress.note("a step")
    print("result")
    """
)


def _noisy(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    run_dir = tmp_path / mode
    run_dir.mkdir()
    cmd = [sys.executable, "-c", NOISY_RUN, str(run_dir), mode]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_library_output_goes_to_the_log_file_and_progress_to_the_terminal(tmp_path: Path) -> None:
    done = _noisy(tmp_path, "quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["✓ a step"]
    assert done.stdout.splitlines() == ["result"]
    log = (tmp_path / "quiet" / "logs" / "scaleclf.log").read_text()
    for line in ("native line on fd 2", "library print on stdout", "library logger warning", "library future warning"):
        assert line in log


def test_verbose_shows_library_output_and_still_logs_python_records(tmp_path: Path) -> None:
    done = _noisy(tmp_path, "verbose")
    assert done.returncode == 0, done.stderr
    assert "native line on fd 2" in done.stderr and "library logger warning" in done.stderr
    assert "✓ a step" in done.stderr and "library print on stdout" in done.stdout
    log = (tmp_path / "verbose" / "logs" / "scaleclf.log").read_text()
    assert "WARNING somelib: library logger warning" in log


def test_a_local_run_keeps_its_own_warnings_on_the_terminal_and_writes_logs(tmp_path: Path) -> None:
    spec = base_spec("builtin:breast_cancer", label="target", drop=[])
    spec["output"]["dir"] = str(tmp_path / "runs")
    config = tmp_path / "spec.yaml"
    config.write_text(yaml.safe_dump(spec))
    exe = Path(sys.executable).with_name("scaleclf")
    done = subprocess.run([exe, "train", config], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert terminal_noise(done.stderr) == []
    run_dir = Path(done.stdout.strip())
    assert done.stdout.strip().splitlines() == [str(run_dir)]
    assert (run_dir / "logs" / "scaleclf.log").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["model"] == "logistic_regression"
