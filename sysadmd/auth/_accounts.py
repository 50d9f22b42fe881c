"""The local account database: users of the daemon that are not system accounts.

The database is one JSON file (:data:`ACCOUNTS_FILE` in the state directory), mode 0600,
always replaced atomically::

    {"version": 1, "users": {"alice": {"role": "admin", "hash": "$argon2id$v=19$..."}}}

Each user has a role (``admin`` or ``operator``) and an argon2id hash made by
:class:`argon2.PasswordHasher`; the password itself is never stored. ``sysadmd-admin``
changes the file with the synchronous methods of :class:`LocalAccounts`; the running daemon
checks logins with :meth:`LocalAccounts.check`, which notices such changes by the file's
device, inode, size, times and mode and re-reads it, so no restart is needed.

The file is kept by a :class:`sysadmd.shared.FileStore`: every read-modify-write (the CLI's
changes and the daemon's rehash on login) holds an exclusive ``flock`` on ``<file>.lock``
next to the database, so a change made by one process is never lost to another's stale copy.

A login's :class:`~sysadmd.auth._credentials.Stamp` is a digest of the role and hash of the very
record its password was checked against (of the new hash when the login rehashed it). The
daemon also watches the file (:class:`sysadmd.auth._sources.AccountWatcher` reads
:meth:`LocalAccounts.stamps_blocking`) and ends every session whose stamp is no longer that
of its account's record: the account was removed, or its password or role changed.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Final, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.api import Role
from sysadmd.auth._credentials import (
    MAX_PASSWORD_LENGTH,
    CredentialChecker,
    Source,
    Stamp,
    ThreadedWork,
    Verified,
    plausible_password,
)
from sysadmd.shared import FileStore, json_document, write_atomically

#: The database's file name in the daemon's state directory.
ACCOUNTS_FILE: Final = "accounts.json"
#: Where :func:`ensure_initial_admin` leaves the first admin's password, in the state directory
#: (the database's directory). It is removed when that account's password changes or the
#: account is deleted: the password in it no longer logs anyone in.
INITIAL_PASSWORD_FILE: Final = "initial-admin-password"  # noqa: S105 - a file name
#: The account :func:`ensure_initial_admin` creates.
INITIAL_ADMIN: Final = "admin"
#: The ``version`` this module reads and writes.
FORMAT_VERSION: Final = 1
#: Roles an account may hold (``public`` is never held).
ACCOUNT_ROLES: Final = (Role.ADMIN, Role.OPERATOR)

_NAME: Final = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_HASH_PREFIX: Final = "$argon2id$"

_log = Logger()

# What a snapshot read: the accounts, or None for a damaged or unreadable file.
_Accounts = dict[str, "_Account"] | None


class AccountError(ValueError):
    """A request to the account database cannot be carried out; the message is one line."""


def validate_name(name: str) -> None:
    """Raise :class:`AccountError` unless ``name`` is a valid account name.

    Valid names match ``^[a-z_][a-z0-9_.-]{0,31}$`` (the usual Unix user-name rules).
    """
    if not _NAME.fullmatch(name):
        raise AccountError(
            f"invalid user name {name!r}: use 1 to 32 of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or '_'"
        )


def validate_password(password: str) -> None:
    """Raise :class:`AccountError` unless ``password`` is acceptable for a new account.

    A password must be non-empty, at most :data:`MAX_PASSWORD_LENGTH` characters long and
    free of NUL characters. The message never contains the password.
    """
    if not password:
        raise AccountError("the password must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    if "\0" in password:
        raise AccountError("the password must not contain NUL characters")


def _account_role(role: Role) -> Role:
    try:
        checked = Role(role)
    except ValueError:
        checked = Role.PUBLIC
    if checked not in ACCOUNT_ROLES:
        raise AccountError(f"invalid role {role!r}: use admin or operator")
    return checked


def record_stamp(role: Role, hashed: str) -> Stamp:
    """The stamp of an account record with ``role`` and the password hash ``hashed``."""
    return Stamp.of(Source.LOCAL, role.value, hashed)


@dataclass(frozen=True)
class _Account:
    role: Role
    hash: str

    @cached_property
    def stamp(self) -> Stamp:
        return record_stamp(self.role, self.hash)


@dataclass
class _Outcome:
    """What a check found, handed from the worker thread back to the reactor thread."""

    verified: Verified | None
    problems: list[str] = field(default_factory=list)
    #: Whether the database holds an account of that name (whatever the password).
    known: bool = False


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a file of mode 0600 holding ``data``."""
    write_atomically(path, data, 0o600)


def _parse(raw: bytes, path: Path) -> dict[str, _Account]:
    """The accounts in the database file's bytes ``raw``; raises :class:`AccountError`."""
    try:
        document = json_document(raw, kind="account database", version=FORMAT_VERSION)
    except ValueError as e:
        raise AccountError(f"{path}: {e}") from None
    users = document.get("users")
    if not isinstance(users, dict):
        raise AccountError(f"{path}: 'users' must be an object")
    accounts: dict[str, _Account] = {}
    for name, entry in cast(dict[str, Any], users).items():
        if not _NAME.fullmatch(name):
            raise AccountError(f"{path}: invalid user name {name!r}")
        role = entry.get("role") if isinstance(entry, dict) else None
        hashed = entry.get("hash") if isinstance(entry, dict) else None
        if role not in ACCOUNT_ROLES or not isinstance(hashed, str):
            raise AccountError(f"{path}: user {name} needs a role (admin or operator) and a hash")
        if not hashed.startswith(_HASH_PREFIX):
            raise AccountError(f"{path}: the hash of user {name} is not an argon2id hash")
        accounts[name] = _Account(Role(role), hashed)
    return accounts


def _serialize(accounts: dict[str, _Account]) -> bytes:
    users = {
        name: {"role": str(account.role), "hash": account.hash}
        for name, account in sorted(accounts.items())
    }
    return (json.dumps({"version": FORMAT_VERSION, "users": users}, indent=2) + "\n").encode()


class LocalAccounts(CredentialChecker):
    """The local account database in the JSON file ``path``.

    :param path: the database file, normally ``<state_dir>/accounts.json``. It need not
        exist yet: a missing file is an empty database, and the first change creates it (and
        its directory, mode 0700).
    :param reactor: provides ``IReactorThreads`` (checked here); :meth:`check` runs its work
        in this reactor's thread pool. ``None`` means the global reactor, looked up only when
        :meth:`check` is first called (the CLI never needs one).
    :param max_concurrent: how many checks may run in threads at once; more wait their turn.
    :param hasher: the argon2 hasher for new hashes (and the rehash test). The default is
        ``argon2.PasswordHasher()`` with argon2's own default parameters; tests pass a cheaper
        one.
    """

    def __init__(
        self,
        path: Path,
        reactor: object | None = None,
        *,
        max_concurrent: int = 4,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.path = path
        self._file = FileStore(
            path,
            parse=partial(_parse, path=path),
            serialize=_serialize,
            empty=dict,
            invalid=AccountError,
        )
        self._threads = ThreadedWork(reactor, max_concurrent)
        self._hasher = hasher if hasher is not None else PasswordHasher()
        # Guards the dummy hash and the rehash record, which worker threads share.
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None

    # -- reading and writing the file -------------------------------------------------------

    def _load(self) -> dict[str, _Account]:
        """The accounts (a copy the caller may change); raises AccountError or OSError."""
        return dict(self._file.read())

    def _store(self, accounts: dict[str, _Account]) -> None:
        """Replace the file with ``accounts`` (mode 0600); only inside :meth:`_locked`."""
        self._file.write(dict(accounts))

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the database's write lock (shared by every process that changes it)."""
        return self._file.locked()

    # -- management, for sysadmd-admin and start-up -----------------------------------------

    def add(self, name: str, role: Role, password: str) -> None:
        """Create the account ``name`` with ``role`` (admin or operator) and ``password``.

        :raises AccountError: the name, role or password is invalid, the account exists, or
            the database file is damaged.
        :raises OSError: the file cannot be read or written.
        """
        validate_name(name)
        role = _account_role(role)
        validate_password(password)
        hashed = self._hasher.hash(password)
        with self._locked():
            accounts = self._load()
            if name in accounts:
                raise AccountError(f"user {name} already exists")
            accounts[name] = _Account(role, hashed)
            self._store(accounts)

    def delete(self, name: str) -> None:
        """Remove the account ``name``.

        :raises AccountError: there is no such account, or the file is damaged.
        :raises OSError: the file cannot be read or written.
        """
        validate_name(name)
        self._change(name, lambda account: None)

    def set_password(self, name: str, password: str) -> None:
        """Give the account ``name`` a new password (its role stays).

        :raises AccountError: the name or password is invalid, there is no such account, or
            the file is damaged.
        :raises OSError: the file cannot be read or written.
        """
        validate_name(name)
        validate_password(password)
        hashed = self._hasher.hash(password)
        self._change(name, lambda account: _Account(account.role, hashed))

    def set_role(self, name: str, role: Role) -> None:
        """Give the account ``name`` the role ``role`` (admin or operator); its password stays.

        :raises AccountError: the name or role is invalid, there is no such account, or
            the file is damaged.
        :raises OSError: the file cannot be read or written.
        """
        validate_name(name)
        role = _account_role(role)
        self._change(name, lambda account: _Account(role, account.hash))

    def _change(self, name: str, change: Callable[[_Account], _Account | None]) -> None:
        """Under the write lock, replace the account ``name`` with ``change(account)``, or
        remove it if that is None; raises :class:`AccountError` if there is no such account.

        The initial admin's password file goes, in the same lock, once its password no
        longer logs anyone in (the account removed, or given another password).
        """
        with self._locked():
            accounts = self._load()
            account = accounts.get(name)
            if account is None:
                raise AccountError(f"no such user: {name}")
            changed = change(account)
            if changed is None:
                del accounts[name]
            else:
                accounts[name] = changed
            self._store(accounts)
            if changed is None or changed.hash != account.hash:
                self._forget_initial_password(name)

    def _forget_initial_password(self, name: str) -> None:
        """Remove the initial admin's password file once it no longer logs anyone in."""
        if name == INITIAL_ADMIN:
            with contextlib.suppress(FileNotFoundError):
                (self.path.parent / INITIAL_PASSWORD_FILE).unlink()

    def users(self) -> list[tuple[str, Role]]:
        """Every account as ``(name, role)``, sorted by name.

        :raises AccountError: the file is damaged.
        :raises OSError: the file cannot be read.
        """
        return [(name, account.role) for name, account in sorted(self._load().items())]

    def is_empty(self) -> bool:
        """Whether the database holds no account (a missing file holds none).

        :raises AccountError: the file is damaged.
        :raises OSError: the file cannot be read.
        """
        return not self._load()

    # -- checking logins --------------------------------------------------------------------

    def verify(self, username: str, password: str) -> Deferred[Verified | None]:
        """Fire with the role and stamp of ``username`` if ``password`` is right, else ``None``.

        The file read and the argon2 verification run in the reactor's thread pool, at most
        ``max_concurrent`` at a time. An unknown user costs one verification against a
        dummy hash, like a known one. A changed file is re-read; a damaged or unreadable one
        is logged once and treated as empty (nobody logs in locally until it is fixed).
        A right password whose hash has outdated parameters is rehashed in the file, and the
        stamp is then that of the new record: the daemon's own rehash is not a change.
        """
        if not self.plausible(username, password):
            # No account can have this name or this password: there is nothing to learn.
            return succeed(None)
        work = partial(self._check_blocking, username, password)
        return self._threads.run(work).addCallbacks(self._report, self._unexpected)

    def check_local(self, username: str, password: str) -> Deferred[tuple[bool, Verified | None]]:
        """Like :meth:`verify`, but also say whether ``username`` is an account here.

        Fires with ``(known, verified)``: ``known`` whether the database holds the account
        (right password or not), ``verified`` as :meth:`verify` gives it. A check that fails
        unexpectedly fires ``(True, None)``: refused, and not to be asked elsewhere.
        """
        if not _NAME.fullmatch(username) or not plausible_password(password):
            return succeed((False, None))
        work = partial(self._check_blocking, username, password)
        return self._threads.run(work).addCallbacks(self._verdict, self._refused)

    def _verdict(self, outcome: _Outcome) -> tuple[bool, Verified | None]:
        return outcome.known, self._report(outcome)

    def _refused(self, failure: Failure) -> tuple[bool, Verified | None]:
        self._unexpected(failure)
        return True, None

    def plausible(self, username: str, password: str) -> bool:
        """Whether :meth:`check` would hash: a valid account name and a possible password."""
        return bool(_NAME.fullmatch(username)) and plausible_password(password)

    def look_up(self, username: str) -> Deferred[Verified | None]:
        """Fire with the role and stamp of the account ``username`` (``None`` if none).

        Reads the file in a worker thread like :meth:`verify`, without any hashing.
        """
        if not _NAME.fullmatch(username):
            return succeed(None)
        work = partial(self._role_blocking, username)
        return self._threads.run(work).addCallbacks(self._report, self._unexpected)

    def _report(self, outcome: _Outcome) -> Verified | None:
        for problem in outcome.problems:
            _log.error("Local accounts: {problem}", problem=problem)
        return outcome.verified

    def _unexpected(self, failure: Failure) -> None:
        _log.failure("Checking a local account failed", failure)

    def _check_blocking(self, username: str, password: str) -> _Outcome:
        """The part of :meth:`verify` that runs in a worker thread."""
        outcome = _Outcome(None)
        account = self._snapshot(outcome.problems).get(username)
        if account is None:
            self._verify(self._dummy(), password)
            return outcome
        outcome.known = True
        if not self._verify(account.hash, password):
            return outcome
        if self._hasher.check_needs_rehash(account.hash):
            try:
                account = self._rehash(username, account, password)
            except (OSError, AccountError) as e:
                outcome.problems.append(f"could not store a new hash for user {username}: {e}")
        outcome.verified = Verified(account.role, account.stamp)
        return outcome

    def _role_blocking(self, username: str) -> _Outcome:
        """The part of :meth:`look_up` that runs in a worker thread."""
        outcome = _Outcome(None)
        account = self._snapshot(outcome.problems).get(username)
        if account is not None:
            outcome.verified = Verified(account.role, account.stamp)
        return outcome

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        """A hash no password matches in practice, made with this hasher's parameters."""
        with self._lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
            return self._dummy_hash

    def _snapshot(self, problems: list[str]) -> dict[str, _Account]:
        """The accounts as the file holds them now (none if it is damaged or unreadable)."""
        accounts = self._current(problems)
        return accounts if accounts is not None else {}

    def _current(self, problems: list[str]) -> _Accounts:
        """The accounts as the file holds them now, re-read only when it has changed.

        ``None`` when the file is damaged or cannot be read; ``problems`` says why the
        first time a damaged version is read, and every time the file cannot be read.
        """
        try:
            snapshot = self._file.snapshot()
        except OSError as e:
            problems.append(f"cannot read {self.path}: {e.strerror}")
            return None
        if snapshot.fresh:
            if snapshot.error is not None:
                problems.append(f"{snapshot.error}; no local account can log in until it is fixed")
            if snapshot.mode & 0o077:
                problems.append(f"{self.path} has mode {snapshot.mode:04o}; it should be 0600")
        return snapshot.value

    # -- watching for changes ---------------------------------------------------------------

    def stamps_blocking(self, problems: list[str]) -> dict[str, Stamp] | None:
        """Every account's current stamp, for the session watcher (in a worker thread).

        Stats the file and re-reads it only when it has changed. ``None`` when the file is
        damaged or cannot be read (``problems`` says why).
        """
        accounts = self._current(problems)
        if accounts is None:
            return None
        return {name: account.stamp for name, account in accounts.items()}

    def _rehash(self, name: str, verified: _Account, password: str) -> _Account:
        """Store a hash of ``password`` with the current parameters in place of ``verified``'s.

        Returns the record the password is now known to match: the rehashed one; or, when
        another process changed the record meanwhile, the new record if the password
        matches it too (a concurrent login's rehash), else ``verified``.
        """
        new_hash = self._hasher.hash(password)
        with self._locked():
            accounts = self._load()
            account = accounts.get(name)
            if account is None:
                return verified
            if account.hash != verified.hash:
                if self._verify(account.hash, password):
                    return account
                return verified
            rehashed = _Account(account.role, new_hash)
            accounts[name] = rehashed
            self._store(accounts)
            return rehashed


def ensure_initial_admin(accounts: LocalAccounts, state_dir: Path) -> Path | None:
    """Create a first ``admin`` account if the database holds none.

    The password is random (:func:`secrets.token_urlsafe`) and is written, followed by a
    newline, to ``state_dir/initial-admin-password`` (mode 0600 from the start, replaced
    atomically) before the account is created. Returns that file's path so the caller can
    log where the password is (never the password itself); returns ``None`` when the
    database already holds an account.

    :raises AccountError: the database file is damaged.
    :raises OSError: a file cannot be read or written.
    """
    target = state_dir / INITIAL_PASSWORD_FILE
    # Under the write lock, so that a concurrent sysadmd-admin or daemon cannot slip in
    # between the emptiness test and the creation.
    with accounts._locked():
        if accounts._load():
            return None
        password = secrets.token_urlsafe(18)
        hashed = accounts._hasher.hash(password)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The password file first: an account whose password nobody knows would be useless.
        write_private_file(target, (password + "\n").encode())
        accounts._store({INITIAL_ADMIN: _Account(Role.ADMIN, hashed)})
    return target
