"""The REST load generator used when wrk is not installed, run in worker processes.

It does what the suite asks of wrk: ``PUT <url> {"action": "listvms"}`` with a Bearer token
over keep-alive HTTP/1.1 connections, each client in a closed loop (send, read the whole reply,
send again) for a fixed time. Every request is bounded: a reply that has not come within
``REQUEST_TIMEOUT`` seconds counts as a timeout and the connection is opened again, as wrk's
``--timeout`` does. Like wrk it does not check the server's certificate (everything is on
loopback and the figures are about throughput).

A Python client costs more per request than wrk's C, so its figures are lower bounds and not
comparable with a run that used wrk; the suite records which one it used.
"""

# Process targets take their arguments by position (multiprocessing passes them so).
# ruff: noqa: PLR0917

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

from benchmarks.wsload import _wait

BODY = b'{"action": "listvms"}'
#: Seconds a request may take before it counts as a timeout (wrk's ``--timeout 10s``).
REQUEST_TIMEOUT = 10.0
#: The largest reply head accepted; a longer one is an error, not a reason to buffer forever.
MAX_HEAD = 64 * 1024


class ReplyError(Exception):
    """The server's reply was not a well-formed HTTP/1.1 reply."""


@dataclass
class Counts:
    latencies: list[float] = field(default_factory=list)
    status_errors: int = 0
    read_errors: int = 0
    connect_errors: int = 0
    timeouts: int = 0

    def errors(self) -> int:
        return self.status_errors + self.read_errors + self.connect_errors + self.timeouts


def request_bytes(url: str, token: str | None) -> bytes:
    """The request every client sends, built once."""
    parts = urllib.parse.urlsplit(url)
    lines = [
        f"PUT {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(BODY)}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + BODY


def _tls(url: str) -> ssl.SSLContext | None:
    if urllib.parse.urlsplit(url).scheme != "https":
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one whole reply (head and body); return its status code and whether the server
    keeps the connection open."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as e:
        raise ReplyError("reply head too long") from e
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise ReplyError(f"not an HTTP reply: {lines[0]!r}")
    status = int(status_line[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"


async def _client(url: str, request: bytes, end: float, counts: Counts) -> None:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = _tls(url)
    clock = time.monotonic
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while clock() < end:
            if connection is None:
                try:
                    connection = await asyncio.wait_for(
                        asyncio.open_connection(host, port, ssl=context, limit=MAX_HEAD),
                        REQUEST_TIMEOUT,
                    )
                except (OSError, TimeoutError):
                    counts.connect_errors += 1
                    await asyncio.sleep(0.01)
                    continue
            reader, writer = connection
            sent = clock()
            try:
                writer.write(request)
                status, keep_alive = await asyncio.wait_for(read_reply(reader), REQUEST_TIMEOUT)
            except TimeoutError:
                counts.timeouts += 1
            except (OSError, EOFError, ReplyError, ValueError, asyncio.IncompleteReadError):
                counts.read_errors += 1
            else:
                counts.latencies.append(clock() - sent)
                if status >= 400:  # wrk counts these as status errors
                    counts.status_errors += 1
                if keep_alive:
                    continue
            writer.close()
            connection = None
    finally:
        if connection is not None:
            connection[1].close()


async def _load(
    url: str, token: str | None, clients: int, duration: float, start: Barrier
) -> dict[str, Any]:
    request = request_bytes(url, token)
    await _wait(start)
    began = time.monotonic()
    counts = Counts()
    end = began + duration
    await asyncio.gather(*(_client(url, request, end, counts) for _ in range(clients)))
    return {
        "latencies": counts.latencies,
        "elapsed": time.monotonic() - began,
        "errors": counts.errors(),
    }


def load_worker(
    url: str, token: str | None, clients: int, duration: float, start: Barrier, results: Any
) -> None:
    """Process body: ``clients`` keep-alive connections in a closed loop; puts one dict on
    ``results`` (the same keys as :func:`benchmarks.wsload.load_worker`)."""
    try:
        results.put(asyncio.run(_load(url, token, clients, duration, start)))
    except BaseException as e:
        start.abort()
        results.put({"error": repr(e)})
        raise
