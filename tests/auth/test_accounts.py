"""Tests of sysadmd.auth._accounts: the local account database and its credential checks.

Most tests use a cheap argon2 hasher (``FAST``) so that the suite stays fast; one test shows
that the default is argon2's own parameters. ``check()`` runs on the real reactor and its
thread pool (pytest-twisted).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import argon2
import pytest
from support import async_test
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults

from sysadmd.api import Role
from sysadmd.auth._accounts import (
    ACCOUNTS_FILE,
    INITIAL_PASSWORD_FILE,
    AccountError,
    LocalAccounts,
    ensure_initial_admin,
    record_stamp,
)
from sysadmd.auth._credentials import Source, Stamp

FAST_PARAMETERS: dict[str, Any] = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
WAIT_LIMIT = 5.0


class SpyHasher(argon2.PasswordHasher):
    """A cheap hasher that records every hash it verifies against."""

    def __init__(self, **parameters: Any) -> None:
        super().__init__(**(parameters or FAST_PARAMETERS))
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        """Record ``hash``, then verify as argon2 does."""
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


class GatedHasher(SpyHasher):
    """A hasher whose ``verify`` waits for the test to open a gate, counting who waits."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        """Wait at the gate (bounded, so a bug cannot hang the run), then verify."""
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        try:
            self.gate.wait(WAIT_LIMIT)
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.inside -= 1


@pytest.fixture
def hasher() -> SpyHasher:
    """A cheap spying hasher."""
    return SpyHasher()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the database lives; the file does not exist yet."""
    return tmp_path / "state" / ACCOUNTS_FILE


@pytest.fixture
def accounts(path: Path, hasher: SpyHasher) -> LocalAccounts:
    """An empty database with the cheap spying hasher."""
    return LocalAccounts(path, hasher=hasher)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the reactor run until ``condition()`` holds (fail after WAIT_LIMIT seconds)."""
    from twisted.internet import reactor  # noqa: PLC0415 - installed by pytest-twisted

    for _ in range(int(WAIT_LIMIT / 0.01)):
        if condition():
            return
        await task.deferLater(reactor, 0.01)
    pytest.fail("condition not reached in time")


def outcomes(pending: list[Deferred[Role | None]]) -> list[Role | None]:
    """A list that fills with the results of ``pending`` as they fire."""
    seen: list[Role | None] = []

    def record(result: Role | None) -> Role | None:
        seen.append(result)
        return result

    for d in pending:
        d.addCallback(record)
    return seen


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


# -- management ---------------------------------------------------------------------------


def test_add_list_passwd_delete(accounts: LocalAccounts) -> None:
    assert accounts.is_empty()
    assert accounts.users() == []
    accounts.add("bob", Role.OPERATOR, "bob's password")
    accounts.add("alice", Role.ADMIN, "alice's password")
    assert not accounts.is_empty()
    assert accounts.users() == [("alice", Role.ADMIN), ("bob", Role.OPERATOR)]
    old = json.loads(accounts.path.read_text())["users"]["bob"]["hash"]
    accounts.set_password("bob", "a new one")
    new = json.loads(accounts.path.read_text())["users"]["bob"]["hash"]
    assert new != old
    assert accounts.users() == [("alice", Role.ADMIN), ("bob", Role.OPERATOR)]
    accounts.delete("alice")
    assert accounts.users() == [("bob", Role.OPERATOR)]
    accounts.delete("bob")
    assert accounts.is_empty()


def test_errors_for_existing_and_unknown_users(accounts: LocalAccounts) -> None:
    accounts.add("alice", Role.ADMIN, "secret")
    with pytest.raises(AccountError, match=r"^user alice already exists$"):
        accounts.add("alice", Role.OPERATOR, "other")
    with pytest.raises(AccountError, match=r"^no such user: bob$"):
        accounts.delete("bob")
    with pytest.raises(AccountError, match=r"^no such user: bob$"):
        accounts.set_password("bob", "secret")
    with pytest.raises(AccountError, match="role"):
        accounts.add("bob", Role.PUBLIC, "secret")
    assert accounts.users() == [("alice", Role.ADMIN)]


@pytest.mark.parametrize(
    "name", ["", "Alice", "1st", "-x", ".x", "a b", "alice\n", "../etc", "é", "a" * 33]
)
def test_invalid_names(accounts: LocalAccounts, name: str) -> None:
    with pytest.raises(AccountError, match="invalid user name") as caught:
        accounts.add(name, Role.ADMIN, "secret")
    assert "\n" not in str(caught.value)
    assert accounts.is_empty()


def test_name_limits(accounts: LocalAccounts) -> None:
    accounts.add("a" * 32, Role.ADMIN, "secret")
    accounts.add("_x.y-z9", Role.OPERATOR, "secret")
    assert [name for name, _ in accounts.users()] == ["_x.y-z9", "a" * 32]


@pytest.mark.parametrize(
    ("password", "message"),
    [("", "empty"), ("x" * 1025, "longer than 1024"), ("pass\0word", "NUL")],
)
def test_invalid_passwords(accounts: LocalAccounts, password: str, message: str) -> None:
    with pytest.raises(AccountError, match=message) as caught:
        accounts.add("alice", Role.ADMIN, password)
    assert password not in str(caught.value) or not password
    accounts.add("alice", Role.ADMIN, "x" * 1024)
    with pytest.raises(AccountError, match=message):
        accounts.set_password("alice", password)


def test_file_is_private_and_holds_only_hashes(
    accounts: LocalAccounts, path: Path, hasher: SpyHasher
) -> None:
    old_umask = os.umask(0)
    try:
        accounts.add("alice", Role.ADMIN, "correct horse")
        accounts.add("bob", Role.OPERATOR, "battery staple")
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    lock = path.with_name(path.name + ".lock")
    assert mode(lock) == 0o600
    assert mode(path.parent) == 0o700
    # No temporary file is left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, lock.name]
    text = path.read_text()
    assert "correct horse" not in text
    assert "battery staple" not in text
    users = json.loads(text)["users"]
    assert {name: entry["role"] for name, entry in users.items()} == {
        "alice": "admin",
        "bob": "operator",
    }
    for entry in users.values():
        assert entry["hash"].startswith("$argon2id$")
    assert hasher.verify(users["alice"]["hash"], "correct horse")


def test_a_change_makes_a_loose_file_private(accounts: LocalAccounts, path: Path) -> None:
    accounts.add("alice", Role.ADMIN, "secret")
    path.chmod(0o644)
    accounts.add("bob", Role.ADMIN, "secret")
    assert mode(path) == 0o600


def test_default_hasher_uses_argon2_defaults(path: Path) -> None:
    LocalAccounts(path).add("alice", Role.ADMIN, "secret")
    stored = json.loads(path.read_text())["users"]["alice"]["hash"]
    defaults = argon2.PasswordHasher()
    parameters = argon2.extract_parameters(stored)
    assert parameters.type is argon2.Type.ID
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (
        defaults.time_cost,
        defaults.memory_cost,
        defaults.parallelism,
    )


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "[]",
        '{"version": 2, "users": {}}',
        '{"version": 1, "users": {"Alice": {"role": "admin", "hash": "$argon2id$x"}}}',
        '{"version": 1, "users": {"alice": {"role": "public", "hash": "$argon2id$x"}}}',
        '{"version": 1, "users": {"alice": {"role": "admin", "hash": "plain"}}}',
    ],
)
def test_a_damaged_file_is_reported_and_kept(
    accounts: LocalAccounts, path: Path, content: str
) -> None:
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(AccountError, match=str(path)):
        accounts.users()
    with pytest.raises(AccountError):
        accounts.add("bob", Role.ADMIN, "secret")
    assert path.read_text() == content


# -- checking logins ----------------------------------------------------------------------


@async_test
async def test_check_gives_the_role_only_for_the_right_password(
    accounts: LocalAccounts, hasher: SpyHasher
) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    accounts.add("bob", Role.OPERATOR, "bob pw")
    assert await accounts.check("alice", "alice pw") == Role.ADMIN
    assert await accounts.check("bob", "bob pw") == Role.OPERATOR
    assert await accounts.check("alice", "bob pw") is None
    assert await accounts.check("alice", "alice pw ") is None
    assert await accounts.check("carol", "alice pw") is None
    accounts.delete("alice")
    assert await accounts.check("alice", "alice pw") is None


@async_test
async def test_role_of_reads_the_current_file(
    accounts: LocalAccounts, path: Path, hasher: SpyHasher
) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    assert await accounts.role_of("alice") == Role.ADMIN
    assert await accounts.role_of("bob") is None
    assert await accounts.role_of("Bad Name") is None
    LocalAccounts(path, hasher=SpyHasher()).add("bob", Role.OPERATOR, "bob pw")
    assert await accounts.role_of("bob") == Role.OPERATOR
    accounts.delete("alice")
    assert await accounts.role_of("alice") is None
    assert hasher.verified == []


def test_the_reactor_must_provide_threads(path: Path) -> None:
    with pytest.raises(TypeError):
        LocalAccounts(path, object())


@async_test
async def test_unknown_user_costs_a_verification_like_a_wrong_password(
    accounts: LocalAccounts, hasher: SpyHasher
) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    stored = json.loads(accounts.path.read_text())["users"]["alice"]["hash"]
    hasher.verified.clear()

    assert await accounts.check("alice", "wrong") is None
    assert hasher.verified == [stored]

    hasher.verified.clear()
    assert await accounts.check("nobody", "wrong") is None
    assert await accounts.check("nobody2", "alice pw") is None
    # One real argon2 verification each, against a dummy hash of the same parameters.
    assert len(hasher.verified) == 2
    dummy = hasher.verified[0]
    assert hasher.verified == [dummy, dummy]
    assert dummy != stored
    assert dummy.startswith("$argon2id$")
    assert argon2.extract_parameters(dummy) == argon2.extract_parameters(stored)


@async_test
async def test_check_refuses_impossible_input_without_work(
    accounts: LocalAccounts, hasher: SpyHasher
) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    hasher.verified.clear()
    for username, password in [
        ("alice", ""),
        ("alice", "x" * 1025),
        ("alice", "alice pw\0"),
        ("Alice", "alice pw"),
        ("", "alice pw"),
    ]:
        d = accounts.check(username, password)
        assert d.called
        assert await d is None
    assert hasher.verified == []


@async_test
async def test_changes_by_another_instance_are_seen_without_restart(
    accounts: LocalAccounts, path: Path
) -> None:
    daemon = accounts
    cli = LocalAccounts(path, hasher=SpyHasher())
    assert await daemon.check("carol", "carol pw") is None
    cli.add("carol", Role.OPERATOR, "carol pw")
    assert await daemon.check("carol", "carol pw") == Role.OPERATOR
    cli.set_password("carol", "changed")
    assert await daemon.check("carol", "carol pw") is None
    assert await daemon.check("carol", "changed") == Role.OPERATOR
    cli.delete("carol")
    assert await daemon.check("carol", "changed") is None


@async_test
async def test_right_password_rehashes_outdated_parameters(path: Path) -> None:
    LocalAccounts(path, hasher=SpyHasher()).add("alice", Role.ADMIN, "alice pw")
    stronger = SpyHasher(time_cost=2, memory_cost=16, parallelism=1)
    accounts = LocalAccounts(path, hasher=stronger)

    def stored() -> str:
        hashed: str = json.loads(path.read_text())["users"]["alice"]["hash"]
        return hashed

    assert stronger.check_needs_rehash(stored())
    assert await accounts.check("alice", "wrong") is None
    assert stronger.check_needs_rehash(stored())
    assert await accounts.check("alice", "alice pw") == Role.ADMIN
    assert not stronger.check_needs_rehash(stored())
    assert mode(path) == 0o600
    assert await accounts.check("alice", "alice pw") == Role.ADMIN


@async_test
async def test_a_damaged_file_lets_nobody_in_and_is_logged_once(
    accounts: LocalAccounts, path: Path, errors: list[str]
) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    assert await accounts.check("alice", "alice pw") == Role.ADMIN
    path.write_text('{"version": 1, "users": {"alice": {"role": "admin"}}}')
    assert await accounts.check("alice", "alice pw") is None
    assert await accounts.check("alice", "alice pw") is None
    assert len(errors) == 1
    assert str(path) in errors[0]
    assert "alice pw" not in errors[0]


@async_test
async def test_a_loose_file_mode_is_logged(
    accounts: LocalAccounts, path: Path, errors: list[str]
) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    path.chmod(0o644)
    assert await accounts.check("alice", "alice pw") == Role.ADMIN
    assert len(errors) == 1
    assert "0644" in errors[0]


@async_test
async def test_check_never_blocks_the_reactor_and_caps_concurrency(path: Path) -> None:
    hasher = GatedHasher()
    accounts = LocalAccounts(path, hasher=hasher, max_concurrent=2)
    accounts.add("alice", Role.ADMIN, "alice pw")
    try:
        pending: list[Deferred[Role | None]] = [
            accounts.check("alice", "alice pw"),
            accounts.check("alice", "wrong"),
            accounts.check("nobody", "alice pw"),
            accounts.check("alice", "alice pw"),
        ]
        fired = outcomes(pending)
        # check() came back at once although every verification is stuck at the gate.
        assert fired == []
        await wait_until(lambda: hasher.inside == 2)
        assert fired == []
    finally:
        hasher.gate.set()
    results = await gatherResults(pending)
    assert results == [Role.ADMIN, None, None, Role.ADMIN]
    assert hasher.peak == 2


# -- the first admin ----------------------------------------------------------------------


@async_test
async def test_initial_admin_is_created_once(
    accounts: LocalAccounts, path: Path, tmp_path: Path
) -> None:
    state = path.parent
    created = ensure_initial_admin(accounts, state)
    assert created == state / INITIAL_PASSWORD_FILE
    assert mode(created) == 0o600
    content = created.read_text()
    assert content.endswith("\n")
    password = content.removesuffix("\n")
    assert len(password) >= 24
    assert "\n" not in password
    assert accounts.users() == [("admin", Role.ADMIN)]
    assert await accounts.check("admin", password) == Role.ADMIN

    assert ensure_initial_admin(accounts, state) is None
    assert created.read_text() == content
    assert accounts.users() == [("admin", Role.ADMIN)]


def test_no_initial_admin_when_an_account_exists(accounts: LocalAccounts, path: Path) -> None:
    accounts.add("alice", Role.OPERATOR, "alice pw")
    assert ensure_initial_admin(accounts, path.parent) is None
    assert not (path.parent / INITIAL_PASSWORD_FILE).exists()
    assert accounts.users() == [("alice", Role.OPERATOR)]


def test_initial_admin_passwords_differ(tmp_path: Path) -> None:
    passwords = set()
    for name in ("one", "two"):
        state = tmp_path / name
        created = ensure_initial_admin(
            LocalAccounts(state / ACCOUNTS_FILE, hasher=SpyHasher()), state
        )
        assert created is not None
        passwords.add(created.read_text())
    assert len(passwords) == 2


@pytest.mark.parametrize("change", ["passwd", "del"])
def test_the_initial_password_file_goes_once_it_logs_nobody_in(
    accounts: LocalAccounts, path: Path, change: str
) -> None:
    """The file is removed when the admin's password changes or the admin is deleted."""
    state = path.parent
    created = ensure_initial_admin(accounts, state)
    assert created is not None
    accounts.add("alice", Role.ADMIN, "alice pw")
    accounts.set_password("alice", "other pw")
    accounts.set_role("alice", Role.OPERATOR)
    assert created.exists()  # other accounts' changes leave it
    accounts.set_role("admin", Role.OPERATOR)
    assert created.exists()  # a new role keeps the password, which still logs in
    if change == "passwd":
        accounts.set_password("admin", "chosen pw")
    else:
        accounts.delete("admin")
    assert not created.exists()
    if change == "del":
        accounts.add("admin", Role.ADMIN, "again pw")
    accounts.set_password("admin", "chosen again")  # no file left: nothing to remove


def test_set_role(accounts: LocalAccounts) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")

    def stored() -> str:
        hashed: str = json.loads(accounts.path.read_text())["users"]["alice"]["hash"]
        return hashed

    hashed = stored()
    accounts.set_role("alice", Role.OPERATOR)
    assert accounts.users() == [("alice", Role.OPERATOR)]
    assert stored() == hashed  # the password stays
    with pytest.raises(AccountError, match="no such user: bob"):
        accounts.set_role("bob", Role.ADMIN)
    with pytest.raises(AccountError, match="invalid role"):
        accounts.set_role("alice", Role.PUBLIC)


@async_test
async def test_check_local_says_whether_the_account_exists(accounts: LocalAccounts) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    known, verified = await accounts.check_local("alice", "alice pw")
    assert known and verified is not None and verified.role == Role.ADMIN
    assert await accounts.check_local("alice", "wrong") == (True, None)
    assert await accounts.check_local("bob", "wrong") == (False, None)
    assert await accounts.check_local("Bad Name", "x") == (False, None)


def test_stamps_of_a_damaged_file_are_none(accounts: LocalAccounts, path: Path) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    stamps = accounts.stamps_blocking([])
    assert stamps is not None and list(stamps) == ["alice"]
    path.write_text("[]")
    problems: list[str] = []
    assert accounts.stamps_blocking(problems) is None
    assert problems and "not a sysadmd account database" in problems[0]


# -- stamps ---------------------------------------------------------------------------------


def current_stamps(accounts: LocalAccounts) -> dict[str, Stamp]:
    stamps = accounts.stamps_blocking([])
    assert stamps is not None
    return stamps


@async_test
async def test_a_login_is_stamped_with_the_record_it_was_checked_against(
    accounts: LocalAccounts,
) -> None:
    """The stamp of a password or key login is that of the current record; passwd, role and
    delete-and-add (same password, same role) each give the record another stamp."""
    accounts.add("alice", Role.ADMIN, "alice pw")
    verified = await accounts.verify("alice", "alice pw")
    assert verified is not None and verified.role == Role.ADMIN
    first = current_stamps(accounts)["alice"]
    assert verified.stamp == first and verified.stamp.source is Source.LOCAL
    assert await accounts.look_up("alice") == verified
    seen = {first}
    for change in ("passwd", "role", "re-add"):
        if change == "passwd":
            accounts.set_password("alice", "alice pw")
        elif change == "role":
            accounts.set_role("alice", Role.OPERATOR)
        else:
            accounts.delete("alice")
            accounts.add("alice", Role.OPERATOR, "alice pw")
        verified = await accounts.verify("alice", "alice pw")
        assert verified is not None
        assert verified.stamp == current_stamps(accounts)["alice"]
        assert verified.stamp not in seen, change
        seen.add(verified.stamp)
        assert await accounts.look_up("alice") == verified
    assert await accounts.verify("alice", "wrong") is None
    assert await accounts.look_up("bob") is None


def test_a_stamp_keeps_no_hash(accounts: LocalAccounts) -> None:
    accounts.add("alice", Role.ADMIN, "alice pw")
    hashed = json.loads(accounts.path.read_text())["users"]["alice"]["hash"]
    stamp = current_stamps(accounts)["alice"]
    assert stamp == record_stamp(Role.ADMIN, hashed)
    assert hashed not in repr(stamp) and hashed not in stamp.digest


@async_test
async def test_a_rehash_stamps_the_login_with_the_new_record(path: Path) -> None:
    LocalAccounts(path, hasher=SpyHasher()).add("alice", Role.ADMIN, "alice pw")
    stronger = SpyHasher(time_cost=2, memory_cost=16, parallelism=1)
    accounts = LocalAccounts(path, hasher=stronger)
    before = current_stamps(accounts)["alice"]
    verified = await accounts.verify("alice", "alice pw")  # stores a new hash
    assert verified is not None
    assert verified.stamp != before
    assert verified.stamp == current_stamps(accounts)["alice"]


def test_a_concurrent_rehash_stamps_the_record_the_password_matches(path: Path) -> None:
    """Two logins verified the outdated hash; the first stored a new one. The second then
    learns that its password matches the new record too and takes that record's stamp; a
    record changed to another password keeps the one it verified (the session will end)."""
    LocalAccounts(path, hasher=SpyHasher()).add("alice", Role.ADMIN, "alice pw")
    stronger = SpyHasher(time_cost=2, memory_cost=16, parallelism=1)
    first = LocalAccounts(path, hasher=stronger)
    second = LocalAccounts(path, hasher=stronger)
    verified = second._snapshot([])["alice"]
    outcome = first._check_blocking("alice", "alice pw")
    assert outcome.verified is not None
    assert outcome.verified.stamp != verified.stamp  # the first login rehashed
    after = second._rehash("alice", verified, "alice pw")
    assert after.stamp == outcome.verified.stamp == current_stamps(second)["alice"]
    first.set_password("alice", "another pw")
    assert second._rehash("alice", verified, "alice pw") is verified
