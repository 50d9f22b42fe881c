"""Failed-login limiting: per-address and per-username counters that block brute force.

Every failed login counts once against the client's IP address and, when it names one, once
against the username (a login that names no user, such as a token or key login, counts
against the address only).
When one of them collects ``limit`` failures within ``window`` seconds it is blocked for
``block`` seconds; the defaults, 5 failures in 10 minutes block for 60 minutes, are sysadm's.
Counting by username as well stops an attacker who spreads guesses over many addresses;
counting by address stops one who sprays many usernames.

Checks in flight
    A password check takes time (argon2, PAM), so many can run at once. A check is counted as
    a pending failure from the moment it starts (:meth:`Lockout.begin`) until it ends
    (:meth:`Attempt.failed` or :meth:`Attempt.succeeded`): at most ``limit`` checks for one
    address or one username may be in flight or failed within the window. A further check
    waits until one of those ends, and then starts or, if the key got blocked meanwhile, is
    refused; a burst of concurrent guesses therefore never runs more than ``limit`` checks.
    At most ``max_waiting`` checks wait per key; more are refused at once (:class:`Busy`).

Counting
    Each key keeps a sliding window of the times of its most recent failures. A failure more
    than ``window`` seconds old no longer counts, so the block starts when the ``limit``-th
    failure comes no more than ``window`` seconds after the first of the ``limit`` most recent
    ones. Reaching the limit starts the block and clears the counter. While a key is blocked
    nothing is checked for it, so a block lasts exactly ``block`` seconds from the failure
    that caused it. A check may also be counted against the address only (the caller passes
    ``None`` as the username to :meth:`Lockout.begin`): :mod:`sysadmd.auth._authenticator`
    does so for a name no account can have, or a password no account can hold, which is
    refused without any hashing, so that such cheap failures cannot fill the username table.
    A check that could not be made (:meth:`Attempt.abandoned`, an error of the daemon's)
    counts nothing.

Success
    A successful login as X from address A clears X's counter and, of A's counter, only the
    failures that were for X (a user who mistyped their own password). It never lifts a block,
    and an attacker's login to an account of its own does not wipe the failures its address
    collected guessing at other accounts.

Memory
    Addresses and usernames have separate tables, so a flood of one kind cannot push the other
    out. Each holds at most ``max_entries`` keys, counters and blocks together. When a table
    is full, the entry that is furthest from a block goes first: a counter with the fewest
    failures (the oldest of those), and a block (the one ending soonest) only when the table
    holds nothing but blocks. So to make the daemon forget a counter with ``n`` failures an
    attacker must first bring ``max_entries`` other keys to at least ``n`` failures each
    within the window, and to forget a block, block ``max_entries`` other keys. Entries that
    no longer matter are dropped lazily as time passes. A key longer than 256 characters is
    counted under the single key ``"<long>"``. Usernames are compared case-sensitively, as the
    system compares them.

Policy such as the 429 reply with ``Retry-After`` belongs to the caller; this module only
counts. Everything runs on the reactor thread with an injected clock.
"""

from __future__ import annotations

import itertools
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final, Literal

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

__all__ = [
    "BUSY_RETRY",
    "LONG_KEY",
    "MAX_KEY_LENGTH",
    "Attempt",
    "Blocked",
    "Busy",
    "Entry",
    "Kind",
    "Lockout",
]

MAX_KEY_LENGTH: Final = 256
"""Addresses and usernames longer than this share one key, :data:`LONG_KEY`."""

LONG_KEY: Final = "<long>"

BUSY_RETRY: Final = 1.0
"""Seconds a caller refused with :class:`Busy` is told to wait."""

Kind = Literal["address", "user"]


def _bounded(key: str) -> str:
    return key if len(key) <= MAX_KEY_LENGTH else LONG_KEY


class Blocked(Exception):
    """A login may not be checked now; ``seconds`` is how long to wait (for Retry-After)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"blocked for {seconds:.0f} more seconds")
        self.seconds = seconds


class Busy(Blocked):
    """Too many checks for one address or username are already waiting for their turn."""

    def __init__(self) -> None:
        super().__init__(BUSY_RETRY)


@dataclass(frozen=True)
class Entry:
    """One key as :meth:`Lockout.entries` shows it."""

    kind: Kind
    key: str
    #: Failures within the window (0 for a blocked key).
    failures: int
    #: Checks running now.
    pending: int
    #: Seconds until the block ends, or None if the key is not blocked.
    blocked_for: float | None


@dataclass
class _Counter:
    """The recent failures of one key: when, and for which user (address table only)."""

    times: list[float] = field(default_factory=list)
    users: list[str | None] = field(default_factory=list)

    def prune(self, now: float, window: float) -> None:
        drop = 0
        while drop < len(self.times) and now - self.times[drop] > window:
            drop += 1
        if drop:
            del self.times[:drop]
            del self.users[:drop]


class _Table:
    """Failure counters, blocks and checks in flight for one kind of key."""

    def __init__(self, limit: int, window: float, block: float, max_entries: int) -> None:
        self._limit = limit
        self._window = window
        self._block = block
        self._max = max_entries
        self._counters: dict[str, _Counter] = {}
        # _levels[n]: the keys with n counted failures, least recently failed first.
        self._levels: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(limit)]
        # key -> time its block ends; in the order the blocks started (all last ``block``).
        self._blocks: OrderedDict[str, float] = OrderedDict()
        self.pending: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._counters) + len(self._blocks)

    # Bookkeeping

    def _place(self, key: str, counter: _Counter) -> None:
        """File ``key`` under its number of failures, as the most recent of that level."""
        self._levels[len(counter.times)][key] = None

    def _unplace(self, key: str, counter: _Counter) -> None:
        self._levels[len(counter.times)].pop(key, None)

    def _drop_counter(self, key: str) -> None:
        counter = self._counters.pop(key, None)
        if counter is not None:
            self._unplace(key, counter)

    def _expire(self, now: float) -> None:
        """Drop ended blocks and counters whose last failure left the window."""
        for level in self._levels[1:]:
            while level:
                key = next(iter(level))
                counter = self._counters[key]
                if now - counter.times[-1] <= self._window:
                    break
                self._drop_counter(key)
        while self._blocks:
            key, until = next(iter(self._blocks.items()))
            if until > now:
                break
            del self._blocks[key]

    def _make_room(self, now: float) -> None:
        """Evict until a new key fits: the fewest failures first, blocks last."""
        while len(self) >= self._max:
            for number, level in enumerate(self._levels[1:], start=1):
                if not level:
                    continue
                key = next(iter(level))
                counter = self._counters[key]
                self._unplace(key, counter)
                counter.prune(now, self._window)
                if not counter.times:
                    del self._counters[key]
                elif len(counter.times) < number:
                    self._place(key, counter)  # fewer than it was filed under: look again
                else:
                    del self._counters[key]
                break
            else:
                self._blocks.popitem(last=False)

    # Queries

    def remaining(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` is unblocked, or None if it is not blocked."""
        self._expire(now)
        until = self._blocks.get(key)
        if until is None:
            return None
        if until <= now:
            del self._blocks[key]
            return None
        return until - now

    def used(self, key: str, now: float) -> int:
        """Failures within the window plus checks in flight."""
        counter = self._counters.get(key)
        failures = 0
        if counter is not None:
            before = len(counter.times)
            counter.prune(now, self._window)
            failures = len(counter.times)
            if failures != before:
                self._levels[before].pop(key, None)
                if failures:
                    self._place(key, counter)
                else:
                    del self._counters[key]
        return failures + self.pending[key]

    def has_room(self, key: str, now: float) -> bool:
        return self.used(key, now) < self._limit

    # Changes

    def fail(self, key: str, now: float, user: str | None) -> None:
        """Count one failure of ``key``; block it if that reaches the limit."""
        if self.remaining(key, now) is not None:
            return
        counter = self._counters.get(key)
        if counter is None:
            self._make_room(now)
            counter = self._counters[key] = _Counter()
        else:
            self._unplace(key, counter)
            counter.prune(now, self._window)
        counter.times.append(now)
        counter.users.append(user)
        if len(counter.times) >= self._limit:
            del self._counters[key]
            self._blocks.pop(key, None)
            self._make_room(now)
            self._blocks[key] = now + self._block
            return
        self._place(key, counter)

    def clear_user(self, key: str, user: str | None) -> None:
        """Forget the failures of ``key`` (all of them, or those for ``user``); not a block."""
        counter = self._counters.get(key)
        if counter is None:
            return
        self._unplace(key, counter)
        if user is None:
            del self._counters[key]
            return
        kept = [(t, u) for t, u in zip(counter.times, counter.users, strict=True) if u != user]
        counter.times = [t for t, _ in kept]
        counter.users = [u for _, u in kept]
        if counter.times:
            self._place(key, counter)
        else:
            del self._counters[key]

    def lift(self, key: str) -> bool:
        """Forget everything about ``key``, its block included; whether there was anything."""
        found = key in self._counters or key in self._blocks
        self._drop_counter(key)
        self._blocks.pop(key, None)
        return found

    def lift_all(self) -> int:
        count = len(self)
        self._counters.clear()
        self._blocks.clear()
        for level in self._levels:
            level.clear()
        return count

    def entries(self, kind: Kind, now: float) -> list[Entry]:
        self._expire(now)
        keys = set(self._counters) | set(self._blocks) | {k for k, n in self.pending.items() if n}
        listed = []
        for key in sorted(keys):
            blocked = self.remaining(key, now)
            failures = 0 if blocked is not None else self.used(key, now) - self.pending[key]
            listed.append(Entry(kind, key, failures, self.pending[key], blocked))
        return listed


@dataclass(eq=False)
class _Waiter:
    address: str
    user: str | None
    deferred: Deferred[Attempt]
    order: int


class Attempt:
    """One login check in flight, counted as a failure until it says how it ended."""

    def __init__(self, lockout: Lockout, address: str, user: str | None) -> None:
        self._lockout = lockout
        self.address = address
        self.user = user
        self._settled = False

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._lockout._release(self.address, self.user)
        return True

    def failed(self) -> None:
        """The check failed: count it against the address and the username."""
        if self._settle():
            self._lockout.failed(self.address, self.user)
            self._lockout._wake(self.address, self.user)

    def succeeded(self) -> None:
        """The check succeeded: clear the username's failures (see :meth:`Lockout.succeeded`)."""
        if self._settle():
            if self.user is not None:
                self._lockout.succeeded(self.address, self.user)
            self._lockout._wake(self.address, self.user)

    def abandoned(self) -> None:
        """The check could not be made (an error of the daemon's): count nothing."""
        if self._settle():
            self._lockout._wake(self.address, self.user)


class Lockout:
    """Per-address and per-username failed-login limits."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        limit: int = 5,
        window: float = 600.0,
        block: float = 3600.0,
        max_entries: int = 10_000,
        max_waiting: int = 32,
    ) -> None:
        """Make empty tables.

        :param clock: the reactor (or a ``twisted.internet.task.Clock`` in tests).
        :param limit: failures within ``window`` that block a key; also the most checks that
            may be in flight for one key.
        :param window: seconds for which a failure counts.
        :param block: seconds a block lasts.
        :param max_entries: the most keys, counters and blocks together, kept for addresses
            and for usernames each.
        :param max_waiting: the most checks that may wait for their turn per key.
        :raises ValueError: if a limit is not positive.
        """
        if limit < 1 or max_entries < 1 or max_waiting < 0:
            raise ValueError("limit and max_entries must be at least 1, max_waiting at least 0")
        if not window > 0 or not block > 0:
            raise ValueError("window and block must be positive")
        self._clock = clock
        self._max_waiting = max_waiting
        self._addresses = _Table(limit, window, block, max_entries)
        self._users = _Table(limit, window, block, max_entries)
        self._waiting: dict[tuple[Kind, str], list[_Waiter]] = {}
        self._order = itertools.count()

    def __repr__(self) -> str:
        return f"<Lockout: {len(self._addresses)} address and {len(self._users)} user entries>"

    def __len__(self) -> int:
        """How many counters and blocks are held, addresses and usernames together."""
        return len(self._addresses) + len(self._users)

    def blocked(self, address: str, username: str | None) -> float | None:
        """Seconds until a login from ``address`` as ``username`` is allowed again, or None.

        A login is refused while either the address or the username is blocked; the value is
        the longer of the two remaining blocks (for ``Retry-After``). ``username`` is None
        for logins that name no user (a token), which only the address limits.
        """
        now = self._clock.seconds()
        waits = [self._addresses.remaining(_bounded(address), now)]
        if username is not None:
            waits.append(self._users.remaining(_bounded(username), now))
        found = [wait for wait in waits if wait is not None]
        return max(found) if found else None

    # Checks in flight

    def begin(self, address: str, username: str | None) -> Deferred[Attempt]:
        """Start a check of a login from ``address`` as ``username`` (None: by address only).

        Fires with an :class:`Attempt` once the check may run: at once if fewer than
        ``limit`` checks for the address and for the username are in flight or failed within
        the window, or else when one of those ends. Fails with :class:`Blocked` (the address
        or username is blocked, now or by the time its turn comes) or :class:`Busy` (too many
        checks wait already). The caller must end the attempt in every case.
        """
        address = _bounded(address)
        user = None if username is None else _bounded(username)
        try:
            attempt = self._try(address, user)
        except Blocked as e:
            return fail(e)
        if attempt is not None:
            return succeed(attempt)
        keys: list[tuple[Kind, str]] = [("address", address)]
        if user is not None:
            keys.append(("user", user))
        if any(len(self._waiting.get(k, ())) >= self._max_waiting for k in keys):
            return fail(Busy())
        waiter = _Waiter(address, user, Deferred(), next(self._order))
        for k in keys:
            self._waiting.setdefault(k, []).append(waiter)
        return waiter.deferred

    def _try(self, address: str, user: str | None) -> Attempt | None:
        wait = self.blocked(address, user)
        if wait is not None:
            raise Blocked(wait)
        now = self._clock.seconds()
        if not self._addresses.has_room(address, now):
            return None
        if user is not None and not self._users.has_room(user, now):
            return None
        self._addresses.pending[address] += 1
        if user is not None:
            self._users.pending[user] += 1
        return Attempt(self, address, user)

    def _release(self, address: str, user: str | None) -> None:
        self._addresses.pending[address] -= 1
        if self._addresses.pending[address] <= 0:
            del self._addresses.pending[address]
        if user is not None:
            self._users.pending[user] -= 1
            if self._users.pending[user] <= 0:
                del self._users.pending[user]

    def _wake(self, address: str | None, user: str | None) -> None:
        """Give the checks waiting on ``address`` or ``user`` (None: on anything) a turn."""
        if address is None and user is None:
            candidates = {w for waiters in self._waiting.values() for w in waiters}
        else:
            candidates = set(self._waiting.get(("address", address or ""), ()))
            if user is not None:
                candidates.update(self._waiting.get(("user", user), ()))
        for waiter in sorted(candidates, key=lambda w: w.order):
            try:
                attempt = self._try(waiter.address, waiter.user)
            except Blocked as e:
                self._forget(waiter)
                waiter.deferred.errback(e)
                continue
            if attempt is not None:
                self._forget(waiter)
                waiter.deferred.callback(attempt)

    def _forget(self, waiter: _Waiter) -> None:
        keys: list[tuple[Kind, str]] = [("address", waiter.address)]
        if waiter.user is not None:
            keys.append(("user", waiter.user))
        for k in keys:
            waiters = self._waiting.get(k)
            if waiters is not None:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[k]

    # Outcomes

    def failed(self, address: str, username: str | None) -> None:
        """Count one failed login against ``address`` and (if given) ``username``."""
        now = self._clock.seconds()
        user = None if username is None else _bounded(username)
        self._addresses.fail(_bounded(address), now, user)
        if user is not None:
            self._users.fail(user, now, None)

    def succeeded(self, address: str, username: str) -> None:
        """``username`` logged in from ``address``: forget that user's failures.

        The username's counter is cleared, and so are the failures of the address that were
        for that username; the address's failures for other usernames stay. Blocks stay.
        """
        user = _bounded(username)
        self._users.clear_user(user, None)
        self._addresses.clear_user(_bounded(address), user)

    # Administration

    def entries(self) -> list[Entry]:
        """Every address and username with failures, checks in flight or a block."""
        now = self._clock.seconds()
        return self._addresses.entries("address", now) + self._users.entries("user", now)

    def clear(self, kind: Kind, key: str) -> bool:
        """Lift the block of one address or username and forget its failures.

        Returns whether there was anything to forget.
        """
        table = self._addresses if kind == "address" else self._users
        found = table.lift(_bounded(key))
        self._wake(None, None)
        return found

    def clear_all(self) -> int:
        """Lift every block and forget every failure; how many entries were dropped."""
        count = self._addresses.lift_all() + self._users.lift_all()
        self._wake(None, None)
        return count
