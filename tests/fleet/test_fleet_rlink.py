"""Why the fleet does not use Crossbar's router-to-router links (docs/fleet.md,
"Router-to-router links"): two routers of the pinned version, linked, relay calls and events,
but a callee's error reaches the caller as a null result, the caller's authid arrives as its
role, the relayed caller comes as ``forward_for``, which hosts refuse, and a router's session
list (``fleet hosts``) shows only its own sessions. Should a new pin change any of this, this
test fails and the reasons given in the docs need looking at again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.message import Invocation
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import ComponentConfig, RegisterOptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fleetkit import Router, crossbar_venv, free_port, wait_for
from support import async_test
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater

from sysadmd.fleet._member import refuse_forwarded

pytestmark = pytest.mark.e2e

REALM = "linked"


def _everything() -> dict[str, Any]:
    return {
        "uri": "",
        "match": "prefix",
        "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
        "disclose": {"caller": True, "publisher": True},
        "cache": True,
    }


def _node(port: int, rlinks: list[dict[str, Any]], cryptosign: dict[str, Any]) -> dict[str, Any]:
    realm: dict[str, Any] = {
        "name": REALM,
        "roles": [{"name": "anonymous", "permissions": [_everything()]},
                  {"name": "rlink", "permissions": [_everything()]}],
    }  # fmt: skip
    if rlinks:
        realm["rlinks"] = rlinks
    auth: dict[str, Any] = {"anonymous": {"type": "static", "role": "anonymous"}}
    if cryptosign:
        auth["cryptosign"] = {"type": "static", "principals": cryptosign}
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "realms": [realm],
                "transports": [
                    {
                        "type": "websocket",
                        "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1"},
                        "serializers": ["json"],
                        "auth": auth,
                    }
                ],
            }
        ],
    }


def _node_key(cbdir: Path) -> str:
    """Gives the node in ``cbdir`` its Ed25519 key (Crossbar's key file format); returns the
    public key, hex."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    private = key.private_bytes_raw().hex()
    tags = (
        "\ncreator: sysadmd tests\ncreated-at: 2026-01-01T00:00:00.000Z\nmachine-id: test\n"
        f"public-key-ed25519: {public}\n"
    )
    (cbdir / "key.pub").write_text(tags)
    (cbdir / "key.priv").write_text(tags + f"private-key-ed25519: {private}\n")
    os.chmod(cbdir / "key.priv", 0o600)
    return public


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Router, Router]]:
    """Router A linked to router B (the link starts at A, every forwarding switch on)."""
    base = tmp_path_factory.mktemp("rlink")
    venv = crossbar_venv()
    a, b = base / "a", base / "b"
    a.mkdir()
    b.mkdir()
    port_a, port_b = free_port(), free_port()
    public_a = _node_key(a)
    link = {
        "id": "to_b",
        "realm": REALM,
        "authid": "router_a",
        "transport": {
            "type": "websocket",
            "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port_b},
            "url": f"ws://127.0.0.1:{port_b}/ws",
            "serializers": ["json"],
        },
    }
    principal = {"router_a": {"realm": REALM, "role": "rlink", "authorized_keys": [public_a]}}
    (b / "config.json").write_text(json.dumps(_node(port_b, [], principal)))
    (a / "config.json").write_text(json.dumps(_node(port_a, [link], {})))
    routers = Router(venv, a, port_a), Router(venv, b, port_b)
    try:
        routers[1].start()
        routers[0].start()
        wait_for(lambda: "rlink remote session ready" in routers[0].log.read_text(), "the link")
        yield routers
    finally:
        for router in routers:
            router.stop()


class _Joined(ApplicationSession):  # type: ignore[misc]
    def __init__(self, config: ComponentConfig, joined: Deferred[_Joined]) -> None:
        super().__init__(config)
        self._joined = joined

        self.invocations: list[Invocation] = []

    def onJoin(self, details: Any) -> None:
        self._joined.callback(self)

    def onMessage(self, msg: Any) -> None:
        if isinstance(msg, Invocation):
            self.invocations.append(msg)
        super().onMessage(msg)


async def _join(router: Router) -> _Joined:
    joined: Deferred[_Joined] = Deferred()
    factory = WampWebSocketClientFactory(
        lambda: _Joined(ComponentConfig(REALM), joined),
        url=router.url,
        serializers=[JsonSerializer()],
    )
    await TCP4ClientEndpoint(reactor, "127.0.0.1", router.port).connect(factory)
    return await joined


@async_test
async def test_a_router_link_relays_calls_but_loses_errors_and_identities(
    linked: tuple[Router, Router],
) -> None:
    a, b = linked
    callee = await _join(a)
    caller = await _join(b)
    seen: list[Any] = []
    try:

        def whoami(details: Any) -> dict[str, Any]:
            return {"authid": details.caller_authid, "authrole": details.caller_authrole}

        def refuse(details: Any) -> None:
            raise ApplicationError("sysadmd.error.403", "refused")

        await callee.register(whoami, "t.whoami", options=RegisterOptions(details_arg="details"))
        await callee.register(refuse, "t.refuse", options=RegisterOptions(details_arg="details"))
        await caller.subscribe(lambda *args: seen.append(args), "t.event")
        for _ in range(100):  # the link registers them on B as it hears of them
            try:
                relayed = await caller.call("t.whoami")
                break
            except ApplicationError as e:
                assert e.error == "wamp.error.no_such_procedure"
                await deferLater(reactor, 0.1)
        # The call is relayed, but the callee is told the caller's role as its authid.
        assert relayed == {"authid": "anonymous", "authrole": "anonymous"}
        assert caller._authid != "anonymous"
        # The relayed call names its caller in forward_for, which a sysadmd host refuses.
        assert callee.invocations[-1].forward_for
        assert refuse_forwarded(callee.invocations[-1]) is not None
        # The callee's error does not come back: the caller gets a result, null.
        assert await caller.call("t.refuse") is None
        # Presence does not cross the link: B's session list is B's own sessions.
        on_b = await caller.call("wamp.session.list")
        assert caller._session_id in on_b
        assert callee._session_id not in on_b
        # Events are relayed too.
        for _ in range(50):
            callee.publish("t.event", "from a")
            await deferLater(reactor, 0.1)
            if seen:
                break
        assert seen[0] == ("from a",)
    finally:
        callee.leave()
        caller.leave()
