"""The corridor: one dispatch behind every transport, and its seams for later ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from authkit import USERS, make_authenticator
from probe import OpenGate, Probe
from prometheus_client import generate_latest
from support import async_test
from test_health import basic, serve
from test_metrics import samples, value
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IListeningPort
from wsclient import connect

from sysadmd.api import Authentication, Basic, Bearer, Call, Connection, Identity, Role, Vouched
from sysadmd.api._dispatch import Answer, Api, ApiRequest, Refusal, Reply
from sysadmd.api._registry import NAME, Arg, Handler, Registry, action
from sysadmd.app import build_site
from sysadmd.auth._authenticator import Account, Authenticator
from sysadmd.catalog.reference import all_specs
from sysadmd.ops import Guard, Metrics, MetricsResource
from sysadmd.services import Rpc

JSON = {"Content-Type": "application/json"}


class CountingRegistry(Registry):
    """A registry that counts its look-ups."""

    def __init__(self) -> None:
        super().__init__()
        self.finds = 0

    def find(self, namespace: str, name: str, args: Any) -> tuple[Any, Handler, Any]:
        self.finds += 1
        return super().find(namespace, name, args)


async def _stop(port: IListeningPort) -> None:
    stopped = port.stopListening()
    if stopped is not None:
        await stopped


@dataclass
class World:
    auth: Authenticator
    registry: CountingRegistry
    api: Api
    metrics: Metrics
    directory: Path


@pytest.fixture
def world(tmp_path: Path) -> World:
    auth = make_authenticator(tmp_path)
    registry = CountingRegistry()
    registry.register(Probe())
    registry.register(Rpc(auth, "testhost"))
    api = Api(registry, auth)
    metrics = Metrics()
    api.on_call = metrics.call_answered
    return World(auth, registry, api, metrics, tmp_path)


@async_test
async def test_rest_looks_each_request_up_once(world: World) -> None:
    """REST finds the action once per request, the metrics included; a refused login is
    counted under the action the request named."""
    client, port = await serve(build_site(world.api, reactor))
    try:
        body = b'{"action": "echo", "word": "a"}'
        assert (await client.put("/test/probe", data=body, headers=JSON)).code == 200
        assert world.registry.finds == 1
        wrong = {**JSON, **basic("alice", "wrong")}
        secret = b'{"action": "secret"}'
        assert (await client.put("/test/probe", data=secret, headers=wrong)).code == 401
        assert world.registry.finds == 2
    finally:
        await _stop(port)
    got = samples(generate_latest(world.metrics.registry).decode())
    probe = {"namespace": "test", "name": "probe"}
    assert value(got, "sysadmd_requests_total", **probe, action="echo", code="200") == 1
    assert value(got, "sysadmd_requests_total", **probe, action="secret", code="401") == 1


@pytest.fixture
def port(world: World) -> Iterator[int]:
    site = build_site(world.api, reactor)
    listening: IListeningPort = reactor.listenTCP(0, cast(Any, site), interface="127.0.0.1")
    yield listening.getHost().port  # type: ignore[attr-defined]
    listening.stopListening()


@async_test
async def test_websocket_looks_each_request_up_once(world: World, port: int) -> None:
    """A WebSocket request, from its first on, finds its action once, the metrics
    included."""
    client = await connect("127.0.0.1", port)
    for n in range(3):
        client.send(
            {
                "namespace": "test",
                "name": "probe",
                "id": f"{n}",
                "args": {"action": "echo", "word": "w"},
            }
        )
        assert (await client.next())["name"] == "response"
        assert world.registry.finds == n + 1
    await client.close()


class Door:
    """``test/door``: a login by declaration, whose name says nothing of logging in."""

    def __init__(self) -> None:
        self.gate: Deferred[None] = Deferred()

    @action("test", "door", None, summary="Held open.", role=Role.PUBLIC, reply={}, login=True)
    async def enter(self, call: Call) -> Any:
        await self.gate
        return {"entered": True}


@async_test
async def test_logins_are_declared_not_named(world: World) -> None:
    """Requests behind an action declared a login wait for it, and its reply goes first;
    the rpc logins are the actions so declared."""
    door, probe = Door(), Probe()
    registry = Registry()
    registry.register(door)
    registry.register(probe)
    api = Api(registry, world.auth)
    connection = Connection("192.0.2.1", "test")
    order: list[Reply] = []
    login = ensureDeferred(api.dispatch(ApiRequest("test", "door", {}, connection), order.append))
    after = ApiRequest("test", "probe", {"action": "echo", "word": "w"}, connection)
    behind = ensureDeferred(api.dispatch(after, order.append))
    assert probe.started == [] and order == []
    door.gate.callback(None)
    await login
    await behind
    assert [cast(Answer, reply).result for reply in order] == [
        {"entered": True},
        {"echo": {"word": "w"}},
    ]
    logins = {spec.title for spec in all_specs() if spec.login}
    assert logins == {"rpc/auth", "rpc/auth_token", "rpc/auth_ssl", "rpc/auth_clear"}


@async_test
async def test_operations_log_in_through_the_dispatch_step(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/metrics and /readyz read the Authorization header as REST does and check it with
    the same authentication step the dispatch calls."""
    seen: list[Authentication] = []
    step = world.auth.authenticate

    async def spy(credentials: Authentication, connection: Connection) -> Identity | None:
        seen.append(credentials)
        return await step(credentials, connection)

    monkeypatch.setattr(world.auth, "authenticate", spy)
    operations = {b"metrics": MetricsResource(world.metrics, Guard(world.auth))}
    client, port = await serve(build_site(world.api, reactor, operations=operations))
    token, _ = world.auth.sessions.create("alice", Role.ADMIN)
    try:
        assert (await client.get("/metrics", headers=basic("oscar"))).code == 200
        headers = {**JSON, "Authorization": f"Bearer {token}"}
        response = await client.put("/test/probe", data=b'{"action": "secret"}', headers=headers)
        assert json.loads(await response.content()) == {"args": {"secret": {"user": "alice"}}}
    finally:
        await _stop(port)
    assert seen == [Basic("oscar", USERS["oscar"][0]), Bearer(token)]


@async_test
async def test_an_identity_a_transport_vouches_for(world: World) -> None:
    """A transport whose peer proves the caller (a fleet router) presents it as Vouched:
    the role check and the audit apply as for any login, and no session is made."""
    connection = Connection("192.0.2.9", "fleet")
    secret = ApiRequest(
        "test", "probe", {"action": "secret"}, connection, Vouched("alice", Role.ADMIN)
    )
    reply = await world.api.dispatch(secret)
    assert isinstance(reply, Answer) and reply.result == {"secret": {"user": "alice"}}
    assert world.auth.sessions.live() == []
    audit = [json.loads(line) for line in (world.directory / "audit.log").read_text().splitlines()]
    assert audit[-1]["user"] == "alice" and audit[-1]["outcome"] == "ok"
    operator = ApiRequest(
        "test",
        "probe",
        {"action": "secret"},
        Connection("192.0.2.9", "fleet"),
        Vouched("oscar", Role.OPERATOR),
    )
    refused = await world.api.dispatch(operator)
    assert isinstance(refused, Refusal) and refused.error.code == 403


def test_credentials_never_show_their_secrets() -> None:
    """A password or token in a request's credentials is not in their repr (nor so in any
    log line that formats them)."""
    assert "hunter2" not in repr(Basic("alice", "hunter2"))
    assert "tok3n" not in repr(Bearer("tok3n"))


class OnTheConnection:
    """An action that acts on the connection it is called on, as event subscriptions do."""

    def __init__(self) -> None:
        self.ran = 0

    @action(
        "test",
        "mine",
        None,
        summary="Acts on the calling connection.",
        role=Role.OPERATOR,
        whole=True,
        websocket_only=True,
        args=[Arg("word", NAME, "a word")],
        reply={"type": "object"},
    )
    async def mine(self, call: Call) -> Any:
        self.ran += 1
        return {"word": call.args["word"]}


class LastingConnection(Connection):
    lasting = True


@async_test
async def test_websocket_only_actions_need_a_lasting_connection() -> None:
    """Any action declared websocket_only is refused (400) by the dispatch on a connection
    of one request, whatever it is, before its handler runs; a lasting one may call it."""
    handlers = OnTheConnection()
    registry = Registry()
    registry.register(handlers)
    api = Api(registry, OpenGate(Account("alice", Role.OPERATOR)))
    short = await api.dispatch(ApiRequest("test", "mine", "a", Connection("192.0.2.1", "rest")))
    assert isinstance(short, Refusal)
    assert (short.error.code, short.error.message) == (
        400,
        "events are delivered over WebSocket connections only",
    )
    assert handlers.ran == 0
    lasting = LastingConnection("192.0.2.1", "websocket")
    answer = await api.dispatch(ApiRequest("test", "mine", "a", lasting))
    assert isinstance(answer, Answer)
    assert answer.result == {"word": "a"}
    assert handlers.ran == 1
