"""Checks of ``engine.address`` made before ``ray.init``, which would retry for minutes on a cluster it cannot use.

Ray's TLS (``RAY_USE_TLS=1`` with ``RAY_TLS_SERVER_CERT``, ``RAY_TLS_SERVER_KEY``, ``RAY_TLS_CA_CERT``)
is mutual: the GCS accepts only clients whose certificate its CA signed, and the client checks the
GCS's certificate against its own CA and the address. A driver without TLS settings, or with
another CA's, keeps reconnecting (20 retries of ~30 s each); one TLS handshake with the GCS tells
the same thing in a second. A missing or wrong token (``RAY_AUTH_MODE=token``) is refused by Ray
itself within ~20 s.
"""

from __future__ import annotations

import os
import socket
import ssl

from pipelines.errors import EngineError

TLS_SETTINGS = ("RAY_TLS_SERVER_CERT", "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")
# The client's half of an HTTP/2 connection start: gRPC answers it with a SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_address(address: str, timeout: float = 5) -> None:
    """Raise an EngineError naming ``address`` when nothing listens there or its TLS does not match ours."""
    if address in ("auto", "local") or ("://" in address and not address.startswith("ray://")):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise EngineError(f"engine.address: cannot reach the Ray cluster at {address}: {exc}") from None
    sock.close()
    if address.startswith("ray://"):
        return  # Ray Client's proxy: its TLS is the same setting, checked by the client itself
    if tls_enabled():
        _check_handshake(address, host, int(port), timeout)
    elif speaks_tls(host, int(port), timeout):
        raise EngineError(
            f"engine.address: the Ray cluster at {address} uses TLS: set RAY_USE_TLS=1, {', '.join(TLS_SETTINGS)}"
            " (infra/ray/node.sh env --tls CERTDIR NAME prints them)"
        )


def tls_enabled() -> bool:
    """Return whether this process speaks Ray's TLS (``RAY_USE_TLS``)."""
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")


def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Return whether the server at ``host:port`` answers a TLS hello (a plain gRPC server does not)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
            tls.sendall(_H2_PREFACE)
            tls.recv(1)
        return True
    except ssl.SSLError as exc:
        # A TLS server that wants a client certificate answers with an alert; a plain one with bytes
        # that are not TLS ("wrong version number", "record layer failure", ...).
        return "ALERT" in str(exc.reason or "").upper()
    except OSError:
        return False


def _check_handshake(address: str, host: str, port: int, timeout: float) -> None:
    """Raise an EngineError unless a TLS connection with this process's certificate reaches the GCS."""
    paths = {name: os.environ.get(name, "") for name in TLS_SETTINGS}
    for name, path in paths.items():
        if not path or not os.access(path, os.R_OK):
            raise EngineError(f"{name}: cannot read '{path}' (RAY_USE_TLS=1 needs {', '.join(TLS_SETTINGS)})")
    ctx = ssl.create_default_context(cafile=paths["RAY_TLS_CA_CERT"])
    ctx.set_alpn_protocols(["h2"])
    try:
        ctx.load_cert_chain(paths["RAY_TLS_SERVER_CERT"], paths["RAY_TLS_SERVER_KEY"])
    except (ssl.SSLError, OSError) as exc:
        raise EngineError(f"RAY_TLS_SERVER_CERT: cannot load the certificate and key: {exc}") from None
    refused = f"engine.address: the Ray cluster at {address} refused this client's certificate (RAY_TLS_SERVER_CERT)"
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(_H2_PREFACE)
            answer = tls.recv(1)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        if "ALERT" in str(getattr(exc, "reason", "") or "").upper():
            raise EngineError(f"{refused}: {exc.reason}") from None
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
        raise EngineError(f"engine.address: TLS with the Ray cluster at {address} failed: {why}") from None
    except OSError as exc:
        raise EngineError(f"engine.address: TLS with the Ray cluster at {address} failed: {exc}") from None
    if not answer:
        raise EngineError(refused)
