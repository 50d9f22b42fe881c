"""The WebSocket transport, over loopback TCP, through the same Site as REST."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from authkit import USERS, make_authenticator
from probe import Probe, probe_api
from support import async_test
from treq import get
from twisted.internet import reactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from wsclient import WsClient, connect, settle

from sysadmd.api import Api, Registry
from sysadmd.app import build_site
from sysadmd.auth import Authenticator
from sysadmd.auth._sessions import EXPIRY_MARGIN, Ended, Sessions
from sysadmd.services import Rpc
from sysadmd.transport._websocket import SESSION_END, UPGRADE_REQUIRED_MESSAGE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Probe]]:
    api, probe = probe_api()
    site = build_site(
        api,
        reactor,
        allowed_origins=["https://admin.example:8443"],
    )
    port: IListeningPort = reactor.listenTCP(0, cast(Any, site), interface="127.0.0.1")
    yield port.getHost().port, probe  # type: ignore[attr-defined]
    port.stopListening()


@async_test
async def test_reply_bytes(server: tuple[int, Probe]) -> None:
    """A request in the API page's form gets the exact reply envelope, in a text frame."""
    port, _ = server
    client = await connect("127.0.0.1", port)
    client.send(
        {
            "namespace": "test",
            "args": {"action": "echo", "word": "w"},
            "name": "probe",
            "id": "fooid",
        }
    )
    assert await client.next() == {
        "args": {"echo": {"word": "w"}},
        "id": "fooid",
        "name": "response",
        "namespace": "test",
    }
    await client.close()


@async_test
async def test_binary_frames_and_bare_args(server: tuple[int, Probe]) -> None:
    """Binary frames are read like text; without ``args`` the object is the arguments."""
    port, _ = server
    client = await connect("127.0.0.1", port)
    client.send(
        {"namespace": "test", "name": "probe", "id": "b", "action": "echo", "word": "x"},
        binary=True,
    )
    assert (await client.next())["args"] == {"echo": {"word": "x"}}
    await client.close()


@async_test
async def test_errors_keep_the_connection(server: tuple[int, Probe]) -> None:
    """Bad messages get error envelopes; the connection stays usable."""
    port, _ = server
    client = await connect("127.0.0.1", port)
    client.send(b"{nope")
    reply = await client.next()
    assert (reply["id"], reply["name"], reply["namespace"]) == ("", "error", "error")
    assert reply["args"]["code"] == "400"
    assert reply["args"]["message"].startswith("the message is not valid JSON")
    client.send({"namespace": "test", "name": "nothing", "id": "n", "args": {}})
    reply = await client.next()
    assert (reply["name"], reply["namespace"], reply["id"], reply["args"]["code"]) == (
        "error",
        "error",
        "n",
        "404",
    )
    client.send({"namespace": "test", "name": "probe", "id": "t", "args": {"action": "taken"}})
    assert (await client.next())["args"] == {"code": "409", "message": "it is taken"}
    client.send(
        {"namespace": "test", "name": "probe", "id": "ok", "args": {"action": "echo", "word": "y"}}
    )
    assert (await client.next())["id"] == "ok"
    await client.close()


@async_test
async def test_pipelined_requests_start_in_order_and_reply_by_id(server: tuple[int, Probe]) -> None:
    """Requests sent without waiting start in arrival order; each reply carries its id."""
    port, probe = server
    client = await connect("127.0.0.1", port)
    for word, act in [("first", "hold"), ("second", "echo"), ("third", "hold")]:
        client.send(
            {
                "namespace": "test",
                "name": "probe",
                "id": word,
                "args": {"action": act, "word": word},
            }
        )
    assert (await client.next())["id"] == "second"
    assert probe.started == ["first", "second", "third"]
    probe.gates["third"].callback(None)
    assert (await client.next())["id"] == "third"
    probe.gates["first"].callback(None)
    assert (await client.next())["args"] == {"hold": {"word": "first"}}
    await client.close()


@async_test
async def test_server_never_closes_first(server: tuple[int, Probe]) -> None:
    """After the last reply the server waits for the client to close, as sysadm clients need."""
    port, _ = server
    client = await connect("127.0.0.1", port, headers={"Origin": "sysadm-client"})
    client.send(
        {"namespace": "test", "name": "probe", "id": "1", "args": {"action": "echo", "word": "z"}}
    )
    await client.next()
    await settle(0.3)
    assert not client.closed.called
    client.sendClose(1000, "sysadm-client closed")
    was_clean, code, _ = await client.closed
    assert (was_clean, code) == (True, 1000)


@async_test
async def test_plain_get_of_the_websocket_path(server: tuple[int, Probe]) -> None:
    """A GET without an upgrade gets 426 with the JSON error body and how to connect."""
    port, _ = server
    response = await get(f"http://127.0.0.1:{port}/")
    assert response.code == 426
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    body = json.loads(await response.content())
    assert body == {"args": {"code": "426", "message": UPGRADE_REQUIRED_MESSAGE}}
    assert "WebSocket client" in body["args"]["message"]
    assert "/<namespace>/<name>" in body["args"]["message"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("sysadm-client", True),
        ("https://admin.example:8443", True),
        ("HTTPS://ADMIN.example:8443/", True),
        ("https://evil.example", False),
        ("https://admin.example:8444", False),
        ("null", False),
        ("file://", False),
    ],
)
@async_test
async def test_origins(server: tuple[int, Probe], origin: str, allowed: bool) -> None:
    """No Origin and allowed origins get in; browsers from elsewhere get a 403."""
    port, _ = server
    if allowed:
        client = await connect("127.0.0.1", port, headers={"Origin": origin})
        await client.close()
        return
    with pytest.raises(ConnectionError, match="403"):
        await connect("127.0.0.1", port, headers={"Origin": origin})


class LoginServer:
    """The WebSocket with the real logins; sessions run on a Clock the test advances."""

    def __init__(self, directory: Path) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.auth: Authenticator = make_authenticator(directory, self.clock)
        registry = Registry()
        registry.register(Rpc(self.auth, "testhost"))
        registry.register(Probe())
        site = build_site(Api(registry, self.auth), reactor)
        self.port: IListeningPort = reactor.listenTCP(0, cast(Any, site), interface="127.0.0.1")

    async def client(self, user: str = "alice", token: str | None = None) -> tuple[WsClient, str]:
        """A WebSocket logged in as ``user`` (with a password, or with ``token``)."""
        client = await connect("127.0.0.1", self.port.getHost().port)  # type: ignore[attr-defined]
        if token is None:
            args: dict[str, str] = {"username": user, "password": USERS[user][0]}
            client.send({"namespace": "rpc", "name": "auth", "id": "login", "args": args})
        else:
            client.send(
                {"namespace": "rpc", "name": "auth_token", "id": "login", "args": {"token": token}}
            )
        reply = await client.next()
        assert reply["name"] == "response", reply
        return client, reply["args"][0]


@pytest.fixture
def logins(tmp_path: Path) -> Iterator[LoginServer]:
    server = LoginServer(tmp_path)
    yield server
    server.port.stopListening()


def secret(client: WsClient, request_id: str = "s") -> None:
    client.send(
        {"namespace": "test", "name": "probe", "id": request_id, "args": {"action": "secret"}}
    )


async def closed_with(client: WsClient, why: Ended) -> None:
    _, code, reason = await client.closed.addTimeout(5, reactor)
    assert (code, reason) == SESSION_END[why]


@async_test
async def test_an_expired_session_closes_its_websocket(logins: LoginServer) -> None:
    """The session's timer closes the socket at once: no call is needed to find out."""
    client, _ = await logins.client()
    secret(client)
    assert (await client.next())["args"] == {"secret": {"user": "alice"}}
    logins.clock.advance(900)  # exactly the idle time: still valid
    await settle(0.1)
    assert not client.closed.called
    logins.clock.advance(EXPIRY_MARGIN)
    await closed_with(client, Ended.EXPIRED)
    assert SESSION_END[Ended.EXPIRED] == (4002, "session expired")


@async_test
async def test_a_busy_websocket_is_closed_at_the_session_lifetime(logins: LoginServer) -> None:
    """However busy, a socket is closed when its session reaches auth.session_lifetime."""
    logins.auth.sessions = Sessions(logins.clock, idle=900, absolute=2000)
    client, _ = await logins.client()
    for step in range(2):
        logins.clock.advance(800)
        secret(client, f"s{step}")
        assert (await client.next())["args"] == {"secret": {"user": "alice"}}
    logins.clock.advance(400)  # age 2000: the last valid instant
    await settle(0.1)
    assert not client.closed.called
    logins.clock.advance(EXPIRY_MARGIN)
    await closed_with(client, Ended.EXPIRED)


@async_test
async def test_its_own_logout_leaves_the_websocket_open(logins: LoginServer) -> None:
    """sysadm's clients expect the socket to stay after rpc/auth_clear; later calls are 401."""
    client, _ = await logins.client()
    client.send({"namespace": "rpc", "name": "auth_clear", "id": "bye", "args": {}})
    assert (await client.next())["args"] == {}
    logins.clock.advance(3600)
    await settle(0.2)
    assert not client.closed.called
    secret(client)
    assert (await client.next())["args"]["code"] == "401"
    assert logins.clock.getDelayedCalls() == []  # nothing watches the ended session
    await client.close()


@async_test
async def test_a_logout_elsewhere_closes_the_other_websockets(logins: LoginServer) -> None:
    first, token = await logins.client()
    second, _ = await logins.client(token=token)
    first.send({"namespace": "rpc", "name": "auth_clear", "id": "bye", "args": {}})
    await closed_with(second, Ended.LOGGED_OUT)
    assert (await first.next())["args"] == {}
    assert not first.closed.called
    await first.close()


@async_test
async def test_revoking_a_user_closes_only_their_websockets(logins: LoginServer) -> None:
    alice, _ = await logins.client("alice")
    oscar, _ = await logins.client("oscar")
    assert logins.auth.sessions.revoke_user("alice") == 1
    await closed_with(alice, Ended.REVOKED)
    oscar.send({"namespace": "rpc", "name": "identify", "id": "i", "args": ""})
    assert (await oscar.next())["name"] == "response"
    assert not oscar.closed.called
    await oscar.close()


@async_test
async def test_a_closed_websocket_stops_watching(logins: LoginServer) -> None:
    client, token = await logins.client()
    assert len(logins.clock.getDelayedCalls()) == 1  # the session's expiry timer
    await client.close()
    await settle(0.1)
    assert logins.clock.getDelayedCalls() == []
    assert logins.auth.sessions.lookup(token) is not None  # the session itself lives on
