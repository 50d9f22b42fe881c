"""Console output to many viewers in one process: each chunk is framed once for all of them,
and a viewer that reads nothing never holds back the others."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from authkit import make_authenticator
from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.websocket import protocol as autobahn
from consolekit import ConsoleClient
from support import async_fixture, async_test
from test_console_service import FakeBackend, pty, turn
from test_health import basic
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from wsclient import _with_timeout

from sysadmd.api import Api
from sysadmd.api._registry import Registry
from sysadmd.app import build_site
from sysadmd.console import ConsoleLimits, ConsoleService
from sysadmd.services import ConsoleActions
from sysadmd.transport import ConsoleLimits as TransportConsoleLimits

__all__ = ["pty"]  # the fixture, used by name

#: A viewer's send buffer in these tests: small, so a viewer that reads nothing is cut off
#: after a few MiB at most (what the sockets hold, then this).
BUFFER = 64 * 1024


@dataclass
class Served:
    service: ConsoleService
    port: int
    master: int
    site: Any


@async_fixture()
async def served(tmp_path: Path, pty: tuple[int, Path]) -> AsyncIterator[Served]:
    master, device = pty
    service = ConsoleService(
        FakeBackend(device),  # type: ignore[arg-type]
        reactor,
        tmp_path / "console",
        limits=ConsoleLimits(interval=3600, viewer_buffer=BUFFER),
    )
    service.startService()
    registry = Registry()
    registry.register(ConsoleActions(service))
    api = Api(registry, make_authenticator(tmp_path))
    site = build_site(
        api,
        reactor,
        consoles=service,
        console_limits=TransportConsoleLimits(viewer_buffer=BUFFER),
    )
    listening: IListeningPort = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        site
    )
    try:
        await turn()
        yield Served(service, cast(Any, listening.getHost()).port, master, site)
    finally:
        for protocol in list(site.consoles.open):
            protocol.transport.abortConnection()
        await cast(Deferred[None], listening.stopListening())
        service.stopService()


async def viewer(served: Served) -> ConsoleClient:
    factory = WebSocketClientFactory(
        f"ws://127.0.0.1:{served.port}/console/web", headers=basic("alice")
    )
    factory.protocol = ConsoleClient
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", served.port)
    client: ConsoleClient = await _with_timeout(endpoint.connect(factory))
    await _with_timeout(client.opened)
    status = await client.control()
    assert status["type"] == "status"
    return client


def count_framings(monkeypatch: pytest.MonkeyPatch, marker: bytes) -> list[int]:
    """Count every WebSocket framing of a payload holding ``marker``: a frame built for one
    connection (``sendFrame``) or prepared for many (``PreparedMessage``)."""
    framings = [0]

    def counting(method: Callable[..., Any], payload_at: int) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            payload = kwargs.get("payload", args[payload_at] if len(args) > payload_at else b"")
            if payload and marker in payload:
                framings[0] += 1
            return method(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        autobahn.WebSocketProtocol,
        "sendFrame",
        counting(autobahn.WebSocketProtocol.sendFrame, 2),
    )
    monkeypatch.setattr(
        autobahn.PreparedMessage,
        "__init__",
        counting(autobahn.PreparedMessage.__init__, 1),
    )
    return framings


@async_test
async def test_a_chunk_of_output_is_framed_once_for_every_viewer(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewers = [await viewer(served) for _ in range(6)]
    marker = b"one line every viewer sees\r\n"
    framings = count_framings(monkeypatch, marker)
    os.write(served.master, marker)
    for client in viewers:
        await client.until(marker)
        assert client.output.endswith(marker)
    assert framings[0] == 1
    for client in viewers:
        await client.close()


def server_side(served: Served, client: ConsoleClient) -> Any:
    """The daemon's end of ``client``'s connection."""
    port = client.transport.getHost().port
    (protocol,) = [p for p in served.site.consoles.open if p.transport.getPeer().port == port]
    return protocol


@async_test
async def test_a_viewer_that_reads_nothing_does_not_hold_back_the_others(
    served: Served,
) -> None:
    fast = await viewer(served)
    slow = await viewer(served)
    slow_end = server_side(served, slow)
    # Small socket buffers on the slow connection, so what the kernel holds for it is small
    # next to the burst; then it reads nothing more.
    slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_end.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slow.transport.pauseProducing()
    printed = b"".join(b"%d\r\n" % n for n in range(300_000))  # about 2 MiB
    sent = 0
    while sent < len(printed):
        try:
            sent += os.write(served.master, printed[sent : sent + 65536])
        except BlockingIOError:
            await turn(0)
    await fast.until(b"\r\n299999\r\n")
    # The fast viewer got everything, in order, and is still attached; the slow one was cut
    # off as too slow once it was a buffer behind, and nobody waited for it.
    assert fast.output == printed
    (console,) = served.service.guests.values()
    assert server_side(served, fast) in console.viewers
    assert slow_end.outbound.gave_up
    assert not server_side(served, fast).outbound.gave_up
    slow.transport.resumeProducing()
    await fast.close()
