"""``sysadm vm console NAME``: a guest's serial console in this terminal, like ``cu``.

The terminal is put in raw mode, so every key (Ctrl-C included) goes to the guest, and
restored on every way out: a detach, the server closing, an error, a signal that stops
the reactor. ``~.`` at the start of a line detaches; ``~~`` sends one ``~``. The server
sends the guest's recent history first, then live output; status changes and refusals are
shown on standard error between brackets. With ``read_only`` the client gives up control
at once and sends nothing the user types.
"""

from __future__ import annotations

import json
import os
import sys
import termios
import tty
from typing import Any, BinaryIO, TextIO

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.stdio import StandardIO

from sysadmd.client.client import tls_creator
from sysadmd.client.errors import ConnectionFailed, TLSVerificationFailed
from sysadmd.client.tls import TLSMode, format_address

#: Close codes after which the session is fine (the user detached, the daemon stopped).
_NORMAL: tuple[int | None, ...] = (1000, 1001)


class Escape:
    """``cu``'s escapes: ``~.`` at the start of a line detaches, ``~~`` sends a ``~``."""

    def __init__(self) -> None:
        self._line_start = True
        self._tilde = False

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to send for ``data``, and whether the user asked to detach."""
        out = bytearray()
        for value in data:
            byte = bytes([value])
            if self._tilde:
                self._tilde = False
                if byte == b".":
                    return bytes(out), True
                out += b"~" if byte == b"~" else b"~" + byte
            elif byte == b"~" and self._line_start:
                self._tilde = True
                continue
            else:
                out += byte
            self._line_start = byte in (b"\r", b"\n")
        return bytes(out), False


class _Console(WebSocketClientProtocol):  # type: ignore[misc]
    def __init__(self, session: ConsoleSession) -> None:
        super().__init__()
        self.session = session

    def onOpen(self) -> None:
        self.session.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.session.output.write(payload)
            self.session.output.flush()
            return
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict):
            self.session.control(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.session.closed(code, reason)


class _Keys(Protocol):
    def __init__(self, session: ConsoleSession) -> None:
        self.session = session

    def dataReceived(self, data: bytes) -> None:
        self.session.typed(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.session.detach()


class ConsoleSession:
    """One attached console: the WebSocket, the keyboard and what is shown."""

    def __init__(
        self,
        guest: str,
        *,
        read_only: bool,
        output: BinaryIO,
        notes: TextIO,
    ) -> None:
        self.guest = guest
        self.read_only = read_only
        self.output = output
        self.notes = notes
        self.done: Deferred[tuple[int | None, str | None]] = Deferred()
        self.open: Deferred[None] = Deferred()
        self._protocol: _Console | None = None
        self._escape = Escape()
        self._writer = False
        self._state: str | None = None
        self._detached = False

    def note(self, text: str) -> None:
        self.notes.write(f"\r\n[{text}]\r\n")
        self.notes.flush()

    def opened(self, protocol: _Console) -> None:
        self._protocol = protocol
        self.open.callback(None)

    def control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "status":
            first = self._state is None
            writer = bool(message.get("writer"))
            state = str(message.get("state"))
            if first:
                role = "read-only" if self.read_only else "writer" if writer else "watching"
                self.note(f"connected to {self.guest} ({state}, {role}); ~. detaches")
                if self.read_only and writer:
                    self._send_control("release")
            elif state != self._state:
                self.note(f"{self.guest} is {state}")
            elif writer != self._writer and not self.read_only:
                self.note("you type now" if writer else "another admin took control")
            self._state, self._writer = state, writer
        elif kind == "error":
            self.note(str(message.get("message", "error")))

    def _send_control(self, kind: str) -> None:
        if self._protocol is not None:
            self._protocol.sendMessage(json.dumps({"type": kind}).encode(), isBinary=False)

    def typed(self, data: bytes) -> None:
        send, detach = self._escape.feed(data)
        if send and not self.read_only and self._protocol is not None:
            self._protocol.sendMessage(send, isBinary=True)
        if detach:
            self.detach()

    def detach(self) -> None:
        if self._detached:
            return
        self._detached = True
        if self._protocol is not None:
            self._protocol.sendClose(1000, "detached")
        else:
            self.closed(1000, "detached")

    def closed(self, code: int | None, reason: str | None) -> None:
        if not self.open.called:
            self.open.errback(ConnectionFailed(f"the console closed: {reason or code}"))
        if not self.done.called:
            self.done.callback((code, reason))


class RawTerminal:
    """The terminal on ``fd`` in raw mode while in the ``with`` block, restored on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def __enter__(self) -> RawTerminal:
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


async def attach(
    host: str,
    port: int,
    token: str,
    guest: str,
    *,
    tls: TLSMode,
    read_only: bool = False,
    reactor: Any = None,
    connect_timeout: float = 15.0,
) -> tuple[int | None, str | None]:
    """Attach this terminal to ``guest``'s console until detached or closed; returns the
    close code and reason."""
    if reactor is None:
        from twisted.internet import reactor as default  # noqa: PLC0415

        reactor = default
    host = host.strip().strip("[]")
    address = format_address(host, port)
    check, creator = tls_creator(tls, host, address)
    url_host = f"[{host}]" if ":" in host else host
    session = ConsoleSession(guest, read_only=read_only, output=sys.stdout.buffer, notes=sys.stderr)
    factory = WebSocketClientFactory(
        f"wss://{url_host}:{port}/console/{guest}",
        reactor=reactor,
        headers={"Authorization": f"Bearer {token}"},
    )
    factory.protocol = lambda: _Console(session)
    factory.setProtocolOptions(openHandshakeTimeout=connect_timeout, autoPingInterval=0)
    endpoint = wrapClientTLS(
        creator, HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
    )
    try:
        await endpoint.connect(factory)
    except Exception as e:
        raise ConnectionFailed(f"cannot connect to {address}: {e}") from None
    # The TLS handshake is over once the WebSocket is open: check the pin then, before
    # anything is shown or typed.
    await session.open
    if check is not None and (
        check.presented is None
        or (check.expected is not None and check.presented != check.expected)
    ):
        if session._protocol is not None:
            session._protocol.dropConnection(abort=True)
        raise TLSVerificationFailed(f"{address}: the certificate was not checked")
    with RawTerminal(sys.stdin.fileno()):
        keys = StandardIO(_Keys(session), reactor=reactor)
        try:
            return await session.done
        finally:
            keys.loseConnection()
