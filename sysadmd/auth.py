"""Authentication: logins, sessions, roles, lockout and the audit trail, in one place.

Every transport asks the :class:`Authenticator` who is behind a connection: a
WebSocket connection that logged in holds a session token; a REST request carries
``Authorization: Basic`` (checked on every request, as sysadm did) or
``Authorization: Bearer <token>``. Failed logins count per peer address and per
user name; past the limit both are blocked for a while. Unknown users, users
without a permitted role and wrong passwords all get the same answer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from twisted.logger import Logger

from sysadmd.audit import AuditLog
from sysadmd.calls import Call, Connection, Identity
from sysadmd.credentials import CredentialChecker
from sysadmd.errors import ApiError
from sysadmd.lockout import Lockout
from sysadmd.registry import ActionSpec
from sysadmd.roles import Role
from sysadmd.sessions import Ended, Session, Sessions
from sysadmd.sslauth import Challenges, KeyStore

FAILED: Final = "invalid user name or password"
CHALLENGE_HEADER: Final = 'Basic realm="sysadmd", Bearer realm="sysadmd"'


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
    ) -> None:
        self._checker = checker
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

    # The Gate of sysadmd.api

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

    def _refuse_if_blocked(self, peer: str, user: str | None, method: str) -> None:
        wait = self._lockout.blocked(peer, user)
        if wait is not None:
            self._audit.record("login", user=user, peer=peer, method=method, outcome="blocked")
            minutes = max(1, round(wait / 60))
            raise ApiError(
                429,
                f"too many failed logins from this address or for this user; "
                f"try again in {minutes} minute{'s' if minutes != 1 else ''}",
            )

    def _failed(self, peer: str, user: str | None, method: str) -> ApiError:
        self._lockout.failed(peer, user)
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
        """Check a user name and password; 401 if wrong, 429 while blocked."""
        self._refuse_if_blocked(peer, username, method)
        role = await self._checker.check(username, password)
        if role is None:
            raise self._failed(peer, username, method)
        self._succeeded(peer, username, role, method)
        return Account(username, role)

    def _log_in(self, connection: Connection, token: str, session: Session) -> list[object]:
        """Log ``connection`` in with ``session``; the login reply ``[token, seconds_valid]``.

        A connection that outlives the request (a WebSocket) watches the session, so that
        it hears at once when the session ends for any reason but its own logout.
        """
        connection.logged_in(token)
        if connection.on_session_end is not None:
            connection.unwatch = self.sessions.watch(session, connection.on_session_end)
        return [token, self.sessions.seconds_valid(session)]

    def _start_session(self, connection: Connection, user: str, role: Role) -> list[object]:
        token, session = self.sessions.create(user, role)
        return self._log_in(connection, token, session)

    async def password_login(
        self, connection: Connection, username: str, password: str
    ) -> list[object]:
        """``rpc/auth``: a new session for a right password; ``[token, seconds_valid]``."""
        connection.logged_out()
        account = await self.check_password(username, password, connection.peer, "password")
        return self._start_session(connection, account.user, account.role)

    def token_login(self, connection: Connection, token: str) -> list[object]:
        """``rpc/auth_token``: continue a live session on this connection."""
        connection.logged_out()
        self._refuse_if_blocked(connection.peer, None, "token")
        session = self.sessions.lookup(token)
        if session is None:
            raise self._failed(connection.peer, None, "token")
        self._succeeded(connection.peer, session.user, session.role, "token")
        return self._log_in(connection, token, session)

    def ssl_challenge(self, connection: Connection) -> dict[str, str]:
        """``rpc/auth_ssl`` stage 1: a test string to sign, valid 30 s."""
        connection.logged_out()
        return {"test_string": self._challenges.issue()}

    async def ssl_login(self, connection: Connection, encrypted: str) -> list[object]:
        """``rpc/auth_ssl`` stage 2: the signed test string logs in its key's owner."""
        connection.logged_out()
        self._refuse_if_blocked(connection.peer, None, "ssl")
        user = self._challenges.verify(encrypted, self.keys.keys())
        role = await self._checker.role_of(user) if user is not None else None
        if user is None or role is None:
            raise self._failed(connection.peer, None, "ssl")
        self._succeeded(connection.peer, user, role, "ssl")
        return self._start_session(connection, user, role)

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

    # REST

    async def rest_connection(self, authorization: bytes | None, peer: str) -> Connection:
        """A connection for one REST request, from its ``Authorization`` header.

        No header gives an anonymous connection (public actions still work); a
        header that does not authenticate is a 401.
        """
        connection = Connection(peer, "rest")
        if authorization is None:
            return connection
        scheme, _, credentials = authorization.strip().partition(b" ")
        credentials = credentials.strip()
        if scheme.lower() == b"bearer":
            session = self.sessions.lookup(credentials.decode("latin-1"))
            if session is None:
                raise self._failed(peer, None, "token")
            connection.token = credentials.decode("latin-1")
            # A REST connection lasts one request: the session found now is its caller,
            # without a second look-up.
            connection.identity = session
            return connection
        if scheme.lower() == b"basic":
            username, password = _basic(credentials)
            connection.identity = await self.check_password(username, password, peer, "basic")
            return connection
        raise ApiError(401, "use Authorization: Basic or Bearer")


def _basic(credentials: bytes) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(401, "the Basic credentials are not valid base64 of user:password") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise ApiError(401, "the Basic credentials are not valid base64 of user:password")
    return username, password
