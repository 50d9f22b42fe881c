"""Which accounts the daemon logs in, and ending the sessions of accounts that change.

``auth.backend`` chooses the accounts that may log in:

* ``local``: sysadmd's own accounts (:class:`~sysadmd.auth._accounts.LocalAccounts`, managed with
  ``sysadmd-admin``);
* ``pam``: system accounts (:class:`~sysadmd.auth._pam.PamChecker`, sysadm's group rules);
* ``auto`` (the default): both on a real host, sysadmd's own accounts first
  (:class:`LocalThenSystem`); in simulate mode sysadmd's own accounts only.

A name that is one of sysadmd's own accounts is decided by that account alone: a system
account of the same name cannot log in with its system password. Every refusal costs one
argon2 verification and one PAM authentication, whichever kind of account the name is.

Every session carries the :class:`~sysadmd.auth._credentials.Stamp` of the account version its
login was checked against. :class:`AccountWatcher` ends the sessions whose stamp is no longer
their account's, whichever process changed it: every second it stats the account database
(re-reading it only when it changed) and re-reads the system accounts that hold sessions, in
a worker thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.auth._accounts import ACCOUNTS_FILE, LocalAccounts, ensure_initial_admin
from sysadmd.auth._credentials import CredentialChecker, Source, Stamp, ThreadedWork, Verified
from sysadmd.auth._pam import Fingerprint, PamChecker, system_fingerprint
from sysadmd.auth._sessions import Ended, Session, Sessions
from sysadmd.config import Config

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

    def verify(self, username: str, password: str) -> Deferred[Verified | None]:
        """The role and stamp of ``username`` if ``password`` is right (see the class)."""
        return ensureDeferred(self._verify(username, password))

    async def _verify(self, username: str, password: str) -> Verified | None:
        known, verified = await self.local.check_local(username, password)
        if not known:
            return await self.system.verify(username, password)
        if verified is None:
            await self.system.refuse(password)
        return verified

    def plausible(self, username: str, password: str) -> bool:
        """Whether :meth:`verify` would hash: either kind of account could hold these."""
        return self.local.plausible(username, password) or self.system.plausible(username, password)

    def look_up(self, username: str) -> Deferred[Verified | None]:
        """The role and stamp of the account ``username``: sysadmd's own, else the system's."""
        return ensureDeferred(self._look_up(username))

    async def _look_up(self, username: str) -> Verified | None:
        verified = await self.local.look_up(username)
        if verified is not None:
            return verified
        return await self.system.look_up(username)


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

    #: Every local account's current stamp; None if not consulted or not readable.
    local: dict[str, Stamp] | None = None
    #: Each system user who holds sessions and has no local account: the current stamp
    #: (None: gone, or without a role).
    system: dict[str, Stamp | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class AccountWatcher:
    """Ends every session whose account is no longer the version its login was checked against.

    Each look takes the sessions that live when it starts; it then reads every local
    account's stamp (the file is re-read only when it changed) and, when PAM is consulted,
    the system account of each of those sessions' users who has no local account. Back on
    the reactor thread, each of those sessions still alive is compared with its user's
    account now: the local record's stamp if there is one, else the system account's (none
    when it is gone or has no role). A session whose stamp differs ends: the password, role
    or uid changed, the account was removed or re-created, or a local account now shadows
    the system account it logged in with. A session is compared only with what was read
    after it began, so a login checked against the new version of an account is never
    ended by the change that made that version.

    A session without a stamp (made without a login) matches no account: it ends as soon
    as an account of its user's name exists.

    A damaged or unreadable file ends no session of a local account (nor of a user who had
    one at the last good look); the next good version decides.

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
        #: The local account names at the last good look.
        self._local_names: frozenset[str] = frozenset()
        self._last_problems: list[str] = []

    def poll(self) -> Deferred[None]:
        """Look once; fires when done, never with a failure (for a ``LoopingCall``)."""
        held = self._sessions.live()
        users = sorted({session.user for session in held})
        names = self._local_names
        looked = self._threads.run(lambda: self._look(users, names))
        return looked.addCallback(self._judge, held).addErrback(self._failed)

    def _look(self, users: list[str], local_names: frozenset[str]) -> _Seen:
        """The part of :meth:`poll` that runs in a worker thread."""
        seen = _Seen()
        if self._local is not None:
            seen.local = self._local.stamps_blocking(seen.problems)
            if seen.local is not None:
                local_names = frozenset(seen.local)
        if self._system:
            for user in users:
                if user not in local_names:
                    fingerprint = self._fingerprint(user)
                    seen.system[user] = fingerprint.stamp if fingerprint is not None else None
        return seen

    def _failed(self, failure: Failure) -> None:
        log.failure("Checking the accounts behind the sessions failed", failure)

    def _judge(self, seen: _Seen, held: list[Session]) -> None:
        if seen.problems != self._last_problems:
            for problem in seen.problems:
                log.error("Local accounts: {problem}", problem=problem)
            self._last_problems = seen.problems
        if seen.local is not None:
            self._local_names = frozenset(seen.local)
        ended: Counter[tuple[str, str]] = Counter()
        for session in held:
            if session.ended is not None:
                continue
            known, current = self._current(session, seen)
            if known and session.stamp != current and self._sessions.end(session, Ended.REVOKED):
                ended[session.user, _why(current)] += 1
        for (user, why), count in sorted(ended.items()):
            log.info("Ended {count} session(s) of {user}: {why}", count=count, user=user, why=why)

    def _current(self, session: Session, seen: _Seen) -> tuple[bool, Stamp | None]:
        """Whether the look tells the current stamp of ``session``'s account, and that stamp."""
        user = session.user
        if seen.local is not None:
            if user in seen.local:
                return True, seen.local[user]
        elif self._local is not None and (
            user in self._local_names
            or (session.stamp is not None and session.stamp.source is Source.LOCAL)
        ):
            return False, None  # the file cannot be read: wait for a good version
        if self._system:
            return user in seen.system, seen.system.get(user)
        return True, None


def _why(current: Stamp | None) -> str:
    if current is None:
        return "the account was removed or lost its role"
    if current.source is Source.SYSTEM:
        return "the system account changed"
    return "the account changed"
