"""The WebSocket path leaves nothing for the cyclic garbage collector, and does no more per
message than it must.

Opening a WebSocket, logging in, calling and closing must free every object it built by
reference counting: objects in reference cycles wait for a collection, and a full collection
walks every connection of the daemon (0.2 to 1.4 s with 10,000 subscribers), stalling them all
while new connections log in.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import struct
from pathlib import Path
from typing import Any

import autobahn.twisted.websocket as autobahn_twisted
import autobahn.websocket.protocol as autobahn_protocol
import pytest
import txaio
from authkit import make_authenticator
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from probe import Probe
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from sysadmd.api import Api, ApiError, Registry, Role
from sysadmd.app import build_site
from sysadmd.auth import Authenticator
from sysadmd.services import Rpc

REQUESTS = 1000
CONNECTIONS = 200
#: Allowance for objects that reach the collector once, not per request (caches warming up).
ONCE = 100
#: What a client is told of an error that is no ApiError.
INTERNAL_ERROR = "internal error; the server log has the details"

_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: sysadmd.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _frame(message: dict[str, Any]) -> bytes:
    """A masked text frame, as a client sends it."""
    payload = json.dumps(message).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + mask + masked


def _close_frame() -> bytes:
    mask = os.urandom(4)
    body = struct.pack("!H", 1000)
    return (
        struct.pack("!BB", 0x88, 0x80 | len(body))
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    )


class _Transport(StringTransport):
    """A string transport that, like a TCP one, knows the protocol it delivers to."""

    protocol: Any = None


class Harness:
    """The daemon's Site on string transports: every byte is handled synchronously."""

    def __init__(self, directory: Path) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.auth: Authenticator = make_authenticator(directory, self.clock)
        registry = Registry()
        registry.register(Rpc(self.auth, "testhost"))
        self.probe = Probe()
        registry.register(self.probe)
        self.site = build_site(Api(registry, self.auth), self.clock)
        self.token, _ = self.auth.sessions.create("alice", Role.ADMIN)

    def open(self) -> tuple[Any, _Transport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        assert channel is not None
        transport = _Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        transport.protocol = channel
        channel.makeConnection(transport)
        key = base64.b64encode(os.urandom(16))
        channel.dataReceived(_UPGRADE % key)
        assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()[:200]
        transport.clear()
        # The WebSocket protocol has taken the transport over from the HTTP channel.
        return transport.protocol, transport

    @staticmethod
    def call(protocol: Any, transport: _Transport, message: dict[str, Any]) -> bytes:
        transport.clear()
        protocol.dataReceived(_frame(message))
        sent: bytes = transport.value()
        return sent


ECHO = {"namespace": "test", "name": "probe", "id": "e", "args": {"action": "echo", "word": "hi"}}


@pytest.mark.usefixtures("no_automatic_collection")
def test_requests_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    channel, transport = harness.open()
    login = {"namespace": "rpc", "name": "auth_token", "id": "l", "args": {"token": harness.token}}
    assert b'"name":"response"' in harness.call(channel, transport, login)
    assert b'"word":"hi"' in harness.call(channel, transport, ECHO)
    gc.collect()
    for _ in range(REQUESTS):
        assert b'"word":"hi"' in harness.call(channel, transport, ECHO)
    unreachable = gc.collect()
    channel.connectionLost(Failure(ConnectionDone()))
    assert unreachable < ONCE, f"{unreachable} objects in cycles after {REQUESTS} requests"


@pytest.mark.usefixtures("no_automatic_collection")
def test_connections_that_log_in_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    """Opening, logging in with a token, calling and closing: nothing left in cycles."""
    harness = Harness(tmp_path)
    login = {"namespace": "rpc", "name": "auth_token", "id": "l", "args": {"token": harness.token}}

    def session() -> None:
        channel, transport = harness.open()
        assert b'"name":"response"' in harness.call(channel, transport, login)
        assert b'"word":"hi"' in harness.call(channel, transport, ECHO)
        channel.dataReceived(_close_frame())
        transport.protocol = None  # as a TCP transport lets its protocol go once closed
        channel.connectionLost(Failure(ConnectionDone()))

    session()
    gc.collect()
    for _ in range(CONNECTIONS):
        session()
    unreachable = gc.collect()
    assert unreachable < ONCE, f"{unreachable} objects in cycles after {CONNECTIONS} connections"


class _Bare(WebSocketServerProtocol):  # type: ignore[misc]
    """The least a JSON API over Autobahn does: decode, look up, encode, send."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        reply = {"namespace": message["namespace"], "name": "response", "id": message["id"]}
        body = json.dumps({**reply, "args": {"word": "hi"}}, separators=(",", ":"))
        self.sendMessage(body.encode(), isBinary=False)


def _bare() -> tuple[Any, _Transport]:
    factory = WebSocketServerFactory()
    factory.protocol = _Bare
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = _Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    protocol.makeConnection(transport)
    protocol.dataReceived(_UPGRADE % base64.b64encode(os.urandom(16)))
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()[:200]
    return protocol, transport


def _deferreds_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made = [0]
    original = Deferred.__init__

    def counted(self: Deferred[Any], *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(Deferred, "__init__", counted)
    return made


def test_a_ready_reply_makes_no_deferred_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose answer is ready is answered before the frame's bytes are handled, with
    no more Deferreds than a bare Autobahn server makes per message (Autobahn's own)."""
    harness = Harness(tmp_path)
    channel, transport = harness.open()
    login = {"namespace": "rpc", "name": "auth_token", "id": "l", "args": {"token": harness.token}}
    assert b'"name":"response"' in harness.call(channel, transport, login)
    bare, bare_transport = _bare()
    made = _deferreds_made(monkeypatch)
    for _ in range(100):
        assert b'"word":"hi"' in Harness.call(bare, bare_transport, ECHO)
    floor, made[0] = made[0], 0
    for _ in range(100):
        assert b'"word":"hi"' in harness.call(channel, transport, ECHO)
    assert made[0] <= floor, f"{made[0]} Deferreds for 100 calls; a bare server makes {floor}"


@pytest.mark.parametrize("level", ["info", "debug"])
def test_autobahn_debug_lines_are_formatted_only_when_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    """Autobahn formats a debug line for every read and every write, whatever the level;
    the daemon's WebSockets skip that unless Autobahn's debug messages are logged."""
    harness = Harness(tmp_path)
    channel, transport = harness.open()
    formatted = [0]

    def counted(value: Any) -> str:
        formatted[0] += 1
        return repr(value)

    monkeypatch.setattr(autobahn_twisted, "hltype", counted)
    monkeypatch.setattr(autobahn_protocol, "hltype", counted)
    txaio.set_global_log_level(level)
    try:
        for _ in range(10):
            assert b'"word":"hi"' in harness.call(channel, transport, ECHO)
    finally:
        txaio.set_global_log_level("info")
    assert (formatted[0] > 0) == (level == "debug"), formatted[0]


def _payload(frame: bytes) -> bytes:
    """The payload of one unmasked frame, as the server sends them."""
    length = frame[1] & 0x7F
    return frame[4:] if length == 126 else frame[2:]


def _hold(word: str) -> dict[str, Any]:
    return {
        "namespace": "test",
        "name": "probe",
        "id": word,
        "args": {"action": "hold", "word": word},
    }


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (None, {"hold": {"word": "w"}}),
        (ApiError(409, "taken meanwhile"), {"code": "409", "message": "taken meanwhile"}),
        (RuntimeError("a bug"), {"code": "500", "message": INTERNAL_ERROR}),
    ],
    ids=["result", "api-error", "bug"],
)
def test_a_request_that_waits_is_answered_with_what_it_waited_for(
    tmp_path: Path, outcome: Exception | None, expected: dict[str, Any]
) -> None:
    """A request whose handler waits is answered when the wait ends, with its result or the
    error it ended with, as if it had been run by Twisted from the start."""
    harness = Harness(tmp_path)
    channel, transport = harness.open()
    probe = harness.probe
    assert harness.call(channel, transport, _hold("w")) == b""
    assert probe.started == ["w"]
    transport.clear()
    gate = probe.gates["w"]
    if outcome is None:
        gate.callback(None)
    else:
        gate.errback(outcome)
    reply = json.loads(_payload(transport.value()))
    assert reply["id"] == "w"
    assert reply["args"] == expected
    assert b'"word":"hi"' in harness.call(channel, transport, ECHO)
