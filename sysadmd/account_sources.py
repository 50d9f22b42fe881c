"""Whose passwords the daemon checks, and ending the sessions of accounts that change.

``auth.backend`` chooses the accounts that may log in:

* ``local``: sysadmd's own accounts (:class:`~sysadmd.accounts.LocalAccounts`, managed with
  ``sysadmd-admin``);
* ``pam``: system accounts (:class:`~sysadmd.pam_backend.PamChecker`, sysadm's group rules);
* ``auto`` (the default): both on a real host, sysadmd's own accounts first
  (:class:`LocalThenSystem`); in simulate mode sysadmd's own accounts only.

A name that is one of sysadmd's own accounts is decided by that account alone: a system
account of the same name cannot log in with its system password. Every refusal costs one
argon2 verification and one PAM authentication, whichever kind of account the name is.

:class:`AccountWatcher` ends sessions whose account changed, whichever process changed it:
every second it stats the account database (re-reading it only when it changed) and
re-checks the system accounts that hold sessions, in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.accounts import ACCOUNTS_FILE, LocalAccounts, Record, ensure_initial_admin
from sysadmd.config import Config
from sysadmd.credentials import CredentialChecker, ThreadedWork
from sysadmd.pam_backend import Fingerprint, PamChecker, system_fingerprint
from sysadmd.roles import Role
from sysadmd.sessions import Ended, Sessions

LOCAL: Final = "local"
SYSTEM: Final = "pam"
#: How the accounts each backend consults are named to an operator.
NAMES: Final = {
    LOCAL: f"sysadmd's own accounts (sysadmd-admin, <state_dir>/{ACCOUNTS_FILE})",
    SYSTEM: "system accounts (PAM: root and wheel are admins, operator are operators)",
}
#: Seconds between two looks at the accounts behind the sessions.
WATCH_INTERVAL: Final = 1.0

log = Logger()


def consulted(backend: str, simulate: bool) -> tuple[str, ...]:
    """The backends the daemon asks, in order, for ``auth.backend`` and simulate mode."""
    if backend == "auto":
        return (LOCAL,) if simulate else (LOCAL, SYSTEM)
    return (backend,)


def describe(backends: Collection[str]) -> str:
    """The backends in words, in the order they are asked."""
    return ", then ".join(NAMES[b] for b in backends)


class LocalThenSystem(CredentialChecker):
    """sysadmd's own accounts first, then system accounts through PAM.

    A name in the account database is checked there only; a wrong password for it then
    spends one failing PAM authentication too, so that its refusal takes as long as that
    of a system account or an unknown name.
    """

    def __init__(self, local: LocalAccounts, system: PamChecker) -> None:
        self.local = local
        self.system = system

    def check(self, username: str, password: str) -> Deferred[Role | None]:
        """The role of ``username`` if ``password`` is right (see the class)."""
        return ensureDeferred(self._check(username, password))

    async def _check(self, username: str, password: str) -> Role | None:
        known, role = await self.local.check_local(username, password)
        if not known:
            return await self.system.check(username, password)
        if role is None:
            await self.system.refuse(password)
        return role

    def plausible(self, username: str, password: str) -> bool:
        """Whether :meth:`check` would hash: either kind of account could hold these."""
        return self.local.plausible(username, password) or self.system.plausible(username, password)

    def role_of(self, username: str) -> Deferred[Role | None]:
        """The role of the account ``username``: sysadmd's own, else the system's."""
        return ensureDeferred(self._role_of(username))

    async def _role_of(self, username: str) -> Role | None:
        role = await self.local.role_of(username)
        if role is not None:
            return role
        return await self.system.role_of(username)


@dataclass(frozen=True)
class Backends:
    """The checker the daemon logs users in with, and the account sources behind it."""

    names: tuple[str, ...]
    checker: CredentialChecker
    local: LocalAccounts | None
    system: bool


def build(config: Config, reactor: Any) -> Backends:
    """The backends ``config`` asks for; in simulate mode, a first ``admin`` if none exists."""
    names = consulted(config.auth_backend, config.iohyve_simulate)
    local = LocalAccounts(config.state_dir / ACCOUNTS_FILE, reactor) if LOCAL in names else None
    system = PamChecker(reactor) if SYSTEM in names else None
    if local is not None and config.iohyve_simulate:
        created = ensure_initial_admin(local, config.state_dir)
        if created is not None:
            log.info("Created the account 'admin'; its password is in {path}", path=str(created))
    checker: CredentialChecker
    if local is not None and system is not None:
        checker = LocalThenSystem(local, system)
    elif local is not None:
        checker = local
    else:
        checker = system or PamChecker(reactor)
    log.info("Logins are checked against {backends}", backends=describe(names))
    return Backends(names, checker, local, system is not None)


@dataclass
class _Seen:
    """What one look found, handed from the worker thread to the reactor thread."""

    #: Every local account's role and hash; None if not consulted or not readable.
    records: dict[str, Record] | None = None
    #: Each system user who holds sessions: its fingerprint (None: gone, or no role).
    system: dict[str, Fingerprint | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class AccountWatcher:
    """Ends the sessions of every account that was removed or changed.

    Local accounts: the first look remembers every account's role and hash; each later
    look compares, and a user whose record appeared, disappeared, or has another role or
    hash loses every session (a rehash the daemon made itself on a login is not a change).
    A damaged or unreadable file changes nothing: the watcher compares the next good
    version with the last good one.

    System accounts (when PAM is consulted): each user with sessions who is not a local
    account is looked up again; a user who is gone, no longer has the role of a session,
    or whose uid or password field changed since the previous look loses every session.

    :param sessions: the session table.
    :param reactor: provides ``IReactorThreads``; the looks run in its thread pool.
    :param local: the account database, or None when it is not consulted.
    :param system: whether system accounts are consulted.
    :param fingerprint: looks up a system account (tests pass a fake).
    """

    def __init__(
        self,
        sessions: Sessions,
        reactor: Any,
        *,
        local: LocalAccounts | None,
        system: bool,
        fingerprint: Callable[[str], Fingerprint | None] = system_fingerprint,
    ) -> None:
        self._sessions = sessions
        self._threads = ThreadedWork(reactor, 1)
        self._local = local
        self._system = system
        self._fingerprint = fingerprint
        self._records: dict[str, Record] | None = None
        self._fingerprints: dict[str, Fingerprint] = {}
        self._last_problems: list[str] = []

    def poll(self) -> Deferred[None]:
        """Look once; fires when done, never with a failure (for a ``LoopingCall``)."""
        held = list(self._sessions.users())
        known = set(self._records or ())
        looked = self._threads.run(lambda: self._look(held, known))
        return looked.addCallback(self._compare).addErrback(self._failed)

    def _look(self, held: list[str], known: set[str]) -> _Seen:
        """The part of :meth:`poll` that runs in a worker thread."""
        seen = _Seen()
        if self._local is not None:
            seen.records = self._local.records_blocking(seen.problems)
            if seen.records is not None:
                known = set(seen.records)
        if self._system:
            for user in held:
                if user not in known:
                    seen.system[user] = self._fingerprint(user)
        return seen

    def _failed(self, failure: Failure) -> None:
        log.failure("Checking the accounts behind the sessions failed", failure)

    def _compare(self, seen: _Seen) -> None:
        if seen.problems != self._last_problems:
            for problem in seen.problems:
                log.error("Local accounts: {problem}", problem=problem)
            self._last_problems = seen.problems
        if seen.records is not None:
            if self._records is not None:
                for user in sorted(self._records.keys() | seen.records.keys()):
                    if self._changed(self._records.get(user), seen.records.get(user)):
                        self._revoke(user, "the account changed or was removed")
            self._records = seen.records
        held = self._sessions.users()
        for user, now in seen.system.items():
            roles = held.get(user)
            if roles is None:
                continue
            before = self._fingerprints.get(user)
            if now is None or roles != {now.role} or (before is not None and before != now):
                self._fingerprints.pop(user, None)
                self._revoke(user, "the system account changed or lost its role")
            else:
                self._fingerprints[user] = now
        for user in list(self._fingerprints):
            if user not in held:
                del self._fingerprints[user]

    def _changed(self, before: Record | None, after: Record | None) -> bool:
        if before == after:
            return False
        if before is None or after is None or before[0] != after[0]:
            return True
        # The same role and another hash: a new password, unless the daemon rehashed it.
        return self._local is None or self._local.rehashed_from(after[1]) != before[1]

    def _revoke(self, user: str, why: str) -> None:
        ended = self._sessions.revoke_user(user, Ended.REVOKED)
        if ended:
            log.info("Ended {count} session(s) of {user}: {why}", count=ended, user=user, why=why)
