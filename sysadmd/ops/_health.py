"""Operations endpoints beside the API: ``/livez``, ``/readyz`` (and ``/metrics``).

``/livez`` answers ``ok`` to anyone: the reactor is turning. ``/readyz`` runs cheap
checks (the iohyve executable, the state directory, the task journal, room in
the fetch queue) and answers 200 ``ok`` or 503 ``not ready``; which check failed is
said only to a logged-in client (``Authorization: Basic`` or ``Bearer``, as for
REST). Neither names the host or a version: Twisted's ``Server`` header is
removed from these replies.

:class:`OperationsRoot` puts these resources at single-segment paths in front of
the API's resource, which keeps everything else (``/`` for the WebSocket,
``/<namespace>/<name>`` for REST) exactly as it was.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from sysadmd.api import (
    CODES,
    ApiError,
    Connection,
    ConnectionSession,
    Identity,
    address_in,
    client_address,
)
from sysadmd.auth import CHALLENGE_HEADER, Authenticator, credentials_from_header
from sysadmd.config import Network
from sysadmd.tasks import FetchQueue

log = Logger()

READ_METHODS: Final = (b"GET", b"HEAD")


def peer_host(request: IRequest) -> str:
    """The client's IP address as text (``unknown`` for a non-IP transport)."""
    return client_address(request.getClientAddress())


class Guard:
    """Who may see operational details: some addresses, or anyone who logs in."""

    def __init__(self, auth: Authenticator, allow: Iterable[Network] = ()) -> None:
        self._auth = auth
        self.allow = tuple(allow)

    def allowed_address(self, request: IRequest) -> bool:
        """Whether the request comes from an allowed address (the TCP peer's)."""
        return address_in(peer_host(request), self.allow)

    async def login(self, request: IRequest) -> Identity | None:
        """The user the request's ``Authorization`` header logs in, None without one.

        The header is read and checked as a REST call's is, by the same authentication
        step (failed logins count toward the lockout): raises :class:`ApiError` 401 for
        credentials that do not log in, 429 while blocked.
        """
        credentials = credentials_from_header(request.getHeader(b"authorization"))
        if isinstance(credentials, ConnectionSession):
            return None
        connection = Connection(peer_host(request), "rest")
        identity = await self._auth.authenticate(credentials, connection)
        if identity is None:
            raise ApiError(401, "log in with Authorization: Basic or Bearer")
        return identity


def finish(request: IRequest, code: int, body: bytes, content_type: bytes) -> None:
    """Send a complete plain reply, without Twisted's ``Server`` header."""
    if getattr(request, "_disconnected", False) or getattr(request, "finished", False):
        return
    request.setResponseCode(code, CODES.get(code, "").encode() or None)
    headers = request.responseHeaders
    headers.removeHeader(b"server")
    headers.setRawHeaders(b"Content-Type", [content_type])
    headers.setRawHeaders(b"Content-Length", [str(len(body)).encode()])
    headers.setRawHeaders(b"Cache-Control", [b"no-store"])
    headers.setRawHeaders(b"X-Content-Type-Options", [b"nosniff"])
    request.write(body)
    request.finish()


TEXT: Final = b"text/plain; charset=utf-8"


def refuse(request: IRequest, error: ApiError) -> None:
    """A plain-text error reply; 401 carries the schemes to log in with."""
    if error.code == 401:
        request.responseHeaders.setRawHeaders(b"WWW-Authenticate", [CHALLENGE_HEADER.encode()])
    finish(request, error.code, f"{error.code} {error.message}\n".encode(), TEXT)


class PlainResource(Resource, ABC):
    """A leaf answering GET and HEAD asynchronously; other methods get 405."""

    isLeaf = True

    def render(self, request: IRequest) -> int:
        request.responseHeaders.removeHeader(b"server")
        if request.postpath not in ([], [b""]):
            refuse(request, ApiError(404, "no such path"))
        elif request.method not in READ_METHODS:
            request.responseHeaders.setRawHeaders(b"Allow", [b", ".join(READ_METHODS)])
            refuse(request, ApiError(405, "use GET"))
        else:
            d = ensureDeferred(self.respond(request))
            d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: IRequest) -> None:
        if isinstance(failure.value, ApiError):
            refuse(request, failure.value)
            return
        log.failure("Unexpected error answering {path}", failure, path=request.uri)
        refuse(request, ApiError(500, "internal error; the server log has the details"))

    @abstractmethod
    async def respond(self, request: IRequest) -> None:
        """Answer ``request`` with :func:`finish`."""


class Livez(PlainResource):
    """``/livez``: the same two bytes and a newline for anyone, while the daemon runs."""

    async def respond(self, request: IRequest) -> None:
        finish(request, 200, b"ok\n", TEXT)


@dataclass(frozen=True)
class Check:
    """One readiness check: ``problem()`` says what is wrong, or None.

    A check that is not ``required`` is reported (to a logged-in client) without making the
    daemon unready: the fleet router being away leaves the host's own listeners serving.
    """

    name: str
    problem: Callable[[], str | None]
    required: bool = True


def daemon_checks(executable: str, state_dir: Path, fetches: FetchQueue) -> list[Check]:
    """The daemon's readiness checks; each costs a system call or less."""

    def iohyve() -> str | None:
        if os.path.isfile(executable) and os.access(executable, os.X_OK):
            return None
        return f"{executable} is not an executable file"

    def state() -> str | None:
        if os.path.isdir(state_dir) and os.access(state_dir, os.W_OK | os.X_OK):
            return None
        return f"{state_dir} is not a writable directory"

    def journal() -> str | None:
        return None if fetches.journalled else "the task journal is not open"

    def queue() -> str | None:
        return f"the fetch queue is full ({fetches.queued} waiting)" if fetches.full else None

    return [
        Check("iohyve", iohyve),
        Check("state_dir", state),
        Check("journal", journal),
        Check("fetch_queue", queue),
    ]


class Readyz(PlainResource):
    """``/readyz``: 200 ``ok`` or 503 ``not ready``; with a login, every check's result."""

    def __init__(self, checks: Sequence[Check], guard: Guard) -> None:
        super().__init__()
        self._checks = list(checks)
        self._guard = guard

    def results(self) -> list[tuple[str, str | None]]:
        """Each check's name and problem (None when it passed)."""
        return [(check.name, check.problem()) for check in self._checks]

    async def respond(self, request: IRequest) -> None:
        user = await self._guard.login(request)
        results = self.results()
        required = {check.name for check in self._checks if check.required}
        ready = all(problem is None for name, problem in results if name in required)
        lines = ["ok" if ready else "not ready"]
        if user is not None:
            lines += [f"{name}: {problem or 'ok'}" for name, problem in results]
        finish(request, 200 if ready else 503, ("\n".join(lines) + "\n").encode(), TEXT)


class OperationsRoot(Resource):
    """Serves ``children`` at ``/<name>``; hands every other path to ``api`` untouched."""

    def __init__(self, api: IResource, children: Mapping[bytes, IResource]) -> None:
        super().__init__()
        self._api = api
        self._operations = dict(children)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        child = self._operations.get(path)
        if child is not None and not request.postpath:
            return child
        # Undo the step Site took, so the API sees the path exactly as before.
        request.postpath.insert(0, request.prepath.pop())
        return self._api

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._api.render(request)
        return result
