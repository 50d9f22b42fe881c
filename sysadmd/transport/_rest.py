"""The REST transport, a Klein resource that also hosts the WebSocket endpoint.

``PUT`` or ``POST /<namespace>/<name>`` with the arguments as the JSON body (or
``{"args": ...}``) answers ``200 {"args": ...}``; an error answers with the
HTTP status equal to its code and ``{"args": {"code", "message"}}``. Every reply
is JSON. The ``Authorization`` header (Basic or Bearer) becomes the request's
credentials, which the API's dispatch authenticates as it does every request's. ``/``
is the WebSocket endpoint, so one listener serves both protocols.
"""

from __future__ import annotations

import json
from typing import Any, Final

from klein import Klein
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from werkzeug.exceptions import MethodNotAllowed, NotFound

from sysadmd.api import (
    CODES,
    Api,
    ApiError,
    ApiRequest,
    Connection,
    Refusal,
    client_address,
    envelope,
)
from sysadmd.auth import CHALLENGE_HEADER, RetryLater, credentials_from_header
from sysadmd.catalog import openapi

CALL_METHODS: Final = ("PUT", "POST")


def _encode(body: Any) -> bytes:
    # Indented like sysadm's REST replies, so curl output is readable.
    return json.dumps(body, indent=4, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _render(request: IRequest, status: int, body: Any, encoded: bytes | None = None) -> bytes:
    request.setResponseCode(status, CODES.get(status, "").encode() or None)
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"Cache-Control", [b"no-store"])
    return _encode(body) if encoded is None else encoded


def _error(request: IRequest, error: ApiError) -> bytes:
    return _render(request, error.code, {"args": envelope.error_body(error)})


def _require_json(request: IRequest) -> None:
    content_type = request.getHeader(b"content-type") or b""
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        raise ApiError(415, "send the arguments as JSON, with Content-Type: application/json")


class LimitedRequest(Request):
    """A request whose body is capped and which must arrive within a deadline.

    Twisted accepts request bodies of any size, and its idle timeout restarts with
    every byte, so a client could fill the disk or hold a connection forever. A
    body over ``max_body`` bytes is refused with 413 as soon as its length is
    known (or, when chunked, as soon as it is exceeded), and a request not fully
    received within ``deadline`` seconds ends the connection with 408.
    """

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        site = channel.site
        self.max_body: int = site.max_body
        self.deadline: float = site.request_deadline
        self._received = 0
        self._refused = False
        self._timer: IDelayedCall | None = site.reactor.callLater(self.deadline, self._too_slow)

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            self._refuse(413, f"the request body must be at most {self.max_body} bytes")
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse(413, f"the request body must be at most {self.max_body} bytes")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._stop_timer()
        if not self._refused:
            super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        self._stop_timer()
        super().connectionLost(reason)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        self._refuse(408, f"the request was not received within {self.deadline:g} seconds")

    def _refuse(self, code: int, message: str) -> None:
        """Answer at once, outside the normal request cycle, and close the connection."""
        if self._refused:
            return
        self._refused = True
        body = envelope.dumps({"args": {"code": str(code), "message": message}})
        reason = CODES.get(code, "Error").encode()
        transport = self.channel.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (code, reason, len(body), body)
        )
        transport.loseConnection()


class ApiSite(Site):
    """The Site of every listener: limited requests, no tracebacks shown, and an
    access log only when asked for (``access_log``)."""

    requestFactory = LimitedRequest
    displayTracebacks = False

    def __init__(
        self,
        resource: IResource,
        clock: Any,
        *,
        max_body: int,
        request_deadline: float,
        websockets: Any = None,
        access_log: bool = False,
    ) -> None:
        super().__init__(resource, reactor=clock)
        self.max_body = max_body
        self.request_deadline = request_deadline
        self.access_log = access_log
        #: The WebSocket factory behind ``/``, so the daemon can close its connections.
        self.websockets = websockets
        #: The console WebSockets' factory, if the site serves consoles.
        self.consoles: Any = None

    def log(self, request: http.Request) -> None:
        """Write the request to the access log, if there is one."""
        if self.access_log:
            super().log(request)


class RestApi:
    """The Klein application: REST calls, the WebSocket at ``/``, JSON errors elsewhere."""

    app = Klein()

    def __init__(self, api: Api, websocket: IResource) -> None:
        self._api = api
        self._websocket = websocket
        # Built once, from the registry this daemon validates with.
        self._openapi = openapi.encode(openapi.document(api.registry.specs()))
        self._results = envelope.ResultEncoder(lambda result: _encode({"args": result}))

    def resource(self) -> IResource:
        """The resource to serve from a :class:`twisted.web.server.Site`."""
        resource: IResource = self.app.resource()
        return resource

    @app.route("/", branch=False)
    def websocket(self, request: IRequest) -> IResource:
        """The WebSocket endpoint."""
        return self._websocket

    @app.route("/<namespace>/<name>", methods=list(CALL_METHODS))
    async def call(self, request: IRequest, namespace: str, name: str) -> bytes:
        """Run one API call: the body and ``Authorization`` header become a request for
        the dispatch, its reply a JSON body with the error's code as the HTTP status."""
        try:
            _require_json(request)
            body = envelope.loads(request.content.read()) if request.content else None
            if not isinstance(body, dict):
                raise ApiError(400, "the request body must be a JSON object of arguments")
        except ApiError as e:
            return _error(request, e)
        connection = Connection(client_address(request.getClientAddress()), "rest")
        credentials = credentials_from_header(request.getHeader(b"authorization"))
        reply = await self._api.dispatch(
            ApiRequest(namespace, name, body, connection, credentials, args_in_body=True)
        )
        if isinstance(reply, Refusal):
            error = reply.error
            if error.code == 401:
                request.responseHeaders.setRawHeaders(
                    b"WWW-Authenticate", [CHALLENGE_HEADER.encode()]
                )
            if isinstance(error, RetryLater):
                request.responseHeaders.setRawHeaders(b"Retry-After", [b"%d" % error.retry_after])
            return _error(request, error)
        return _render(request, 200, None, self._results.encode(reply.spec, reply.value))

    @app.route(openapi.DOCUMENT_PATH)
    def openapi_document(self, request: IRequest) -> bytes:
        """The OpenAPI document, to anyone: it describes the API and holds no secrets."""
        if request.method not in (b"GET", b"HEAD"):
            request.responseHeaders.setRawHeaders(b"Allow", [b"GET, HEAD"])
            return _error(request, ApiError(405, "use GET for the OpenAPI document"))
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
        return self._openapi

    @app.handle_errors(MethodNotAllowed)
    def wrong_method(self, request: IRequest, failure: Failure) -> bytes:
        """Calls are made with PUT or POST."""
        request.responseHeaders.setRawHeaders(b"Allow", [", ".join(CALL_METHODS).encode()])
        return _error(request, ApiError(405, "use PUT or POST with a JSON body of arguments"))

    @app.handle_errors(NotFound)
    def unknown(self, request: IRequest, failure: Failure) -> bytes:
        """Anything else is not part of the API."""
        return _error(
            request,
            ApiError(404, "no such path; the API is at /<namespace>/<name>, the WebSocket at /"),
        )
