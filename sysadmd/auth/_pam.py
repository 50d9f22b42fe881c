"""System accounts through PAM, with sysadm's group rules.

:class:`PamChecker` asks PAM (service ``sysadmd`` by default) whether a password is right and
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

A login's stamp is that of the account's :class:`Fingerprint`, read just before PAM checks
the password. While a system user holds sessions, the daemon re-reads the fingerprint every
second (through :class:`sysadmd.auth._sources.AccountWatcher`) and ends the sessions whose
stamp it no longer matches: the account is gone, its role or uid changed, or its password
field changed (where the user database shows it: on FreeBSD to root, not on Linux, whose
``/etc/passwd`` says ``x``).

Only authentication and account checks run (``pam_authenticate`` and ``pam_acct_mgmt``);
no ``pam_setcred``, because modules such as ``pam_group`` and ``pam_cap`` would change the
groups or capabilities of the daemon itself. Passwords are never logged.

The PAM service is ``sysadmd``: its policy is ``/etc/pam.d/sysadmd`` (FreeBSD's OpenPAM also
reads ``/usr/local/etc/pam.d/sysadmd``, where the port installs ``conf/pam.d/sysadmd``); without
one, PAM applies the ``other`` policy. The binding (python-pam 2.x) works with both Linux-PAM
and OpenPAM: it loads ``libpam`` by name, calls only functions both provide, and answers the
conversation from a ``calloc`` buffer the library frees. But its constants are Linux-PAM's,
and OpenPAM numbers its results as XSSO does (``PAM_AUTH_ERR`` is 9 there, Linux-PAM's
``PAM_AUTHINFO_UNAVAIL``), so the results that mean a broken PAM are looked up in the table
of the PAM the platform has (:func:`broken_results`).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, Protocol, cast

import pam  # type: ignore[import-untyped]  # python-pam ships no type information
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.api import Role
from sysadmd.auth._credentials import (
    CredentialChecker,
    Source,
    Stamp,
    ThreadedWork,
    Verified,
    plausible_password,
)

ADMIN_GROUP: Final = "wheel"
OPERATOR_GROUP: Final = "operator"
#: Longest user name passed to the system (FreeBSD allows 32, glibc systems more).
MAX_USERNAME_LENGTH: Final = 256

#: The PAM service, a policy file in /etc/pam.d (or /usr/local/etc/pam.d with OpenPAM).
SERVICE: Final = "sysadmd"

# PAM results that mean PAM itself is broken or misconfigured, not that the password was wrong.
_BROKEN_NAMES: Final = (
    "PAM_OPEN_ERR",
    "PAM_SYMBOL_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR",
    "PAM_BUF_ERR",
    "PAM_CONV_ERR",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_ABORT",
    "PAM_MODULE_UNKNOWN",
)
#: OpenPAM's numbers for those results (security/pam_constants.h, which follows XSSO 5.2).
_OPENPAM_RESULTS: Final = {
    "PAM_OPEN_ERR": 1,
    "PAM_SYMBOL_ERR": 2,
    "PAM_SERVICE_ERR": 3,
    "PAM_SYSTEM_ERR": 4,
    "PAM_BUF_ERR": 5,
    "PAM_CONV_ERR": 6,
    "PAM_AUTHINFO_UNAVAIL": 12,
    "PAM_ABORT": 26,
    "PAM_MODULE_UNKNOWN": 28,
}
#: ``sys.platform`` prefixes of the systems whose libpam is OpenPAM.
OPENPAM_PLATFORMS: Final = ("freebsd", "dragonfly", "netbsd", "darwin")


def uses_openpam(platform: str = sys.platform) -> bool:
    """Whether ``platform`` (a ``sys.platform`` value) has OpenPAM rather than Linux-PAM."""
    return platform.startswith(OPENPAM_PLATFORMS)


def broken_results(openpam: bool) -> frozenset[int]:
    """The result codes that mean PAM is broken, in OpenPAM's or Linux-PAM's numbering."""
    if openpam:
        return frozenset(_OPENPAM_RESULTS[name] for name in _BROKEN_NAMES)
    return frozenset(int(getattr(pam, name)) for name in _BROKEN_NAMES)


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


@dataclass(frozen=True)
class Fingerprint:
    """What the watcher compares of a system account: a change ends the user's sessions.

    ``password`` is a SHA-256 of the password field the user database returns (never the
    field itself), so that the daemon keeps no copy of a system hash.
    """

    uid: int
    role: Role
    password: str

    @property
    def stamp(self) -> Stamp:
        """The stamp of a login checked against this version of the account."""
        return Stamp.of(Source.SYSTEM, self.uid, self.role.value, self.password)

    @property
    def verified(self) -> Verified:
        """This account's role and stamp."""
        return Verified(self.role, self.stamp)


def system_fingerprint(username: str) -> Fingerprint | None:
    """The :class:`Fingerprint` of the system user ``username``; ``None`` without a role.

    Blocking (the name service may be slow): call it in a worker thread.
    """
    role = system_role(username)
    if role is None:
        return None
    try:
        entry = pwd.getpwnam(username)
    except (KeyError, ValueError):
        return None
    field = hashlib.sha256(entry.pw_passwd.encode("utf-8", "surrogateescape")).hexdigest()
    return Fingerprint(entry.pw_uid, role, field)


def _decoy(password: str) -> str:
    """A random password as long (in UTF-8 bytes) as ``password``, for a PAM call bound to fail."""
    size = len(password.encode())
    return secrets.token_urlsafe(size)[:size]


@dataclass
class _Outcome:
    verified: Verified | None
    problem: str | None = None


def _look_up_outcome(username: str) -> _Outcome:
    fingerprint = system_fingerprint(username)
    return _Outcome(fingerprint.verified if fingerprint is not None else None)


class PamChecker(CredentialChecker):
    """Checks system accounts with PAM and maps their groups to roles.

    :param reactor: provides ``IReactorThreads`` (checked here); PAM runs in its thread pool.
        ``None`` means the global reactor, looked up at the first :meth:`check`.
    :param service: the PAM service (a file in ``/etc/pam.d``).
    :param openpam: whether libpam is OpenPAM (its result codes differ from Linux-PAM's);
        ``None`` decides by the platform (:func:`uses_openpam`).
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
        service: str = SERVICE,
        max_concurrent: int = 4,
        authenticator: Callable[[], Authenticator] = _pam_authenticator,
        openpam: bool | None = None,
    ) -> None:
        if not service or "\0" in service or "/" in service:
            raise ValueError(f"invalid PAM service name {service!r}")
        self.service = service
        self._broken = broken_results(uses_openpam() if openpam is None else openpam)
        self._threads = ThreadedWork(reactor, max_concurrent)
        self._authenticator = authenticator

    def verify(self, username: str, password: str) -> Deferred[Verified | None]:
        """Fire with the role and stamp of ``username`` if PAM accepts ``password``, else ``None``.

        Wrong password, unknown user and a user outside ``wheel`` and ``operator`` all
        fire ``None`` after one PAM authentication each (see the module documentation).
        An empty password, or one too long or holding NUL, is refused without asking PAM.
        """
        if not self.plausible(username, password):
            return succeed(None)
        work = partial(self._check_blocking, username, password)
        return self._threads.run(work).addCallbacks(self._report, self._unexpected)

    def refuse(self, password: str) -> Deferred[None]:
        """Spend one PAM authentication bound to fail, then fire ``None``.

        For a refusal decided elsewhere (a wrong password of one of sysadmd's own
        accounts): it then costs what a refusal by PAM costs, so the time does not tell
        which kind of account a name is. A name that cannot exist, with a random password
        as long as ``password``.
        """
        if not plausible_password(password):
            return succeed(None)
        work = partial(self._refuse_blocking, password)
        return self._threads.run(work).addCallbacks(self._report_only, self._unexpected)

    def _report_only(self, outcome: _Outcome) -> None:
        self._report(outcome)

    def _refuse_blocking(self, password: str) -> _Outcome:
        """The part of :meth:`refuse` that runs in a worker thread."""
        self._authenticator().authenticate(
            _NO_SUCH_USER, _decoy(password), self.service, resetcreds=False
        )
        return _Outcome(None)

    def plausible(self, username: str, password: str) -> bool:
        """Whether :meth:`check` would ask PAM: a possible user name and password."""
        return (
            bool(username)
            and len(username) <= MAX_USERNAME_LENGTH
            and "\0" not in username
            and plausible_password(password)
        )

    def look_up(self, username: str) -> Deferred[Verified | None]:
        """Fire with the role (:func:`system_role`) and stamp of ``username``, in a worker thread.

        No PAM call: the caller has proved who the user is in another way. (The name
        service may be slow, e.g. LDAP, hence the thread.)
        """
        if not username or len(username) > MAX_USERNAME_LENGTH or "\0" in username:
            return succeed(None)
        work = partial(_look_up_outcome, username)
        return self._threads.run(work).addCallbacks(self._report, self._unexpected)

    def _check_blocking(self, username: str, password: str) -> _Outcome:
        """The part of :meth:`verify` that runs in a worker thread."""
        # Read before PAM checks the password: a change after this read ends the session.
        fingerprint = system_fingerprint(username)
        attempt = password if fingerprint is not None else _decoy(password)
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
        if accepted and fingerprint is not None:
            return _Outcome(fingerprint.verified)
        if not accepted and authenticator.code in self._broken:
            return _Outcome(None, f"PAM service {self.service!r} failed: {authenticator.reason}")
        return _Outcome(None)

    def _report(self, outcome: _Outcome) -> Verified | None:
        if outcome.problem is not None:
            _log.error("{problem}", problem=outcome.problem)
        return outcome.verified

    def _unexpected(self, failure: Failure) -> None:
        _log.failure("Checking a system account with PAM failed", failure)
