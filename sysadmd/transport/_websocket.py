"""The WebSocket transport: sysadm's JSON envelopes over Autobahn.

Each message is decoded and handed to :meth:`sysadmd.api.Api.dispatch` the moment it
arrives, so requests start in arrival order (the adapter keeps mutations and the
reads after them in that order), and each reply is sent, as a text frame, as soon
as it is ready, carrying its request's id. A request runs as whoever the connection
is logged in as (its ``rpc/auth*`` logins hold the session). The server never closes a connection
after a reply: sysadm's clients close it themselves.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from sysadmd.api import (
    Api,
    ApiError,
    ApiRequest,
    Connection,
    EventHub,
    Outbound,
    Refusal,
    Reply,
    attach,
    client_address,
    close_too_slow,
    envelope,
)
from sysadmd.auth import Ended

# Autobahn gives each protocol a txaio logger in ``self.log``; ours is separate.
log = Logger()

#: Close codes (and reasons) of a connection whose session ended: expired
#: (``auth.session_idle`` unused or ``auth.session_lifetime`` old), revoked (its account was
#: removed or its password or role changed), logged out with ``rpc/auth_clear`` on another
#: connection or over REST, or evicted by a full session table. 4000 (idle connection) and
#: 4001 (no login in time) close connections for reasons of their own.
SESSION_END: Final = {
    Ended.EXPIRED: (4002, "session expired"),
    Ended.REVOKED: (4003, "session revoked: the account changed"),
    Ended.LOGGED_OUT: (4004, "logged out elsewhere"),
    Ended.EVICTED: (4005, "session evicted: too many sessions"),
}


@dataclass(frozen=True)
class Limits:
    """What one WebSocket connection may do; the defaults suit sysadm's clients."""

    #: Largest message (and frame) before and after logging in, in bytes.
    message_before_login: int = 8 * 1024
    message_after_login: int = 64 * 1024
    #: Seconds to log in before the connection is closed.
    login_timeout: float = 30.0
    #: Seconds without a message from the client before the connection is closed.
    idle_timeout: float = 1800.0
    #: Requests one connection may have waiting for their replies.
    in_flight: int = 8
    #: Ping the client after this many quiet seconds; close if no pong within the timeout.
    ping_interval: float = 30.0
    ping_timeout: float = 10.0


class _WebSocketConnection(Connection):
    """A WebSocket connection as the corridor sees it: it carries many requests, lifts its
    message limits once logged in, drops its subscriptions when logged out, and closes
    when its session ends."""

    lasting = True

    def __init__(self, protocol: ApiServerProtocol, peer: str) -> None:
        super().__init__(peer, "websocket", subscriber=protocol.outbound)
        # Weak: the protocol holds this connection, and a strong reference back would leave
        # the two in a reference cycle once closed, for the cyclic collector to find.
        self._protocol = weakref.ref(protocol)

    def on_login(self) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.logged_in()

    def on_logout(self) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.factory.hub.drop(protocol.outbound)

    def on_session_end(self, why: Ended) -> None:
        protocol = self._protocol()
        if protocol is not None:
            protocol.session_ended(why)


class ApiServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """One WebSocket connection of a client."""

    factory: ApiServerFactory

    def onConnect(self, request: Any) -> None:
        """Note who connected; every request of this connection runs as this peer.

        The peer is the client's bare IP address (not Autobahn's ``tcp4:IP:PORT``, which
        differs on every connection), as over REST: the lockout and the logs count by it.
        """
        self.outbound = Outbound(send=self._send, give_up=lambda: close_too_slow(self))
        self.connection = _WebSocketConnection(self, client_address(self.transport.getPeer()))
        self._in_flight = 0
        self._timer: IDelayedCall | None = None
        #: When the last message came (once logged in); the idle timer reads it when it
        #: fires, so that a busy connection does not reschedule a timer per message.
        self._last_message = 0.0
        self._idle_armed = False

    def onOpen(self) -> None:
        """Start the log-in deadline; events go out through a bounded buffer."""
        attach(self, self.outbound)
        self.factory.open.add(self)
        self._arm(self.factory.limits.login_timeout, self._login_deadline)

    def _arm(self, seconds: float, expire: Callable[[], None]) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.clock.callLater(seconds, expire)

    def _login_deadline(self) -> None:
        if self.factory.api.caller(self.connection) is None:
            self.sendClose(4001, "not logged in within the time allowed")
        elif not self._idle_armed:
            self._last_message = self.factory.clock.seconds()
            self._arm_idle()

    def _arm_idle(self) -> None:
        self._idle_armed = True
        self._arm(self.factory.limits.idle_timeout, self._idle)

    def _idle(self) -> None:
        quiet = self.factory.clock.seconds() - self._last_message
        left = self.factory.limits.idle_timeout - quiet
        if left > 0:
            self._arm(left, self._idle)
        else:
            self.sendClose(4000, "idle for too long")

    def session_ended(self, why: Ended) -> None:
        """Close the connection: its session has ended (not by its own logout)."""
        self.connection.logged_out()
        code, reason = SESSION_END[why]
        log.info(
            "Closing a WebSocket from {peer}: {reason}", peer=self.connection.peer, reason=reason
        )
        self.sendClose(code, reason)

    def logged_in(self) -> None:
        """Lift the limits on messages before a login."""
        limit = self.factory.limits.message_after_login
        self.maxMessagePayloadSize = limit
        self.maxFramePayloadSize = limit

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Answer a request; text and binary frames are read alike."""
        if self.connection.token is not None or self.connection.identity is not None:
            self._last_message = self.factory.clock.seconds()
            if not self._idle_armed:
                self._arm_idle()
        if self._in_flight >= self.factory.limits.in_flight:
            self._send(_refusal(payload, TOO_MANY))
            return
        self._in_flight += 1
        answer = self._answer(payload)
        # Run the answer at once: a reply that is ready (the guest list within its refresh
        # window) is sent before this returns, with no Deferred made for it. Only an answer
        # that waits is handed to Twisted, from where it waits.
        try:
            waiting = answer.send(None)
        except StopIteration:
            self._in_flight -= 1
            return
        except Exception:
            self._in_flight -= 1
            self._failed(Failure())
            return
        d: Deferred[None] = Deferred.fromCoroutine(_rest(answer, waiting))
        d.addBoth(self._answered)
        d.addErrback(self._failed)

    async def _answer(self, payload: bytes) -> None:
        """Decode a request, have the dispatch answer it, and send the reply's envelope."""
        try:
            message = envelope.parse_request(payload)
        except envelope.EnvelopeError as e:
            self._send(envelope.error_reply(e.request_id, e))
            return
        request = ApiRequest(
            message.namespace, message.name, message.args, self.connection, id=message.id
        )

        def send(reply: Reply) -> None:
            if isinstance(reply, Refusal):
                self._send(envelope.error_reply(message.id, reply.error))
            else:
                encoded = self.factory.results.encode(reply.spec, reply.value)
                self._send(envelope.reply(message, None, encoded))

        await self.factory.api.dispatch(request, send)

    def _answered(self, result: Any) -> Any:
        self._in_flight -= 1
        return result

    def dataReceived(self, data: bytes) -> None:
        """Autobahn's, less its debug line, whose arguments are formatted on every read even
        when debug messages are not logged (the daemon logs Autobahn at info)."""
        if _debugging():
            super().dataReceived(data)
        else:
            self._dataReceived(data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Autobahn's, less its debug line (formatted on every write, as in
        :meth:`dataReceived`), when nothing waits in its send queue."""
        if sync or chopsize or self.send_queue or self.logOctets or _debugging():
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def _send(self, data: bytes) -> None:
        """Send a text frame. The message limits are for what clients send: Autobahn
        applies them to outgoing messages too, which would refuse a large reply."""
        if self.state != self.STATE_OPEN:
            return
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            self.sendMessage(data, isBinary=False)
        finally:
            self.maxMessagePayloadSize = limit

    def _failed(self, failure: Failure) -> None:
        log.failure("Could not answer a WebSocket request", failure)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Stop the timers of a closed connection, forget its subscriptions, and stop
        watching its session."""
        connection = getattr(self, "connection", None)
        if connection is not None:
            connection.closed()
        timer = getattr(self, "_timer", None)
        if timer is not None:
            if timer.active():
                timer.cancel()
            # The timer's call refers to this protocol: let it go (no cycle once closed).
            self._timer = None
        outbound = getattr(self, "outbound", None)
        if outbound is not None:
            outbound.stopProducing()
            self.factory.hub.drop(outbound)
        self.factory.open.discard(self)

    def connectionLost(self, reason: Failure) -> None:
        """Autobahn resolves ``is_closed`` with the protocol itself, a reference cycle that
        only the cyclic collector would free: once closed, it holds None instead."""
        super().connectionLost(reason)
        self.is_closed = succeed(None)

    def going_away(self) -> None:
        """Close with 1001: the daemon is stopping."""
        self.sendCloseFrame(code=1001, reasonUtf8=b"the server is stopping", isReply=False)


def _debugging() -> bool:
    """Whether Autobahn's debug messages are logged."""
    return txaio.get_global_log_level() in _DEBUG_LEVELS


_DEBUG_LEVELS: Final = frozenset({"debug", "trace"})


def _rest(
    coroutine: Coroutine[Any, Any, None], waiting: Deferred[Any]
) -> Generator[Deferred[Any], Any, None]:
    """The rest of ``coroutine``, which was run until it waited for ``waiting``, for
    ``Deferred.fromCoroutine`` to drive as if it had started the coroutine itself: the
    Deferred's result is sent into the coroutine, its failure thrown into it."""
    yield from _Resumed(coroutine, waiting)


class _Resumed:
    """A coroutine's steps from the one that yielded ``waiting`` on, as an iterator that
    ``yield from`` delegates to (sends, throws and closing go to the coroutine)."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], waiting: Deferred[Any]) -> None:
        self._coroutine = coroutine
        self._waiting: Deferred[Any] | None = waiting

    def __iter__(self) -> _Resumed:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            return waiting
        return self._coroutine.send(value)

    def throw(
        self,
        kind: type[BaseException] | BaseException,
        value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> Any:
        self._waiting = None
        error = value if value is not None else kind
        if isinstance(error, type):
            error = error()
        if traceback is not None:
            error = error.with_traceback(traceback)
        return self._coroutine.throw(error)

    def close(self) -> None:
        self._coroutine.close()


TOO_MANY: Final = ApiError(429, "too many requests waiting for replies on this connection")


def _refusal(data: bytes, error: ApiError) -> bytes:
    """An error envelope for a message that will not be run, with its id if readable."""
    try:
        request_id = envelope.parse_request(data).id
    except envelope.EnvelopeError as e:
        request_id = e.request_id
    return envelope.error_reply(request_id, error)


class ApiServerFactory(WebSocketServerFactory):  # type: ignore[misc]
    """Creates :class:`ApiServerProtocol` connections bound to one :class:`Api`."""

    protocol = ApiServerProtocol

    def __init__(
        self,
        api: Api,
        clock: IReactorTime,
        limits: Limits | None = None,
        hub: EventHub | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.clock = clock
        self.limits = limits or Limits()
        self.hub = hub or EventHub(())
        #: Every connection's replies, encoded once per result (see ResultEncoder).
        self.results = envelope.ResultEncoder(envelope.dumps)
        self.open: set[ApiServerProtocol] = set()
        self.setProtocolOptions(
            # No HTML status page for plain GETs, no compression.
            webStatus=False,
            perMessageCompressionAccept=lambda offers: None,
            # Origins are checked by OriginCheckedResource before Autobahn sees them.
            allowNullOrigin=False,
            # Until a login, small messages only; an oversized frame is refused from its
            # header, with close code 1009, before its payload is read.
            maxFramePayloadSize=self.limits.message_before_login,
            maxMessagePayloadSize=self.limits.message_before_login,
            failByDrop=False,
            autoPingInterval=self.limits.ping_interval,
            autoPingTimeout=self.limits.ping_timeout,
        )

    def close_all(self) -> None:
        """Close every open WebSocket with 1001 (the daemon is stopping)."""
        for protocol in list(self.open):
            protocol.going_away()


#: The Origin header sysadm's own Qt client sends: not a URL, so Autobahn's own
#: origin check (which needs a scheme and host) would refuse it.
SYSADM_CLIENT_ORIGIN: Final = "sysadm-client"


class OriginCheckedResource(Resource):
    """The WebSocket endpoint, behind sysadmd's own Origin check.

    A request without an Origin header comes from a program, not a browser, and is
    let in. A request with one is let in only if that origin is on the allow-list
    (``sysadm-client`` plus the configured browser origins); anything else,
    ``null`` included, is refused with 403 before the WebSocket opens, so a web
    page cannot drive the daemon from a user's browser. Once checked, the header
    is removed so that Autobahn treats the client as a program. A request that does
    not ask for a WebSocket upgrade gets 426 with a JSON error body saying how to
    connect, not Autobahn's bare 426.
    """

    isLeaf = True

    def __init__(
        self, factory: WebSocketServerFactory, allowed_origins: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self._websocket = WebSocketResource(factory)
        self._allowed = {SYSADM_CLIENT_ORIGIN} | {o.lower().rstrip("/") for o in allowed_origins}

    def render(self, request: Request) -> bytes | int:
        origins = request.requestHeaders.getRawHeaders(b"origin")
        if origins is not None:
            given = [o.decode("latin-1").strip().lower().rstrip("/") for o in origins]
            if len(given) != 1 or not (
                given[0] in self._allowed or _same_origin(request, given[0])
            ):
                request.setResponseCode(403)
                request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
                error = ApiError(403, "this WebSocket does not accept connections from that origin")
                return envelope.dumps({"args": envelope.error_body(error)})
            request.requestHeaders.removeHeader(b"origin")
        if not _asks_for_websocket(request):
            return _upgrade_required(request)
        result: bytes | int = self._websocket.render(request)
        channel = request.channel
        if channel is not None and channel.transport is None:
            # The WebSocket has taken the connection over from the HTTP channel, which will
            # read nothing more: the channel and this request, which refer to each other
            # (``channel.requests``), would otherwise stay in a cycle after the connection
            # ends.
            channel.requests.remove(request)
        return result


def _same_origin(request: Request, origin: str) -> bool:
    """Whether ``origin`` is the address the request was sent to (the daemon's own page).

    The page at ``/ui/`` opens its WebSocket from the daemon's own origin; its Origin
    header then names the scheme and host the browser used, which is this request's
    Host header. A proxy that rewrites Host needs the public origin in allowed_origins.
    """
    hosts = request.requestHeaders.getRawHeaders(b"host")
    if hosts is None or len(hosts) != 1:
        return False
    scheme = "https" if request.isSecure() else "http"
    return origin == f"{scheme}://{hosts[0].decode('latin-1').strip().lower()}"


#: What a request to the WebSocket path without an upgrade is told.
UPGRADE_REQUIRED_MESSAGE: Final = (
    "this path speaks WebSocket only: connect to it with a WebSocket client, "
    "or call the REST API at /<namespace>/<name> (for example PUT /sysadm/iohyve)"
)


def _asks_for_websocket(request: Request) -> bool:
    """Whether an ``Upgrade`` header names the ``websocket`` protocol."""
    values = request.requestHeaders.getRawHeaders(b"upgrade") or []
    tokens = (t.strip().lower() for v in values for t in v.split(b","))
    return any(t == b"websocket" or t.startswith(b"websocket/") for t in tokens)


def _upgrade_required(request: Request) -> bytes:
    """426 with the JSON error body every other reply has, and how to connect instead."""
    request.setResponseCode(426)
    request.responseHeaders.setRawHeaders(b"Upgrade", [b"websocket"])
    request.responseHeaders.setRawHeaders(b"Connection", [b"Upgrade"])
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    # Not an ApiError: no API call answers 426, only this path does.
    return envelope.dumps({"args": {"code": "426", "message": UPGRADE_REQUIRED_MESSAGE}})
