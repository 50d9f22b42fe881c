"""A local HTTP server for fetch tests, on the test reactor, on loopback only."""

from __future__ import annotations

import hashlib
import re
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
    the body goes out in chunks).

    Every file has an ``ETag`` (``etags``, by default one made from its bytes) and a
    ``Last-Modified``; ``Accept-Ranges: bytes`` is announced and a ``Range: bytes=N-`` is
    answered with a 206, except for names under ``no_ranges`` (always the whole file, 200).
    ``cuts`` holds, by name, how many bytes of the whole file the next GETs send before the
    connection is closed (one entry used per GET). ``asked`` lists each GET's name and
    ``Range`` header."""

    files: dict[str, bytes] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)
    chunked: set[str] = field(default_factory=set)
    stalled: list[Request] = field(default_factory=list)
    no_ranges: set[str] = field(default_factory=set)
    etags: dict[str, str] = field(default_factory=dict)
    cuts: dict[str, list[int]] = field(default_factory=dict)
    asked: list[tuple[str, str | None]] = field(default_factory=list)
    last_modified: str = "Fri, 08 Jan 2016 20:15:33 GMT"
    _held_from: dict[int, int] = field(default_factory=dict)
    isLeaf = True

    def __post_init__(self) -> None:
        Resource.__init__(self)

    def _range(self, request: Request, name: str, size: int) -> int:
        """Where the answer starts: a 206 from a ``Range: bytes=N-`` within the file."""
        asked = request.getHeader(b"range")
        if request.method == b"GET":
            self.asked.append((name, asked.decode() if asked is not None else None))
        if name in self.no_ranges or name in self.chunked or asked is None:
            return 0
        match = re.fullmatch(r"bytes=(\d+)-", asked.decode())
        if match is None or not 0 < int(match.group(1)) < size:
            return 0
        start = int(match.group(1))
        request.setResponseCode(206)
        request.responseHeaders.setRawHeaders(
            b"Content-Range", [f"bytes {start}-{size - 1}/{size}".encode()]
        )
        return start

    def render_GET(self, request: Request) -> bytes | int:
        name = request.path.decode().lstrip("/")
        if name not in self.files:
            request.setResponseCode(404)
            return b"not found"
        data = self.files[name]
        etag = self.etags.get(name, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
        request.responseHeaders.setRawHeaders(b"ETag", [etag.encode()])
        request.responseHeaders.setRawHeaders(b"Last-Modified", [self.last_modified.encode()])
        if name not in self.no_ranges:
            request.responseHeaders.setRawHeaders(b"Accept-Ranges", [b"bytes"])
        start = self._range(request, name, len(data))
        data = data[start:]
        if name not in self.chunked:
            request.responseHeaders.setRawHeaders(b"Content-Length", [str(len(data)).encode()])
        cut = self.cuts.get(name)
        if cut and request.method == b"GET":
            request.write(data[: max(0, cut.pop(0) - start)])
            request.loseConnection()
            return NOT_DONE_YET
        if name in self.stall:
            request.write(data[: len(data) // 2])
            self.stalled.append(request)
            self._held_from[id(request)] = start + len(data) // 2
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
            held = self._held_from.pop(id(request), 0)
            if not request.finished and not request._disconnected:
                data = self.files[request.path.decode().lstrip("/")]
                request.write(data[held:])
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
        self._held_from.clear()


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
