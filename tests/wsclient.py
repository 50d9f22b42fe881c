"""A small WebSocket test client on Autobahn, used by the transport and end-to-end tests."""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.task import deferLater

WAIT = 10.0


class WsClient(WebSocketClientProtocol):  # type: ignore[misc]
    """Collects the server's messages in a queue, with their frame type."""

    def __init__(self) -> None:
        super().__init__()
        self.received: DeferredQueue[tuple[Any, bool]] = DeferredQueue()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.put((json.loads(payload), isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"closed before opening: {code} {reason}"))
        self.closed.callback((wasClean, code, reason))

    def send(self, message: Any, *, binary: bool = False) -> None:
        """Send a JSON message (or raw bytes/str as given)."""
        if isinstance(message, bytes):
            data = message
        elif isinstance(message, str):
            data = message.encode()
        else:
            data = json.dumps(message).encode()
        self.sendMessage(data, isBinary=binary)

    async def next(self) -> Any:
        """The next message the server sent (fails after WAIT seconds)."""
        message, is_binary = await _with_timeout(self.received.get())
        assert not is_binary, "the server must answer in text frames"
        return message

    async def close(self) -> None:
        """Close from the client side, as sysadm's clients do, and wait for it."""
        self.sendClose(1000, "done")
        await _with_timeout(self.closed)


async def _with_timeout(d: Deferred[Any]) -> Any:
    timer = _reactor.callLater(WAIT, d.cancel)
    try:
        return await d
    finally:
        if timer.active():
            timer.cancel()


async def connect(
    host: str,
    port: int,
    *,
    tls: IOpenSSLClientConnectionCreator | None = None,
    headers: dict[str, str] | None = None,
) -> WsClient:
    """Open a WebSocket to ``/`` on host:port (wss if ``tls`` is given)."""
    scheme = "wss" if tls else "ws"
    factory = WebSocketClientFactory(f"{scheme}://{host}:{port}/", headers=headers or {})
    factory.protocol = WsClient
    endpoint = (
        SSL4ClientEndpoint(_reactor, host, port, tls)
        if tls
        else TCP4ClientEndpoint(_reactor, host, port)
    )
    client: WsClient = await _with_timeout(endpoint.connect(factory))
    await _with_timeout(client.opened)
    return client


async def settle(seconds: float = 0.05) -> None:
    """Let the reactor run for a moment."""
    await deferLater(_reactor, seconds, lambda: None)
