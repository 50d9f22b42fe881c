"""The console transport: a guest's serial console over a WebSocket at ``/console/<guest>``.

A connection logs in with the upgrade's ``Authorization`` header (Bearer or Basic, as REST)
or, for a browser that cannot set headers, with a first text message ``{"token": "..."}``
within ``login_timeout`` seconds. The login is the ``sysadm/consoleview attach`` action, handed
to :meth:`sysadmd.api.Api.dispatch` like every other request: it authenticates, checks the
role, validates the guest's name and attaches the connection to the guest's console (see
:class:`sysadmd.console.ConsoleService`). A refused login, and an unknown guest, close the
connection with 1008 and a reason; nothing of the console is sent before the login.

Then binary frames carry console bytes both ways, and text frames JSON control messages:
the server's ``{"type": "status", ...}`` and ``{"type": "error", "message": ...}``, the
client's ``{"type": "take"}`` and ``{"type": "release"}`` (dispatched as the actions of the
same names). Everything the server sends goes through one bounded buffer per connection; a
viewer that falls that far behind is closed with 1008, and the guest and the other viewers
never wait for it. A chunk of output is framed once for all the viewers of the guest (the
frame is a binary message with the chunk as its payload, as if each had framed it); only the
encryption and the send are per viewer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from sysadmd.api import (
    CONNECTION_SESSION,
    Api,
    ApiRequest,
    Authentication,
    Bearer,
    Connection,
    Outbound,
    Refusal,
    Role,
    attach,
    client_address,
)
from sysadmd.auth import Ended, credentials_from_header
from sysadmd.console import ConsoleService, GuestConsole, Output
from sysadmd.transport._websocket import OriginCheckedResource

log = Logger()

#: The close code of every refusal: no login, a refused login, an unknown guest, too slow.
POLICY: Final = 1008
_PATH: Final = re.compile(r"/console/([^/]+)")


def _frame(payload: bytes, *, binary: bool) -> bytes:
    """A whole server-to-client message in one frame, unmasked and uncompressed (the
    factory refuses compression): the bytes every viewer's connection sends."""
    framed: bytes = PreparedMessage(payload, binary, False, True).payloadHybi
    return framed


def binary_frame(payload: bytes) -> bytes:
    """Console bytes as one binary message, ready to send on any console connection."""
    return _frame(payload, binary=True)


@dataclass(frozen=True)
class ConsoleLimits:
    """What one console connection may do."""

    #: Seconds to log in (by header, or by the first message) before the connection closes.
    login_timeout: float = 10.0
    #: Bytes queued for the client before it is cut off as too slow.
    viewer_buffer: int = 1024 * 1024
    #: Largest message the client may send.
    message_size: int = 64 * 1024
    ping_interval: float = 30.0
    ping_timeout: float = 10.0


class _ConsoleConnection(Connection):
    """A console connection as the corridor sees it: it lasts, and it is a viewer."""

    lasting = True

    def __init__(self, protocol: ConsoleServerProtocol, peer: str) -> None:
        super().__init__(peer, "console")
        self.console_viewer = protocol
        self.console: GuestConsole | None = None
        self._protocol = protocol

    def on_session_end(self, why: Ended) -> None:
        self._protocol.refuse(f"session ended: {why.value}")

    def on_logout(self) -> None:
        self._protocol.refuse("logged out")


class ConsoleServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """One viewer of one guest's console."""

    factory: ConsoleServerFactory
    maxMessagePayloadSize: int
    maxFramePayloadSize: int

    def onConnect(self, request: Any) -> None:
        match = _PATH.fullmatch(request.path)
        self.guest = unquote(match.group(1)) if match else ""
        header = request.headers.get("authorization")
        self.credentials: Authentication | None = (
            credentials_from_header(header.encode("latin-1")) if header else None
        )
        self.connection = _ConsoleConnection(self, client_address(self.transport.getPeer()))
        self.outbound = Outbound(
            send=self._deliver,
            give_up=lambda: self.refuse("too slow"),
            max_bytes=self.factory.limits.viewer_buffer,
            max_messages=1 << 20,
        )
        self._timer: IDelayedCall | None = None
        self._login_started = False
        self._told_read_only = False
        self._closing = False

    # Viewer

    @property
    def user(self) -> str:
        caller = self.factory.api.caller(self.connection)
        return caller.user if caller is not None else ""

    @property
    def address(self) -> str:
        return self.connection.peer

    @property
    def may_write(self) -> bool:
        caller = self.factory.api.caller(self.connection)
        return caller is not None and caller.role.allows(Role.ADMIN)

    def send_status(self, status: dict[str, Any]) -> None:
        self.outbound.deliver(_frame(json.dumps(status).encode(), binary=False))

    def send_output(self, output: Output) -> None:
        self.outbound.deliver(output.framed(binary_frame))

    # The connection

    def _deliver(self, frame: bytes) -> None:
        """Send one framed message (what ``sendPreparedMessage`` sends without compression;
        the limit on message size is the client's, not ours)."""
        if self.state != self.STATE_OPEN:
            return
        self.sendData(frame)

    def _error(self, message: str) -> None:
        self.send_status({"type": "error", "message": message})

    def refuse(self, reason: str) -> None:
        """Close with 1008 and ``reason`` (Autobahn's ``sendClose`` refuses 1008)."""
        if self._closing:
            return
        self._closing = True
        log.info(
            "Closing a console WebSocket of {guest} from {peer} (1008): {reason}",
            guest=self.guest,
            peer=self.connection.peer,
            reason=reason,
        )
        self.outbound.stopProducing()
        self.sendCloseFrame(code=POLICY, reasonUtf8=reason.encode()[:120], isReply=False)

    def onOpen(self) -> None:
        attach(self, self.outbound)
        self.factory.open.add(self)
        if self.credentials is not None:
            self._log_in(self.credentials)
        else:
            self._timer = self.factory.clock.callLater(
                self.factory.limits.login_timeout,
                self.refuse,
                "not logged in within the time allowed",
            )

    def _log_in(self, credentials: Authentication) -> None:
        self._login_started = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        ensureDeferred(self._attach(credentials)).addErrback(self._failed)

    async def _attach(self, credentials: Authentication) -> None:
        request = ApiRequest(
            "sysadm",
            "consoleview",
            {"action": "attach", "name": self.guest},
            self.connection,
            credentials,
        )
        reply = await self.factory.api.dispatch(request)
        if isinstance(reply, Refusal):
            error = reply.error
            what = "unknown guest" if error.code == 404 else "not logged in"
            if error.code in (400, 403, 429):
                what = "refused"
            self.refuse(f"{what}: {error.message}")
            return
        console = self.factory.consoles.guests[self.guest]
        if self.state != self.STATE_OPEN:
            # Closed while the login ran: onClose found nothing to detach.
            self.factory.consoles.detach(console, self)
            return
        self.connection.console = console
        limit = self.factory.limits.message_size
        self.maxMessagePayloadSize = limit
        self.maxFramePayloadSize = limit

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        console = self.connection.console
        if console is None:
            if self._login_started or isBinary:
                return
            token = _token(payload)
            if token is None:
                self.refuse('log in first: send {"token": "<session token>"}')
                return
            self._log_in(Bearer(token))
            return
        if isBinary:
            if not self.factory.consoles.write(console, self, payload) and not self._told_read_only:
                self._told_read_only = True
                self._error(
                    "input dropped: you may only watch (operator)"
                    if not self.may_write
                    else 'input dropped: you are not the writer; send {"type": "take"}'
                )
            return
        ensureDeferred(self._control(console, payload)).addErrback(self._failed)

    async def _control(self, console: GuestConsole, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in ("take", "release"):
            self._error('control messages are {"type": "take"} and {"type": "release"}')
            return
        request = ApiRequest(
            "sysadm",
            "consoleview",
            {"action": kind, "name": console.name},
            self.connection,
            CONNECTION_SESSION,
        )
        reply = await self.factory.api.dispatch(request)
        if isinstance(reply, Refusal):
            self._error(f"{kind} refused: {reply.error.message}")
        elif kind == "take":
            self._told_read_only = False

    def _failed(self, failure: Failure) -> None:
        log.failure("Console connection failed", failure)
        self.refuse("internal error")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        connection = getattr(self, "connection", None)
        if connection is None:
            return
        connection.closed()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.outbound.stopProducing()
        if connection.console is not None:
            self.factory.consoles.detach(connection.console, self)
            connection.console = None
        self.factory.open.discard(self)

    def going_away(self) -> None:
        self.sendCloseFrame(code=1001, reasonUtf8=b"the server is stopping", isReply=False)


def _token(payload: bytes) -> str | None:
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict) or set(message) != {"token"}:
        return None
    token = message["token"]
    return token if isinstance(token, str) and 0 < len(token) <= 1024 else None


class ConsoleServerFactory(WebSocketServerFactory):  # type: ignore[misc]
    """Creates :class:`ConsoleServerProtocol` connections bound to the dispatch and the
    consoles."""

    protocol = ConsoleServerProtocol

    def __init__(
        self,
        api: Api,
        consoles: ConsoleService,
        clock: IReactorTime,
        limits: ConsoleLimits | None = None,
    ) -> None:
        super().__init__()
        self.api = api
        self.consoles = consoles
        self.clock = clock
        self.limits = limits or ConsoleLimits()
        self.open: set[ConsoleServerProtocol] = set()
        self.setProtocolOptions(
            webStatus=False,
            perMessageCompressionAccept=lambda offers: None,
            allowNullOrigin=False,
            maxFramePayloadSize=4096,
            maxMessagePayloadSize=4096,
            failByDrop=False,
            autoPingInterval=self.limits.ping_interval,
            autoPingTimeout=self.limits.ping_timeout,
        )

    def close_all(self) -> None:
        for protocol in list(self.open):
            protocol.going_away()


class ConsoleRoot(Resource):
    """Serves the console WebSocket at ``/console/<guest>``; every other path goes to
    ``api`` untouched."""

    def __init__(
        self,
        api: IResource,
        factory: ConsoleServerFactory,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self._api = api
        self._console = OriginCheckedResource(factory, allowed_origins)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        if path == b"console" and len(request.postpath) == 1 and request.postpath[0]:
            return self._console
        request.postpath.insert(0, request.prepath.pop())
        return self._api

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._api.render(request)
        return result
