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
however busy it is, when it is logged out (``rpc/auth_clear``), when its account changes (its
:attr:`Session.stamp` is no longer the account's, see :mod:`sysadmd.auth._sources`), or when
a full table evicts it. Sessions live in memory only and die with the daemon. :class:`Ended`
says which of these ended a session.

Whoever holds on to a session (a WebSocket logged in with it) can :meth:`Sessions.watch` it and
is told, at once, when and why it ends. A watched session has a timer on the clock that fires
just after the earliest instant it could expire, so an expiry is noticed within a millisecond
of it and not only at the next look-up. Sessions nobody watches are dropped lazily (a look-up
that finds one expired removes it, :meth:`Sessions.create` drops those at the least recently
used end of the table) and by :meth:`Sessions.purge`, which the daemon calls from a
``LoopingCall``. The table holds at most ``max_sessions``; when it is full a new login first
purges expired sessions and then evicts the least recently used one.

Neither the token nor its hash ever appears in a ``repr``, and nothing here logs a token. A
session has a short random :attr:`Session.id`, unrelated to the token, for logs and the audit
trail.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from sysadmd.api import Ended, Role
from sysadmd.auth._credentials import Stamp

__all__ = ["MAX_TOKEN_LENGTH", "TOKEN_BYTES", "Ended", "Session", "Sessions"]

TOKEN_BYTES = 32
"""Random bytes in a token (256 bits); ``token_urlsafe`` encodes them as 43 characters."""

MAX_TOKEN_LENGTH = 128
"""Presented tokens longer than this are refused without hashing (ours are 43 characters)."""


#: How long after the last valid instant of a watched session its timer fires. A session is
#: still valid at exactly ``idle`` seconds unused (or ``absolute`` seconds old), so the timer
#: fires a moment later, when it has certainly expired.
EXPIRY_MARGIN: Final = 0.001

_log = Logger()


#: Told why a watched session ended.
Watcher = Callable[[Ended], object]


def _new_session_id() -> str:
    return secrets.token_hex(8)


@dataclass(eq=False)
class Session:
    """One logged-in user.

    Sessions compare by identity. ``created`` and ``last_used`` are reactor times
    (``IReactorTime.seconds()``). ``id`` is a random 16-hex-digit name for logs and audit
    records; it is not the token, says nothing about it, and does not authenticate anything.
    ``ended`` is None while the session lives, then why it ended. ``stamp`` is that of the
    account version the login was checked against (None for a session made without a
    login); the session ends when its account's stamp is another one.
    """

    user: str
    role: Role
    created: float
    last_used: float
    id: str = field(default_factory=_new_session_id)
    stamp: Stamp | None = field(default=None, repr=False, compare=False)
    ended: Ended | None = field(default=None, compare=False)
    # The table's key (the token's digest), the watchers and the expiry timer: the table's.
    _key: bytes = field(default=b"", repr=False, compare=False)
    _watchers: dict[object, Watcher] = field(default_factory=dict, repr=False, compare=False)
    _timer: IDelayedCall | None = field(default=None, repr=False, compare=False)


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

    def _end(self, session: Session, why: Ended) -> None:
        """Remove ``session`` from the table and tell its watchers why."""
        del self._by_digest[session._key]
        session.ended = why
        if session._timer is not None:
            if session._timer.active():
                session._timer.cancel()
            session._timer = None
        watchers = list(session._watchers.values())
        session._watchers.clear()
        for watcher in watchers:
            try:
                watcher(why)
            except Exception:
                _log.failure("A session's watcher failed (session {id})", id=session.id)

    def _drop_expired_front(self, now: float) -> None:
        """Drop expired sessions at the least recently used end, stopping at a live one."""
        while self._by_digest:
            session = next(iter(self._by_digest.values()))
            if not self._expired(session, now):
                return
            self._end(session, Ended.EXPIRED)

    def create(self, user: str, role: Role, *, stamp: Stamp | None = None) -> tuple[str, Session]:
        """Start a session for ``user`` with ``role``, checked against the account ``stamp``.

        :returns: the token, to be sent to the client and then forgotten, and the session.
        """
        now = self._clock.seconds()
        self._drop_expired_front(now)
        if len(self._by_digest) >= self._max:
            self.purge()
            while len(self._by_digest) >= self._max:
                self._end(next(iter(self._by_digest.values())), Ended.EVICTED)
        while True:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            digest = hashlib.sha256(token.encode("ascii")).digest()
            if digest not in self._by_digest:  # a repeat has probability 2**-256
                break
        session = Session(
            user=user, role=role, created=now, last_used=now, stamp=stamp, _key=digest
        )
        self._by_digest[digest] = session
        return token, session

    def lookup(self, token: str) -> Session | None:
        """The live session of ``token``, or None.

        Only the exact token matches: the empty string, a prefix, a suffix or any other
        string gives None. An expired session gives None and is removed (its watchers are
        told). A successful look-up counts as use: it restarts the idle period.
        """
        digest = _digest(token)
        if digest is None:
            return None
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = self._clock.seconds()
        if self._expired(session, now):
            self._end(session, Ended.EXPIRED)
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

    def watch(self, session: Session, watcher: Watcher) -> Callable[[], None]:
        """Have ``watcher`` told, once, why ``session`` ended, as soon as it ends.

        An expiry is noticed by a timer, not only at the next look-up. A session that has
        already ended tells ``watcher`` at once. Returns a function that stops watching
        (it does nothing once the session has ended).
        """
        if session.ended is not None or self._by_digest.get(session._key) is not session:
            watcher(session.ended or Ended.EXPIRED)
            return _nothing
        handle = object()
        session._watchers[handle] = watcher
        if session._timer is None:
            self._arm(session)

        def unwatch() -> None:
            session._watchers.pop(handle, None)
            if not session._watchers and session._timer is not None:
                if session._timer.active():
                    session._timer.cancel()
                session._timer = None

        return unwatch

    def _arm(self, session: Session) -> None:
        """Set the timer of a watched session for just after it could first expire."""
        deadline = min(session.last_used + self._idle, session.created + self._absolute)
        wait = max(0.0, deadline - self._clock.seconds()) + EXPIRY_MARGIN
        session._timer = self._clock.callLater(wait, self._check_expiry, session)

    def _check_expiry(self, session: Session) -> None:
        """The timer of a watched session: end it if it has expired, else wait again.

        Use since the timer was set moved the deadline on; look-ups never touch the timer.
        """
        session._timer = None
        if session.ended is not None:
            return
        if self._expired(session, self._clock.seconds()):
            self._end(session, Ended.EXPIRED)
        elif session._watchers:
            self._arm(session)

    def revoke(self, token: str, why: Ended = Ended.LOGGED_OUT) -> bool:
        """End the session of ``token`` (logged out, by default); whether there was one."""
        digest = _digest(token)
        session = self._by_digest.get(digest) if digest is not None else None
        if session is None:
            return False
        self._end(session, why)
        return True

    def end(self, session: Session, why: Ended = Ended.REVOKED) -> bool:
        """End ``session`` (its account changed); whether it was still live."""
        if session.ended is not None or self._by_digest.get(session._key) is not session:
            return False
        self._end(session, why)
        return True

    def revoke_user(self, user: str, why: Ended = Ended.REVOKED) -> int:
        """End every session of ``user`` (its account changed); how many ended."""
        doomed = [s for s in self._by_digest.values() if s.user == user]
        for session in doomed:
            self._end(session, why)
        return len(doomed)

    def live(self) -> list[Session]:
        """Every session the table holds now (expired ones not yet purged included)."""
        return list(self._by_digest.values())

    def purge(self) -> int:
        """Remove every expired session; how many were removed."""
        now = self._clock.seconds()
        doomed = [s for s in self._by_digest.values() if self._expired(s, now)]
        for session in doomed:
            self._end(session, Ended.EXPIRED)
        return len(doomed)


def _nothing() -> None:
    """Stop watching a session that had already ended: nothing to do."""
