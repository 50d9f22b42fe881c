"""The REST transport, a Klein resource that also hosts the WebSocket endpoint.

``PUT`` or ``POST /<namespace>/<name>`` with the arguments as the JSON body (or
``{"args": ...}``) answers ``200 {"args": ...}``; an error answers with the
HTTP status equal to its code and ``{"args": {"code", "message"}}``. Every reply
is JSON. The ``Authorization`` header (Basic or Bearer) becomes the request's
credentials, which the API's dispatch authenticates as it does every request's. ``/``
is the WebSocket endpoint, so one listener serves both protocols.
"""

from __future__ import annotations

import math
import re
from io import BytesIO
from json.encoder import encode_basestring as _encode_string
from typing import Any, Final, cast

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
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
from sysadmd.transport._linger import LingeringChannel
from sysadmd.transport._upload import UploadReceiver, Uploads

CALL_METHODS: Final = ("PUT", "POST")
_CALL_METHODS_BYTES: Final = frozenset(method.encode() for method in CALL_METHODS)
#: The route of API calls. Other routes may claim paths of the same shape by a fixed first
#: segment (``/iso/<name>``); the direct path leaves those to the router.
CALL_ROUTE: Final = "/<namespace>/<name>"


def _encode(body: Any) -> bytes:
    # Indented like sysadm's REST replies, so curl output is readable.
    parts: list[str] = []
    _indented(body, parts, "\n", set())
    parts.append("\n")
    return "".join(parts).encode()


_INDENT: Final = "    "
_float_repr: Final = float.__repr__
_int_repr: Final = int.__repr__
_CONSTANTS: Final[dict[bool | None, str]] = {None: "null", True: "true", False: "false"}


def _float(value: float) -> str:
    if value != value:  # noqa: PLR0124 (NaN is the value not equal to itself)
        return "NaN"
    if value in {math.inf, -math.inf}:
        return "Infinity" if value > 0 else "-Infinity"
    return _float_repr(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return _CONSTANTS[key]
    if isinstance(key, int):
        return _int_repr(key)
    if isinstance(key, float):
        return _float(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _scalar(value: Any) -> str | None:
    """``value`` in JSON if it is not a container, else None."""
    if isinstance(value, str):
        return _encode_string(value)
    if value is None or value is True or value is False:
        return _CONSTANTS[value]
    if isinstance(value, int):
        return _int_repr(value)
    if isinstance(value, float):
        return _float(value)
    return None


def _indented(value: Any, parts: list[str], newline: str, open_: set[int]) -> None:
    """Append ``value`` as ``json.dumps(value, indent=4, sort_keys=True, ensure_ascii=False)``
    writes it, byte for byte.

    The standard library writes indented JSON with nested closures that refer to each other,
    a reference cycle per call that only the cyclic collector frees; this plain recursive
    function builds none.
    """
    scalar = _scalar(value)
    if scalar is not None:
        parts.append(scalar)
        return
    if not isinstance(value, list | tuple | dict):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    if not value:
        parts.append("{}" if isinstance(value, dict) else "[]")
        return
    marker = id(value)
    if marker in open_:
        raise ValueError("Circular reference detected")
    open_.add(marker)
    inner = newline + _INDENT
    if isinstance(value, dict):
        separator = "{" + inner
        for key, item in sorted(value.items()):
            parts.extend((separator, _encode_string(_key(key)), ": "))
            _indented(item, parts, inner, open_)
            separator = "," + inner
        parts.append(newline + "}")
    else:
        separator = "[" + inner
        for item in value:
            parts.append(separator)
            _indented(item, parts, inner, open_)
            separator = "," + inner
        parts.append(newline + "]")
    open_.discard(marker)


def _render(request: IRequest, status: int, body: Any, encoded: bytes | None = None) -> bytes:
    request.setResponseCode(status, CODES.get(status, "").encode() or None)
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"Cache-Control", [b"no-store"])
    return _encode(body) if encoded is None else encoded


def _error(request: IRequest, error: ApiError) -> bytes:
    return _render(request, error.code, {"args": envelope.error_body(error)})


def _not_found(request: IRequest) -> bytes:
    return _error(
        request,
        ApiError(404, "no such path; the API is at /<namespace>/<name>, the WebSocket at /"),
    )


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
        #: The receiver of an ISO upload's body (``PUT /iso/<name>``), which has its own
        #: size cap and idle timeout instead of ``max_body`` and ``deadline``.
        self.upload: UploadReceiver | None = None

    @property
    def gone(self) -> bool:
        """Whether the request was answered out of cycle or its connection is lost."""
        return self._refused or self.channel is None or self.channel.transport is None

    def refuse(self, code: int, message: str) -> None:
        """Answer ``code`` at once, outside the request cycle, and close the connection."""
        self._refuse(code, message)

    def gotLength(self, length: int | None) -> None:
        uploads: Uploads | None = getattr(getattr(self.channel, "site", None), "uploads", None)
        # The request line is in; Request itself learns it only once the body is.
        command, path = getattr(self.channel, "_command", b""), getattr(self.channel, "_path", b"")
        if uploads is not None and uploads.claims(command, path):
            self._stop_timer()
            self.content = BytesIO()
            self.upload = uploads.start(self, path, length)
            return
        if length is not None and length > self.max_body:
            self._refuse(413, f"the request body must be at most {self.max_body} bytes")
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        if self.upload is not None:
            self.upload.chunk(data)
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse(413, f"the request body must be at most {self.max_body} bytes")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._stop_timer()
        if self.upload is not None and not self._refused:
            self.upload.body_done()
        if not self._refused:
            super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        self._stop_timer()
        if self.upload is not None:
            self.upload.lost()
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
        # The client may still be sending the body: closing with it unread would reset the
        # connection and destroy the answer before the client reads it.
        if isinstance(self.channel, LingeringChannel):
            self.channel.linger()
        else:
            transport.loseConnection()
        if self.upload is not None:
            self.upload.lost()


class ApiSite(Site):
    """The Site of every listener: limited requests, no tracebacks shown, and an
    access log only when asked for (``access_log``)."""

    requestFactory = LimitedRequest
    #: Refusals end their connection with a lingering close (see :mod:`._linger`). (A plain
    #: HTTP/1.1 channel: the listeners offer no ALPN, so HTTP/2 is never spoken.)
    protocol = LingeringChannel  # type: ignore[assignment]
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
        uploads: Uploads | None = None,
    ) -> None:
        super().__init__(resource, reactor=clock)
        #: ``PUT /iso/<name>``'s receivers, if this site takes uploads.
        self.uploads = uploads
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


def _wrong_method(request: IRequest) -> bytes:
    request.responseHeaders.setRawHeaders(b"Allow", [", ".join(CALL_METHODS).encode()])
    return _error(request, ApiError(405, "use PUT or POST with a JSON body of arguments"))


class _Reply:
    """Writes one call's reply, unless the client went away first (then the call is cancelled).

    Built from bound methods and plain attributes, so that once the request has finished
    nothing refers to it and reference counting frees it all.
    """

    __slots__ = ("_call", "_gone", "_request")

    def __init__(self, request: IRequest, call: Deferred[bytes]) -> None:
        self._request = request
        self._call = call
        self._gone = False
        cast(Request, request).notifyFinish().addErrback(self._lost)
        call.addCallbacks(self._write, self._failed)

    def _lost(self, _: Failure) -> None:
        self._gone = True
        self._call.cancel()

    def _write(self, body: bytes) -> None:
        if not self._gone:
            self._request.write(body)
            self._request.finish()

    def _failed(self, failure: Failure) -> None:
        if self._gone:
            if not failure.check(CancelledError):
                RestApi.log.failure("unhandled error in a REST call", failure)
            return
        cast(Request, self._request).processingFailed(failure)


class _RestRoot(Resource):
    """The root of the REST transport: API calls and unknown paths answered directly, every
    other path through the Klein router.

    Routing a request through Klein builds objects in reference cycles (a closure that refers
    to itself, the router's matcher) which only the cyclic collector frees: many per request.
    The WebSocket upgrade at ``/`` (one per connection) goes straight to the WebSocket
    resource, and the calls, nearly all the traffic, skip the router too: a path of two
    plain segments (no percent-encoding, valid UTF-8) whose first segment no other route
    claims goes to :meth:`RestApi.call`. So does the not-found answer: a path no route can
    match (by the routes' shapes, see :class:`_Shapes`) gets the router's 404 bytes without
    the router, so that a scan of random paths leaves nothing for the collector either.
    Anything else goes to Klein exactly as before.
    """

    isLeaf = True

    def __init__(self, rest: RestApi, routed: IResource, shapes: _Shapes) -> None:
        super().__init__()
        self._rest = rest
        self._routed = routed
        self._shapes = shapes
        self._claimed = shapes.claimed

    @staticmethod
    def _websocket_path(path: list[bytes]) -> bool:
        """Whether the path is ``/``, the WebSocket endpoint's."""
        return path == [b""]

    def _call_path(self, path: list[bytes]) -> tuple[str, str] | None:
        if self._claimed is None or len(path) != 2:
            return None
        namespace, name = path
        if not namespace or not name or namespace in self._claimed:
            return None
        if b"%" in namespace or b"%" in name:
            return None
        try:
            return namespace.decode(), name.decode()
        except UnicodeDecodeError:
            return None

    def render(self, request: IRequest) -> bytes | int:
        path = cast(Request, request).postpath or []
        if self._websocket_path(path):
            # The WebSocket endpoint, as its route would render it: every connection's upgrade.
            websocket: bytes | int = self._rest.websocket(request).render(request)
            return websocket
        call = self._call_path(path)
        if call is not None:
            if request.method not in _CALL_METHODS_BYTES:
                return _wrong_method(request)
            _Reply(request, ensureDeferred(self._rest.call(request, *call)))
            return NOT_DONE_YET
        if self._shapes.unmatched(path):
            # Written as the router writes its answers (no Content-Length: chunked over
            # HTTP/1.1), so that the bytes on the wire are the router's.
            request.write(_not_found(request))
            request.finish()
            return NOT_DONE_YET
        result: bytes | int = self._routed.render(request)
        return result


class _Shapes:
    """What the router's rules can match, told from their shapes without matching.

    A rule is a list of segments, fixed or variable (a segment with a ``<...>`` placeholder
    matches any one segment). The router joins the path's segments (a decoded ``%2F`` is a
    slash to it) and merges repeated slashes before it matches, redirecting to the merged
    path when that matches. So a path that is valid UTF-8 and whose merged segments have a
    shape no rule has is one the router can only answer with its 404. A rule whose
    placeholder may span segments (``<path:...>``, or a converter not known to stay in one)
    could match anything: then no path is taken for unmatched.
    """

    __slots__ = ("_rules", "claimed")

    def __init__(self, app: Klein) -> None:
        rules: list[tuple[bytes | None, ...]] | None = []
        for rule in app.url_map.iter_rules():
            segments = [s for s in rule.rule.split("/") if s]
            converters = (_CONVERTER.fullmatch(s) for s in segments if "<" in s)
            if rules is None or not all(m and m.group(1) in _ONE_SEGMENT for m in converters):
                rules = None
                continue
            rules.append(tuple(None if "<" in s else s.encode() for s in segments))
        self._rules = None if rules is None else frozenset(rules)
        self.claimed = _claimed_segments(app)

    def unmatched(self, path: list[bytes]) -> bool:
        """Whether no rule can match ``path`` (Twisted's decoded segments after the root)."""
        if self._rules is None:
            return False
        joined = b"/".join(path)
        try:
            joined.decode()
        except UnicodeDecodeError:
            return False  # the router answers 400
        segments = [s for s in joined.split(b"/") if s]
        for rule in self._rules:
            if len(rule) == len(segments) and all(
                fixed is None or fixed == given for fixed, given in zip(rule, segments, strict=True)
            ):
                return False
        return True


#: A segment with one placeholder, and its converter (werkzeug's syntax).
_CONVERTER: Final = re.compile(r"[^<>]*<(?:(\w+)(?:\([^)]*\))?:)?\w+>[^<>]*")
#: werkzeug's converters that match within one segment (None: the default, ``string``).
_ONE_SEGMENT: Final = frozenset({None, "string", "int", "float", "uuid", "any"})


def _claimed_segments(app: Klein) -> frozenset[bytes] | None:
    """The fixed first segments of the routes other than the calls' (None if a route other
    than the calls' could match any two-segment path: then every request is routed)."""
    claimed: set[bytes] = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == CALL_ROUTE:
            continue
        first = rule.rule.lstrip("/").split("/", 1)[0]
        if first.startswith("<"):
            if rule.rule.count("/") == 2:
                return None
            continue
        claimed.add(first.encode())
    return frozenset(claimed)


class RestApi:
    """The Klein application: REST calls, the WebSocket at ``/``, JSON errors elsewhere."""

    log = Logger()

    app = Klein()

    def __init__(self, api: Api, websocket: IResource) -> None:
        self._api = api
        self._websocket = websocket
        # Built once, from the registry this daemon validates with.
        self._openapi = openapi.encode(openapi.document(api.registry.specs()))
        self._results = envelope.ResultEncoder(lambda result: _encode({"args": result}))

    def resource(self) -> IResource:
        """The resource to serve from a :class:`twisted.web.server.Site`."""
        routed: IResource = self.app.resource()
        return _RestRoot(self, routed, _Shapes(self.app))

    @app.route("/", branch=False)
    def websocket(self, request: IRequest) -> IResource:
        """The WebSocket endpoint."""
        return self._websocket

    @app.route(CALL_ROUTE, methods=list(CALL_METHODS))
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

    @app.route("/iso/<name>", methods=["PUT"])
    async def upload(self, request: IRequest, name: str) -> bytes:
        """The reply to an ISO upload whose body has arrived (see :mod:`._upload`)."""
        receiver = getattr(request, "upload", None)
        if receiver is None:
            return _error(request, ApiError(404, "this listener takes no uploads"))
        try:
            status, body = await receiver.reply()
        except ApiError as e:
            return _error(request, e)
        return _render(request, status, {"args": body})

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
        return _wrong_method(request)

    @app.handle_errors(NotFound)
    def unknown(self, request: IRequest, failure: Failure) -> bytes:
        """Anything else is not part of the API."""
        return _not_found(request)
