"""infra/hosts: namespaces on a private bridge, commands inside a host, killing a host, teardown."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.hosts.conftest import MAKE_CERTS, Hosts, missing_privileges, script

# The teardown test uses its own names and subnet so that it never touches the session's hosts.
OTHER = {"HOSTS_PREFIX": "sclft", "HOSTS_NET": "10.78.0"}


def leftovers(prefix: str) -> list[str]:
    """Return the namespaces and links named ``prefix-*`` that exist now."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(": ")[1].split("@")[0] for line in links.splitlines()]
    return [n for n in ns + names if n.startswith(f"{prefix}-")]


def test_hosts_reach_each_other_by_address(hosts: Hosts) -> None:
    server = hosts.popen("h1", "python3", "-c", SERVER, log=_devnull())
    try:
        hosts.wait_port("h1", 7111)
        got = hosts.run("h3", "python3", "-c", CLIENT.format(addr=hosts.addr("h1")))
        assert got.stdout.strip() == "from 10.77.0.13", got.stderr
    finally:
        server.kill()
        server.wait()
    addrs = hosts.run("h2", "ip", "-4", "-o", "addr", "show").stdout
    assert "127.0.0.1/8" in addrs and "10.77.0.12/24" in addrs
    # No default route: a host reaches its subnet and loopback, nothing else.
    assert hosts.run("h2", "ip", "route", "show", "default").stdout.strip() == ""


def test_kill_host_kills_every_process_in_it(hosts: Hosts) -> None:
    procs = [hosts.popen("h4", "sleep", "300", log=_devnull()) for _ in range(3)]
    deadline = time.monotonic() + 10
    while len(hosts.pids("h4")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(hosts.pids("h4")) == 3
    hosts.kill("h4")
    assert hosts.pids("h4") == []
    assert all(p.wait(timeout=5) == -9 for p in procs)
    # The host stays up: it can be started again.
    assert hosts.run("h4", "true").returncode == 0


def test_down_leaves_no_namespace_link_or_process() -> None:
    reason = missing_privileges()
    if reason:
        pytest.skip(reason)
    try:
        up = script("up", "2", env=OTHER)
        assert up.stdout.split() == ["h1", "10.78.0.11", "h2", "10.78.0.12"]
        assert script("up", "2", env=OTHER).returncode == 0  # idempotent
        assert sorted(leftovers("sclft")) == ["sclft-br0", "sclft-h1", "sclft-h2", "sclft-v1", "sclft-v2"]
        sleeper = subprocess.Popen(
            ["ip", "netns", "exec", "sclft-h2", "sleep", "300"], stdin=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(0.3)
        assert script("down", env=OTHER).returncode == 0
        assert sleeper.wait(timeout=5) == -9
        assert leftovers("sclft") == []
        assert script("down", env=OTHER).returncode == 0  # nothing up: still fine
    finally:
        script("down", env=OTHER, check=False)


def test_exec_names_a_missing_host(hosts: Hosts) -> None:
    got = script("exec", "h9", "true", check=False)
    assert got.returncode == 2
    assert got.stderr.strip() == "error: host sclf-h9 does not exist (infra/hosts/up.sh)"


def test_certificates_name_the_host_addresses(tmp_path) -> None:
    subprocess.run([str(MAKE_CERTS), str(tmp_path), "h1", "h2", "client"], check=True, capture_output=True)
    for name in ("h1", "h2", "client"):
        ok = subprocess.run(
            ["openssl", "verify", "-CAfile", tmp_path / "ca.pem", tmp_path / f"{name}.pem"], capture_output=True
        )
        assert ok.returncode == 0, ok.stderr
    san = subprocess.run(
        ["openssl", "x509", "-in", tmp_path / "h2.pem", "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
    ).stdout
    assert "IP Address:10.77.0.12" in san and "IP Address:127.0.0.1" in san
    assert oct(os.stat(tmp_path / "h2.key").st_mode & 0o777) == "0o600"


SERVER = """
import socket
s = socket.socket(); s.bind(("10.77.0.11", 7111)); s.listen()
while True:
    c, peer = s.accept(); c.sendall(f"from {peer[0]}".encode()); c.close()
"""
CLIENT = """
import socket
print(socket.create_connection(("{addr}", 7111), timeout=5).recv(100).decode())
"""


def _devnull():
    from pathlib import Path

    return Path(os.devnull)
