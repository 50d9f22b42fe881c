"""Fleet mode without a router: the host key, the configuration keys, the URIs, who is
calling, the router configuration and its host authorizer, the admin commands."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.message import Error, Invocation
from autobahn.wamp.types import CallDetails
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from sysadmd import config
from sysadmd.api import Api, ApiError, ApiRequest, EventHub, Refusal, Role, Vouched
from sysadmd.catalog import all_specs
from sysadmd.client.errors import ClientError
from sysadmd.client.fleet import read_key
from sysadmd.fleet._hostkey import HOST_KEY_FILE, HostKeyError, ensure_host_key, load_host_key
from sysadmd.fleet._member import FLEET_EVENTS, FleetMember, _caller, refuse_forwarded
from sysadmd.fleet._router import AUTHORIZER_SOURCE, User, router_config
from sysadmd.fleet._uris import procedures
from sysadmd.fleet.admin import main as admin


def test_the_host_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    key, created = ensure_host_key(tmp_path / "state")
    assert created
    path = tmp_path / "state" / HOST_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    again, created_again = ensure_host_key(tmp_path / "state")
    assert not created_again and again.public_hex == key.public_hex
    assert load_host_key(tmp_path / "state").public_hex == key.public_hex


def test_a_host_key_others_may_read_or_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    ensure_host_key(tmp_path)
    path = tmp_path / HOST_KEY_FILE
    path.chmod(0o640)
    with pytest.raises(HostKeyError, match="mode 0600"):
        load_host_key(tmp_path)
    path.write_text("not a key\n")
    path.chmod(0o600)
    with pytest.raises(HostKeyError, match="not an Ed25519 seed"):
        ensure_host_key(tmp_path)


def test_the_challenge_reply_is_the_signature_then_the_challenge(tmp_path: Path) -> None:
    key, _ = ensure_host_key(tmp_path)
    challenge = os.urandom(32)
    reply = bytes.fromhex(key.sign_challenge(challenge.hex()))
    assert reply[64:] == challenge
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.public_hex)).verify(reply[:64], challenge)
    with pytest.raises(ValueError, match="32 bytes"):
        key.sign_challenge("zz")


def test_fleet_keys_are_checked_and_named(tmp_path: Path) -> None:
    settings = config.load()
    assert settings.fleet_router == "" and settings.fleet_realm == "sysadmd"
    assert settings.fleet_host == socket.gethostname().split(".", 1)[0]
    for key, value, message in [
        ("fleet.host", "a.b", "fleet.host: must be 1 to 128 ASCII letters"),
        ("fleet.host", "-x", "fleet.host: must be"),
        ("fleet.router", "http://router", "fleet.router: must be empty or a WebSocket URL"),
        ("fleet.realm", "two words", "fleet.realm: must be a WAMP realm"),
        ("fleet.fingerprint", "AB:CD", "fleet.fingerprint: must be a SHA-256"),
    ]:
        with pytest.raises(config.ConfigError, match=message):
            config.load(None, {key: value})
    pinned = config.load(None, {"fleet.fingerprint": ":".join(["AB"] * 32)})
    assert pinned.fleet_fingerprint == "ab" * 32


def test_the_hosts_public_url_is_checked() -> None:
    assert config.load().fleet_url == ""
    given = config.load(None, {"fleet.url": "https://bhyve1.example:12150/"})
    assert given.fleet_url == "https://bhyve1.example:12150"
    assert config.load(None, {"fleet.url": "http://10.0.0.5/sysadm"}).fleet_url == (
        "http://10.0.0.5/sysadm"
    )
    for bad in (
        "wss://router:8443",
        "https://host:99999",
        "https://user@host",
        'https://host/"><script>',
        "javascript:alert(1)",
        "https://host?x=1",
        7,
    ):
        with pytest.raises(config.ConfigError, match=r"fleet\.url: "):
            config.load(None, {"fleet.url": bad})


def test_every_action_has_its_uri_and_multiplexed_classes_one_per_action() -> None:
    uris = {p.uri: p for p in procedures("h1", all_specs())}
    assert uris["sysadmd.h1.sysadm.iohyve"].action is None
    assert uris["sysadmd.h1.sysadm.iohyve.listvms"].action == "listvms"
    assert "sysadmd.h1.rpc.dispatcher.list" in uris and "sysadmd.h1.rpc.query" in uris
    # Logins, event subscriptions and a caller's own account make no sense through a router.
    for absent in ("rpc.auth", "events.subscribe", "rpc.settings.register_ssl_cert"):
        assert f"sysadmd.h1.{absent}" not in uris


def _details(authid: str | None, authrole: str | None) -> CallDetails:
    """What autobahn hands a callee about its caller (the fields ``_caller`` reads)."""
    seen = SimpleNamespace(
        caller=None if authid is None else 1, caller_authid=authid, caller_authrole=authrole
    )
    return cast(CallDetails, seen)


def test_the_caller_is_who_the_router_discloses() -> None:
    assert _caller(_details("alice", "admin")) == ("alice@router", Role.ADMIN)
    assert _caller(_details("olga", "operator")) == ("olga@router", Role.OPERATOR)
    with pytest.raises(ApplicationError) as undisclosed:
        _caller(_details(None, None))
    assert undisclosed.value.error == "sysadmd.error.401"
    assert "did not disclose the caller" in undisclosed.value.args[0]
    with pytest.raises(ApplicationError) as other:
        _caller(_details("h2", "host"))
    assert other.value.error == "sysadmd.error.403"


def test_an_invocation_naming_a_forwarded_caller_is_refused() -> None:
    """The router discloses the first entry of a caller's own ``forward_for`` as the caller:
    such an invocation is answered with a 403 before it reaches any procedure."""
    claimed = [{"session": 1, "authid": "alice", "authrole": "admin"}]
    forwarded = Invocation(7, 11, args=[{"action": "rmiso"}], forward_for=claimed)
    refusal = refuse_forwarded(forwarded)
    assert isinstance(refusal, Error)
    assert (refusal.request_type, refusal.request) == (Invocation.MESSAGE_TYPE, 7)
    assert refusal.error == "sysadmd.error.403"
    assert "forwarded" in refusal.args[0]
    assert refuse_forwarded(Invocation(8, 11, args=[{}], caller=5)) is None
    assert refuse_forwarded(Error(Invocation.MESSAGE_TYPE, 9, "x")) is None


def _permissions(config_: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    roles = config_["workers"][0]["realms"][0]["roles"]
    (found,) = [r for r in roles if r["name"] == role]
    return {p["uri"]: p for p in found.get("permissions", [])}


def test_the_router_configuration_grants_by_uri() -> None:
    made, tickets = router_config(
        realm="sysadmd", port=8443, interface="127.0.0.1", hosts={"h1": "ab" * 32},
        users=[User("alice", "admin"), User("olga", "operator"), User("kim", "admin", "cd" * 32)],
        specs=all_specs(), events=FLEET_EVENTS,
    )  # fmt: skip
    operator = _permissions(made, "operator")
    assert operator["sysadmd.h1.sysadm.iohyve.listvms"]["allow"]["call"]
    assert "sysadmd.h1.sysadm.iohyve.rmiso" not in operator
    assert operator["sysadmd.h1.events.guests"]["allow"]["subscribe"]
    assert all(p["disclose"]["caller"] for p in operator.values())
    assert not any(p["allow"]["register"] or p["allow"]["publish"] for p in operator.values())
    admin_ = _permissions(made, "admin")
    assert admin_["sysadmd."]["match"] == "prefix" and admin_["sysadmd."]["allow"]["call"]
    auth = made["workers"][0]["transports"][0]["auth"]
    assert auth["cryptosign"]["principals"]["h1"]["role"] == "host"
    assert auth["cryptosign"]["principals"]["kim"]["authorized_keys"] == ["cd" * 32]
    assert set(tickets) == {"alice", "olga"} and tickets["alice"] != tickets["olga"]
    assert auth["ticket"]["principals"]["olga"] == {"role": "operator", "ticket": tickets["olga"]}


def test_the_host_authorizer_confines_each_host_to_its_prefix() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(AUTHORIZER_SOURCE, "authorizer", "exec"), namespace)  # noqa: S102
    authorize = namespace["authorize_host"]
    h1 = {"authid": "h1", "authrole": "host"}
    assert authorize(h1, "sysadmd.h1.sysadm.iohyve.listvms", "register")["allow"]
    assert authorize(h1, "sysadmd.h1.events.guests", "publish")["allow"]
    assert authorize(h1, "sysadmd.h2.sysadm.iohyve.listvms", "register") is False
    assert authorize(h1, "sysadmd.h10.sysadm.iohyve.listvms", "register") is False
    assert authorize(h1, "sysadmd.h1.sysadm.iohyve.listvms", "call") is False
    assert authorize({"authid": "h1", "authrole": "admin"}, "sysadmd.h1.x", "register") is False


def _admin(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = admin(list(argv))
        except SystemExit as e:  # argparse refuses bad arguments with status 2
            status = int(e.code or 0)
    return status, out.getvalue(), err.getvalue()


def test_admin_prints_the_host_key_and_writes_the_router_configuration(tmp_path: Path) -> None:
    status, printed, _ = _admin("--state-dir", str(tmp_path / "s"), "fleet", "key")
    assert status == 0
    assert printed.strip() == load_host_key(tmp_path / "s").public_hex
    status, printed, _ = _admin(
        "fleet", "router-config", str(tmp_path / "cb"), f"--host=h1={printed.strip()}",
        "--user=alice:admin",
    )  # fmt: skip
    assert status == 0 and printed.startswith("ticket alice ")
    written = tmp_path / "cb" / "config.json"
    assert written.stat().st_mode & 0o777 == 0o600
    assert json.loads(written.read_text())["workers"][0]["realms"][0]["name"] == "sysadmd"
    assert (tmp_path / "cb" / "sysadmd_fleet_authorizer.py").exists()
    status, _, err = _admin("fleet", "router-config", str(tmp_path / "x"), "--host=a.b=00")
    assert status == 2 and "give NAME=PUBKEY" in err


class _HeldApi:
    """An Api whose dispatch waits until the test answers; it records every request."""

    def __init__(self) -> None:
        self.registry = SimpleNamespace(specs=all_specs)
        self.waiting: list[tuple[ApiRequest, Deferred[Any]]] = []

    def dispatch(self, request: ApiRequest) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self.waiting.append((request, answer))
        return answer


def _member(api: _HeldApi, tmp_path: Path) -> FleetMember:
    key, _ = ensure_host_key(tmp_path)
    return FleetMember(
        cast(Api, api), EventHub(FLEET_EVENTS), router="ws://127.0.0.1:1/ws", realm="sysadmd",
        host="h1", key=key, tls=None, info={}, reactor=Clock(), in_flight=2,
    )  # fmt: skip


def _caller_details(session: int) -> CallDetails:
    seen = SimpleNamespace(caller=session, caller_authid="olga", caller_authrole="operator")
    return cast(CallDetails, seen)


def test_each_caller_may_have_limits_in_flight_calls_waiting(tmp_path: Path) -> None:
    api = _HeldApi()
    member = _member(api, tmp_path)
    (listvms,) = [p for p in member._procedures if p.uri == "sysadmd.h1.sysadm.iohyve.listvms"]
    call = member._handler(listvms)
    first, second = call({}, details=_caller_details(1)), call({}, details=_caller_details(1))
    third = call({}, details=_caller_details(1))
    refused = []
    third.addErrback(lambda f: refused.append(f.value))
    assert [r.error for r in refused] == ["sysadmd.error.429"]
    assert len(api.waiting) == 2
    # Another caller's calls are its own; the request is the host's usual one.
    call({}, details=_caller_details(2))
    request, _ = api.waiting[-1]
    assert (request.namespace, request.name, request.args) == (
        "sysadm", "iohyve", {"action": "listvms"},
    )  # fmt: skip
    assert request.credentials == Vouched("olga@router", Role.OPERATOR)
    # A reply makes room again.
    api.waiting[0][1].callback(Refusal(request, None, ApiError(404, "gone")))
    failed = []
    first.addErrback(lambda f: failed.append(f.value))
    assert failed[0].error == "sysadmd.error.404" and failed[0].args[0] == "gone"
    call({}, details=_caller_details(1))
    assert len(api.waiting) == 4
    assert not second.called


def test_a_users_router_key_must_be_private(tmp_path: Path) -> None:
    key, _ = ensure_host_key(tmp_path)
    path = tmp_path / HOST_KEY_FILE
    assert read_key(path).public_key().public_bytes_raw().hex() == key.public_hex
    path.chmod(0o644)
    with pytest.raises(ClientError, match="make it mode 0600"):
        read_key(path)
    path.write_text("secret words\n")
    path.chmod(0o600)
    with pytest.raises(ClientError, match="not an Ed25519 seed"):
        read_key(path)
