"""Tests of sysadmd.account_sources: which accounts log in, and the watcher that ends the
sessions of accounts that change (driven by hand and by a LoopingCall on a Clock)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from authkit import FAST_HASHER
from support import async_test
from test_pam_backend import FakePam, wait_until
from twisted.internet import reactor
from twisted.internet.task import Clock, LoopingCall

from sysadmd.account_sources import (
    LOCAL,
    SYSTEM,
    WATCH_INTERVAL,
    AccountWatcher,
    LocalThenSystem,
    build,
    consulted,
    describe,
)
from sysadmd.accounts import ACCOUNTS_FILE, LocalAccounts
from sysadmd.config import load
from sysadmd.pam_backend import Fingerprint, PamChecker
from sysadmd.roles import Role
from sysadmd.sessions import Ended, Sessions


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture
def accounts(tmp_path: Path) -> LocalAccounts:
    """alice (admin), oscar (operator) and bob (admin), with a cheap hash."""
    accounts = LocalAccounts(tmp_path / ACCOUNTS_FILE, reactor, hasher=FAST_HASHER)
    accounts.add("alice", Role.ADMIN, "alice pw")
    accounts.add("oscar", Role.OPERATOR, "oscar pw")
    accounts.add("bob", Role.ADMIN, "bob pw")
    return accounts


def watched(sessions: Sessions, user: str, role: Role) -> list[Ended]:
    """A new session of ``user``; the list fills with why it ended."""
    heard: list[Ended] = []
    sessions.watch(sessions.create(user, role)[1], heard.append)
    return heard


class SystemUsers:
    """A fake user database: fingerprints by name; records who was looked up."""

    def __init__(self, users: dict[str, Fingerprint]) -> None:
        self.users = users
        self.asked: list[str] = []

    def __call__(self, name: str) -> Fingerprint | None:
        self.asked.append(name)
        return self.users.get(name)


def test_consulted_and_described() -> None:
    assert consulted("auto", simulate=False) == (LOCAL, SYSTEM)
    assert consulted("auto", simulate=True) == (LOCAL,)
    assert consulted("pam", simulate=True) == (SYSTEM,)
    assert consulted("local", simulate=False) == (LOCAL,)
    assert describe((LOCAL, SYSTEM)).startswith("sysadmd's own accounts")
    assert ", then system accounts (PAM" in describe((LOCAL, SYSTEM))


@pytest.mark.parametrize(
    ("backend", "simulate", "kind", "local", "system"),
    [
        ("auto", False, LocalThenSystem, True, True),
        ("auto", True, LocalAccounts, True, False),
        ("local", False, LocalAccounts, True, False),
        ("pam", False, PamChecker, False, True),
    ],
)
def test_build(
    tmp_path: Path, backend: str, simulate: bool, kind: type, local: bool, system: bool
) -> None:
    """On a host, ``auto`` consults sysadmd's own accounts first, then PAM."""
    config = load(
        None,
        {
            "daemon.state_dir": str(tmp_path),
            "auth.backend": backend,
            "iohyve.simulate": simulate,
        },
    )
    built = build(config, reactor)
    assert isinstance(built.checker, kind)
    assert (built.local is not None, built.system) == (local, system)
    assert (tmp_path / "initial-admin-password").exists() == (simulate and local)


# -- local accounts first, then PAM ---------------------------------------------------------


@pytest.fixture
def chain(accounts: LocalAccounts) -> tuple[LocalThenSystem, FakePam]:
    """alice, oscar, bob locally; PAM knows root (uid 0 here, so an admin) with 'root pw'."""
    fake = FakePam({"root": "root pw"})
    return LocalThenSystem(accounts, PamChecker(reactor, authenticator=fake)), fake


@async_test
async def test_local_accounts_log_in_without_pam(chain: tuple[LocalThenSystem, FakePam]) -> None:
    checker, fake = chain
    assert await checker.check("alice", "alice pw") == Role.ADMIN
    assert await checker.check("oscar", "oscar pw") == Role.OPERATOR
    assert fake.calls == []


@async_test
async def test_system_accounts_log_in_through_pam(chain: tuple[LocalThenSystem, FakePam]) -> None:
    checker, fake = chain
    assert await checker.check("root", "root pw") == Role.ADMIN
    assert [(c.username, c.password) for c in fake.calls] == [("root", "root pw")]
    assert await checker.role_of("root") == Role.ADMIN
    assert await checker.role_of("oscar") == Role.OPERATOR
    assert await checker.role_of("no-such-user-here") is None


@async_test
async def test_every_refusal_costs_one_pam_call(chain: tuple[LocalThenSystem, FakePam]) -> None:
    """A local account's wrong password is refused locally and still spends one PAM call
    (with a decoy, never the password given), as a system account's would."""
    checker, fake = chain
    assert await checker.check("alice", "wrong pw") is None
    assert await checker.check("root", "wrong pw") is None
    assert await checker.check("no-such-user-here", "wrong pw") is None
    assert len(fake.calls) == 3
    assert fake.calls[0].password != "wrong pw"
    assert fake.calls[0].username != "alice"


@async_test
async def test_a_local_account_shadows_a_system_account(
    chain: tuple[LocalThenSystem, FakePam], accounts: LocalAccounts
) -> None:
    checker, fake = chain
    accounts.add("root", Role.OPERATOR, "local root pw")
    assert await checker.check("root", "root pw") is None  # the system password is not asked
    assert all(call.password != "root pw" for call in fake.calls)
    assert await checker.check("root", "local root pw") == Role.OPERATOR
    assert await checker.role_of("root") == Role.OPERATOR


# -- the watcher: local accounts ------------------------------------------------------------


@async_test
async def test_changed_local_accounts_lose_their_sessions(
    accounts: LocalAccounts, clock: Clock
) -> None:
    """del, passwd and a role change each end every session of that user, and only theirs;
    an account added under the name of a session's user ends it too."""
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=False)
    await watcher.poll()  # the first look only remembers
    alice = [watched(sessions, "alice", Role.ADMIN) for _ in range(2)]
    oscar = watched(sessions, "oscar", Role.OPERATOR)
    bob = watched(sessions, "bob", Role.ADMIN)
    carol = watched(sessions, "carol", Role.ADMIN)  # as if a system account
    await watcher.poll()
    assert alice == [[], []] and oscar == bob == carol == []

    accounts.set_password("alice", "new alice pw")
    await watcher.poll()
    assert alice == [[Ended.REVOKED], [Ended.REVOKED]]
    assert oscar == bob == carol == []

    accounts.set_role("oscar", Role.ADMIN)
    accounts.delete("bob")
    accounts.add("carol", Role.OPERATOR, "carol pw")
    await watcher.poll()
    assert oscar == bob == carol == [Ended.REVOKED]
    assert len(sessions) == 0

    survivor = watched(sessions, "alice", Role.ADMIN)
    await watcher.poll()
    assert survivor == []


@async_test
async def test_a_rehash_on_login_is_not_a_change(tmp_path: Path, clock: Clock) -> None:
    weak = LocalAccounts(tmp_path / ACCOUNTS_FILE, reactor, hasher=FAST_HASHER)
    weak.add("alice", Role.ADMIN, "alice pw")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    daemon = LocalAccounts(tmp_path / ACCOUNTS_FILE, reactor, hasher=stronger)
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=daemon, system=False)
    await watcher.poll()
    heard = watched(sessions, "alice", Role.ADMIN)
    before = daemon.records_blocking([])
    assert await daemon.check("alice", "alice pw") == Role.ADMIN  # stores a new hash
    assert daemon.records_blocking([]) != before
    await watcher.poll()
    assert heard == []
    daemon.set_password("alice", "another pw")
    await watcher.poll()
    assert heard == [Ended.REVOKED]


@async_test
async def test_a_damaged_file_changes_nothing_until_fixed(
    accounts: LocalAccounts, clock: Clock, errors: list[str]
) -> None:
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=False)
    await watcher.poll()
    alice = watched(sessions, "alice", Role.ADMIN)
    oscar = watched(sessions, "oscar", Role.OPERATOR)
    good = accounts.path.read_bytes()
    accounts.path.write_text("{\n")
    await watcher.poll()
    await watcher.poll()
    assert alice == oscar == []
    assert len(errors) == 1 and "not valid JSON" in errors[0]  # said once, not every second
    accounts.path.write_bytes(good)
    accounts.set_password("alice", "new alice pw")
    await watcher.poll()
    assert alice == [Ended.REVOKED]
    assert oscar == []


# -- the watcher: system accounts -----------------------------------------------------------


@async_test
async def test_changed_system_accounts_lose_their_sessions(
    accounts: LocalAccounts, clock: Clock
) -> None:
    sam = Fingerprint(1001, Role.ADMIN, "hash-1")
    users = SystemUsers(
        {
            "sam": sam,
            "pat": Fingerprint(1002, Role.OPERATOR, "hash-2"),
            "una": Fingerprint(1003, Role.OPERATOR, "hash-3"),
            "ted": Fingerprint(1004, Role.ADMIN, "hash-4"),
        }
    )
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=True, fingerprint=users)
    await watcher.poll()
    heard = {
        name: watched(sessions, name, role)
        for name, role in [
            ("sam", Role.ADMIN),
            ("pat", Role.OPERATOR),
            ("una", Role.ADMIN),  # no longer an admin at the first look
            ("ted", Role.ADMIN),
            ("alice", Role.ADMIN),  # a local account: never looked up in the system
        ]
    }
    await watcher.poll()
    assert heard["una"] == [Ended.REVOKED]
    assert heard["sam"] == heard["pat"] == heard["ted"] == heard["alice"] == []
    users.users["sam"] = Fingerprint(1001, Role.ADMIN, "hash-changed")  # a new password
    users.users["pat"] = Fingerprint(1002, Role.ADMIN, "hash-2")  # now in wheel
    del users.users["ted"]  # removed, or out of wheel and operator
    await watcher.poll()
    assert heard["sam"] == heard["pat"] == heard["ted"] == [Ended.REVOKED]
    assert heard["alice"] == []
    assert "alice" not in users.asked
    asked = len(users.asked)
    await watcher.poll()
    assert len(users.asked) == asked  # only alice holds a session, and she is local


@async_test
async def test_with_pam_alone_every_session_user_is_a_system_user(clock: Clock) -> None:
    users = SystemUsers({"sam": Fingerprint(1001, Role.ADMIN, "h")})
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=None, system=True, fingerprint=users)
    sam = watched(sessions, "sam", Role.ADMIN)
    await watcher.poll()
    users.users["sam"] = Fingerprint(2001, Role.ADMIN, "h")  # another account, same name
    await watcher.poll()
    assert sam == [Ended.REVOKED]
    assert users.asked == ["sam", "sam"]


# -- on the clock ---------------------------------------------------------------------------


@async_test
async def test_the_watcher_runs_every_interval_on_the_clock(
    accounts: LocalAccounts, clock: Clock
) -> None:
    """As the daemon runs it: a LoopingCall on the injected clock, every WATCH_INTERVAL."""
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=False)
    polls: list[object] = []
    original: Callable[[], object] = watcher.poll

    def counted() -> object:
        polls.append(None)
        return original()

    loop = LoopingCall(counted)
    loop.clock = clock
    done = loop.start(WATCH_INTERVAL)
    await wait_until(lambda: watcher._records is not None)
    heard = watched(sessions, "alice", Role.ADMIN)
    accounts.delete("alice")
    assert heard == []
    clock.advance(WATCH_INTERVAL)
    await wait_until(lambda: heard != [])
    assert heard == [Ended.REVOKED]
    assert len(polls) == 2
    loop.stop()
    await done
