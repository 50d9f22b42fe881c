"""Tests of sysadmd.auth._sessions: tokens, exact look-up (sysadm bug B2), expiry, revocation,
bounds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.task import Clock

from sysadmd.api import Role
from sysadmd.auth._credentials import Source, Stamp
from sysadmd.auth._sessions import EXPIRY_MARGIN, Ended, Session, Sessions

IDLE = 900.0
ABSOLUTE = 8 * 3600.0


@pytest.fixture
def clock() -> Clock:
    """A clock that starts at a realistic time, not 0."""
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture
def sessions(clock: Clock) -> Sessions:
    """A session table with the default lifetimes."""
    return Sessions(clock)


def test_create_lookup_round_trip(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    assert len(token) == 43  # token_urlsafe(32): 256 bits
    assert (session.user, session.role) == ("joe", Role.ADMIN)
    assert session.created == session.last_used == clock.seconds()
    assert sessions.lookup(token) is session
    assert len(sessions) == 1


def test_tokens_and_ids_are_unique(sessions: Sessions) -> None:
    created = [sessions.create("joe", Role.OPERATOR) for _ in range(2000)]
    assert len({token for token, _ in created}) == 2000
    assert len({session.id for _, session in created}) == 2000
    assert all(len(s.id) == 16 and int(s.id, 16) >= 0 for _, s in created)
    assert all(sessions.lookup(token) is session for token, session in created)


def test_idle_expiry_slides_with_use(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    for _ in range(5):
        clock.advance(899)
        assert sessions.lookup(token) is session
        assert session.last_used == clock.seconds()
    clock.advance(901)
    assert sessions.lookup(token) is None
    assert len(sessions) == 0  # purged by the failed look-up
    clock.advance(-901)
    assert sessions.lookup(token) is None  # gone for good, not merely hidden


def test_idle_boundary(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    clock.advance(IDLE)
    assert sessions.lookup(token) is session  # exactly idle seconds: still valid
    clock.advance(IDLE + 0.001)
    assert sessions.lookup(token) is None


def test_absolute_lifetime_ends_a_busy_session(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    while clock.seconds() - session.created + 600 <= ABSOLUTE:
        clock.advance(600)
        assert sessions.lookup(token) is session
    clock.advance(ABSOLUTE - (clock.seconds() - session.created))
    assert sessions.lookup(token) is session  # age == absolute: the last valid instant
    clock.advance(1)
    assert sessions.lookup(token) is None
    assert len(sessions) == 0


def test_seconds_valid(clock: Clock) -> None:
    sessions = Sessions(clock, idle=IDLE, absolute=2000.0)
    token, session = sessions.create("joe", Role.ADMIN)
    assert sessions.seconds_valid(session) == 900
    clock.advance(100.7)
    assert sessions.seconds_valid(session) == 799  # 799.3, to the nearest second
    clock.advance(0.0001)
    assert sessions.seconds_valid(session) == 799
    assert sessions.lookup(token) is session
    assert sessions.seconds_valid(session) == 900  # use restarts the idle period
    clock.advance(800)
    assert sessions.lookup(token) is session  # age 900.5
    assert sessions.seconds_valid(session) == 900
    clock.advance(800)
    assert sessions.lookup(token) is session  # age 1700.5: 299.5 s of life left
    assert sessions.seconds_valid(session) == 299
    clock.advance(400)
    assert sessions.seconds_valid(session) == 0  # expired: never negative


def test_seconds_valid_when_the_clock_steps_back(sessions: Sessions, clock: Clock) -> None:
    _, session = sessions.create("joe", Role.ADMIN)
    clock.advance(-3600)
    assert sessions.seconds_valid(session) == 900


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: t[1:], id="minus-first-character"),
        pytest.param(lambda t: t[:-1], id="minus-last-character"),
        pytest.param(lambda t: t[-4:], id="last-4-characters"),
        pytest.param(lambda t: t[-1:], id="last-character"),
        pytest.param(lambda t: t[:8], id="prefix"),
        pytest.param(lambda t: t + "::::", id="sysadm-separator-appended"),
        pytest.param(lambda t: "::::" + t, id="sysadm-separator-prepended"),
        pytest.param(lambda t: t + "x", id="extended"),
        pytest.param(lambda t: t.swapcase(), id="other-case"),
        pytest.param(lambda t: f" {t} ", id="padded"),
        pytest.param(lambda t: hashlib.sha256(t.encode()).hexdigest(), id="its-hash-hex"),
        pytest.param(lambda t: t + "\udc80", id="lone-surrogate"),
        pytest.param(lambda t: t + "é", id="non-ascii"),
        pytest.param(lambda t: t * 100, id="very-long"),
    ],
)
def test_only_the_exact_token_matches(sessions: Sessions, forge: Callable[[str], str]) -> None:
    """sysadm's bug B2 (substring look-up) cannot happen: nothing but the token matches."""
    token, session = sessions.create("joe", Role.ADMIN)
    sessions.create("ann", Role.OPERATOR)
    forged = forge(token)
    assert forged != token
    assert sessions.lookup(forged) is None
    assert sessions.revoke(forged) is False
    assert sessions.lookup(token) is session


def test_empty_token_matches_nothing_even_after_expiry(sessions: Sessions, clock: Clock) -> None:
    """In sysadm an empty token matched any session, live or expired."""
    sessions.create("joe", Role.ADMIN)
    assert sessions.lookup("") is None
    clock.advance(IDLE + 1)
    assert sessions.lookup("") is None


def test_a_token_finds_only_its_own_session(sessions: Sessions) -> None:
    token_a, session_a = sessions.create("joe", Role.ADMIN)
    token_b, session_b = sessions.create("ann", Role.OPERATOR)
    assert sessions.lookup(token_a) is session_a
    assert sessions.lookup(token_b) is session_b
    assert sessions.lookup(token_a[1:] + token_b[:1]) is None


def test_revoke(sessions: Sessions) -> None:
    token, _ = sessions.create("joe", Role.ADMIN)
    other, other_session = sessions.create("joe", Role.ADMIN)
    assert sessions.revoke(token) is True
    assert sessions.lookup(token) is None
    assert sessions.revoke(token) is False
    assert sessions.lookup(other) is other_session


def test_revoke_user(sessions: Sessions) -> None:
    joes = [sessions.create("joe", Role.ADMIN)[0] for _ in range(3)]
    ann, ann_session = sessions.create("ann", Role.OPERATOR)
    assert sessions.revoke_user("joe") == 3
    assert all(sessions.lookup(t) is None for t in joes)
    assert sessions.lookup(ann) is ann_session
    assert sessions.revoke_user("joe") == 0
    assert sessions.revoke_user("Ann") == 0  # exact user names
    assert len(sessions) == 1


def _strings_in(value: object, depth: int = 0) -> list[str]:
    """Every str and hex/bytes rendering reachable from ``value`` (containers and objects)."""
    if depth > 6:
        return []
    found: list[str] = []
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, bytes):
        found += [value.hex(), value.decode("latin-1"), repr(value)]
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _strings_in(key, depth + 1) + _strings_in(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            found += _strings_in(item, depth + 1)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        found += _strings_in(vars(value), depth + 1)
    found.append(repr(value))
    return found


def test_the_token_is_never_kept(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    assert sessions.lookup(token) is session
    digest = hashlib.sha256(token.encode()).digest()
    haystack = "\n".join(_strings_in(sessions) + _strings_in(session))
    assert token not in haystack
    assert token[4:20] not in haystack
    # The digest is the table key, as designed, but it shows in no repr.
    assert digest.hex() not in repr(sessions) + repr(session) + str(session)
    assert token not in repr(sessions) + repr(session)
    assert "joe" in repr(session)
    assert "1 held" in repr(sessions)


def test_eviction_of_the_least_recently_used(clock: Clock) -> None:
    sessions = Sessions(clock, max_sessions=3)
    first, first_session = sessions.create("a", Role.ADMIN)
    clock.advance(1)
    second, _ = sessions.create("b", Role.ADMIN)
    clock.advance(1)
    third, third_session = sessions.create("c", Role.ADMIN)
    clock.advance(1)
    assert sessions.lookup(first) is first_session  # now "b" is the least recently used
    fourth, fourth_session = sessions.create("d", Role.ADMIN)
    assert len(sessions) == 3
    assert sessions.lookup(second) is None
    assert sessions.lookup(first) is first_session
    assert sessions.lookup(third) is third_session
    assert sessions.lookup(fourth) is fourth_session


def test_a_full_table_drops_expired_sessions_before_live_ones(clock: Clock) -> None:
    sessions = Sessions(clock, idle=IDLE, absolute=1000.0, max_sessions=3)
    old, old_session = sessions.create("old", Role.ADMIN)
    clock.advance(800)
    a, a_session = sessions.create("a", Role.ADMIN)
    c, c_session = sessions.create("c", Role.ADMIN)
    clock.advance(50)
    assert sessions.lookup(old) is old_session  # least recently used: "a"
    clock.advance(151)  # "old" is past its absolute lifetime, "a" is live
    d, d_session = sessions.create("d", Role.ADMIN)
    assert len(sessions) == 3
    assert sessions.lookup(old) is None
    assert sessions.lookup(a) is a_session  # not evicted: the expired session made room
    assert sessions.lookup(c) is c_session
    assert sessions.lookup(d) is d_session


def test_purge(sessions: Sessions, clock: Clock) -> None:
    old = [sessions.create("old", Role.ADMIN)[0] for _ in range(3)]
    clock.advance(500)
    live, live_session = sessions.create("live", Role.ADMIN)
    busy, busy_session = sessions.create("busy", Role.ADMIN)
    assert sessions.purge() == 0
    clock.advance(500)  # "old" idle 1000 s
    assert sessions.purge() == 3
    assert len(sessions) == 2
    assert all(sessions.lookup(t) is None for t in old)
    assert sessions.lookup(live) is live_session
    assert sessions.lookup(busy) is busy_session
    while clock.seconds() - busy_session.created <= ABSOLUTE - 800:  # keep "busy" in use
        clock.advance(800)
        assert sessions.lookup(busy) is busy_session
    clock.advance(800)  # "busy" idle only 800 s but past its absolute lifetime
    assert sessions.purge() == 2  # "live" idle, "busy" past its absolute lifetime
    assert len(sessions) == 0
    assert sessions.purge() == 0


def test_create_drops_expired_sessions_as_it_goes(sessions: Sessions, clock: Clock) -> None:
    for _ in range(100):
        sessions.create("old", Role.ADMIN)
    clock.advance(IDLE + 1)
    sessions.create("new", Role.ADMIN)
    assert len(sessions) == 1


def test_session_repr_and_identity() -> None:
    one = Session("joe", Role.ADMIN, 0.0, 0.0)
    two = Session("joe", Role.ADMIN, 0.0, 0.0, id=one.id)
    assert one != two  # compared by identity
    assert repr(one).startswith("Session(user='joe'")


@pytest.mark.parametrize(
    "kwargs",
    [{"idle": 0.0}, {"absolute": -1.0}, {"max_sessions": 0}, {"idle": float("nan")}],
)
def test_bad_limits(clock: Clock, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Sessions(clock, **kwargs)


def told(sessions: Sessions, session: Session) -> list[Ended]:
    """Watch ``session``; the list fills with why it ended."""
    heard: list[Ended] = []
    sessions.watch(session, heard.append)
    return heard


def test_a_watched_idle_session_ends_on_its_timer(sessions: Sessions, clock: Clock) -> None:
    """No look-up needed: the watcher hears of the expiry just after the last valid instant."""
    token, session = sessions.create("joe", Role.ADMIN)
    heard = told(sessions, session)
    clock.advance(IDLE)
    assert heard == []
    clock.advance(EXPIRY_MARGIN)
    assert heard == [Ended.EXPIRED]
    assert session.ended is Ended.EXPIRED
    assert len(sessions) == 0
    assert sessions.lookup(token) is None
    assert clock.getDelayedCalls() == []


def test_use_moves_the_timer_on(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    heard = told(sessions, session)
    for _ in range(5):
        clock.advance(800)
        assert sessions.lookup(token) is session
    assert len(clock.getDelayedCalls()) == 1  # one timer, re-armed when it fires early
    clock.advance(IDLE)
    assert heard == []
    clock.advance(EXPIRY_MARGIN)
    assert heard == [Ended.EXPIRED]


def test_a_busy_watched_session_ends_at_its_lifetime(clock: Clock) -> None:
    sessions = Sessions(clock, idle=IDLE, absolute=3000.0)
    token, session = sessions.create("joe", Role.ADMIN)
    heard = told(sessions, session)
    for _ in range(29):
        clock.advance(100)
        assert sessions.lookup(token) is session
    clock.advance(100)  # age 3000: the last valid instant
    assert heard == []
    clock.advance(EXPIRY_MARGIN)
    assert heard == [Ended.EXPIRED]
    assert sessions.lookup(token) is None


def test_every_watcher_hears_every_way_a_session_ends(clock: Clock) -> None:
    sessions = Sessions(clock, max_sessions=3)
    logged_out, a = sessions.create("ann", Role.ADMIN)
    _, b = sessions.create("bob", Role.ADMIN)
    _, c = sessions.create("bob", Role.OPERATOR)
    heard = {session.id: told(sessions, session) for session in (a, b, c)}
    second = told(sessions, a)
    assert sessions.revoke(logged_out) is True
    assert heard[a.id] == second == [Ended.LOGGED_OUT]
    assert sessions.revoke_user("bob") == 2
    assert heard[b.id] == heard[c.id] == [Ended.REVOKED]
    full = [sessions.create("eve", Role.ADMIN)[1] for _ in range(3)]
    evicted = told(sessions, full[0])
    clock.advance(1)
    sessions.create("zed", Role.ADMIN)
    assert evicted == [Ended.EVICTED]
    expired = told(sessions, full[1])
    clock.advance(IDLE + 1)  # the timer ends it before any look-up or purge
    assert expired == [Ended.EXPIRED]
    assert clock.getDelayedCalls() == []


def test_lazy_expiry_tells_the_watchers_too(sessions: Sessions, clock: Clock) -> None:
    """A look-up or a purge that finds an expired session ends it for its watchers."""
    token, session = sessions.create("joe", Role.ADMIN)
    _, other = sessions.create("ann", Role.ADMIN)
    heard, other_heard = told(sessions, session), told(sessions, other)
    clock.rightNow += IDLE + 1  # time passes without the timers running yet
    assert sessions.lookup(token) is None
    assert heard == [Ended.EXPIRED]
    assert sessions.purge() == 1
    assert other_heard == [Ended.EXPIRED]


def test_unwatch_stops_the_timer(sessions: Sessions, clock: Clock) -> None:
    token, session = sessions.create("joe", Role.ADMIN)
    heard: list[Ended] = []
    first = sessions.watch(session, heard.append)
    second = sessions.watch(session, heard.append)
    first()
    assert len(clock.getDelayedCalls()) == 1  # still watched
    second()
    second()  # twice is harmless
    assert clock.getDelayedCalls() == []
    assert sessions.revoke(token) is True
    assert heard == []


def test_watching_an_ended_session_hears_at_once(sessions: Sessions) -> None:
    _, session = sessions.create("joe", Role.ADMIN)
    sessions.revoke_user("joe")
    heard: list[Ended] = []
    unwatch = sessions.watch(session, heard.append)
    assert heard == [Ended.REVOKED]
    unwatch()


def test_a_failing_watcher_does_not_stop_the_others(sessions: Sessions, errors: list[str]) -> None:
    _, session = sessions.create("joe", Role.ADMIN)

    def broken(why: Ended) -> None:
        raise RuntimeError("broken watcher")

    sessions.watch(session, broken)
    heard = told(sessions, session)
    assert sessions.revoke_user("joe") == 1
    assert heard == [Ended.REVOKED]
    assert len(errors) == 1 and "broken watcher" in errors[0]


def test_live_sessions_carry_their_stamps_and_end_one_by_one(sessions: Sessions) -> None:
    stamp = Stamp.of(Source.LOCAL, "admin", "some hash")
    _, first = sessions.create("joe", Role.ADMIN, stamp=stamp)
    _, second = sessions.create("joe", Role.OPERATOR)
    _, third = sessions.create("ann", Role.OPERATOR)
    assert sessions.live() == [first, second, third]
    assert (first.stamp, second.stamp) == (stamp, None)
    assert "some hash" not in repr(first) and stamp.digest not in repr(first)
    heard = told(sessions, first)
    assert sessions.end(first) is True
    assert heard == [Ended.REVOKED]
    assert sessions.end(first) is False  # once only
    assert sessions.live() == [second, third]
