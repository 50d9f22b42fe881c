"""Fleet mode end to end: a real Crossbar.io router, three simulated hosts joined to it, and
the fleet client calling them through the router."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import CallOptions, ComponentConfig
from clientkit import SYSADM
from clientkit import sysadm as sysadm_in
from fleetkit import INTRUDER, KEY_USER, Fleet, fleet, wait_for
from support import async_test
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater

from sysadmd.client.errors import ApiError
from sysadmd.client.fleet import FleetClient, HostNotJoined, RouterRefused
from sysadmd.fleet._hostkey import load_host_key

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture


async def client(fleet: Fleet, user: str) -> FleetClient:
    joined = FleetClient(fleet.router.url, "sysadmd", user, fleet.tickets[user])
    await joined.connect()
    return joined


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds)


@async_test
async def test_a_call_reaches_the_right_host(fleet: Fleet) -> None:
    alice = await client(fleet, "alice")
    try:
        for host in ("h1", "h2", "h3"):
            guests = (await alice.call(host, "sysadm", "iohyve", action="listvms"))["listvms"]
            assert set(guests) == {f"guest-{host}"}
            # The class URI takes the action in its args, as the WebSocket does.
            whole = await alice.call(host, "sysadm", "iohyve", {"action": "listvms"})
            assert set(whole["listvms"]) == {f"guest-{host}"}
        # Validation is the host's own: a bad guest name is a 400 with its message.
        with pytest.raises(ApiError) as bad:
            await alice.call("h1", "sysadm", "iohyve", {"name": "-rf"}, action="start")
        assert bad.value.code == 400
    finally:
        await alice.close()


@async_test
async def test_an_operator_is_refused_rmiso_by_the_router_and_by_the_host(fleet: Fleet) -> None:
    olga = await client(fleet, "olga")
    try:
        # Reading is granted by URI.
        assert "listvms" in await olga.call("h1", "sysadm", "iohyve", action="listvms")
        # rmiso's own URI is not granted to the operator role: the router refuses it.
        with pytest.raises(RouterRefused):
            await olga.call("h1", "sysadm", "iohyve", {"target": "x.iso"}, action="rmiso")
        # A forged route, rmiso through the class URI the operator may call, reaches the
        # host, whose roles refuse it exactly as on its own listeners.
        with pytest.raises(ApiError) as refused:
            await olga.call("h1", "sysadm", "iohyve", {"action": "rmiso", "target": "x.iso"})
        assert refused.value.code == 403
        assert "operator" in refused.value.message
        # An action word that disagrees with the per-action URI is refused.
        with pytest.raises(ApiError) as mixed:
            await olga.call("h1", "sysadm", "iohyve", {"action": "rmiso"}, action="listvms")
        assert mixed.value.code == 400
    finally:
        await olga.close()


@async_test
async def test_a_caller_cannot_claim_another_identity_with_forward_for(fleet: Fleet) -> None:
    """The router takes a caller's own ``forward_for`` option as the disclosed caller: an
    operator claiming to pass on an admin's call must not get the admin's role."""
    olga = await client(fleet, "olga")
    forged = [{"session": 1, "authid": "alice", "authrole": "admin"}]
    try:
        with pytest.raises(ApplicationError) as refused:
            await olga._live().call(
                "sysadmd.h1.sysadm.iohyve",
                {"action": "rmiso", "target": "x.iso"},
                options=CallOptions(forward_for=forged),
            )
        assert refused.value.error == "sysadmd.error.403"
        assert "forwarded" in refused.value.args[0]
    finally:
        await olga.close()


@async_test
async def test_admin_calls_are_audited_as_authid_at_router(fleet: Fleet) -> None:
    alice = await client(fleet, "alice")
    try:
        with pytest.raises(ApiError) as missing:
            await alice.call("h2", "sysadm", "iohyve", {"target": "none.iso"}, action="rmiso")
        assert missing.value.code == 404
    finally:
        await alice.close()
    lines = (fleet.state("h2") / "audit.log").read_text().splitlines()
    calls = [json.loads(line) for line in lines if '"rmiso"' in line]
    assert calls and calls[-1]["user"] == "alice@router"
    assert calls[-1]["role"] == "admin" and calls[-1]["outcome"] == "404"
    # An error answered to a caller is not a fault of the host: its log stays quiet.
    assert "onUserError" not in fleet.hosts["h2"].log_text()


@async_test
async def test_events_arrive_for_the_right_host(fleet: Fleet) -> None:
    alice = await client(fleet, "alice")
    seen: list[tuple[str, Any]] = []
    try:
        await alice.subscribe("*", "guests", lambda host, args: seen.append((host, args)))
        await alice.call(
            "h2", "sysadm", "iohyve", {"name": "new-on-h2", "size": "1G"}, action="create"
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
            "new-on-h2" in args.get("added", []) for _, args in seen
        ):
            await sleep(0.1)
        added = [host for host, args in seen if "new-on-h2" in args.get("added", [])]
        assert added == ["h2"]
        for host, args in seen:
            assert set(args["guests"]) <= {f"guest-{host}", "new-on-h2" if host == "h2" else ""}
    finally:
        await alice.close()


class _Intruder(ApplicationSession):  # type: ignore[misc]
    """Host h4 (a principal the router knows), trying to serve h1's procedure."""

    def __init__(self, config: ComponentConfig, key: Any, done: Deferred[Any]) -> None:
        super().__init__(config)
        self._key = key
        self._done = done

    def onConnect(self) -> None:
        self.join(
            "sysadmd", ["cryptosign"], authid=INTRUDER, authextra={"pubkey": self._key.public_hex}
        )

    def onChallenge(self, challenge: Any) -> str:
        signed: str = self._key.sign_challenge(challenge.extra["challenge"])
        return signed

    async def onJoin(self, details: Any) -> None:
        outcome: dict[str, str] = {}
        for uri in (
            "sysadmd.h1.sysadm.iohyve.listvms",
            "sysadmd.h1.sysadm.iohyve.steal",
            f"sysadmd.{INTRUDER}.sysadm.iohyve.listvms",
        ):
            try:
                await self.register(lambda *a, **k: {}, uri)
                outcome[uri] = "registered"
            except ApplicationError as e:
                outcome[uri] = e.error
        try:
            await self.publish("sysadmd.h1.events.guests", {}, options=_acknowledged())
            outcome["publish"] = "published"
        except ApplicationError as e:
            outcome["publish"] = e.error
        self._done.callback(outcome)
        self.leave()


def _acknowledged() -> Any:
    from autobahn.wamp.types import PublishOptions  # noqa: PLC0415

    return PublishOptions(acknowledge=True)


@async_test
async def test_a_host_cannot_register_under_another_hosts_prefix(fleet: Fleet) -> None:
    key = load_host_key(fleet.state(INTRUDER))
    done: Deferred[Any] = Deferred()
    factory = WampWebSocketClientFactory(
        lambda: _Intruder(ComponentConfig("sysadmd"), key, done),
        url=fleet.router.url,
        serializers=[JsonSerializer()],
    )
    await TCP4ClientEndpoint(reactor, "127.0.0.1", fleet.router.port).connect(factory)
    outcome = await done
    # Neither a procedure h1 serves nor a new one under h1's prefix.
    assert outcome["sysadmd.h1.sysadm.iohyve.listvms"] != "registered"
    assert outcome["sysadmd.h1.sysadm.iohyve.steal"] == "wamp.error.not_authorized"
    assert outcome["publish"] == "wamp.error.not_authorized"
    # Its own prefix is its own.
    assert outcome[f"sysadmd.{INTRUDER}.sysadm.iohyve.listvms"] == "registered"


@async_test
async def test_fleet_hosts_lists_every_joined_host(fleet: Fleet) -> None:
    olga = await client(fleet, "olga")
    try:
        hosts = await olga.hosts()
    finally:
        await olga.close()
    assert [h.host for h in hosts] == ["h1", "h2", "h3"]
    assert all(h.backend == "simulated iohyve 0.7.9" and h.version and h.joined for h in hosts)
    # Each host publishes its own dashboard's address ([fleet] url) for the console links.
    assert [h.url for h in hosts] == [fleet.url(name) for name in ("h1", "h2", "h3")]


def sysadm(fleet: Fleet, user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The ``sysadm`` command line, logging in to the router as ``user``."""
    return subprocess.run(
        [sys.executable, "-m", "sysadmd.client.cli", "--router", fleet.router.url,
         "--router-user", user, *argv],
        env={**os.environ, "SYSADM_ROUTER_TICKET": fleet.tickets[user], "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_one_command_line_manages_every_host(fleet: Fleet) -> None:
    hosts = sysadm(fleet, "olga", "fleet", "hosts", "--json")
    assert hosts.returncode == 0, hosts.stderr
    assert [h["host"] for h in json.loads(hosts.stdout)] == ["h1", "h2", "h3"]
    one = sysadm(fleet, "olga", "-H", "h2", "vm", "list", "--json")
    assert one.returncode == 0, one.stderr
    assert set(json.loads(one.stdout)["listvms"]) >= {"guest-h2"}
    every = sysadm(fleet, "olga", "-H", "all", "vm", "list")
    assert every.returncode == 0, every.stderr
    rows = [line.split()[:2] for line in every.stdout.splitlines()[2:] if line.strip()]
    assert ["h1", "guest-h1"] in rows and ["h3", "guest-h3"] in rows
    assert {host for host, _ in rows} == {"h1", "h2", "h3"}
    # The router refuses the operator's rmiso, and the command says so.
    refused = sysadm(fleet, "olga", "-H", "h1", "iso", "rm", "x.iso")
    assert refused.returncode != 0
    assert "the router refused sysadmd.h1.sysadm.iohyve.rmiso" in refused.stderr
    gone = sysadm(fleet, "alice", "-H", "nosuch", "vm", "list")
    assert gone.returncode != 0 and "host nosuch is not joined" in gone.stderr


def test_a_saved_profile_manages_every_host(fleet: Fleet, tmp_path: Path) -> None:
    config = tmp_path / "config"
    saved = sysadm_in(config, "router", "save", "lab", "--router", fleet.router.url,
                      "--router-user", "olga")  # fmt: skip
    assert saved.status == 0, saved
    ticket = {"SYSADM_ROUTER_TICKET": fleet.tickets["olga"]}
    hosts = sysadm_in(config, "--profile", "lab", "fleet", "hosts", "--json", env=ticket)
    assert hosts.status == 0, hosts
    assert [h["host"] for h in json.loads(hosts.stdout)] == ["h1", "h2", "h3"]
    every = sysadm_in(config, "--profile", "lab", "-H", "all", "vm", "list", env=ticket)
    assert every.status == 0, every
    rows = [line.split()[:2] for line in every.stdout.splitlines()[2:] if line.strip()]
    assert {host for host, _ in rows} == {"h1", "h2", "h3"}
    assert ["h2", "guest-h2"] in rows
    # The profile's user is olga, an operator: the router refuses her rmiso.
    refused = sysadm_in(config, "--profile", "lab", "-H", "h1", "iso", "rm", "x.iso", env=ticket)
    assert refused.status == 1
    assert "the router refused sysadmd.h1.sysadm.iohyve.rmiso" in refused.stderr
    # --router-user on the command line overrides the profile's user: alice's ticket works.
    as_alice = {"SYSADM_ROUTER_TICKET": fleet.tickets["alice"]}
    alice = sysadm_in(config, "--profile", "lab", "--router-user", "alice", "-H", "h1", "vm",
                      "list", "--json", env=as_alice)  # fmt: skip
    assert alice.status == 0, alice
    assert fleet.tickets["olga"] not in (config / "routers.json").read_text()


def test_a_profile_asks_for_the_ticket_on_a_terminal(fleet: Fleet, tmp_path: Path) -> None:
    config = tmp_path / "config"
    saved = sysadm_in(config, "router", "save", "lab", "--router", fleet.router.url,
                      "--router-user", "olga")  # fmt: skip
    assert saved.status == 0, saved
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSADM_")}
    env.update(SYSADM_CONFIG_DIR=str(config), SYSADM_PROFILE="lab", COLUMNS="200")
    with subprocess.Popen(
        [SYSADM, "fleet", "hosts"], stdin=slave, stdout=slave, stderr=slave, env=env,
        start_new_session=True,
    ) as process:  # fmt: skip
        os.close(slave)
        output = bytearray()
        deadline = time.monotonic() + 30
        while b"Ticket for olga at " not in output and time.monotonic() < deadline:
            output += os.read(master, 4096)
        assert f"Ticket for olga at {fleet.router.url}".encode() in output, output
        os.write(master, fleet.tickets["olga"].encode() + b"\n")
        with contextlib.suppress(OSError):  # EIO once the program has closed the terminal
            while chunk := os.read(master, 65536):
                output += chunk
        os.close(master)
        assert process.wait(timeout=60) == 0, output
    text = output.decode()
    assert all(f"{host} " in text for host in ("h1", "h2", "h3")), text
    # The ticket is not echoed, and not saved.
    assert fleet.tickets["olga"] not in text
    assert all(fleet.tickets["olga"] not in p.read_text() for p in config.iterdir())


def test_a_user_logs_in_with_a_key(fleet: Fleet) -> None:
    key_file = fleet.state(KEY_USER) / "fleet-host.key"
    listed = subprocess.run(
        [sys.executable, "-m", "sysadmd.client.cli", "--router", fleet.router.url,
         "--router-user", KEY_USER, "--router-key", str(key_file), "-H", "h1", "vm", "list",
         "--json"],
        env={k: v for k, v in os.environ.items() if k != "SYSADM_ROUTER_TICKET"},
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert set(json.loads(listed.stdout)["listvms"]) >= {"guest-h1"}
    # Another user's key does not log in as kim.
    wrong = subprocess.run(
        [sys.executable, "-m", "sysadmd.client.cli", "--router", fleet.router.url,
         "--router-user", KEY_USER, "--router-key", str(fleet.state("h1") / "fleet-host.key"),
         "-H", "h1", "vm", "list"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert wrong.returncode != 0 and "the router refused the login" in wrong.stderr


@async_test
async def test_a_killed_host_disappears_and_a_restarted_one_comes_back(fleet: Fleet) -> None:
    alice = await client(fleet, "alice")
    try:
        fleet.hosts["h3"].crash()
        killed = time.monotonic()
        while "h3" in [h.host for h in await alice.hosts()]:
            assert time.monotonic() - killed < 10, "h3 still listed 10 s after it was killed"
            await sleep(0.2)
        with pytest.raises(HostNotJoined, match="host h3 is not joined"):
            await alice.call("h3", "sysadm", "iohyve", action="listvms")
        # Started again, it joins and registers by itself.
        fleet.start("h3")
        assert [h.host for h in await alice.hosts()] == ["h1", "h2", "h3"]
        guests = await alice.call("h3", "sysadm", "iohyve", action="listvms")
        assert set(guests["listvms"]) == {"guest-h3"}
    finally:
        await alice.close()


@async_test
async def test_hosts_join_again_when_the_router_comes_back(fleet: Fleet) -> None:
    h1 = fleet.hosts["h1"]
    url = f"https://localhost:{h1.ports[0]}/readyz"
    joins = h1.log_text().count("Fleet: joined")
    fleet.router.stop()
    wait_for(lambda: "Fleet: left realm" in h1.log_text(), "h1 to see the router go")
    readyz = await h1.http().get(url, auth=("admin", h1.password))
    text = (await readyz.text()).splitlines()
    assert readyz.code == 200  # the host's own listeners still serve
    assert any(line.startswith("fleet: not joined to realm sysadmd") for line in text)
    fleet.router.start()
    wait_for(lambda: h1.log_text().count("Fleet: joined") > joins, "h1 to join again", 40)
    readyz = await h1.http().get(url, auth=("admin", h1.password))
    assert "fleet: ok" in (await readyz.text()).splitlines()
    alice = await client(fleet, "alice")
    try:
        assert "listvms" in await alice.call("h1", "sysadm", "iohyve", action="listvms")
    finally:
        await alice.close()
