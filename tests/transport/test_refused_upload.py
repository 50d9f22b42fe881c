"""A refused upload's answer reaches a client that is still sending the body.

``PUT /iso/<name>`` is decided from the headers. A client that did not ask for
``100 Continue`` is already sending the body when the refusal comes; the daemon answers,
half-closes and reads on (discarding) for a bounded time, so that the client's kernel is
never sent a reset that would destroy the answer before the client reads it.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon
from support import async_test
from twisted.internet.threads import deferToThread

from sysadmd.transport._linger import LINGER_SECONDS

pytestmark = pytest.mark.e2e

#: The upload cap of the test daemon.
CAP = 4 * 1024 * 1024
#: What the client sends after the headers before it reads: well under the daemon's
#: bound on what it discards after a refusal, in pieces spread over about half a second.
SENT = 512 * 1024
PIECE = 16 * 1024


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with a plain TCP listener (``ports[0]``) and a TLS one (``ports[1]``)."""
    base = tmp_path_factory.mktemp("refused")
    config = base / "sysadmd.toml"
    config.write_text(f"[fetch]\nupload_max = {CAP}\n")
    running = Daemon(
        base / "state",
        "--config",
        str(config),
        listen=("tcp:0:interface=127.0.0.1", "ssl:0:interface=127.0.0.1"),
    )
    yield running
    assert running.stop()


def _connect(daemon: Daemon, tls: bool) -> socket.socket:
    plain = socket.create_connection(("127.0.0.1", daemon.ports[1 if tls else 0]), timeout=10)
    if not tls:
        return plain
    pem = (daemon.state_dir / "tls" / "cert.pem").read_text()
    return ssl.create_default_context(cadata=pem).wrap_socket(plain, server_hostname="localhost")


def _head(daemon: Daemon, name: str, length: int) -> bytes:
    basic = base64.b64encode(f"admin:{daemon.password}".encode())
    return (
        b"PUT /iso/%s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (name.encode(), basic, length)
    )


def _read_answer(connection: socket.socket) -> bytes:
    """Everything the daemon sends until it closes (or a whole answer has arrived)."""
    received = b""
    while True:
        head, _, body = received.partition(b"\r\n\r\n")
        length = head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0]
        if length and len(body) >= int(length):
            return received
        chunk = connection.recv(65536)
        if not chunk:
            return received
        received += chunk


def _send_then_read(daemon: Daemon, tls: bool, name: str, length: int) -> bytes:
    """As a client that never asks for ``100 Continue`` does (``http.client``, curl below
    1 MiB, browsers): send the headers, keep sending the body for about half a second
    without looking for an answer, and only then read. A send that fails raises, as it
    does in such a client, which then never reads the answer at all."""
    with _connect(daemon, tls) as connection:
        connection.sendall(_head(daemon, name, length))
        for _ in range(SENT // PIECE):
            connection.sendall(b"\0" * PIECE)
            time.sleep(0.02)
        return _read_answer(connection)


def _store(daemon: Daemon) -> Path:
    return daemon.state_dir / "simulator" / "iohyve" / "ISO"


def _message(answer: bytes) -> str:
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    message: str = body["args"]["message"]
    return message


def _upload_small(daemon: Daemon, name: str) -> None:
    with _connect(daemon, tls=False) as connection:
        connection.sendall(_head(daemon, name, 5) + b"first")
        answer = _read_answer(connection)
    assert answer.startswith(b"HTTP/1.1 201 "), answer


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@async_test
async def test_a_409_reaches_a_client_still_sending(daemon: Daemon, tls: bool) -> None:
    """The name is taken; the client sends 512 KiB of a 4 MiB body, then reads the whole
    409 answer naming the ISO. Without the lingering close its sends are reset."""
    name = f"taken-{'tls' if tls else 'tcp'}.iso"
    await deferToThread(_upload_small, daemon, name)
    answer = await deferToThread(_send_then_read, daemon, tls, name, CAP)
    assert answer.startswith(b"HTTP/1.1 409 "), answer
    assert _message(answer).startswith(f"ISO '{name}' already exists")
    assert (_store(daemon) / name / name).read_bytes() == b"first"


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@async_test
async def test_a_too_large_upload_s_507_reaches_a_client_still_sending(
    daemon: Daemon, tls: bool
) -> None:
    """Past the upload cap: the client sees the 507 naming the cap, and nothing is stored."""
    name = f"huge-{'tls' if tls else 'tcp'}.iso"
    answer = await deferToThread(_send_then_read, daemon, tls, name, CAP + 1)
    assert answer.startswith(b"HTTP/1.1 507 "), answer
    assert f"at most {CAP} bytes" in _message(answer)
    assert not (_store(daemon) / name).exists()


def _trickle(daemon: Daemon, tls: bool, name: str) -> tuple[bytes, bool, float]:
    """After the headers of a refused upload, send the body a byte every 20 ms and read
    what comes, until the daemon ends the connection: the answer, whether the end of the
    daemon's stream (its half-close) was read, and the seconds from the answer to the end
    of the connection (``inf`` if it was not ended within 10 s)."""
    with _connect(daemon, tls) as connection:
        connection.sendall(_head(daemon, name, CAP + 1))
        connection.settimeout(0.02)
        answer = b""
        half_closed = False
        answered: float | None = None
        started = time.monotonic()
        while time.monotonic() - started < 10:
            try:
                connection.sendall(b"\0")
                chunk = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                # The daemon's half-close: the answer is complete; go on sending.
                half_closed = True
                time.sleep(0.02)
            answer += chunk
            if answered is None and b"\r\n\r\n" in answer:
                answered = time.monotonic()
        else:
            return answer, half_closed, float("inf")
    assert answered is not None, answer
    return answer, half_closed, time.monotonic() - answered


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@async_test
async def test_a_client_trickling_after_a_refusal_is_closed_at_the_bound(
    daemon: Daemon, tls: bool
) -> None:
    """The client gets its answer and the end of the daemon's stream (a FIN, or TLS's
    close_notify), and what it sends afterwards, however slowly, neither ends the
    connection early nor keeps it open: the daemon ends it about ``LINGER_SECONDS`` (2 s)
    after the answer."""
    name = f"trickle-{'tls' if tls else 'tcp'}.iso"
    answer, half_closed, lasted = await deferToThread(_trickle, daemon, tls, name)
    assert answer.startswith(b"HTTP/1.1 507 "), answer
    assert f"at most {CAP} bytes" in _message(answer)
    assert half_closed
    assert LINGER_SECONDS - 0.5 < lasted < LINGER_SECONDS + 1.5, lasted
