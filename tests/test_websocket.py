"""The WebSocket transport, over loopback TCP, through the same Site as REST."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from authkit import make_authenticator
from probe import Probe, probe_api
from support import async_test
from treq import get
from twisted.internet import reactor
from twisted.internet.interfaces import IListeningPort
from wsclient import connect, settle

from sysadmd.app import build_site
from sysadmd.websocket import UPGRADE_REQUIRED_MESSAGE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Probe]]:
    api, probe = probe_api()
    site = build_site(
        api,
        make_authenticator(tmp_path),
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
