"""Who may call what: every action against every kind of caller, and the logins themselves."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from argon2 import PasswordHasher
from authkit import USERS, make_authenticator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support import async_fixture, async_test
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import Clock

from sysadmd.api import (
    ActionSpec,
    Api,
    ApiError,
    Connection,
    EventHub,
    Registry,
    Role,
    declared_actions,
)
from sysadmd.auth import Authenticator, RetryLater
from sysadmd.auth import _authenticator as auth_module
from sysadmd.auth import _keys as sslauth
from sysadmd.auth._accounts import LocalAccounts
from sysadmd.auth._sessions import Session
from sysadmd.catalog.reference import all_specs
from sysadmd.client.signing import sign_challenge
from sysadmd.services import EVENT_NAMES, EventActions, QueryActions, Rpc

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
            elif not role.allows(spec.entry_role):
                expected = 403
            elif spec.websocket_only:
                expected = 400  # acts on a lasting connection; these do not last
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


def assert_stamped(world: World, connection: Connection, user: str) -> None:
    """The session of ``connection`` carries the stamp of ``user``'s current record."""
    session = world.auth.caller(connection)
    assert isinstance(session, Session)
    stamps = cast(LocalAccounts, world.auth._checker).stamps_blocking([])
    assert stamps is not None and session.stamp == stamps[user]


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
    assert_stamped(world, first, "alice")
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
        assert "try again in 3600 seconds" in raised.value.message
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
    assert_stamped(world, client, "oscar")
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


# The lockout against concurrent and cheap guesses


class CountingHasher(PasswordHasher):
    """The kit's cheap argon2, counting the verifications (the work of the hashing pool)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self._lock = threading.Lock()
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.verified += 1
        return super().verify(hash, password)


def _count_hashing(world: World) -> CountingHasher:
    hasher = CountingHasher()
    checker = cast(LocalAccounts, world.auth._checker)
    checker._hasher = hasher
    return hasher


async def _codes(calls: list[Any]) -> list[int]:
    """Run the API calls concurrently; 200 or the error code of each, in order."""
    results = await DeferredList([ensureDeferred(c) for c in calls], consumeErrors=True)
    codes = []
    for ok, value in results:
        codes.append(200 if ok else cast(ApiError, value.value).code)
    return codes


def _login(world: World, user: str, password: str, peer: str) -> Any:
    return world.api.call(
        "rpc", "auth", {"username": user, "password": password}, Connection(peer, "test")
    )


@async_test
async def test_concurrent_guesses_cannot_outrun_the_lockout(world: World) -> None:
    """16 concurrent logins for one user from one address: 5 are checked, the right 16th
    password never is, and no session is made."""
    hasher = _count_hashing(world)
    password, _ = USERS["alice"]
    guesses = [f"guess-{n}" for n in range(15)] + [password]
    codes = await _codes([_login(world, "alice", g, "192.0.2.9") for g in guesses])
    assert codes == [401] * 5 + [429] * 11
    assert hasher.verified == 5
    assert len(world.auth.sessions) == 0


@async_test
async def test_a_flood_from_one_address_never_reaches_the_hashing_pool(world: World) -> None:
    """200 concurrent guesses from one address: at most 5 are hashed, and another user's
    login meanwhile takes little time."""
    hasher = _count_hashing(world)
    flood = [_login(world, f"user{n}", "guess", "203.0.113.66") for n in range(200)]
    flooding = ensureDeferred(_codes(flood))
    started = time.perf_counter()
    password, _ = USERS["oscar"]
    token, _ = await _login(world, "oscar", password, "192.0.2.10")
    latency = time.perf_counter() - started
    codes = await flooding
    print(f"login latency during a flood of 200 guesses from one address: {latency * 1000:.1f} ms")
    assert token
    assert latency < 2.0
    assert codes.count(401) == 5 and codes.count(429) == 195
    assert hasher.verified == 5 + 1  # the flood's first five and oscar's


@async_test
async def test_an_attacker_s_own_login_keeps_its_address_s_failures(world: World) -> None:
    alice_wrong = [_login(world, "alice", f"guess-{n}", "192.0.2.9") for n in range(4)]
    assert await _codes(alice_wrong) == [401] * 4
    oscar, _ = USERS["oscar"]
    await _login(world, "oscar", oscar, "192.0.2.9")  # the attacker's own account
    assert await _codes([_login(world, "alice", "guess-5", "192.0.2.9")]) == [401]
    assert await _codes([_login(world, "oscar", oscar, "192.0.2.9")]) == [429]


@async_test
async def test_cheap_failures_count_against_the_address_only(world: World) -> None:
    """Names no account can have cost no hashing, and fill no username table."""
    hasher = _count_hashing(world)
    calls = [_login(world, f"Not A Name {n}", "x", f"198.51.100.{n}") for n in range(50)]
    calls += [_login(world, "alice", "", "198.51.100.200")]
    assert await _codes(calls) == [401] * 51
    assert hasher.verified == 0
    kinds = {entry.kind for entry in world.auth.lockout.entries()}
    assert kinds == {"address"}
    for _ in range(4):
        await _codes([_login(world, "Not A Name", "x", "198.51.100.0")])
    assert await _codes([_login(world, "oscar", USERS["oscar"][0], "198.51.100.0")]) == [429]


# Key login


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def key_2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _session(world: World, user: str, role: Role) -> Connection:
    token, _ = world.auth.sessions.create(user, role)
    return Connection("192.0.2.1", "test", token=token)


async def _settings(world: World, connection: Connection, **args: Any) -> Any:
    return await world.api.call("rpc", "settings", args, connection)


@async_test
async def test_the_challenge_fits_sysadm_s_qt_client(world: World) -> None:
    """Stage 1 gives 128 to 245 characters: the Qt client writes a 256-byte signature into a
    buffer twice the challenge's length, and a 2048-bit key signs at most 245 bytes."""
    challenge = await world.api.call("rpc", "auth_ssl", "", Connection("192.0.2.3", "test"))
    assert 128 <= len(challenge["test_string"]) <= 245


@async_test
async def test_a_1024_bit_key_is_refused_with_a_clear_message(world: World) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.raises(ApiError) as raised:
        await _settings(
            world,
            _session(world, "alice", Role.ADMIN),
            action="register_ssl_cert",
            pub_key=_public_pem(small),
        )
    assert raised.value.code == 400
    assert "1024 bits; keys must have at least 2048 bits" in raised.value.message


@async_test
async def test_a_key_may_only_name_an_existing_account(
    world: World, key_2048: rsa.RSAPrivateKey
) -> None:
    """A key for a name nobody has would log in whoever gets that name later."""
    with pytest.raises(ApiError) as raised:
        await _settings(
            world,
            _session(world, "alice", Role.ADMIN),
            action="register_ssl_cert",
            pub_key=_public_pem(key_2048),
            user="nobody",
        )
    assert raised.value.code == 404
    assert "nobody" in raised.value.message
    assert world.auth.keys.list() == {}


@async_test
async def test_an_operator_manages_its_own_keys_only(
    world: World, key_2048: rsa.RSAPrivateKey
) -> None:
    operator = _session(world, "oscar", Role.OPERATOR)
    pem = _public_pem(key_2048)
    for user in ({}, {"user": "oscar"}):
        reply = await _settings(world, operator, action="register_ssl_cert", pub_key=pem, **user)
        assert reply == {}
    assert list(world.auth.keys.list()) == ["oscar"]
    for action in ("register_ssl_cert", "revoke_ssl_cert"):
        with pytest.raises(ApiError) as raised:
            await _settings(world, operator, action=action, pub_key=pem, user="alice")
        assert raised.value.code == 403
        assert "for its own account only" in raised.value.message
    assert list(world.auth.keys.list()) == ["oscar"]
    # Key login works with the key the operator registered for itself.
    client = Connection("192.0.2.3", "test")
    challenge = await world.api.call("rpc", "auth_ssl", "", client)
    signed = sign_challenge(key_2048, challenge["test_string"])
    await world.api.call("rpc", "auth_ssl", {"encrypted_string": signed}, client)
    assert world.auth.caller(client) is not None
    assert await _settings(world, operator, action="revoke_ssl_cert", pub_key=pem) == {}
    assert world.auth.keys.list() == {}
    # Revoking is for the operator's own keys: an admin's key is not found for it.
    admin = _session(world, "alice", Role.ADMIN)
    await _settings(world, admin, action="register_ssl_cert", pub_key=pem)
    with pytest.raises(ApiError) as raised:
        await _settings(world, operator, action="revoke_ssl_cert", pub_key=pem)
    assert raised.value.code == 404
    assert list(world.auth.keys.list()) == ["alice"]


@async_test
async def test_signatures_are_checked_off_the_reactor_thread(
    world: World, key_2048: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return sslauth.recover(*args)

    monkeypatch.setattr(auth_module, "recover", recording)
    world.auth.keys.register("oscar", _public_pem(key_2048))
    client = Connection("192.0.2.3", "test")
    challenge = await world.api.call("rpc", "auth_ssl", "", client)
    signed = sign_challenge(key_2048, challenge["test_string"])
    await world.api.call("rpc", "auth_ssl", {"encrypted_string": signed}, client)
    assert threads and threading.main_thread() not in threads


@async_test
async def test_a_flood_of_challenges_does_not_fail_a_pending_key_login(
    world: World, key_2048: rsa.RSAPrivateKey
) -> None:
    world.auth.keys.register("oscar", _public_pem(key_2048))
    client = Connection("192.0.2.3", "test")
    challenge = await world.api.call("rpc", "auth_ssl", "", client)
    refused = 0
    for n in range(1500):
        try:
            await world.api.call(
                "rpc", "auth_ssl", "", Connection(f"10.0.{n // 256}.{n % 256}", "t")
            )
        except RetryLater as e:
            assert e.code == 429 and e.retry_after >= 1
            refused += 1
    assert refused == 1500 - 999
    signed = sign_challenge(key_2048, challenge["test_string"])
    reply = await world.api.call("rpc", "auth_ssl", {"encrypted_string": signed}, client)
    assert reply[1] == 900
