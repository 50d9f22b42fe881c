"""End to end: idle connections cannot lock clients out, and /livez stays answerable."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon
from test_metrics import https

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """12 connections, 4 of them kept for 127.0.0.1, 4 per address, 1 s to send a request."""
    config = tmp_path / "sysadmd.toml"
    config.write_text(
        "[limits]\nconnections = 12\nconnections_reserved = 4\n"
        "connections_per_address = 4\nhandshake_timeout = 1\n"
        '[metrics]\nallow = ["127.0.0.1"]\n'
    )
    running = Daemon(tmp_path / "state", f"--config={config}")
    yield running
    assert running.stop()


def _idle(daemon: Daemon, source: str) -> socket.socket:
    """A TCP connection from ``source`` that never sends a byte (no ClientHello)."""
    return socket.create_connection(
        ("127.0.0.1", daemon.ports[1]), timeout=5, source_address=(source, 0)
    )


def _closed_by_server(connection: socket.socket, within: float = 3.0) -> bool:
    connection.settimeout(within)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _livez(daemon: Daemon, source: str) -> int | str:
    try:
        status, _, body = https(daemon, "GET", "/livez", source=source)
    except (ssl.SSLError, ConnectionError) as e:
        return type(e).__name__
    assert body == b"ok\n"
    return status


def test_idle_connections_are_closed_and_livez_keeps_answering(daemon: Daemon) -> None:
    """Two addresses fill every place but the reserved ones with connections that send
    nothing: a third address is refused, 127.0.0.1 (a monitoring address) still gets
    /livez, and within the handshake timeout the idle connections are closed, after
    which everyone is served again. Refusals are not logged one line each."""
    idle = [_idle(daemon, source) for source in ("127.0.0.2", "127.0.0.3") for _ in range(4)]
    time.sleep(0.2)
    assert _livez(daemon, "127.0.0.4") != 200
    assert _livez(daemon, "127.0.0.1") == 200
    started = time.monotonic()
    assert all(_closed_by_server(connection) for connection in idle)
    assert time.monotonic() - started < 2.5
    for connection in idle:
        connection.close()
    assert _livez(daemon, "127.0.0.4") == 200
    log = daemon.log_text()
    assert "Refused a connection" not in log
    assert "refused" not in log.lower() or "connection(s) in the last" in log


def test_one_address_cannot_take_more_than_its_share(daemon: Daemon) -> None:
    """Past connections_per_address a connection is closed at once (well before the
    handshake timeout); other addresses still get in."""
    idle = [_idle(daemon, "127.0.0.2") for _ in range(4)]
    extra = _idle(daemon, "127.0.0.2")
    assert _closed_by_server(extra, within=0.5)
    assert _livez(daemon, "127.0.0.3") == 200
    for connection in [*idle, extra]:
        connection.close()
