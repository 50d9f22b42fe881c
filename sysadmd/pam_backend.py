"""System accounts through PAM, with sysadm's group rules.

:class:`PamChecker` asks PAM (service ``login`` by default) whether a password is right and
maps the user's groups to a role the way sysadm did: uid 0 (``root``, ``toor``) or a member
of ``wheel`` is an admin, a member of ``operator`` (and not ``wheel``) is an operator, and
everybody else is refused.

Unlike sysadm, which returned early for a user outside both groups and so told an attacker
which names were worth guessing, every refusal here costs one PAM authentication. A user
without a permitted role (or a name the system does not know) is authenticated with a random
decoy password of the same length instead of the one given, so PAM fails for them exactly as
it does for a wrong password: same result, same cost, and the same ``pam_faildelay`` pause
where the PAM stack has one. A right password of a user who may not log in here therefore
never comes back faster than a wrong one, and PAM never sees that password. The price: the
system log records an authentication failure for such a user.

PAM must ask for the password: a success without any conversation message means nothing
was checked (``pam_unix``'s ``nullok`` with an empty password field, which Debian's
``common-auth`` and FreeBSD's ``system`` stack both allow, lets *any* password in). Such a
success is refused and logged, after one more PAM call for a name that cannot exist, so the
refusal costs what a wrong password costs.

Only authentication and account checks run (``pam_authenticate`` and ``pam_acct_mgmt``);
no ``pam_setcred``, because modules such as ``pam_group`` and ``pam_cap`` would change the
groups or capabilities of the daemon itself. Passwords are never logged.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, Protocol, cast

import pam  # type: ignore[import-untyped]  # python-pam ships no type information
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.credentials import CredentialChecker, ThreadedWork, plausible_password
from sysadmd.roles import Role

ADMIN_GROUP: Final = "wheel"
OPERATOR_GROUP: Final = "operator"
#: Longest user name passed to the system (FreeBSD allows 32, glibc systems more).
MAX_USERNAME_LENGTH: Final = 256

# PAM results that mean PAM itself is broken or misconfigured, not that the password was wrong.
_BROKEN: Final = frozenset(
    {
        pam.PAM_OPEN_ERR,
        pam.PAM_SYMBOL_ERR,
        pam.PAM_SERVICE_ERR,
        pam.PAM_SYSTEM_ERR,
        pam.PAM_BUF_ERR,
        pam.PAM_CONV_ERR,
        pam.PAM_AUTHINFO_UNAVAIL,
        pam.PAM_ABORT,
        pam.PAM_MODULE_UNKNOWN,
    }
)

# Cannot name an account (':' separates passwd fields), so PAM fails for it like for a
# wrong password.
_NO_SUCH_USER: Final = "sysadmd:no-such-user"

_log = Logger()


class Authenticator(Protocol):
    """The part of ``pam.PamAuthenticator`` used here; one object serves one call."""

    code: int
    reason: object
    messages: list[str]

    def authenticate(self, username: str, password: str, service: str, *, resetcreds: bool) -> bool:
        """Run ``pam_authenticate`` and ``pam_acct_mgmt``; true when both succeed."""
        ...


def _pam_authenticator() -> Authenticator:
    return cast(Authenticator, pam.PamAuthenticator())


def _group_names(entry: pwd.struct_passwd) -> set[str]:
    """The names of the user's primary and supplementary groups (none if they cannot be read)."""
    try:
        gids = os.getgrouplist(entry.pw_name, entry.pw_gid)
    except OSError:
        return set()
    names = set()
    for gid in gids:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def system_role(username: str) -> Role | None:
    """The role sysadm's rules give the system user ``username``, or ``None``.

    uid 0 → admin; a member of ``wheel`` (primary or supplementary group) → admin; a member
    of ``operator`` → operator; an unknown user, or one whose name the system spells
    differently (``pw_name`` must equal ``username`` exactly), → ``None``.
    """
    try:
        entry = pwd.getpwnam(username)
    except (KeyError, ValueError):
        return None
    if entry.pw_name != username:
        return None
    if entry.pw_uid == 0:
        return Role.ADMIN
    groups = _group_names(entry)
    if ADMIN_GROUP in groups:
        return Role.ADMIN
    if OPERATOR_GROUP in groups:
        return Role.OPERATOR
    return None


def _decoy(password: str) -> str:
    """A random password as long (in UTF-8 bytes) as ``password``, for a PAM call bound to fail."""
    size = len(password.encode())
    return secrets.token_urlsafe(size)[:size]


@dataclass
class _Outcome:
    role: Role | None
    problem: str | None = None


def _role_outcome(username: str) -> _Outcome:
    return _Outcome(system_role(username))


class PamChecker(CredentialChecker):
    """Checks system accounts with PAM and maps their groups to roles.

    :param reactor: provides ``IReactorThreads`` (checked here); PAM runs in its thread pool.
        ``None`` means the global reactor, looked up at the first :meth:`check`.
    :param service: the PAM service (a file in ``/etc/pam.d``).
    :param max_concurrent: how many PAM calls may run at once; more wait their turn. A
        failing call may hold its thread for the PAM stack's failure delay (3 s with
        Debian's ``pam_faildelay``).
    :param authenticator: makes one fresh ``pam.PamAuthenticator`` per call (the default);
        tests pass a fake. Instances are never shared between threads.
    """

    def __init__(
        self,
        reactor: object | None = None,
        *,
        service: str = "login",
        max_concurrent: int = 4,
        authenticator: Callable[[], Authenticator] = _pam_authenticator,
    ) -> None:
        if not service or "\0" in service or "/" in service:
            raise ValueError(f"invalid PAM service name {service!r}")
        self.service = service
        self._threads = ThreadedWork(reactor, max_concurrent)
        self._authenticator = authenticator

    def check(self, username: str, password: str) -> Deferred[Role | None]:
        """Fire with the role of ``username`` if PAM accepts ``password``, else ``None``.

        Wrong password, unknown user and a user outside ``wheel`` and ``operator`` all
        fire ``None`` after one PAM authentication each (see the module documentation).
        An empty password, or one too long or holding NUL, is refused without asking PAM.
        """
        if not self.plausible(username, password):
            return succeed(None)
        work = partial(self._check_blocking, username, password)
        return self._threads.run(work).addCallbacks(self._report, self._unexpected)

    def plausible(self, username: str, password: str) -> bool:
        """Whether :meth:`check` would ask PAM: a possible user name and password."""
        return (
            bool(username)
            and len(username) <= MAX_USERNAME_LENGTH
            and "\0" not in username
            and plausible_password(password)
        )

    def role_of(self, username: str) -> Deferred[Role | None]:
        """Fire with :func:`system_role` of ``username``, looked up in a worker thread.

        No PAM call: the caller has proved who the user is in another way. (The name
        service may be slow, e.g. LDAP, hence the thread.)
        """
        if not username or len(username) > MAX_USERNAME_LENGTH or "\0" in username:
            return succeed(None)
        work = partial(_role_outcome, username)
        return self._threads.run(work).addCallbacks(self._report, self._unexpected)

    def _check_blocking(self, username: str, password: str) -> _Outcome:
        """The part of :meth:`check` that runs in a worker thread."""
        role = system_role(username)
        attempt = password if role is not None else _decoy(password)
        authenticator = self._authenticator()
        accepted = authenticator.authenticate(username, attempt, self.service, resetcreds=False)
        if accepted and not authenticator.messages:
            self._authenticator().authenticate(
                _NO_SUCH_USER, attempt, self.service, resetcreds=False
            )
            return _Outcome(
                None,
                f"PAM service {self.service!r} accepted user {username} without asking for "
                "a password (an empty password with nullok?); refused",
            )
        if accepted and role is not None:
            return _Outcome(role)
        if not accepted and authenticator.code in _BROKEN:
            return _Outcome(None, f"PAM service {self.service!r} failed: {authenticator.reason}")
        return _Outcome(None)

    def _report(self, outcome: _Outcome) -> Role | None:
        if outcome.problem is not None:
            _log.error("{problem}", problem=outcome.problem)
        return outcome.role

    def _unexpected(self, failure: Failure) -> None:
        _log.failure("Checking a system account with PAM failed", failure)
