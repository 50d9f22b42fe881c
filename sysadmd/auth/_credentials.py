"""Checking a user name and password: the interface every credential backend provides.

Two backends implement :class:`CredentialChecker`: :class:`sysadmd.auth._accounts.LocalAccounts`
(the daemon's own account database, managed with ``sysadmd-admin``) and
:class:`sysadmd.auth._pam.PamChecker` (system accounts through PAM, with sysadm's group
rules). Both answer with a :class:`Verified` (the role, and the :class:`Stamp` of the account
as it was when it was checked) or ``None``, and keep the slow work (argon2, PAM) off the
reactor thread.

A session keeps the stamp of its login; :class:`sysadmd.auth._sources.AccountWatcher`
ends the session once the account's current stamp is another one.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from sysadmd.api import Role

#: Longest password any backend accepts; longer ones are refused before any hashing.
MAX_PASSWORD_LENGTH: Final = 1024


class Source(enum.Enum):
    """Which kind of account a login was checked against."""

    #: One of sysadmd's own accounts (:class:`sysadmd.auth._accounts.LocalAccounts`).
    LOCAL = "local"
    #: A system account (:class:`sysadmd.auth._pam.PamChecker`).
    SYSTEM = "system"


@dataclass(frozen=True)
class Stamp:
    """The version of an account a login was checked against.

    ``digest`` is a SHA-256 (hex) of what a change of the account changes: for one of
    sysadmd's own accounts its role and password hash, for a system account its uid, role
    and password field. Two stamps are equal exactly when the account is the same version;
    the password and its hash are never kept in a stamp.
    """

    source: Source
    digest: str

    @classmethod
    def of(cls, source: Source, *parts: object) -> Stamp:
        """The stamp of an account of ``source`` described by ``parts``."""
        text = "\0".join(str(part) for part in parts)
        return cls(source, hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest())

    def __repr__(self) -> str:
        return f"<Stamp {self.source.value} {self.digest[:12]}>"


@dataclass(frozen=True)
class Verified:
    """A user whose credentials are right: the role, and the stamp of the account checked."""

    role: Role
    stamp: Stamp


def _role(verified: Verified | None) -> Role | None:
    return verified.role if verified is not None else None


class CredentialChecker(Protocol):
    """Something that can tell whether a user name and password are right, and the user's role."""

    def verify(self, username: str, password: str) -> Deferred[Verified | None]:
        """Check ``password`` for ``username``.

        Fires with the role and stamp of a valid user whose password is right, and with
        ``None`` for a wrong password, an unknown user, or a user without a permitted role.
        The three failures look the same from outside: same result and similar time. Bad
        credentials never make the Deferred fail. The slow work runs in a thread pool
        with a concurrency cap, so the reactor is never blocked. The stamp is that of the
        very version of the account the password was checked against.
        """
        ...

    def look_up(self, username: str) -> Deferred[Verified | None]:
        """The role and stamp of the account ``username`` now, without any password check.

        For logins that prove who the user is in another way (``rpc/auth_ssl``'s signed
        test string): fires with ``None`` for an unknown user or one without a permitted
        role. Like :meth:`verify`, it never blocks the reactor.
        """
        ...

    def check(self, username: str, password: str) -> Deferred[Role | None]:
        """:meth:`verify`, for a caller that needs the role only."""
        return self.verify(username, password).addCallback(_role)

    def plausible(self, username: str, password: str) -> bool:
        """Whether checking ``username`` and ``password`` would cost anything.

        False for a name no account can have or a password no account can hold, which
        :meth:`check` refuses at once without hashing or PAM; the lockout counts such cheap
        failures against the address only, so they cannot fill the username table.
        """
        ...

    def role_of(self, username: str) -> Deferred[Role | None]:
        """:meth:`look_up`, for a caller that needs the role only."""
        return self.look_up(username).addCallback(_role)


T = TypeVar("T")


class ThreadedWork:
    """Runs the slow, blocking part of a check in the reactor's thread pool, a few at a time.

    ``reactor`` (any object providing ``IReactorThreads``) is looked up lazily when it
    is None, so a checker can be made before twistd installs its reactor.
    """

    def __init__(self, reactor: object | None, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._reactor = IReactorThreads(reactor) if reactor is not None else None
        self._semaphore = DeferredSemaphore(max_concurrent)

    def run(self, work: Callable[[], T]) -> Deferred[T]:
        """Run ``work`` in a thread once one of the places is free."""
        return self._semaphore.run(self._in_thread, work)

    def _in_thread(self, work: Callable[[], T]) -> Deferred[T]:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor  # noqa: PLC0415

            reactor = self._reactor = IReactorThreads(global_reactor)
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)


def plausible_password(password: str) -> bool:
    """Whether ``password`` could be anyone's password: non-empty, not too long, no NUL.

    Backends refuse other passwords at once; that reveals nothing about any account.
    """
    return 0 < len(password) <= MAX_PASSWORD_LENGTH and "\0" not in password
