"""Authentication: logins, sessions, roles, lockout and the audit trail, in one place.

Every request's caller is settled by :meth:`Authenticator.authenticate`, which the
API's dispatch calls (and ``/metrics`` and ``/readyz`` with it): a WebSocket connection
that logged in holds a session token; a REST request carries ``Authorization: Basic``
(checked on every request, as sysadm did) or ``Authorization: Bearer <token>``, read by
:func:`credentials_from_header`. Failed logins count per client IP address and
per user name (:mod:`sysadmd.auth._lockout`); past the limit both are blocked for a while,
and a refused login is told when to try again (:class:`RetryLater`). Unknown users, users
without a permitted role and wrong passwords all get the same answer.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from twisted.logger import Logger

from sysadmd.api import (
    CONNECTION_SESSION,
    ActionSpec,
    ApiError,
    Authentication,
    Basic,
    Bearer,
    Call,
    Connection,
    ConnectionSession,
    Identity,
    Role,
    Unreadable,
    Vouched,
)
from sysadmd.auth._audit import AuditLog
from sysadmd.auth._credentials import CredentialChecker, ThreadedWork, Verified
from sysadmd.auth._keys import Challenges, ChallengesFull, KeyStore, SSLAuthError, recover
from sysadmd.auth._lockout import Attempt, Blocked, Busy, Lockout
from sysadmd.auth._sessions import Ended, Session, Sessions

FAILED: Final = "invalid user name or password"
CHALLENGE_HEADER: Final = 'Basic realm="sysadmd", Bearer realm="sysadmd"'


class RetryLater(ApiError):
    """A 429 that says when to try again: ``retry_after`` whole seconds (at least 1).

    REST sends it as ``Retry-After``; the message, which WebSocket clients get, says it too.
    """

    def __init__(self, seconds: float, message: str) -> None:
        self.retry_after = max(1, math.ceil(seconds))
        unit = "second" if self.retry_after == 1 else "seconds"
        super().__init__(429, message.format(wait=f"{self.retry_after} {unit}"))

    @classmethod
    def for_lockout(cls, blocked: Blocked) -> RetryLater:
        """The refusal of a login the lockout does not let through."""
        if isinstance(blocked, Busy):
            text = "too many logins from this address or for this user are in progress"
        else:
            text = "too many failed logins from this address or for this user"
        return cls(blocked.seconds, text + "; try again in {wait}")


@dataclass(frozen=True)
class Account:
    """A user checked by password for one REST request (Basic), without a session."""

    user: str
    role: Role


class Authenticator:
    """Checks credentials and tokens, keeps sessions, and writes the audit log."""

    log = Logger()

    def __init__(
        self,
        checker: CredentialChecker,
        *,
        sessions: Sessions,
        lockout: Lockout,
        audit: AuditLog,
        keys: KeyStore,
        challenges: Challenges,
        reactor: object | None = None,
        key_threads: int = 2,
    ) -> None:
        """``reactor`` runs the key logins' RSA work in its thread pool (None: the global
        reactor, looked up when first needed), at most ``key_threads`` at a time."""
        self._checker = checker
        self._threads = ThreadedWork(reactor, key_threads)
        self.sessions = sessions
        self._lockout = lockout
        self._audit = audit
        self.keys = keys
        self._challenges = challenges
        #: Told the method (password, token, ssl, basic) of every failed login.
        self.on_failed_login: Callable[[str], object] | None = None

    @property
    def audit_log(self) -> AuditLog:
        """The audit log, so that the daemon can reopen it after log rotation."""
        return self._audit

    # The Gate of sysadmd.api._dispatch (with authenticate, below)

    def caller(self, connection: Connection) -> Identity | None:
        """The user behind ``connection``: its session if still live, or its Basic login."""
        if connection.identity is not None:
            return connection.identity
        if connection.token is None:
            return None
        session = self.sessions.lookup(connection.token)
        if session is None:
            connection.logged_out()
        return session

    def audit(self, spec: ActionSpec, call: Call, outcome: str) -> None:
        """Record a call of an action that changes something."""
        self._audit.record(
            "call",
            user=call.caller.user if call.caller else None,
            role=str(call.caller.role) if call.caller else None,
            peer=call.connection.peer,
            namespace=spec.namespace,
            name=spec.name,
            action=spec.action,
            args=call.args,
            outcome=outcome,
        )

    # Logins

    @property
    def lockout(self) -> Lockout:
        """The failed-login limits, for the local control socket."""
        return self._lockout

    def _refuse_if_blocked(self, peer: str, user: str | None, method: str) -> None:
        wait = self._lockout.blocked(peer, user)
        if wait is not None:
            raise self._blocked(peer, user, method, Blocked(wait))

    def _blocked(self, peer: str, user: str | None, method: str, blocked: Blocked) -> RetryLater:
        refusal = RetryLater.for_lockout(blocked)
        self._audit.record(
            "login",
            user=user,
            peer=peer,
            method=method,
            outcome="busy" if isinstance(blocked, Busy) else "blocked",
            retry_after=refusal.retry_after,
        )
        return refusal

    async def _admit(
        self, peer: str, counted_user: str | None, user: str | None, method: str
    ) -> Attempt:
        """Wait for the lockout's leave to check a login; 429 while blocked or busy."""
        try:
            return await self._lockout.begin(peer, counted_user)
        except Blocked as e:
            raise self._blocked(peer, user, method, e) from None

    def _failed(self, peer: str, user: str | None, method: str) -> ApiError:
        self._audit.record("login", user=user, peer=peer, method=method, outcome="failed")
        if self.on_failed_login is not None:
            self.on_failed_login(method)
        self.log.info(
            "Failed {method} login for {user!r} from {peer}", method=method, user=user, peer=peer
        )
        return ApiError(401, FAILED)

    def _succeeded(self, peer: str, user: str, role: Role, method: str) -> None:
        self._lockout.succeeded(peer, user)
        self._audit.record(
            "login", user=user, peer=peer, method=method, outcome="ok", role=str(role)
        )

    async def check_password(self, username: str, password: str, peer: str, method: str) -> Account:
        """Check a user name and password; 401 if wrong, 429 while blocked.

        The check counts as a failure of the address and the user name while it runs (so
        concurrent guesses cannot outrun the lockout). Credentials the backend refuses
        without any work (a name no account can have, an empty password) count against
        the address only.
        """
        verified = await self._verify_password(username, password, peer, method)
        return Account(username, verified.role)

    async def _verify_password(
        self, username: str, password: str, peer: str, method: str
    ) -> Verified:
        """:meth:`check_password`, with the stamp of the account checked."""
        self._refuse_if_blocked(peer, username, method)
        cheap = not self._checker.plausible(username, password)
        attempt = await self._admit(peer, None if cheap else username, username, method)
        try:
            verified = await self._checker.verify(username, password)
        except BaseException:
            attempt.abandoned()
            raise
        if verified is None:
            attempt.failed()
            raise self._failed(peer, username, method)
        attempt.succeeded()
        self._succeeded(peer, username, verified.role, method)
        return verified

    def _log_in(self, connection: Connection, token: str, session: Session) -> list[object]:
        """Log ``connection`` in with ``session``; the login reply ``[token, seconds_valid]``.

        A connection that outlives the request (a WebSocket) watches the session, so that
        it hears at once when the session ends for any reason but its own logout.
        """
        unwatch = None
        if connection.lasting:
            unwatch = self.sessions.watch(session, connection.on_session_end)
        connection.logged_in(token, unwatch)
        return [token, self.sessions.seconds_valid(session)]

    def _start_session(self, connection: Connection, user: str, verified: Verified) -> list[object]:
        """A session checked against ``verified``'s account version, on ``connection``."""
        token, session = self.sessions.create(user, verified.role, stamp=verified.stamp)
        return self._log_in(connection, token, session)

    async def password_login(
        self, connection: Connection, username: str, password: str
    ) -> list[object]:
        """``rpc/auth``: a new session for a right password; ``[token, seconds_valid]``."""
        connection.logged_out()
        verified = await self._verify_password(username, password, connection.peer, "password")
        return self._start_session(connection, username, verified)

    def token_login(self, connection: Connection, token: str) -> list[object]:
        """``rpc/auth_token``: continue a live session on this connection."""
        connection.logged_out()
        self._refuse_if_blocked(connection.peer, None, "token")
        session = self.sessions.lookup(token)
        if session is None:
            self._lockout.failed(connection.peer, None)
            raise self._failed(connection.peer, None, "token")
        self._succeeded(connection.peer, session.user, session.role, "token")
        return self._log_in(connection, token, session)

    def ssl_challenge(self, connection: Connection) -> dict[str, str]:
        """``rpc/auth_ssl`` stage 1: a test string to sign, valid 30 s for this address."""
        connection.logged_out()
        self._refuse_if_blocked(connection.peer, None, "ssl")
        try:
            return {"test_string": self._challenges.issue(connection.peer)}
        except ChallengesFull as e:
            raise RetryLater(
                e.seconds, "too many key logins are in progress; try again in {wait}"
            ) from None

    async def ssl_login(self, connection: Connection, encrypted: str) -> list[object]:
        """``rpc/auth_ssl`` stage 2: the signed test string logs in its key's owner.

        The public-key operations run in the thread pool, never on the reactor thread.
        """
        connection.logged_out()
        peer = connection.peer
        self._refuse_if_blocked(peer, None, "ssl")
        attempt = await self._admit(peer, None, None, "ssl")
        try:
            user = await self._signer(peer, encrypted)
            verified = await self._checker.look_up(user) if user is not None else None
        except BaseException:
            attempt.abandoned()
            raise
        if user is None or verified is None:
            attempt.failed()
            raise self._failed(peer, None, "ssl")
        attempt.succeeded()
        self._succeeded(peer, user, verified.role, "ssl")
        return self._start_session(connection, user, verified)

    async def _signer(self, peer: str, encrypted: str) -> str | None:
        """The user whose key signed a test string live for ``peer``, or None."""
        live = self._challenges.live(peer)
        if not live:
            return None
        keys = self.keys.keys()
        found = await self._threads.run(partial(recover, encrypted, keys, live))
        if found is None or not self._challenges.consume(peer, found[1]):
            return None
        return found[0]

    # Registered keys

    async def register_key(
        self, user: str, pub_key: str, nickname: str = "", email: str = ""
    ) -> None:
        """``register_ssl_cert``: register ``pub_key`` for the existing account ``user``.

        404 if there is no such account (a key for a name nobody has yet would log in
        whoever gets that name later), 400 for a key that cannot be registered.
        """
        if await self._checker.role_of(user) is None:
            raise ApiError(404, f"there is no account {user} that may log in")
        try:
            self.keys.register(user, pub_key, nickname, email)
        except SSLAuthError as e:
            raise ApiError(400, str(e)) from None

    def logout(self, connection: Connection) -> None:
        """``rpc/auth_clear``: end the connection's session everywhere.

        This connection stops watching the session first: its own logout leaves it open
        (sysadm's clients expect that), while the other connections logged in with the
        session are told it was logged out elsewhere.
        """
        token = connection.token
        connection.logged_out()
        if token is None:
            return
        session = self.sessions.lookup(token)
        if session is not None:
            self.sessions.revoke(token, Ended.LOGGED_OUT)
            self._audit.record("logout", user=session.user, peer=connection.peer)

    # The authentication step of every request

    async def authenticate(
        self, credentials: Authentication, connection: Connection
    ) -> Identity | None:
        """Who ``credentials``, presented on ``connection``, log in; None for nobody.

        The one place a request's caller is settled, whichever transport it came by:
        :class:`ConnectionSession` is the connection's live session (or nobody);
        :class:`Bearer` a live session's token (401 otherwise; the failure counts toward
        the lockout); :class:`Basic` an account's password, checked as ``rpc/auth`` checks
        it, without starting a session (401, or 429 while blocked); :class:`Vouched` the
        user its transport vouches for; :class:`Unreadable` a 401. Presented credentials
        settle the connection's caller for as long as it lasts (one REST request).
        """
        if isinstance(credentials, ConnectionSession):
            return self.caller(connection)
        peer = connection.peer
        identity: Identity
        if isinstance(credentials, Bearer):
            session = self.sessions.lookup(credentials.token)
            if session is None:
                self._lockout.failed(peer, None)
                raise self._failed(peer, None, "token")
            # The session is the token's: ``rpc/auth_clear`` over this connection ends it.
            connection.token = credentials.token
            identity = session
        elif isinstance(credentials, Basic):
            identity = await self.check_password(
                credentials.user, credentials.password, peer, "basic"
            )
        elif isinstance(credentials, Vouched):
            identity = Account(credentials.user, credentials.role)
        else:
            raise ApiError(401, credentials.message)
        connection.identity = identity
        return identity


def credentials_from_header(authorization: bytes | None) -> Authentication:
    """The credentials an HTTP ``Authorization`` header presents.

    No header presents none (:data:`CONNECTION_SESSION`: a connection of one request is
    nobody); ``Bearer <token>`` and ``Basic <base64 of user:password>`` present theirs;
    anything else is :class:`Unreadable`, which the authentication step refuses with 401.
    """
    if authorization is None:
        return CONNECTION_SESSION
    scheme, _, credentials = authorization.strip().partition(b" ")
    credentials = credentials.strip()
    if scheme.lower() == b"bearer":
        return Bearer(credentials.decode("latin-1"))
    if scheme.lower() == b"basic":
        return _basic(credentials)
    return Unreadable("use Authorization: Basic or Bearer")


def _basic(credentials: bytes) -> Basic | Unreadable:
    unreadable = Unreadable("the Basic credentials are not valid base64 of user:password")
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return unreadable
    username, colon, password = decoded.partition(":")
    if not colon:
        return unreadable
    return Basic(username, password)
