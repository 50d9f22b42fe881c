"""Tests of sysadmd.lockout: failed-login limits by address and by username."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from sysadmd.lockout import LONG_KEY, MAX_KEY_LENGTH, Lockout

LIMIT = 5
WINDOW = 600.0
BLOCK = 3600.0
IP = "192.0.2.7"


@pytest.fixture
def clock() -> Clock:
    """A clock that starts at a realistic time, not 0."""
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture
def lockout(clock: Clock) -> Lockout:
    """Limits with sysadm's defaults: 5 failures in 10 minutes block for an hour."""
    return Lockout(clock, limit=LIMIT, window=WINDOW, block=BLOCK)


def test_defaults_are_sysadms(clock: Clock) -> None:
    lockout = Lockout(clock)
    for _ in range(4):
        lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") is None
    lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") == 3600.0


def test_nothing_is_blocked_at_first(lockout: Lockout) -> None:
    assert lockout.blocked(IP, "joe") is None
    assert len(lockout) == 0


def test_four_failures_then_success_do_not_block(lockout: Lockout, clock: Clock) -> None:
    for _ in range(LIMIT - 1):
        lockout.failed(IP, "joe")
        clock.advance(1)
    assert lockout.blocked(IP, "joe") is None
    lockout.succeeded(IP, "joe")
    for _ in range(LIMIT - 1):  # the success cleared both counters
        lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") is None
    lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") == BLOCK


def test_limit_failures_block_for_exactly_block_seconds(lockout: Lockout, clock: Clock) -> None:
    for _ in range(LIMIT):
        assert lockout.blocked(IP, "joe") is None
        lockout.failed(IP, "joe")
        clock.advance(WINDOW / LIMIT)
    clock.advance(-WINDOW / LIMIT)  # back to the moment of the fifth failure
    assert lockout.blocked(IP, "joe") == BLOCK
    assert lockout.blocked(IP, "ann") == BLOCK  # the address is blocked
    assert lockout.blocked("198.51.100.1", "joe") == BLOCK  # and the username
    assert lockout.blocked("198.51.100.1", "ann") is None
    clock.advance(BLOCK - 1)
    assert lockout.blocked(IP, "joe") == 1.0
    clock.advance(1)
    assert lockout.blocked(IP, "joe") is None
    clock.advance(1)  # block + 1
    assert lockout.blocked(IP, "joe") is None
    lockout.failed(IP, "joe")  # a fresh start: one failure does not block again
    assert lockout.blocked(IP, "joe") is None


def test_failures_while_blocked_do_not_extend_the_block(lockout: Lockout, clock: Clock) -> None:
    for _ in range(LIMIT):
        lockout.failed(IP, "joe")
    clock.advance(BLOCK - 10)
    for _ in range(LIMIT * 3):
        lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") == 10.0
    clock.advance(10)
    assert lockout.blocked(IP, "joe") is None


def test_success_does_not_lift_a_block(lockout: Lockout, clock: Clock) -> None:
    for _ in range(LIMIT):
        lockout.failed(IP, "joe")
    lockout.succeeded(IP, "joe")
    assert lockout.blocked(IP, "joe") == BLOCK


def test_failures_spread_over_more_than_the_window_do_not_block(
    lockout: Lockout, clock: Clock
) -> None:
    # Failures every 150.25 s: any five of them span 601 s, one more than the window.
    step = (WINDOW + 1) / (LIMIT - 1)
    for _ in range(LIMIT * 10):
        lockout.failed(IP, "joe")
        assert lockout.blocked(IP, "joe") is None
        clock.advance(step)


def test_the_window_slides(lockout: Lockout, clock: Clock) -> None:
    """A sliding window, not a counter reset: pausing between bursts does not help."""
    lockout.failed(IP, "joe")  # t = 0: expires from the window at t = 600+
    clock.advance(300)
    for _ in range(LIMIT - 2):  # t = 300
        lockout.failed(IP, "joe")
    clock.advance(WINDOW - 300 + 1)  # t = 601: the first failure no longer counts
    lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") is None  # 4 failures within the window
    lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") == BLOCK


def test_failures_exactly_window_apart_still_count(lockout: Lockout, clock: Clock) -> None:
    lockout.failed(IP, "joe")
    clock.advance(WINDOW)
    for _ in range(LIMIT - 1):
        lockout.failed(IP, "joe")
    assert lockout.blocked(IP, "joe") == BLOCK


def test_username_blocked_from_many_addresses(lockout: Lockout) -> None:
    for n in range(LIMIT):
        lockout.failed(f"198.51.100.{n}", "root")
    assert lockout.blocked("203.0.113.9", "root") == BLOCK
    assert lockout.blocked("203.0.113.9", "joe") is None
    assert lockout.blocked("198.51.100.0", "joe") is None  # one failure per address


def test_address_blocked_across_many_usernames(lockout: Lockout) -> None:
    for n in range(LIMIT):
        lockout.failed(IP, f"user{n}")
    assert lockout.blocked(IP, "somebody-else") == BLOCK
    assert lockout.blocked("198.51.100.1", "user0") is None  # one failure per username


def test_blocked_reports_the_longer_wait(lockout: Lockout, clock: Clock) -> None:
    for n in range(LIMIT):
        lockout.failed(IP, f"user{n}")
    clock.advance(100)
    for n in range(LIMIT):
        lockout.failed(f"198.51.100.{n}", "root")
    assert lockout.blocked(IP, "root") == BLOCK
    assert lockout.blocked(IP, "joe") == BLOCK - 100


def test_usernames_are_case_sensitive(lockout: Lockout) -> None:
    for n in range(LIMIT):
        lockout.failed(f"198.51.100.{n}", "joe")
    assert lockout.blocked("203.0.113.9", "Joe") is None
    assert lockout.blocked("203.0.113.9", "joe") == BLOCK


def test_addresses_and_usernames_are_separate_namespaces(lockout: Lockout) -> None:
    for n in range(LIMIT):
        lockout.failed(f"198.51.100.{n}", IP)  # a username that looks like the address
    assert lockout.blocked(IP, "joe") is None


def test_long_usernames_share_one_key(lockout: Lockout) -> None:
    for n in range(LIMIT):
        lockout.failed(f"198.51.100.{n}", f"{n}" + "x" * MAX_KEY_LENGTH)
    assert lockout.blocked("203.0.113.9", "y" * (MAX_KEY_LENGTH + 1)) == BLOCK
    assert lockout.blocked("203.0.113.9", "y" * 10**6) == BLOCK
    assert lockout.blocked("203.0.113.9", LONG_KEY) == BLOCK
    assert lockout.blocked("203.0.113.9", "y" * MAX_KEY_LENGTH) is None  # 256 is not long
    assert len(lockout) <= LIMIT + 1
    assert "x" * MAX_KEY_LENGTH not in repr(vars(vars(lockout)["_users"]))


def test_tables_are_bounded(clock: Clock) -> None:
    lockout = Lockout(clock, limit=LIMIT, window=WINDOW, block=BLOCK, max_entries=100)
    for n in range(10_000):
        lockout.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", f"user{n}")
    # 100 address counters and 100 username counters at most, and nothing blocked.
    assert len(lockout) == 200
    for n in range(10_000):  # an attacker who blocks many addresses
        for _ in range(LIMIT):
            lockout.failed(f"172.16.{n // 256}.{n % 256}", "x")
    assert len(lockout) <= 400


def test_the_oldest_counter_is_dropped_first(clock: Clock) -> None:
    lockout = Lockout(clock, limit=LIMIT, window=WINDOW, block=BLOCK, max_entries=3)
    for _ in range(LIMIT - 1):
        lockout.failed("192.0.2.1", "old")
    clock.advance(1)
    for _ in range(LIMIT - 1):
        lockout.failed("192.0.2.2", "recent")
    clock.advance(1)
    lockout.failed("192.0.2.3", "c")
    lockout.failed("192.0.2.4", "d")  # the tables are full: "old" and 192.0.2.1 go
    lockout.failed("192.0.2.2", "recent")
    assert lockout.blocked("192.0.2.2", "recent") == BLOCK  # kept: the fifth failure blocks
    lockout.failed("192.0.2.1", "old")
    assert lockout.blocked("192.0.2.1", "old") is None  # counting started again


def test_the_block_ending_soonest_is_dropped_first(clock: Clock) -> None:
    lockout = Lockout(clock, limit=1, window=WINDOW, block=BLOCK, max_entries=2)
    lockout.failed("192.0.2.1", "a")
    clock.advance(1)
    lockout.failed("192.0.2.2", "b")
    clock.advance(1)
    lockout.failed("192.0.2.3", "c")
    assert lockout.blocked("192.0.2.1", "a") is None
    assert lockout.blocked("192.0.2.2", "b") == BLOCK - 1
    assert lockout.blocked("192.0.2.3", "c") == BLOCK


def test_stale_entries_are_dropped_as_time_passes(lockout: Lockout, clock: Clock) -> None:
    for n in range(50):
        lockout.failed(f"198.51.100.{n}", f"user{n}")
    for _ in range(LIMIT):
        lockout.failed(IP, "joe")
    assert len(lockout) == 102
    clock.advance(WINDOW + 1)
    lockout.failed("203.0.113.1", "ann")
    assert len(lockout) == 4  # two blocks, two fresh counters
    clock.advance(BLOCK)
    assert lockout.blocked("203.0.113.2", "bob") is None
    assert len(lockout) == 0


def test_repr_names_no_user(lockout: Lockout) -> None:
    lockout.failed(IP, "joe")
    assert "joe" not in repr(lockout)
    assert IP not in repr(lockout)


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"window": 0.0}, {"block": -1.0}, {"max_entries": 0}, {"block": float("nan")}],
)
def test_bad_limits(clock: Clock, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Lockout(clock, **kwargs)
