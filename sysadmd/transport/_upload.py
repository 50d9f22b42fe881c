"""``PUT /iso/<name>``: an ISO uploaded as the request body, streamed into the ISO store.

The decision is taken from the request line and headers, before any byte of the body is
written anywhere: as soon as the headers are in (``Request.gotLength``), the connection
stops reading, and the request goes through the dispatch as the action ``sysadm/isoupload``
(authentication, the admin role, the name, 409 and 507 rules). A refusal answers at once
and ends the connection with a lingering close (:mod:`._linger`), so that a client still
sending the body reads the answer; an acceptance sends ``100 Continue`` if the client waits for
it and reads on. Every piece of the body then goes straight to the upload's temporary
file in the ISO store (never into Twisted's own body buffer, never whole into memory). The
JSON calls' body cap and request deadline do not apply; an upload that sends nothing for
``idle_timeout`` seconds is ended and what it sent removed.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from sysadmd.api import Api, ApiError, ApiRequest, Connection, Refusal, client_address
from sysadmd.auth import credentials_from_header
from sysadmd.services import UPLOAD_CLASS, UPLOAD_TRANSPORT

__all__ = ["UPLOAD_PATH", "UploadReceiver", "Uploads"]

#: The upload route: ``/iso/`` and a name (checked by the action's name rule).
UPLOAD_PATH: Final = re.compile(r"/iso/([^/?#]*)")


class Uploads:
    """Recognises upload requests and starts their receivers."""

    def __init__(self, api: Api, clock: IReactorTime, *, idle_timeout: float = 60.0) -> None:
        self._api = api
        self._clock = clock
        self.idle_timeout = idle_timeout

    def claims(self, method: bytes, path: bytes) -> bool:
        """Whether a request of ``method`` for ``path`` is an upload."""
        target = urlsplit(path.decode("latin-1")).path
        return method == b"PUT" and UPLOAD_PATH.fullmatch(target) is not None

    def start(self, request: Any, path: bytes, length: int | None) -> UploadReceiver:
        """The receiver of ``request``'s body; it decides at once whether to take it."""
        return UploadReceiver(
            self._api,
            self._clock,
            request,
            idle_timeout=self.idle_timeout,
            path=path,
            length=length,
        )


class UploadReceiver:
    """One upload request: its decision, its body, its reply."""

    log = Logger()

    def __init__(
        self,
        api: Api,
        clock: IReactorTime,
        request: Any,
        *,
        idle_timeout: float,
        path: bytes,
        length: int | None,
    ) -> None:
        self._request = request
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._pending: list[bytes] = []
        self._upload: Any = None
        self._failed: ApiError | None = None
        self._body_done = False
        self._finishing = False
        #: Fires with the stored ISO, or fails with the error to answer.
        self._outcome: Deferred[dict[str, Any]] = Deferred()
        self._idle: IDelayedCall | None = None
        expect = request.requestHeaders.getRawHeaders(b"expect") or []
        # Twisted answers 100 Continue as soon as the headers are in; this route answers
        # it itself, once the upload is accepted.
        request.requestHeaders.removeHeader(b"expect")
        self._expects_continue = bool(expect) and expect[0].lower() == b"100-continue"
        if length is None:
            request.refuse(411, "send the ISO with a Content-Length header")
            return
        parts = urlsplit(path.decode("latin-1"))
        found = UPLOAD_PATH.fullmatch(parts.path)
        name = unquote(found.group(1)) if found else ""
        args: dict[str, Any] = {"name": name, "size": length}
        query = parse_qs(parts.query, keep_blank_values=True)
        for key, values in query.items():
            if key != "checksum" or len(values) != 1:
                request.refuse(400, "the only query parameter is one 'checksum'")
                return
            args["checksum"] = values[0]
        self._pause()
        connection = Connection(client_address(request.getClientAddress()), UPLOAD_TRANSPORT)
        credentials = credentials_from_header(request.getHeader(b"authorization"))
        asked = ensureDeferred(
            api.dispatch(
                ApiRequest(
                    "sysadm",
                    UPLOAD_CLASS,
                    args,
                    connection,
                    credentials,
                    args_in_body=True,
                )
            )
        )
        asked.addCallback(self._decided).addErrback(
            lambda f: self.log.failure("The upload could not start", f)
        )

    def _decided(self, reply: Any) -> None:
        request = self._request
        if isinstance(reply, Refusal):
            self._resume()
            request.refuse(reply.error.code, reply.error.message)
            return
        self._upload = reply.value
        if request.gone:
            self._upload.abort("the client went away")
            return
        if self._expects_continue:
            request.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._restart_idle()
        pending, self._pending = self._pending, []
        for data in pending:
            self.chunk(data)
        self._resume()
        if self._body_done:
            self._start_finish()

    def chunk(self, data: bytes) -> None:
        """The next piece of the body."""
        if self._upload is None:
            # Not decided yet: at most what one read of the paused connection brought.
            self._pending.append(data)
            return
        if self._failed is not None:
            return
        self._restart_idle()
        try:
            self._upload.write(data)
        except ApiError as e:
            self._fail(e)
        except OSError as e:
            self._fail(ApiError(507, f"the upload could not be written: {e.strerror}"))

    def body_done(self) -> None:
        """The whole body has arrived (the request is about to be rendered)."""
        self._body_done = True
        self._stop_idle()
        if self._upload is not None:
            self._start_finish()

    async def reply(self) -> tuple[int, dict[str, Any]]:
        """The upload's outcome: (201, the ISO) or an error."""
        return 201, await self._outcome

    def lost(self) -> None:
        """The connection ended before the upload did."""
        self._stop_idle()
        if self._upload is not None and not self._upload.ended:
            self._upload.abort("the client closed the connection before the ISO arrived")

    def _start_finish(self) -> None:
        if self._finishing or self._failed is not None:
            return
        self._finishing = True
        ensureDeferred(self._upload.finish()).chainDeferred(self._outcome)

    def _fail(self, error: ApiError) -> None:
        self._failed = error
        self._upload.abort(error.message)
        if not self._outcome.called:
            self._outcome.errback(error)

    def _pause(self) -> None:
        transport = self._request.channel.transport
        if transport is not None:
            transport.pauseProducing()

    def _resume(self) -> None:
        transport = self._request.channel.transport
        if transport is not None:
            transport.resumeProducing()

    def _restart_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.reset(self._idle_timeout)
        else:
            self._idle = self._clock.callLater(self._idle_timeout, self._stalled)

    def _stop_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def _stalled(self) -> None:
        self._idle = None
        if self._upload is not None:
            self._upload.abort(f"nothing arrived for {self._idle_timeout:g} seconds")
        self._request.refuse(408, f"nothing arrived for {self._idle_timeout:g} seconds")
