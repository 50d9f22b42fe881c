"""A console WebSocket client for the tests: raw frames, both kinds, in one queue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory
from daemon import Daemon
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import SSL4ClientEndpoint
from wsclient import WsClient, _with_timeout

from sysadmd.simulator.cli import main as simulator

ADMIN = (sys.executable, "-m", "sysadmd.auth.admin")


class ConsoleClient(WsClient):
    """Keeps each frame as sent: text frames parsed as JSON, binary frames as bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.output = b""
        self.statuses: list[dict[str, Any]] = []
        self.frames: list[tuple[bool, Any]] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message: Any = payload if isBinary else json.loads(payload)
        self.frames.append((isBinary, message))
        self.received.put((message, isBinary))

    async def frame(self) -> tuple[Any, bool]:
        message, is_binary = await _with_timeout(self.received.get())
        if is_binary:
            self.output += message
        elif message.get("type") == "status":
            self.statuses.append(message)
        return message, is_binary

    async def control(self) -> dict[str, Any]:
        """The next text message (console bytes before it are collected in ``output``)."""
        while True:
            message, is_binary = await self.frame()
            if not is_binary:
                assert isinstance(message, dict)
                return message

    async def until(self, wanted: bytes) -> bytes:
        """Read until ``wanted`` is in the output; return the output so far."""
        while wanted not in self.output:
            await self.frame()
        return self.output

    def type(self, text: str) -> None:
        self.sendMessage(text.encode(), isBinary=True)


async def console(
    daemon: Daemon,
    guest: str,
    *,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    opened: bool = True,
) -> ConsoleClient:
    """A console WebSocket to ``/console/<guest>`` over TLS; Basic login by ``auth``."""
    import base64  # noqa: PLC0415

    port = daemon.ports[0]
    all_headers = dict(headers or {})
    if auth is not None:
        pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        all_headers["Authorization"] = f"Basic {pair}"
    factory = WebSocketClientFactory(f"wss://localhost:{port}/console/{guest}", headers=all_headers)
    factory.protocol = ConsoleClient
    endpoint = SSL4ClientEndpoint(_reactor, "localhost", port, daemon.tls())
    client: ConsoleClient = await _with_timeout(endpoint.connect(factory))
    if opened:
        await _with_timeout(client.opened)
    return client


def run_simulator(root: Path, *args: str) -> None:
    assert simulator(["--root", str(root), *args]) == 0


def add_user(state: Path, user: str, password: str, role: str) -> None:
    """``sysadmd-admin user add`` before the daemon starts."""
    subprocess.run(
        [*ADMIN, "--state-dir", str(state), "user", "add", user, "--role", role],
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
