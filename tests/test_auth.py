"""Who may call what: every action against every kind of caller, and the logins themselves."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from authkit import USERS, make_authenticator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import async_fixture, async_test
from twisted.internet.task import Clock

from sysadmd.api import Api
from sysadmd.apidoc import all_specs
from sysadmd.auth import Authenticator
from sysadmd.calls import Connection
from sysadmd.errors import ApiError
from sysadmd.events import EventHub
from sysadmd.registry import ActionSpec, Registry, declared_actions
from sysadmd.roles import Role
from sysadmd.rpc import QueryActions, Rpc
from sysadmd.sslauth import sign_challenge
from sysadmd.subscriptions import EVENT_NAMES, EventActions

#: The actions whose real handlers the tests run (the others only record that they ran).
REAL = {
    spec.title for cls in (Rpc, QueryActions, EventActions) for _, spec in declared_actions(cls)
}


def _args(spec: ActionSpec) -> Any:
    if spec.whole:
        return spec.args[0].type.example
    args: dict[str, Any] = {"action": spec.action} if spec.action else {}
    for arg in spec.args:
        if arg.required:
            args[arg.name] = arg.type.example
    return args


class World:
    """An Api with every real action registered; handlers outside rpc only record calls."""

    def __init__(self, directory: Path) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.auth: Authenticator = make_authenticator(directory, self.clock)
        self.ran: list[str] = []
        registry = Registry()
        registry.register(Rpc(self.auth, "testhost"))
        registry.register(EventActions(EventHub(EVENT_NAMES)))
        registry.register(QueryActions(registry))
        for spec in all_specs():
            if spec.title not in REAL:
                registry.add(spec, self._recording(spec))
        self.api = Api(registry, self.auth)

    def _recording(self, spec: ActionSpec) -> Any:
        async def handler(call: Any) -> Any:
            self.ran.append(spec.title)
            return {}

        return handler

    async def code(self, spec: ActionSpec, connection: Connection) -> int:
        try:
            await self.api.call(spec.namespace, spec.name, _args(spec), connection)
        except ApiError as e:
            return e.code
        return 200


@async_fixture()
async def world(tmp_path: Path) -> AsyncIterator[World]:
    yield World(tmp_path)


def _callers(world: World) -> dict[str, tuple[Connection, Role | None]]:
    """Every kind of caller, and the role each one really has (None: not logged in)."""
    sessions = world.auth.sessions
    other, _ = sessions.create("alice", Role.ADMIN)
    expired, _ = sessions.create("alice", Role.ADMIN)
    revoked, _ = sessions.create("alice", Role.ADMIN)
    sessions.revoke(revoked)
    world.clock.advance(901)
    sessions.lookup(other)  # keeps "other" alive past the idle time that ended "expired"
    operator, _ = sessions.create("oscar", Role.OPERATOR)
    admin, _ = sessions.create("alice", Role.ADMIN)
    assert sessions.lookup(expired) is None

    def token(value: str | None) -> Connection:
        return Connection("192.0.2.1", "test", token=value)

    return {
        "no credentials": (token(None), None),
        "empty token": (token(""), None),
        "token minus its first character": (token(other[1:]), None),
        "suffix of a token": (token(other[-8:]), None),
        "expired": (token(expired), None),
        "revoked": (token(revoked), None),
        "operator": (token(operator), Role.OPERATOR),
        "admin": (token(admin), Role.ADMIN),
    }


@async_test
async def test_every_action_against_every_caller(world: World) -> None:
    """401 without a live session, 403 for a role too low, the handler runs otherwise."""
    callers = _callers(world)
    checked = 0
    for spec in all_specs():
        if spec.role is Role.PUBLIC:
            continue
        for label, (connection, role) in callers.items():
            world.ran.clear()
            code = await world.code(spec, connection)
            if role is None:
                expected = 401
            elif not role.allows(spec.role):
                expected = 403
            else:
                expected = 200
            if spec.title in REAL and expected == 200:
                # rpc handlers are the real ones: sample arguments may be refused, but
                # never for want of a login or a role.
                assert code not in (401, 403), (spec.title, label)
            else:
                assert code == expected, (spec.title, label)
            if spec.title not in REAL:
                assert world.ran == ([spec.title] if expected == 200 else []), (spec.title, label)
            checked += 1
    assert checked >= 7 * 8


@async_test
async def test_identify_needs_no_login(world: World) -> None:
    """rpc/identify answers anyone, as sysadm's clients expect before they log in."""
    reply = await world.api.call("rpc", "identify", "", Connection("192.0.2.1", "test"))
    assert reply == {"type": "server", "hostname": "testhost"}


@async_test
async def test_password_login_token_login_and_logout(world: World) -> None:
    """auth gives [token, seconds]; the token works on another connection; auth_clear ends it."""
    first = Connection("192.0.2.1", "test")
    password, _ = USERS["alice"]
    token, seconds = await world.api.call(
        "rpc", "auth", {"username": "alice", "password": password}, first
    )
    assert seconds == 900
    assert world.auth.caller(first) is not None
    second = Connection("192.0.2.2", "test")
    assert await world.api.call("rpc", "auth_token", {"token": token}, second) == [token, 900]
    assert await world.api.call("rpc", "auth_clear", {}, first) == {}
    assert world.auth.caller(first) is None
    assert world.auth.caller(second) is None
    with pytest.raises(ApiError) as raised:
        await world.api.call("rpc", "auth_token", {"token": token}, second)
    assert raised.value.code == 401


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong"), ("nobody", "alice-secret-1"), ("", ""), ("alice", "")],
)
@async_test
async def test_failed_logins_look_the_same(world: World, username: str, password: str) -> None:
    """Unknown users and wrong passwords get the same 401 and message."""
    connection = Connection("192.0.2.1", "test")
    with pytest.raises(ApiError) as raised:
        await world.api.call(
            "rpc", "auth", {"username": username, "password": password}, connection
        )
    assert (raised.value.code, raised.value.message) == (401, "invalid user name or password")
    assert world.auth.caller(connection) is None


@async_test
async def test_brute_force_reaches_the_block(world: World) -> None:
    """Five failures block the address (and the name) for an hour; the right password too."""
    connection = Connection("192.0.2.9", "test")
    for _ in range(5):
        with pytest.raises(ApiError) as raised:
            await world.api.call(
                "rpc", "auth", {"username": "alice", "password": "guess"}, connection
            )
        assert raised.value.code == 401
    password, _ = USERS["alice"]
    for peer in ("192.0.2.9", "198.51.100.7"):
        with pytest.raises(ApiError) as raised:
            await world.api.call(
                "rpc",
                "auth",
                {"username": "alice", "password": password},
                Connection(peer, "test"),
            )
        assert raised.value.code == 429
        assert "try again in 60 minutes" in raised.value.message
    world.clock.advance(3601)
    assert (
        await world.api.call("rpc", "auth", {"username": "alice", "password": password}, connection)
    )[1] == 900


@async_test
async def test_token_failures_block_only_the_address(world: World) -> None:
    """Bad tokens count against the address that sent them, not against everyone."""
    for _ in range(5):
        with pytest.raises(ApiError):
            await world.api.call(
                "rpc", "auth_token", {"token": "x"}, Connection("192.0.2.5", "test")
            )
    token, _ = world.auth.sessions.create("alice", Role.ADMIN)
    with pytest.raises(ApiError) as raised:
        await world.api.call("rpc", "auth_token", {"token": token}, Connection("192.0.2.5", "t"))
    assert raised.value.code == 429
    reply = await world.api.call(
        "rpc", "auth_token", {"token": token}, Connection("192.0.2.6", "t")
    )
    assert reply[0] == token


@async_test
async def test_ssl_key_login(world: World) -> None:
    """A registered key logs its owner in through the two-stage challenge."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    admin, _ = world.auth.sessions.create("alice", Role.ADMIN)
    as_admin = Connection("192.0.2.1", "test", token=admin)
    await world.api.call(
        "rpc",
        "settings",
        {
            "action": "register_ssl_cert",
            "pub_key": base64.b64encode(pem).decode(),
            "nickname": "laptop",
            "user": "oscar",
        },
        as_admin,
    )
    listed = await world.api.call("rpc", "settings", {"action": "list_ssl_certs"}, as_admin)
    assert list(listed) == ["oscar"]
    client = Connection("192.0.2.3", "test")
    challenge = await world.api.call("rpc", "auth_ssl", "", client)
    signed = sign_challenge(key, challenge["test_string"])
    reply = await world.api.call("rpc", "auth_ssl", {"encrypted_string": signed}, client)
    assert reply[1] == 900
    caller = world.auth.caller(client)
    assert caller is not None and (caller.user, caller.role) == ("oscar", Role.OPERATOR)
    with pytest.raises(ApiError) as raised:
        await world.api.call("rpc", "auth_ssl", {"encrypted_string": signed}, client)
    assert raised.value.code == 401


@async_test
async def test_audit_log_holds_no_secret(world: World, tmp_path: Path) -> None:
    """Logins and mutations are audited; no password or token ever reaches the file."""
    password, _ = USERS["alice"]
    connection = Connection("192.0.2.1", "test")
    token, _ = await world.api.call(
        "rpc", "auth", {"username": "alice", "password": password}, connection
    )
    with pytest.raises(ApiError):
        await world.api.call(
            "rpc",
            "auth",
            {"username": "alice", "password": "hunter2"},
            Connection("192.0.2.8", "t"),
        )
    await world.api.call(
        "sysadm",
        "iohyve",
        {"action": "fetchiso", "url": "http://127.0.0.1:9/y.iso"},
        Connection("192.0.2.1", "test", token=token),
    )
    text = (tmp_path / "audit.log").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["event"], r.get("outcome")) for r in records] == [
        ("login", "ok"),
        ("login", "failed"),
        ("call", "ok"),
    ]
    assert records[2]["args"] == {"url": "http://127.0.0.1:9/y.iso"}
    for secret in (password, "hunter2", token):
        assert secret not in text
    assert oct((tmp_path / "audit.log").stat().st_mode & 0o777) == "0o600"
