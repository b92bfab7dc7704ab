"""Entry points leave processes that loaded Ray without its native teardown, output flushed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.process_exit import exit_code

SCRIPT = """
import atexit, sys, types
from pathlib import Path
from pipelines.process_exit import exit_process

out = Path(sys.argv[1])
if sys.argv[2] == "ray":
    sys.modules["ray._raylet"] = types.ModuleType("ray._raylet")  # what `import ray` loads
atexit.register(lambda: (out / "atexit").write_text("ran"))
unclosed = open(out / "unclosed", "w")
unclosed.write("only a normal interpreter teardown flushes this")
sys.stdout.write("no newline, still buffered")
exit_process(3)
"""


def _run(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "leave.py"
    script.write_text(textwrap.dedent(SCRIPT))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_with_ray_loaded_the_handlers_run_output_is_flushed_and_teardown_is_skipped(tmp_path: Path) -> None:
    done = _run(tmp_path, "ray")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "no newline, still buffered"
    assert (tmp_path / "atexit").read_text() == "ran"
    # os._exit: the interpreter's own teardown, which would close (flush) this file, did not run.
    assert (tmp_path / "unclosed").read_text() == ""


def test_without_ray_the_process_exits_normally(tmp_path: Path) -> None:
    done = _run(tmp_path, "plain")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "no newline, still buffered"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "unclosed").read_text().startswith("only a normal")


@pytest.mark.parametrize(("code", "status", "printed"), [(None, 0, ""), (4, 4, ""), ("bad spec", 1, "bad spec\n")])
def test_exit_code_matches_what_system_exit_would_do(
    code: object, status: int, printed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(SystemExit(code)) == status
    assert capsys.readouterr().err == printed
