"""Simulated hosts for the cross-host tests: network namespaces made by infra/hosts/*.sh.

The ``hosts`` fixture brings up four hosts (h1..h4 = 10.77.0.11..14 on bridge sclf-br0) for
the session and tears them down at its end; ``certs`` makes a CA and a certificate per host with
infra/tls/make-certs.sh. Every test here skips, with the reason, without root or ``ip``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOSTS = REPO / "infra" / "hosts"
MAKE_CERTS = REPO / "infra" / "tls" / "make-certs.sh"
N_HOSTS = 4


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in tests/hosts ``hosts`` (make test-hosts)."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.hosts)


def missing_privileges() -> str | None:
    """Return why simulated hosts cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "simulated hosts need the 'ip' command (iproute2), which is not installed"
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces, veth, bridge)"
    return None


def script(name: str, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run infra/hosts/NAME.sh ARGS and return its result."""
    return subprocess.run(
        [str(HOSTS / f"{name}.sh"), *args],
        capture_output=True,
        text=True,
        check=check,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def run_lines(
    argv: list[str], timeout: float, on_line: Callable[[str], object] | None = None
) -> tuple[int, list[str], Path]:
    """Run ``argv`` (a ``scaleclf train`` in a host) killed after ``timeout`` s; return code, lines, run dir.

    ``on_line`` sees every output line as it comes (tests kill a host when a line appears).
    """
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if on_line:
                on_line(line)
        code = proc.wait()
    finally:
        timer.cancel()
    return code, lines, Path(lines[-1]) if code == 0 else Path()


@dataclass
class Hosts:
    """The simulated hosts: addresses, commands inside a host, killing a host."""

    n: int
    net: str = "10.77.0"

    def addr(self, host: str) -> str:
        """Return the address of ``host`` (h1 -> 10.77.0.11)."""
        return f"{self.net}.{10 + int(host.lstrip('h'))}"

    def cmd(self, host: str, *argv: str) -> list[str]:
        """Return the argv that runs ``argv`` inside ``host``."""
        return [str(HOSTS / "exec.sh"), host, *argv]

    def popen(self, host: str, *argv: str, log: Path, **kwargs) -> subprocess.Popen:
        """Start ``argv`` inside ``host`` in the background, stdout and stderr to ``log``."""
        with open(log, "ab") as out:
            return subprocess.Popen(
                self.cmd(host, *argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )

    def run(self, host: str, *argv: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``host`` and wait for it."""
        return subprocess.run(
            self.cmd(host, *argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
        )

    def pids(self, host: str) -> list[int]:
        """Return the processes running in ``host``."""
        out = subprocess.run(["ip", "netns", "pids", f"sclf-{host}"], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill(self, host: str) -> None:
        """Kill every process in ``host`` (a power cut)."""
        script("kill", host)

    def wait_port(self, host: str, port: int, timeout: float = 60) -> None:
        """Wait until ``host`` accepts TCP connections on ``port`` (from the root namespace)."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex((self.addr(host), port)) == 0:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"{host}:{port} did not open within {timeout:g}s")


@pytest.fixture(scope="session")
def hosts() -> Iterator[Hosts]:
    """Four simulated hosts for the session; torn down at its end, leaving nothing behind."""
    reason = missing_privileges()
    if reason:
        pytest.skip(reason)
    script("down", check=False)  # a previous run killed before its teardown
    up = script("up", str(N_HOSTS), check=False)
    if up.returncode != 0:
        script("down", check=False)
        pytest.skip(f"cannot create network namespaces here: {up.stderr.strip().splitlines()[-1:]}")
    try:
        yield Hosts(N_HOSTS)
    finally:
        script("down", check=False)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and certificates for h1..h4 and a ``client`` (the job's driver); returns the directory."""
    out = tmp_path_factory.mktemp("certs")
    subprocess.run([str(MAKE_CERTS), str(out), "h1", "h2", "h3", "h4", "client"], check=True, capture_output=True)
    return out
