"""Failed-login limiting: per-address and per-username counters that block brute force.

Every failed login counts once against the peer address and once against the username. When
one of them collects ``limit`` failures within ``window`` seconds it is blocked for ``block``
seconds; the defaults, 5 failures in 10 minutes block for 60 minutes, are sysadm's. Counting
by username as well stops an attacker who spreads guesses over many addresses; counting by
address stops one who sprays many usernames.

Counting
    Each key keeps a sliding window of the times of its most recent failures (at most
    ``limit`` of them). A failure more than ``window`` seconds old no longer counts, so the
    block starts when the ``limit``-th failure comes no more than ``window`` seconds after the
    first of the ``limit`` most recent ones. (sysadm instead restarted its counter when the
    previous failure was older than the window; a sliding window cannot be gamed by pausing
    just under the window between guesses.) Reaching the limit starts the block and clears the
    counter. While a key is blocked its failures are not counted (the daemon should not even
    try the password), so a block lasts exactly ``block`` seconds from the failure that caused
    it. A successful login clears the counters of its address and username but does not lift
    an active block.

Memory
    Addresses and usernames have separate tables, so a flood of one kind cannot push the other
    out. In each, the failure counters and the blocks are bounded by ``max_entries``: when
    full, the entry whose last failure is oldest (or the block that ends soonest) is dropped.
    Entries that no longer matter are dropped lazily as time passes. A key longer than
    256 characters is counted under the single key ``"<long>"``. Usernames are compared
    case-sensitively, as the system compares them.

Policy such as never blocking localhost, the 429 reply with ``Retry-After`` and the small
random delay belong to the caller; this module only counts. Everything runs on the reactor
thread with an injected clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from twisted.internet.interfaces import IReactorTime

__all__ = ["LONG_KEY", "MAX_KEY_LENGTH", "Lockout"]

MAX_KEY_LENGTH = 256
"""Addresses and usernames longer than this share one key, :data:`LONG_KEY`."""

LONG_KEY = "<long>"


def _bounded(key: str) -> str:
    return key if len(key) <= MAX_KEY_LENGTH else LONG_KEY


class _Table:
    """Failure counters and blocks for one kind of key (addresses or usernames)."""

    def __init__(self, limit: int, window: float, block: float, max_entries: int) -> None:
        self._limit = limit
        self._window = window
        self._block = block
        self._max = max_entries
        # key -> times of its recent failures (oldest first); the key failing least recently first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # key -> time its block ends; in the order the blocks started.
        self._blocks: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures) + len(self._blocks)

    def _expire(self, now: float) -> None:
        """Drop stale counters and ended blocks from the old ends of the tables."""
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if now - times[-1] <= self._window:
                break
            del self._failures[key]
        while self._blocks:
            key, until = next(iter(self._blocks.items()))
            if until > now:
                break
            del self._blocks[key]

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

    def fail(self, key: str, now: float) -> None:
        """Count one failure of ``key``; block it if that reaches the limit."""
        if self.remaining(key, now) is not None:
            return
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self._limit)
        times.append(now)
        while now - times[0] > self._window:
            times.popleft()
        if len(times) >= self._limit:
            self._blocks[key] = now + self._block
            while len(self._blocks) > self._max:
                self._blocks.popitem(last=False)
            return
        self._failures[key] = times
        while len(self._failures) > self._max:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (an active block stays)."""
        self._failures.pop(key, None)


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
    ) -> None:
        """Make empty tables.

        :param clock: the reactor (or a ``twisted.internet.task.Clock`` in tests).
        :param limit: failures within ``window`` that block a key.
        :param window: seconds for which a failure counts.
        :param block: seconds a block lasts.
        :param max_entries: the most counters, and separately the most blocks, kept for
            addresses and for usernames each.
        :raises ValueError: if a limit is not positive.
        """
        if limit < 1 or max_entries < 1:
            raise ValueError("limit and max_entries must be at least 1")
        if not window > 0 or not block > 0:
            raise ValueError("window and block must be positive")
        self._clock = clock
        self._addresses = _Table(limit, window, block, max_entries)
        self._users = _Table(limit, window, block, max_entries)

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

    def failed(self, address: str, username: str | None) -> None:
        """Count one failed login against ``address`` and against ``username``."""
        now = self._clock.seconds()
        self._addresses.fail(_bounded(address), now)
        if username is not None:
            self._users.fail(_bounded(username), now)

    def succeeded(self, address: str, username: str | None) -> None:
        """Clear the failure counters of ``address`` and ``username`` (not an active block)."""
        self._addresses.clear(_bounded(address))
        if username is not None:
            self._users.clear(_bounded(username))
