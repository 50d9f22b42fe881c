"""The WebSocket transport: sysadm's JSON envelopes over Autobahn.

Each message is handed to :meth:`sysadmd.api.Api.handle_message` the moment it
arrives, so requests start in arrival order (the adapter keeps mutations and the
reads after them in that order), and each reply is sent, as a text frame, as soon
as it is ready, carrying its request's id. The server never closes a connection
after a reply: sysadm's clients close it themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from sysadmd import envelope
from sysadmd.api import Api
from sysadmd.errors import ApiError

# Autobahn gives each protocol a txaio logger in ``self.log``; ours is separate.
log = Logger()


class ApiServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """One WebSocket connection of a client."""

    factory: ApiServerFactory

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Answer a request; text and binary frames are read alike."""
        d = ensureDeferred(self.factory.api.handle_message(payload))
        d.addCallback(self._send)
        d.addErrback(self._failed)

    def _send(self, data: bytes) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(data, isBinary=False)

    def _failed(self, failure: Failure) -> None:
        log.failure("Could not answer a WebSocket request", failure)


class ApiServerFactory(WebSocketServerFactory):  # type: ignore[misc]
    """Creates :class:`ApiServerProtocol` connections bound to one :class:`Api`."""

    protocol = ApiServerProtocol

    def __init__(self, api: Api, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api = api
        self.setProtocolOptions(
            # No HTML status page for plain GETs, no compression.
            webStatus=False,
            perMessageCompressionAccept=lambda offers: None,
            # Origins are checked by OriginCheckedResource before Autobahn sees them.
            allowNullOrigin=False,
        )


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
    is removed so that Autobahn treats the client as a program.
    """

    isLeaf = True

    def __init__(self, factory: ApiServerFactory, allowed_origins: Iterable[str] = ()) -> None:
        super().__init__()
        self._websocket = WebSocketResource(factory)
        self._allowed = {SYSADM_CLIENT_ORIGIN} | {o.lower().rstrip("/") for o in allowed_origins}

    def render(self, request: Request) -> bytes | int:
        origins = request.requestHeaders.getRawHeaders(b"origin")
        if origins is not None:
            given = [o.decode("latin-1").strip().lower().rstrip("/") for o in origins]
            if len(given) != 1 or given[0] not in self._allowed:
                request.setResponseCode(403)
                request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
                error = ApiError(403, "this WebSocket does not accept connections from that origin")
                return envelope.dumps({"args": envelope.error_body(error)})
            request.requestHeaders.removeHeader(b"origin")
        result: bytes | int = self._websocket.render(request)
        return result
