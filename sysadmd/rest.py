"""The REST transport, a Klein resource that also hosts the WebSocket endpoint.

``PUT`` or ``POST /<namespace>/<name>`` with the arguments as the JSON body (or
``{"args": ...}``) answers ``200 {"args": ...}``; an error answers with the
HTTP status equal to its code and ``{"args": {"code", "message"}}``. Every reply
is JSON. ``/`` is the WebSocket endpoint, so one listener serves both protocols.
"""

from __future__ import annotations

import json
from typing import Any, Final

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed, NotFound

from sysadmd import envelope
from sysadmd.api import Api
from sysadmd.errors import CODES, ApiError

CALL_METHODS: Final = ("PUT", "POST")


def _render(request: IRequest, status: int, body: Any) -> bytes:
    request.setResponseCode(status, CODES.get(status, "").encode() or None)
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"Cache-Control", [b"no-store"])
    # Indented like sysadm's REST replies, so curl output is readable.
    return json.dumps(body, indent=4, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _error(request: IRequest, error: ApiError) -> bytes:
    return _render(request, error.code, {"args": envelope.error_body(error)})


class RestApi:
    """The Klein application: REST calls, the WebSocket at ``/``, JSON errors elsewhere."""

    app = Klein()

    def __init__(self, api: Api, websocket: IResource) -> None:
        self._api = api
        self._websocket = websocket

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
        """Run one API call."""
        try:
            body = envelope.loads(request.content.read()) if request.content else None
            if not isinstance(body, dict):
                raise ApiError(400, "the request body must be a JSON object of arguments")
            args = envelope.args_of(body)
            result = await self._api.call(namespace, name, args)
        except ApiError as e:
            return _error(request, e)
        return _render(request, 200, {"args": result})

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
