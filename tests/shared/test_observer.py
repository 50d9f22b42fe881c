"""One waiter for "tell me when done" (the daemon's and the client's): OneShotObserver, settled."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from sysadmd.shared import OneShotObserver, settled

OBSERVERS = pytest.mark.parametrize("make", [OneShotObserver])


def outcome(deferred: Deferred[Any]) -> list[object]:
    """What ``deferred`` fired with so far (a Failure is consumed)."""
    seen: list[object] = []

    def keep(result: object) -> None:
        seen.append(result)

    deferred.addBoth(keep)
    return seen


@OBSERVERS
def test_every_waiter_gets_the_result_before_and_after_it_came(make: Any) -> None:
    observer = make()
    early = [outcome(observer.when_fired()) for _ in range(3)]
    assert early == [[], [], []]
    observer.fire("done")
    assert early == [["done"]] * 3
    assert outcome(observer.when_fired()) == ["done"]
    assert observer.fired


@OBSERVERS
def test_a_failure_reaches_every_waiter_and_is_never_unhandled(make: Any) -> None:
    observer = make()
    early = outcome(observer.when_fired())
    observer.fire(Failure(ValueError("broken")))
    late = outcome(observer.when_fired())
    for seen in (early, late):
        [failure] = seen
        assert isinstance(failure, Failure)
        assert failure.check(ValueError)
    # Fired with nobody waiting: nothing is logged (the unraisable-exception filter in
    # setup.cfg turns a failure left in a garbage-collected Deferred into an error).
    make().fire(Failure(ValueError("nobody listens")))


@OBSERVERS
def test_cancelling_one_wait_leaves_the_others(make: Any) -> None:
    observer = make()
    cancelled, kept = observer.when_fired(), observer.when_fired()
    seen_cancelled, seen_kept = outcome(cancelled), outcome(kept)
    cancelled.cancel()
    [failure] = seen_cancelled
    assert isinstance(failure, Failure)
    assert failure.check(CancelledError)
    observer.fire(7)
    assert seen_kept == [7]


@OBSERVERS
def test_there_is_one_result(make: Any) -> None:
    observer = make()
    observer.fire(1)
    with pytest.raises(RuntimeError, match="fired already"):
        observer.fire(2)
    assert outcome(observer.when_fired()) == [1]


def test_settled_waits_without_taking_the_result() -> None:
    work: Deferred[str] = Deferred()
    waits = [outcome(settled(work)) for _ in range(2)]
    owner = outcome(work)
    work.callback("result")
    assert waits == [[None], [None]]
    assert owner == ["result"]

    failing: Deferred[str] = Deferred()
    wait = outcome(settled(failing))
    failing.errback(ValueError("kept for the owner"))
    assert wait == [None]
    owned = outcome(failing)
    assert isinstance(owned[0], Failure)
