"""The WebSocket side of the suite, run in worker processes (multiprocessing).

Clients use ``websockets`` (C-accelerated frame masking and parsing) on asyncio, many
connections per process. A client logs in with ``rpc/auth_token`` (the suite logs in once
with the admin password over ``rpc/auth`` and shares that session's token: a password login
costs an argon2 hash, which would dominate opening thousands of connections); against the
bare Autobahn baseline there is no login. Times are ``time.monotonic()``, which on Linux is
one clock for every process of the machine, so the parent can compare them.
"""

# Process targets take their arguments by position (multiprocessing passes them so).
# ruff: noqa: PLR0917

from __future__ import annotations

import asyncio
import json
import ssl
import time
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

LISTVMS = json.dumps(
    {"namespace": "sysadm", "name": "iohyve", "id": "bench", "args": {"action": "listvms"}}
)
#: Connections opened at the same time while setting up many of them.
OPEN_BATCH = 200


def tls_context(cafile: str | None) -> ssl.SSLContext | None:
    if cafile is None:
        return None
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = False  # the certificate names the host, not 127.0.0.1
    return context


async def request(ws: ClientConnection, namespace: str, name: str, args: Any) -> Any:
    await ws.send(json.dumps({"namespace": namespace, "name": name, "id": "x", "args": args}))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("namespace") != "events" or reply.get("id") != "":
            if reply.get("name") != "response":
                raise RuntimeError(f"{namespace}/{name} failed: {reply}")
            return reply["args"]


async def open_client(url: str, token: str | None, cafile: str | None) -> ClientConnection:
    ws = await connect(
        url,
        ssl=tls_context(cafile),
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=120,
        close_timeout=5,
    )
    if token is not None:
        await request(ws, "rpc", "auth_token", {"token": token})
    return ws


async def open_many(
    url: str, token: str | None, cafile: str | None, count: int
) -> list[ClientConnection]:
    clients: list[ClientConnection] = []
    for first in range(0, count, OPEN_BATCH):
        batch = range(first, min(count, first + OPEN_BATCH))
        clients += await asyncio.gather(*(open_client(url, token, cafile) for _ in batch))
    return clients


async def close_all(clients: list[ClientConnection]) -> None:
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def _wait(primitive: Barrier | Event) -> None:
    loop = asyncio.get_running_loop()
    wait = primitive.wait
    await loop.run_in_executor(None, wait)


# Closed-loop listvms load: every client sends, waits for the reply, sends again.


async def _load(
    url: str, token: str | None, cafile: str | None, clients: int, duration: float, start: Barrier
) -> dict[str, Any]:
    connections = await open_many(url, token, cafile, clients)
    await _wait(start)
    began = time.monotonic()
    end = began + duration
    latencies: list[float] = []
    errors = 0

    async def loop(ws: ClientConnection) -> None:
        nonlocal errors
        clock = time.monotonic
        while (sent := clock()) < end:
            await ws.send(LISTVMS)
            reply = await ws.recv()
            latencies.append(clock() - sent)
            if '"name":"error"' in reply:  # type: ignore[operator]
                errors += 1

    await asyncio.gather(*(loop(ws) for ws in connections))
    elapsed = time.monotonic() - began
    await close_all(connections)
    return {"latencies": latencies, "elapsed": elapsed, "errors": errors}


def load_worker(
    url: str,
    token: str | None,
    cafile: str | None,
    clients: int,
    duration: float,
    start: Barrier,
    results: Any,
) -> None:
    """Process body: ``clients`` connections in a closed loop; puts one dict on ``results``."""
    try:
        results.put(asyncio.run(_load(url, token, cafile, clients, duration, start)))
    except BaseException as e:
        start.abort()
        results.put({"error": repr(e)})
        raise


# Idle connections: open, log in, hold until told to stop.


async def _idle(
    url: str, token: str | None, cafile: str | None, count: int, ready: Any, stop: Event
) -> None:
    connections = await open_many(url, token, cafile, count)
    ready.put({"open": len(connections)})
    await _wait(stop)
    await close_all(connections)


def idle_worker(
    url: str, token: str | None, cafile: str | None, count: int, ready: Any, stop: Event
) -> None:
    """Process body: hold ``count`` logged-in connections until ``stop`` is set."""
    try:
        asyncio.run(_idle(url, token, cafile, count, ready, stop))
    except BaseException as e:
        ready.put({"error": repr(e)})
        raise


# Fan-out: subscribed connections note when the marked event reaches each of them.


async def _subscribed(
    url: str,
    token: str | None,
    cafile: str | None,
    count: int,
    marks: tuple[str, str],
    ready: Any,
    stop: Event,
) -> None:
    connections = await open_many(url, token, cafile, count)
    for first in range(0, count, OPEN_BATCH):
        batch = connections[first : first + OPEN_BATCH]
        await asyncio.gather(*(request(ws, "events", "subscribe", ["dispatcher"]) for ws in batch))
    received: list[float | None] = [None] * count

    async def listen(index: int, ws: ClientConnection) -> None:
        clock = time.monotonic
        async for message in ws:
            now = clock()
            if marks[0] in message and marks[1] in message:  # type: ignore[operator]
                received[index] = now
                return

    listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(connections)]
    ready.put({"open": len(connections)})
    await _wait(stop)
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    ready.put({"received": received})
    await close_all(connections)


def fanout_worker(
    url: str,
    token: str | None,
    cafile: str | None,
    count: int,
    marks: tuple[str, str],
    ready: Any,
    stop: Event,
) -> None:
    """Process body: ``count`` connections subscribed to ``dispatcher``; reports, per
    connection, when the first event containing both ``marks`` arrived (or None)."""
    try:
        asyncio.run(_subscribed(url, token, cafile, count, marks, ready, stop))
    except BaseException as e:
        ready.put({"error": repr(e)})
        raise
