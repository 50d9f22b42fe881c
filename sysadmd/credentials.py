"""Checking a user name and password: the interface every credential backend provides.

Two backends implement :class:`CredentialChecker`: :class:`sysadmd.accounts.LocalAccounts`
(the daemon's own account database, managed with ``sysadmd-admin``) and
:class:`sysadmd.pam_backend.PamChecker` (system accounts through PAM, with sysadm's group
rules). Both answer with a :class:`~sysadmd.roles.Role` or ``None`` and keep the slow work
(argon2, PAM) off the reactor thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from sysadmd.roles import Role

#: Longest password any backend accepts; longer ones are refused before any hashing.
MAX_PASSWORD_LENGTH: Final = 1024


class CredentialChecker(Protocol):
    """Something that can tell whether a user name and password are right, and the user's role."""

    def check(self, username: str, password: str) -> Deferred[Role | None]:
        """Check ``password`` for ``username``.

        Fires with the role of a valid user whose password is right, and with ``None``
        for a wrong password, an unknown user, or a user without a permitted role. The
        three failures look the same from outside: same result and similar time. Bad
        credentials never make the Deferred fail. The slow work runs in a thread pool
        with a concurrency cap, so the reactor is never blocked.
        """
        ...

    def plausible(self, username: str, password: str) -> bool:
        """Whether checking ``username`` and ``password`` would cost anything.

        False for a name no account can have or a password no account can hold, which
        :meth:`check` refuses at once without hashing or PAM; the lockout counts such cheap
        failures against the address only, so they cannot fill the username table.
        """
        ...

    def role_of(self, username: str) -> Deferred[Role | None]:
        """The role ``username`` holds now, without any password check.

        For logins that prove who the user is in another way (``rpc/auth_ssl``'s signed
        test string): fires with ``None`` for an unknown user or one without a permitted
        role. Like :meth:`check`, it never blocks the reactor.
        """
        ...


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
