"""Tests of sysadmd.auth._lockout: failed-login limits by address and by username."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from sysadmd.auth._lockout import LONG_KEY, MAX_KEY_LENGTH, Attempt, Blocked, Busy, Lockout

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


def test_the_counter_furthest_from_a_block_is_dropped_first(clock: Clock) -> None:
    """A full table drops the counter with the fewest failures, not the oldest one."""
    lockout = Lockout(clock, limit=LIMIT, window=WINDOW, block=BLOCK, max_entries=3)
    for _ in range(LIMIT - 1):
        lockout.failed("192.0.2.1", "old")
    clock.advance(1)
    for _ in range(LIMIT - 1):
        lockout.failed("192.0.2.2", "recent")
    clock.advance(1)
    lockout.failed("192.0.2.3", "c")
    lockout.failed("192.0.2.4", "d")  # the tables are full: "c" and 192.0.2.3 go
    lockout.failed("192.0.2.1", "old")
    assert lockout.blocked("192.0.2.1", "old") == BLOCK  # kept: the fifth failure blocks
    lockout.failed("192.0.2.2", "recent")
    assert lockout.blocked("192.0.2.2", "recent") == BLOCK
    for _ in range(LIMIT - 1):
        lockout.failed("192.0.2.3", "c")
    assert lockout.blocked("192.0.2.3", "c") is None  # counting started again


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


# Checks in flight, success, eviction and administration


def _begin(lockout: Lockout, address: str, user: str | None) -> tuple[list[Attempt], list[Any]]:
    """Start a check; the lists get its Attempt or its failure when they come."""
    started: list[Attempt] = []
    refused: list[Any] = []
    lockout.begin(address, user).addCallbacks(started.append, lambda f: refused.append(f.value))
    return started, refused


def test_checks_in_flight_count_as_failures(lockout: Lockout) -> None:
    """16 concurrent checks for one user from one address: only ``limit`` run; when they
    fail, the address and the user are blocked and the other 11 never run."""
    outcomes = [_begin(lockout, IP, "joe") for _ in range(16)]
    running = [started[0] for started, _ in outcomes if started]
    assert len(running) == LIMIT
    assert all(not refused for _, refused in outcomes)
    for attempt in running:
        attempt.failed()
    refused = [r[0] for _, r in outcomes if r]
    assert len(refused) == 16 - LIMIT
    assert all(isinstance(e, Blocked) and e.seconds == BLOCK for e in refused)
    assert lockout.blocked(IP, "joe") == BLOCK


def test_a_waiting_check_runs_when_one_in_flight_succeeds(lockout: Lockout) -> None:
    outcomes = [_begin(lockout, IP, "joe") for _ in range(LIMIT + 2)]
    first = outcomes[0][0][0]
    assert not outcomes[LIMIT][0]
    first.succeeded()
    assert outcomes[LIMIT][0] and not outcomes[LIMIT + 1][0]
    outcomes[1][0][0].abandoned()
    assert outcomes[LIMIT + 1][0]
    first.failed()  # settling twice changes nothing
    assert lockout.blocked(IP, "joe") is None


def test_checks_for_other_users_from_other_addresses_do_not_wait(lockout: Lockout) -> None:
    for _ in range(LIMIT):
        _begin(lockout, IP, "joe")
    started, _ = _begin(lockout, "198.51.100.1", "ann")
    assert started
    started, _ = _begin(lockout, IP, None)  # the address is taken
    assert not started


def test_too_many_waiting_are_refused_at_once(clock: Clock) -> None:
    lockout = Lockout(clock, limit=1, max_waiting=2)
    outcomes = [_begin(lockout, IP, "joe") for _ in range(4)]
    assert [bool(s) for s, _ in outcomes] == [True, False, False, False]
    refused = outcomes[3][1]
    assert len(refused) == 1 and isinstance(refused[0], Busy) and refused[0].seconds == 1.0


def test_a_blocked_key_is_refused_before_it_waits(lockout: Lockout) -> None:
    for _ in range(LIMIT):
        lockout.failed(IP, "joe")
    _, refused = _begin(lockout, IP, None)
    assert isinstance(refused[0], Blocked)


def test_success_clears_only_that_user_s_failures_of_the_address(lockout: Lockout) -> None:
    """An attacker who logs in to its own account keeps the failures of its address."""
    for _ in range(LIMIT - 1):
        lockout.failed(IP, "victim")
    lockout.succeeded(IP, "mallory")
    lockout.failed(IP, "victim")
    assert lockout.blocked(IP, "mallory") == BLOCK  # the address is blocked


def test_success_forgets_the_user_s_own_typos(lockout: Lockout) -> None:
    for _ in range(LIMIT - 2):
        lockout.failed(IP, "joe")
    lockout.failed(IP, "ann")
    lockout.succeeded(IP, "joe")
    for _ in range(LIMIT - 2):
        lockout.failed(IP, "bob")
    assert lockout.blocked(IP, "bob") is None  # 1 (ann) + 3 (bob): below the limit
    lockout.failed(IP, "bob")
    assert lockout.blocked(IP, "bob") == BLOCK


def test_a_flood_of_new_keys_cannot_reset_a_victim(clock: Clock) -> None:
    """Ten thousand one-off failures do not push out a counter one failure from a block."""
    lockout = Lockout(clock, limit=LIMIT, window=WINDOW, block=BLOCK, max_entries=100)
    for _ in range(LIMIT - 1):
        lockout.failed(IP, "victim")
    for n in range(10_000):
        lockout.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", f"user{n}")
    assert len(lockout) == 200
    lockout.failed("198.51.100.1", "victim")
    assert lockout.blocked("203.0.113.1", "victim") == BLOCK
    lockout.failed(IP, "somebody")
    assert lockout.blocked(IP, "x") == BLOCK  # and the address's four failures were kept


def test_blocks_outlast_counters_when_the_table_is_full(clock: Clock) -> None:
    lockout = Lockout(clock, limit=2, window=WINDOW, block=BLOCK, max_entries=3)
    lockout.failed(IP, None)
    lockout.failed(IP, None)
    for n in range(50):
        lockout.failed(f"198.51.100.{n}", None)
    assert lockout.blocked(IP, None) == BLOCK


def test_entries_and_clear(lockout: Lockout, clock: Clock) -> None:
    for _ in range(LIMIT):
        lockout.failed(IP, "joe")
    lockout.failed("198.51.100.1", "ann")
    _begin(lockout, "198.51.100.2", None)
    clock.advance(10)
    shown = {(e.kind, e.key): (e.failures, e.pending, e.blocked_for) for e in lockout.entries()}
    assert shown == {
        ("address", IP): (0, 0, BLOCK - 10),
        ("address", "198.51.100.1"): (1, 0, None),
        ("address", "198.51.100.2"): (0, 1, None),
        ("user", "joe"): (0, 0, BLOCK - 10),
        ("user", "ann"): (1, 0, None),
    }
    assert lockout.clear("address", IP)
    assert not lockout.clear("address", IP)
    assert lockout.blocked(IP, None) is None
    assert lockout.blocked(IP, "joe") == BLOCK - 10
    assert lockout.clear_all() == 3
    assert lockout.blocked(IP, "joe") is None


def test_clearing_wakes_the_checks_that_wait(lockout: Lockout) -> None:
    running = [_begin(lockout, IP, "joe")[0][0] for _ in range(LIMIT)]
    waiting, refused = _begin(lockout, IP, "joe")
    for attempt in running[:-1]:
        attempt.failed()
    assert not waiting and not refused
    lockout.clear("user", "joe")
    assert not waiting  # the address still has no room
    lockout.clear("address", IP)
    assert waiting  # beside the one still running
