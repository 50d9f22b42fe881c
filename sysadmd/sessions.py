"""Login sessions: the bearer tokens that ``rpc/auth`` hands out.

A successful login creates a :class:`Session` and a token: 256 bits from :mod:`secrets`
(``token_urlsafe(32)``, 43 characters). The token itself is given to the client once and never
kept: the table maps ``sha256(token)`` to the session, so a request is authenticated by hashing
the token it presents and looking the digest up in a dict. That is an exact match by
construction, which rules out sysadm's bug B2 (a substring look-up that let an empty token or any
suffix of a real token match somebody else's session), and the look-up on a hash removes the
timing side channel of comparing secrets character by character.

A session ends when it has been idle for longer than ``idle`` seconds (15 minutes, sliding:
every successful look-up counts as use), when it is older than ``absolute`` seconds (8 hours)
however busy it is, or when it is revoked (logout, role change). Sessions live in memory only and
die with the daemon.

Expired sessions are dropped lazily (a look-up that finds one removes it, :meth:`Sessions.create`
drops those at the least recently used end of the table) and by :meth:`Sessions.purge`, which the
daemon calls from a ``LoopingCall``. The table holds at most ``max_sessions``; when it is full a
new login first purges expired sessions and then evicts the least recently used one.

Neither the token nor its hash ever appears in a ``repr``, and nothing here logs. A session has a
short random :attr:`Session.id`, unrelated to the token, for logs and the audit trail.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime

from sysadmd.roles import Role

__all__ = ["MAX_TOKEN_LENGTH", "TOKEN_BYTES", "Session", "Sessions"]

TOKEN_BYTES = 32
"""Random bytes in a token (256 bits); ``token_urlsafe`` encodes them as 43 characters."""

MAX_TOKEN_LENGTH = 128
"""Presented tokens longer than this are refused without hashing (ours are 43 characters)."""


def _new_session_id() -> str:
    return secrets.token_hex(8)


@dataclass(eq=False)
class Session:
    """One logged-in user.

    Sessions compare by identity. ``created`` and ``last_used`` are reactor times
    (``IReactorTime.seconds()``). ``id`` is a random 16-hex-digit name for logs and audit
    records; it is not the token, says nothing about it, and does not authenticate anything.
    """

    user: str
    role: Role
    created: float
    last_used: float
    id: str = field(default_factory=_new_session_id)


def _digest(token: str) -> bytes | None:
    """The table key of a presented token, or None for one that cannot be ours."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


class Sessions:
    """The table of live sessions, keyed by the SHA-256 digest of their tokens.

    All methods run on the reactor thread; the clock is injected so that tests can drive it.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        idle: float = 900.0,
        absolute: float = 8 * 3600.0,
        max_sessions: int = 10_000,
    ) -> None:
        """Make an empty table.

        :param clock: the reactor (or a ``twisted.internet.task.Clock`` in tests).
        :param idle: seconds without use after which a session ends.
        :param absolute: seconds after its creation at which a session ends, used or not.
        :param max_sessions: the most sessions kept at once.
        :raises ValueError: if a limit is not positive.
        """
        if not idle > 0 or not absolute > 0:
            raise ValueError("session lifetimes must be positive")
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self._clock = clock
        self._idle = idle
        self._absolute = absolute
        self._max = max_sessions
        # digest -> session, least recently used first (create and lookup move to the end).
        self._by_digest: OrderedDict[bytes, Session] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"<Sessions: {len(self._by_digest)} held, idle {self._idle:g} s, "
            f"absolute {self._absolute:g} s, max {self._max}>"
        )

    def __len__(self) -> int:
        """How many sessions the table holds (expired ones not yet purged included)."""
        return len(self._by_digest)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_used > self._idle or now - session.created > self._absolute

    def _drop_expired_front(self, now: float) -> None:
        """Drop expired sessions at the least recently used end, stopping at a live one."""
        while self._by_digest:
            digest, session = next(iter(self._by_digest.items()))
            if not self._expired(session, now):
                return
            del self._by_digest[digest]

    def create(self, user: str, role: Role) -> tuple[str, Session]:
        """Start a session for ``user`` with ``role``.

        :returns: the token, to be sent to the client and then forgotten, and the session.
        """
        now = self._clock.seconds()
        self._drop_expired_front(now)
        if len(self._by_digest) >= self._max:
            self.purge()
            while len(self._by_digest) >= self._max:
                self._by_digest.popitem(last=False)
        while True:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            digest = hashlib.sha256(token.encode("ascii")).digest()
            if digest not in self._by_digest:  # a repeat has probability 2**-256
                break
        session = Session(user=user, role=role, created=now, last_used=now)
        self._by_digest[digest] = session
        return token, session

    def lookup(self, token: str) -> Session | None:
        """The live session of ``token``, or None.

        Only the exact token matches: the empty string, a prefix, a suffix or any other
        string gives None. An expired session gives None and is removed. A successful look-up
        counts as use: it restarts the idle period.
        """
        digest = _digest(token)
        if digest is None:
            return None
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = self._clock.seconds()
        if self._expired(session, now):
            del self._by_digest[digest]
            return None
        session.last_used = now
        self._by_digest.move_to_end(digest)
        return session

    def seconds_valid(self, session: Session) -> int:
        """Whole seconds until ``session`` expires if it is not used again.

        The smaller of the idle time left and the absolute lifetime left, rounded to the
        nearest second (so a new session reports the full idle time even though a few
        microseconds have passed) and never negative; this is the second element of the
        ``rpc/auth`` reply.
        """
        now = self._clock.seconds()
        left = min(
            self._idle - (now - session.last_used),
            self._absolute - (now - session.created),
            self._idle,  # a clock that stepped back must not promise more than a full period
        )
        return max(0, round(left))

    def revoke(self, token: str) -> bool:
        """End the session of ``token``; whether there was one."""
        digest = _digest(token)
        return digest is not None and self._by_digest.pop(digest, None) is not None

    def revoke_session(self, session: Session) -> bool:
        """End ``session`` (for a holder of the session, not the token); whether it was held."""
        for digest, held in self._by_digest.items():
            if held is session:
                del self._by_digest[digest]
                return True
        return False

    def revoke_user(self, user: str) -> int:
        """End every session of ``user`` (logout everywhere, role change); how many ended."""
        doomed = [d for d, s in self._by_digest.items() if s.user == user]
        for digest in doomed:
            del self._by_digest[digest]
        return len(doomed)

    def purge(self) -> int:
        """Remove every expired session; how many were removed."""
        now = self._clock.seconds()
        doomed = [d for d, s in self._by_digest.items() if self._expired(s, now)]
        for digest in doomed:
            del self._by_digest[digest]
        return len(doomed)
