"""The edges of both transports on loopback: logins, roles, sizes, deadlines, caps."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import treq
from authkit import USERS, make_authenticator
from probe import Probe
from support import async_fixture, async_test
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from twisted.web.http_headers import Headers
from wsclient import WsClient, connect, settle

from sysadmd.api import Api, Registry, Role
from sysadmd.app import build_site
from sysadmd.services import Rpc
from sysadmd.transport import ConnectionCounter, Limits


class Server:
    """Rpc and the probe class behind the real Authenticator, on a loopback port."""

    def __init__(self, directory: Path, limits: Limits, per_address: int) -> None:
        self.auth = make_authenticator(directory)
        self.probe = Probe()
        registry = Registry()
        registry.register(Rpc(self.auth, "testhost"))
        registry.register(self.probe)
        site = build_site(
            Api(registry, self.auth),
            reactor,
            limits=limits,
            max_body=4096,
            request_deadline=0.5,
        )
        self.counter = ConnectionCounter(total=100, per_address=per_address)
        self.factory = self.counter.wrap(site)
        self.port = 0
        self._listening: IListeningPort | None = None

    async def start(self) -> None:
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self._listening = await endpoint.listen(self.factory)
        self.port = cast(Any, self._listening.getHost()).port

    async def stop(self) -> None:
        stopped = self._listening.stopListening() if self._listening else None
        if stopped is not None:
            await stopped

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/test/probe"

    async def ws(self) -> WsClient:
        return await connect("127.0.0.1", self.port)


@async_fixture()
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    running = Server(tmp_path, Limits(login_timeout=1.0, in_flight=2), per_address=6)
    await running.start()
    yield running
    await running.stop()


def _message(request_id: str, action: str, **args: Any) -> dict[str, Any]:
    return {
        "namespace": "test",
        "name": "probe",
        "id": request_id,
        "args": {"action": action, **args},
    }


async def _login(client: WsClient, user: str) -> None:
    password, _ = USERS[user]
    client.send(
        {
            "namespace": "rpc",
            "name": "auth",
            "id": "login",
            "args": {"username": user, "password": password},
        }
    )
    assert (await client.next())["name"] == "response"


@async_test
async def test_login_reply_comes_before_the_requests_that_waited_for_it(server: Server) -> None:
    """A request pipelined behind a login answers at once when the login ends; the
    login's reply still goes first, as the client asked in that order."""
    client = await server.ws()
    password, _ = USERS["alice"]
    client.send(
        {
            "namespace": "rpc",
            "name": "auth",
            "id": "login",
            "args": {"username": "alice", "password": password},
        }
    )
    client.send(_message("after", "secret"))
    first, second = await client.next(), await client.next()
    assert (first["id"], first["name"]) == ("login", "response")
    assert (second["id"], second["name"]) == ("after", "response")
    await client.close()


@async_test
async def test_websocket_login_and_roles(server: Server) -> None:
    """Without a login: 401; an operator: 403; both leave the connection open."""
    client = await server.ws()
    client.send(_message("1", "secret"))
    assert (await client.next())["args"]["code"] == "401"
    await _login(client, "oscar")
    client.send(_message("2", "secret"))
    assert (await client.next())["args"]["code"] == "403"
    await _login(client, "alice")
    client.send(_message("3", "secret"))
    assert (await client.next())["args"] == {"secret": {"user": "alice"}}
    await client.close()


@async_test
async def test_oversized_frames(server: Server) -> None:
    """Before a login 8 KiB is the limit (close 1009); afterwards larger messages pass."""
    client = await server.ws()
    client.send({**_message("big", "echo", word="a"), "pad": "x" * 9000})
    _, code, _ = await client.closed
    assert code == 1009
    client = await server.ws()
    await _login(client, "oscar")
    client.send({**_message("big", "echo", word="a"), "pad": "x" * 20000})
    assert (await client.next())["args"] == {"echo": {"word": "a"}}
    await client.close()


@async_test
async def test_login_deadline(server: Server) -> None:
    """A WebSocket that has not logged in within the limit is closed; a logged-in one is not."""
    idle = await server.ws()
    logged_in = await server.ws()
    await _login(logged_in, "oscar")
    _, code, reason = await idle.closed
    assert code == 4001
    assert reason is not None and "not logged in" in reason
    assert not logged_in.closed.called
    await logged_in.close()


@async_test
async def test_idle_deadline(tmp_path: Path) -> None:
    """A logged-in WebSocket that stays silent past the idle limit is closed with 4000."""
    quiet = Server(tmp_path, Limits(idle_timeout=1.0, login_timeout=0.5), per_address=4)
    await quiet.start()
    try:
        client = await quiet.ws()
        await _login(client, "oscar")
        await settle(0.6)
        client.send(_message("1", "echo", word="a"))  # a message restarts the idle time
        await client.next()
        await settle(0.6)
        assert not client.closed.called
        _, code, _ = await client.closed
        assert code == 4000
    finally:
        await quiet.stop()


def test_global_connection_cap() -> None:
    """The total cap holds across hosts; released places can be taken again."""
    counter = ConnectionCounter(total=3, per_address=2)
    assert [counter.admit(h) for h in ("a", "a", "a", "b", "c")] == [True, True, False, True, False]
    assert counter.open == 3
    counter.release("a")
    assert counter.admit("c")
    assert counter.open == 3


@async_test
async def test_requests_in_flight_are_capped(server: Server) -> None:
    """Past the in-flight cap a request is refused with 429, by id; the others go on."""
    client = await server.ws()
    await _login(client, "oscar")
    client.send(_message("a", "hold", word="a"))
    client.send(_message("b", "hold", word="b"))
    client.send(_message("c", "echo", word="c"))
    reply = await client.next()
    assert (reply["id"], reply["args"]["code"]) == ("c", "429")
    server.probe.gates["a"].callback(None)
    server.probe.gates["b"].callback(None)
    assert {(await client.next())["id"], (await client.next())["id"]} == {"a", "b"}
    await client.close()


@async_test
async def test_connections_per_address(server: Server) -> None:
    """The connection past the per-address cap is closed at once; closing frees a place."""
    clients = [await server.ws() for _ in range(6)]
    with pytest.raises(ConnectionError):
        await server.ws()
    await clients[0].close()
    await settle(0.1)
    clients[0] = await server.ws()
    for client in clients:
        await client.close()


def _headers(content_type: str, **extra: str) -> Headers:
    return Headers({"Content-Type": [content_type], **{k: [v] for k, v in extra.items()}})


async def _put(server: Server, body: bytes, **headers: str) -> tuple[int, Any, Any]:
    response = await treq.put(
        server.url, data=body, headers=_headers("application/json", **headers)
    )
    return response.code, response.headers, json.loads(await response.content())


@async_test
async def test_rest_authentication(server: Server) -> None:
    """Basic on every request, Bearer with a session token; 401 names both schemes."""
    body = json.dumps({"action": "secret"}).encode()
    code, headers, reply = await _put(server, body)
    assert (code, reply["args"]["code"]) == (401, "401")
    assert headers.getRawHeaders("WWW-Authenticate") == [
        'Basic realm="sysadmd", Bearer realm="sysadmd"'
    ]
    response = await treq.put(
        server.url,
        data=body,
        headers=_headers("application/json"),
        auth=("alice", USERS["alice"][0]),
    )
    assert json.loads(await response.content()) == {"args": {"secret": {"user": "alice"}}}
    response = await treq.put(
        server.url, data=body, headers=_headers("application/json"), auth=("alice", "nope")
    )
    assert response.code == 401
    token, _ = server.auth.sessions.create("alice", Role.ADMIN)
    code, _, reply = await _put(server, body, Authorization=f"Bearer {token}")
    assert (code, reply) == (200, {"args": {"secret": {"user": "alice"}}})
    code, _, reply = await _put(server, body, Authorization=f"Bearer {token[1:]}")
    assert code == 401


@async_test
async def test_rest_content_type_and_size(server: Server) -> None:
    """A body that is not declared JSON is 415; one over the cap is 413 before it is read."""
    response = await treq.put(
        server.url, data=b'{"action": "echo", "word": "a"}', headers=_headers("text/plain")
    )
    assert response.code == 415
    code, _, reply = await _put(server, b"{" + b" " * 5000 + b"}")
    assert (code, reply["args"]["code"]) == (413, "413")


@async_test
async def test_rest_deadline(server: Server) -> None:
    """A request that trickles in past the deadline gets 408 and the connection ends."""

    def slow_client() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"PUT /test/probe HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
            chunks = []
            while data := sock.recv(4096):
                chunks.append(data)
            return b"".join(chunks)

    answer = await deferToThread(slow_client)
    assert answer.startswith(b"HTTP/1.1 408 ")
