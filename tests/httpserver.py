"""A local HTTP server for fetch tests, on the test reactor, on loopback only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


@dataclass
class Files(Resource):
    """Serves ``files`` by name; names under ``stall`` send half their bytes and then wait;
    names under ``chunked`` announce no size (no ``Content-Length``, to ``HEAD`` or ``GET``:
    the body goes out in chunks)."""

    files: dict[str, bytes] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)
    chunked: set[str] = field(default_factory=set)
    stalled: list[Request] = field(default_factory=list)
    isLeaf = True

    def __post_init__(self) -> None:
        Resource.__init__(self)

    def render_GET(self, request: Request) -> bytes | int:
        name = request.path.decode().lstrip("/")
        if name not in self.files:
            request.setResponseCode(404)
            return b"not found"
        data = self.files[name]
        if name not in self.chunked:
            request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(data)).encode()])
        if name in self.stall:
            request.write(data[: len(data) // 2])
            self.stalled.append(request)
            return NOT_DONE_YET
        if name in self.chunked:
            # Returning bytes would make twisted.web add a Content-Length.
            request.write(data)
            request.finish()
            return NOT_DONE_YET
        return data

    def finish(self) -> int:
        """Send the rest of every stalled response, so those downloads complete."""
        finished = 0
        for request in self.stalled:
            if not request.finished and not request._disconnected:
                data = self.files[request.path.decode().lstrip("/")]
                request.write(data[len(data) // 2 :])
                request.finish()
                finished += 1
        self.stalled.clear()
        return finished

    def release(self) -> None:
        """End every stalled response (the fetch then fails: the body is short)."""
        for request in self.stalled:
            if not request.finished and not request._disconnected:
                request.loseConnection()
        self.stalled.clear()


class HTTPServer:
    """A running :class:`Files` server; ``url(name)`` gives a file's URL."""

    def __init__(self) -> None:
        self.files = Files()
        self._port: IListeningPort = reactor.listenTCP(
            0, cast(Any, Site(self.files)), interface="127.0.0.1"
        )
        self.port: int = cast(Any, self._port.getHost()).port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.files.release()
        self._port.stopListening()
