"""Tests of sysadmd.auth._sources: which accounts log in, and the watcher that ends the
sessions whose account changed since their login (driven by hand and by a LoopingCall on a
Clock)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from authkit import FAST_HASHER
from support import async_test
from test_pam_backend import FakePam, wait_until
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, LoopingCall

from sysadmd.api import Role
from sysadmd.auth import Ended, Sessions
from sysadmd.auth._accounts import ACCOUNTS_FILE, LocalAccounts
from sysadmd.auth._credentials import CredentialChecker, Source, Stamp
from sysadmd.auth._pam import Fingerprint, PamChecker, system_fingerprint
from sysadmd.auth._sources import (
    LOCAL,
    SYSTEM,
    WATCH_INTERVAL,
    AccountWatcher,
    LocalThenSystem,
    build,
    consulted,
    describe,
)
from sysadmd.config import load


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


def watched(sessions: Sessions, user: str, role: Role, stamp: Stamp | None) -> list[Ended]:
    """A new session of ``user`` stamped ``stamp``; the list fills with why it ended."""
    heard: list[Ended] = []
    sessions.watch(sessions.create(user, role, stamp=stamp)[1], heard.append)
    return heard


async def login(
    sessions: Sessions, checker: CredentialChecker, user: str, password: str
) -> list[Ended]:
    """A session made as a password login makes it; the list fills with why it ended."""
    verified = await checker.verify(user, password)
    assert verified is not None, f"{user} cannot log in"
    return watched(sessions, user, verified.role, verified.stamp)


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
    root = system_fingerprint("root")
    assert root is not None
    assert await checker.verify("root", "root pw") == root.verified
    assert root.verified.stamp.source is Source.SYSTEM
    assert await checker.look_up("root") == root.verified
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
    local = await checker.look_up("root")
    assert local is not None and local.stamp.source is Source.LOCAL
    assert await checker.verify("root", "local root pw") == local


# -- the watcher: local accounts ------------------------------------------------------------


def fingerprint(uid: int, role: Role, field: str = "h") -> Fingerprint:
    return Fingerprint(uid, role, field)


@async_test
async def test_changed_local_accounts_lose_their_sessions(
    accounts: LocalAccounts, clock: Clock
) -> None:
    """del, passwd and a role change each end every session of that user, and only theirs;
    an account added under the name of a system account's session ends it too."""
    carol = fingerprint(1005, Role.ADMIN)
    sessions = Sessions(clock)
    watcher = AccountWatcher(
        sessions, reactor, local=accounts, system=True, fingerprint=SystemUsers({"carol": carol})
    )
    alice = [await login(sessions, accounts, "alice", "alice pw") for _ in range(2)]
    oscar = await login(sessions, accounts, "oscar", "oscar pw")
    bob = await login(sessions, accounts, "bob", "bob pw")
    carols = watched(sessions, "carol", Role.ADMIN, carol.stamp)
    await watcher.poll()
    assert alice == [[], []] and oscar == bob == carols == []

    accounts.set_password("alice", "new alice pw")
    await watcher.poll()
    assert alice == [[Ended.REVOKED], [Ended.REVOKED]]
    assert oscar == bob == carols == []

    accounts.set_role("oscar", Role.ADMIN)
    accounts.delete("bob")
    accounts.add("carol", Role.OPERATOR, "carol pw")
    await watcher.poll()
    assert oscar == bob == carols == [Ended.REVOKED]
    assert len(sessions) == 0

    survivor = await login(sessions, accounts, "alice", "new alice pw")
    await watcher.poll()
    assert survivor == []


@async_test
async def test_a_login_after_a_change_survives_the_look_that_sees_it(
    accounts: LocalAccounts, clock: Clock
) -> None:
    """A session checked against the new record (made between the change and the next look)
    stays; one checked against the old record ends. So for passwd, a role change, and an
    account deleted and added again (as ``sysadmd-admin user add`` then a first login)."""
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=False)
    await watcher.poll()
    before = {
        "alice": await login(sessions, accounts, "alice", "alice pw"),
        "oscar": await login(sessions, accounts, "oscar", "oscar pw"),
        "bob": await login(sessions, accounts, "bob", "bob pw"),
    }
    accounts.set_password("alice", "new alice pw")
    accounts.set_role("oscar", Role.ADMIN)
    accounts.delete("bob")
    accounts.add("bob", Role.ADMIN, "bob pw")
    accounts.add("dave", Role.OPERATOR, "dave pw")
    after = {
        "alice": await login(sessions, accounts, "alice", "new alice pw"),
        "oscar": await login(sessions, accounts, "oscar", "oscar pw"),
        "bob": await login(sessions, accounts, "bob", "bob pw"),
        "dave": await login(sessions, accounts, "dave", "dave pw"),
    }
    await watcher.poll()
    assert before == {"alice": [Ended.REVOKED], "oscar": [Ended.REVOKED], "bob": [Ended.REVOKED]}
    assert after == {"alice": [], "oscar": [], "bob": [], "dave": []}
    assert sorted(s.user for s in sessions.live()) == ["alice", "bob", "dave", "oscar"]
    await watcher.poll()
    assert all(heard == [] for heard in after.values())


@async_test
async def test_a_session_begun_during_a_look_waits_for_the_next(
    accounts: LocalAccounts, clock: Clock
) -> None:
    """A look that read the file before a change does not judge a session that logged in
    after the change (against the new record); the next look keeps it."""
    read = threading.Event()
    gate = threading.Event()
    stamps = accounts.stamps_blocking

    def slow_stamps(problems: list[str]) -> dict[str, Stamp] | None:
        found = stamps(problems)
        read.set()
        gate.wait(5)
        return found

    accounts.stamps_blocking = slow_stamps  # type: ignore[method-assign]
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=False)
    old = await login(sessions, accounts, "alice", "alice pw")
    looked = watcher.poll()
    try:
        await wait_until(read.is_set)
        accounts.set_password("alice", "new alice pw")
        new = await login(sessions, accounts, "alice", "new alice pw")
    finally:
        gate.set()
    await looked
    assert old == new == []  # the look read the old record: the old session still matches
    gate.clear()
    read.clear()
    gate.set()
    await watcher.poll()
    assert old == [Ended.REVOKED]
    assert new == []


@async_test
async def test_a_session_without_a_stamp_matches_no_account(
    accounts: LocalAccounts, clock: Clock
) -> None:
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=False)
    zed = watched(sessions, "zed", Role.ADMIN, None)
    alice = watched(sessions, "alice", Role.ADMIN, None)
    await watcher.poll()
    assert alice == [Ended.REVOKED]
    assert zed == []
    accounts.add("zed", Role.ADMIN, "zed pw")
    await watcher.poll()
    assert zed == [Ended.REVOKED]


@async_test
async def test_a_rehash_on_login_is_not_a_change(tmp_path: Path, clock: Clock) -> None:
    weak = LocalAccounts(tmp_path / ACCOUNTS_FILE, reactor, hasher=FAST_HASHER)
    weak.add("alice", Role.ADMIN, "alice pw")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    daemon = LocalAccounts(tmp_path / ACCOUNTS_FILE, reactor, hasher=stronger)
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=daemon, system=False)
    await watcher.poll()
    before = daemon.stamps_blocking([])
    heard = await login(sessions, daemon, "alice", "alice pw")  # stores a new hash
    assert daemon.stamps_blocking([]) != before
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
    alice = await login(sessions, accounts, "alice", "alice pw")
    oscar = await login(sessions, accounts, "oscar", "oscar pw")
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


@async_test
async def test_a_damaged_file_looks_up_no_local_user_in_the_system(
    accounts: LocalAccounts, clock: Clock, errors: list[str]
) -> None:
    """While the file cannot be read, a user who was local at the last good look is not
    taken for a system user (whose account is gone): the session waits."""
    users = SystemUsers({})
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=True, fingerprint=users)
    alice = await login(sessions, accounts, "alice", "alice pw")
    await watcher.poll()
    accounts.path.write_text("[]")
    await watcher.poll()
    assert alice == [] and users.asked == []
    assert len(errors) == 1


# -- the watcher: system accounts -----------------------------------------------------------


@async_test
async def test_changed_system_accounts_lose_their_sessions(
    accounts: LocalAccounts, clock: Clock
) -> None:
    users = SystemUsers(
        {
            "sam": fingerprint(1001, Role.ADMIN, "hash-1"),
            "pat": fingerprint(1002, Role.OPERATOR, "hash-2"),
            "una": fingerprint(1003, Role.OPERATOR, "hash-3"),
            "ted": fingerprint(1004, Role.ADMIN, "hash-4"),
            "ron": fingerprint(1006, Role.OPERATOR, "hash-6"),
        }
    )
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=accounts, system=True, fingerprint=users)
    heard = {
        name: watched(sessions, name, users.users[name].role, users.users[name].stamp)
        for name in ("sam", "pat", "ted", "ron")
    }
    # Logged in while una was an admin; she no longer is.
    heard["una"] = watched(
        sessions, "una", Role.ADMIN, fingerprint(1003, Role.ADMIN, "hash-3").stamp
    )
    heard["alice"] = await login(sessions, accounts, "alice", "alice pw")
    await watcher.poll()
    assert heard["una"] == [Ended.REVOKED]
    assert heard["sam"] == heard["pat"] == heard["ted"] == heard["ron"] == heard["alice"] == []
    assert "alice" not in users.asked  # a local account is never looked up in the system
    users.users["sam"] = fingerprint(1001, Role.ADMIN, "hash-changed")  # a new password
    users.users["pat"] = fingerprint(1002, Role.ADMIN, "hash-2")  # now in wheel
    del users.users["ted"]  # removed, or out of wheel and operator
    accounts.add("ron", Role.OPERATOR, "ron pw")  # a local account now shadows ron
    await watcher.poll()
    assert heard["sam"] == heard["pat"] == heard["ted"] == heard["ron"] == [Ended.REVOKED]
    assert heard["alice"] == []
    asked = len(users.asked)
    await watcher.poll()
    assert len(users.asked) == asked  # only alice holds a session, and she is local


@async_test
async def test_with_pam_alone_every_session_user_is_a_system_user(clock: Clock) -> None:
    users = SystemUsers({"sam": fingerprint(1001, Role.ADMIN)})
    sessions = Sessions(clock)
    watcher = AccountWatcher(sessions, reactor, local=None, system=True, fingerprint=users)
    sam = watched(sessions, "sam", Role.ADMIN, users.users["sam"].stamp)
    await watcher.poll()
    assert sam == []
    users.users["sam"] = fingerprint(2001, Role.ADMIN)  # another account, same name
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
    looked: list[object] = []
    original: Callable[[], Deferred[None]] = watcher.poll

    def counted() -> object:
        polls.append(None)
        return original().addCallback(looked.append)

    loop = LoopingCall(counted)
    loop.clock = clock
    done = loop.start(WATCH_INTERVAL)
    await wait_until(lambda: len(looked) == 1)
    heard = await login(sessions, accounts, "alice", "alice pw")
    accounts.delete("alice")
    assert heard == []
    clock.advance(WATCH_INTERVAL)
    await wait_until(lambda: heard != [])
    assert heard == [Ended.REVOKED]
    assert len(polls) == 2
    loop.stop()
    await done
