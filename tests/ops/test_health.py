"""/livez and /readyz, in memory through treq.testing, in front of the REST API."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import treq.client
from authkit import USERS, make_authenticator
from probe import Probe
from support import async_fixture, async_test
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.web.client import Agent

from sysadmd.api import Api, Registry, address_in
from sysadmd.app import build_site
from sysadmd.ops._health import Check, Guard, Livez, Readyz, daemon_checks
from sysadmd.tasks import FetchQueue


def basic(user: str, password: str | None = None) -> dict[str, str]:
    secret = USERS[user][0] if password is None else password
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class FakeQueue:
    """What the readiness checks read of the fetch queue."""

    journalled: bool = True
    full: bool = False
    queued: int = 0


class Client:
    """A real HTTP client for a Site served on a loopback port (see :func:`serve`)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._http = treq.client.HTTPClient(Agent(reactor))

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self._http.request(method, self.base + path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def head(self, path: str, **kwargs: Any) -> Any:
        return await self.request("HEAD", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)


async def serve(factory: Any) -> tuple[Client, IListeningPort]:
    """Listen on a loopback port with ``factory``; a client for it, and the port."""
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return Client(cast(Any, port.getHost()).port), port


@dataclass
class Setup:
    treq: Client
    state: Path
    queue: FakeQueue


@async_fixture()
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    auth = make_authenticator(tmp_path)
    registry = Registry()
    registry.register(Probe())
    state = tmp_path / "state"
    state.mkdir()
    queue = FakeQueue()
    checks = daemon_checks(sys.executable, state, cast(FetchQueue, queue))
    site = build_site(
        Api(registry, auth),
        reactor,
        operations={b"livez": Livez(), b"readyz": Readyz(checks, Guard(auth))},
    )
    client, port = await serve(site)
    yield Setup(client, state, queue)
    stopped = port.stopListening()
    if stopped is not None:
        await stopped


def assert_anonymous_headers(response: Any) -> None:
    """No Server header; nothing names the host, Twisted or a version."""
    headers = dict(response.headers.getAllRawHeaders())
    assert b"Server" not in headers
    assert headers[b"Content-Type"] == [b"text/plain; charset=utf-8"]
    assert headers[b"Cache-Control"] == [b"no-store"]
    text = repr(headers).lower()
    for word in ("twisted", "python", socket.gethostname().lower(), "sysadmd"):
        assert word not in text


@async_test
async def test_livez_is_constant_and_anonymous(setup: Setup) -> None:
    """The same bytes for anyone; no Server header, host name or version anywhere."""
    response = await setup.treq.get("/livez")
    assert response.code == 200
    assert await response.content() == b"ok\n"
    assert_anonymous_headers(response)
    head = await setup.treq.head("/livez")
    assert head.code == 200
    assert await head.content() == b""


@async_test
async def test_livez_other_methods_and_paths(setup: Setup) -> None:
    """PUT gets 405; a longer path is still the API's (a JSON 404 or 405)."""
    response = await setup.treq.put("/livez", data=b"{}")
    assert response.code == 405
    assert response.headers.getRawHeaders("Allow") == ["GET, HEAD"]
    response = await setup.treq.put(
        "/livez/x", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.code == 404
    assert json.loads(await response.content())["args"]["code"] == "404"


@async_test
async def test_api_is_unchanged_behind_the_operations(setup: Setup) -> None:
    """REST calls and unknown paths answer as they did without the operations root."""
    response = await setup.treq.put(
        "/test/probe",
        data=b'{"action": "echo", "word": "hi"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.code == 200
    assert json.loads(await response.content()) == {"args": {"echo": {"word": "hi"}}}
    response = await setup.treq.get("/nothing")
    assert response.code == 404
    assert json.loads(await response.content())["args"]["code"] == "404"


@async_test
async def test_readyz_ok(setup: Setup) -> None:
    """Ready: 200 ok; with a login, each check is listed."""
    response = await setup.treq.get("/readyz")
    assert (response.code, await response.content()) == (200, b"ok\n")
    assert_anonymous_headers(response)
    response = await setup.treq.get("/readyz", headers=basic("oscar"))
    assert response.code == 200
    assert (await response.content()).decode().splitlines() == [
        "ok",
        "iohyve: ok",
        "state_dir: ok",
        "journal: ok",
        "fetch_queue: ok",
    ]


@async_test
async def test_readyz_state_dir_gone_and_queue_full(setup: Setup) -> None:
    """A state directory that cannot be written, a full queue: 503, details with a login."""
    setup.state.rename(setup.state.with_name("elsewhere"))
    setup.queue.full, setup.queue.queued = True, 16
    response = await setup.treq.get("/readyz")
    assert (response.code, await response.content()) == (503, b"not ready\n")
    response = await setup.treq.get("/readyz", headers=basic("alice"))
    assert response.code == 503
    lines = (await response.content()).decode().splitlines()
    assert lines[0] == "not ready"
    assert f"state_dir: {setup.state} is not a writable directory" in lines
    assert "fetch_queue: the fetch queue is full (16 waiting)" in lines
    assert "journal: ok" in lines


@async_test
async def test_readyz_journal_closed(setup: Setup) -> None:
    setup.queue.journalled = False
    response = await setup.treq.get("/readyz", headers=basic("alice"))
    assert response.code == 503
    assert "journal: the task journal is not open" in (await response.content()).decode()


@async_test
async def test_readyz_bad_login_is_401(setup: Setup) -> None:
    """Credentials that do not log in are refused, with the schemes to use."""
    response = await setup.treq.get("/readyz", headers=basic("alice", "wrong"))
    assert response.code == 401
    assert response.headers.getRawHeaders("WWW-Authenticate") == [
        'Basic realm="sysadmd", Bearer realm="sysadmd"'
    ]
    assert b"wrong" not in await response.content()


def test_real_queue_predicates() -> None:
    """The queue says when it is full, and that it journals nothing before it started."""
    queue = FetchQueue(cast(Any, None), reactor, max_queued=1)
    assert not queue.full
    assert not queue.journalled
    queue.submit("http://192.0.2.1/a.iso", "a.iso")
    assert queue.full


def test_checks_are_generic() -> None:
    """A check is a name and a function; Readyz runs them all."""
    readyz = Readyz([Check("a", lambda: None), Check("b", lambda: "broken")], cast(Guard, None))
    assert readyz.results() == [("a", None), ("b", "broken")]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", True),
        ("10.1.2.3.4", False),
        ("192.0.2.1", False),
        ("unknown", False),
    ],
)
def test_address_in(host: str, expected: bool) -> None:
    networks = [ipaddress.ip_network(n) for n in ("127.0.0.1", "::1", "10.0.0.0/8")]
    assert address_in(host, networks) is expected
