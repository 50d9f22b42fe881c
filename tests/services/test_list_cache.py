"""The guest list's refresh window: shared while it runs, reused briefly, never older than
the caller's last mutation.

A fake runner answers ``iohyve list`` only when the test says so, and a
:class:`~twisted.internet.task.Clock` stands for the reactor's time.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from sysadmd.backends import ProcessResult, ProcessRunner
from sysadmd.backends._iohyve.adapter import Iohyve, IohyveFailed

HEADER = "Guest  VMM?  Running  rcboot?  Description\n"


def listing(*names: str) -> bytes:
    rows = "".join(f"{n:<7}NO    NO       NO       -\n" for n in names)
    return (HEADER + rows).encode()


class FakeRunner:
    """Records every command; each one finishes when the test calls :meth:`finish`."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], Deferred[ProcessResult]]] = []

    @property
    def spawned(self) -> int:
        return len(self.calls)

    def run(
        self, executable: str, args: tuple[str, ...], *, timeout: float | None = None
    ) -> Deferred[ProcessResult]:
        d: Deferred[ProcessResult] = Deferred()
        self.calls.append((tuple(args), d))
        return d

    def finish(self, index: int, stdout: bytes = b"", exit_code: int = 0) -> None:
        argv, d = self.calls[index]
        d.callback(ProcessResult(argv, exit_code, None, stdout, b"", False, False, False))


def make(window: float) -> tuple[Iohyve, FakeRunner, Clock]:
    runner = FakeRunner()
    clock = Clock()
    iohyve = Iohyve(cast(ProcessRunner, runner), ["/iohyve"], clock=clock, list_cache=window)
    return iohyve, runner, clock


def result_of(d: Deferred[Any]) -> Any:
    """The result ``d`` has already."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def test_callers_share_one_run_and_reuse_it_within_the_window() -> None:
    iohyve, runner, clock = make(1.0)
    waiting = [iohyve.list_vms() for _ in range(50)]
    assert runner.spawned == 1
    runner.finish(0, listing("web"))
    assert all(list(result_of(d)) == ["web"] for d in waiting)
    clock.advance(0.9)
    assert list(result_of(iohyve.list_vms())) == ["web"]
    assert runner.spawned == 1


def test_the_window_runs_from_when_the_list_was_asked_for() -> None:
    iohyve, runner, clock = make(1.0)
    first = iohyve.list_vms()
    clock.advance(0.5)
    runner.finish(0, listing("web"))
    result_of(first)
    clock.advance(0.25)
    result_of(iohyve.list_vms())
    assert runner.spawned == 1
    clock.advance(0.25)  # 1.0 s after the list was asked for: too old
    iohyve.list_vms()
    assert runner.spawned == 2
    runner.finish(1, listing("web", "db"))
    assert sorted(result_of(iohyve.list_vms())) == ["db", "web"]


def _expired(window: float) -> tuple[Iohyve, FakeRunner, Clock]:
    """A list of "web", asked for ``window`` seconds ago: too old to be reused."""
    iohyve, runner, clock = make(window)
    first = iohyve.list_vms()
    runner.finish(0, listing("web"))
    result_of(first)
    clock.advance(window)
    return iohyve, runner, clock


def test_while_a_refresh_runs_callers_get_the_previous_list_at_once() -> None:
    iohyve, runner, _ = _expired(1.0)
    answers = [iohyve.list_vms() for _ in range(20)]
    assert runner.spawned == 1 + 1  # one refresh for all of them
    assert all(list(result_of(d)) == ["web"] for d in answers)
    runner.finish(1, listing("web", "db"))
    assert sorted(result_of(iohyve.list_vms())) == ["db", "web"]
    assert runner.spawned == 2


def test_the_previous_list_is_never_answered_once_two_windows_old() -> None:
    iohyve, runner, clock = _expired(1.0)
    result_of(iohyve.list_vms())  # starts the refresh, answered with "web"
    clock.advance(0.99)
    assert list(result_of(iohyve.list_vms())) == ["web"]
    clock.advance(0.01)  # the refresh is slow: "web" is now two windows old
    waiting = iohyve.list_vms()
    assert not waiting.called
    runner.finish(1, listing("db"))
    assert list(result_of(waiting)) == ["db"]


def test_the_previous_list_is_not_answered_after_a_mutation() -> None:
    iohyve, runner, _ = _expired(1.0)
    result_of(iohyve.list_vms())  # a refresh runs

    async def change() -> None:
        await runner.run("/iohyve", ("create", "db", "8G"))

    iohyve.mutate(change)
    after = iohyve.list_vms()
    assert not after.called
    runner.finish(1, listing("web"))
    runner.finish(2)
    runner.finish(3, listing("web", "db"))
    assert sorted(result_of(after)) == ["db", "web"]


def test_a_failed_refresh_ends_the_previous_list() -> None:
    iohyve, runner, _ = _expired(1.0)
    result_of(iohyve.list_vms())
    runner.finish(1, b"", exit_code=1)
    again = iohyve.list_vms()
    assert runner.spawned == 3
    assert not again.called
    runner.finish(2, b"", exit_code=1)
    assert result_of(again).check(IohyveFailed)


def _cached_then_changing() -> tuple[Iohyve, FakeRunner, Deferred[Any]]:
    """A list cached for a minute, then a mutation asked for (the runner's second run)."""
    iohyve, runner, _ = make(60.0)
    first = iohyve.list_vms()
    runner.finish(0, listing("web"))
    result_of(first)

    async def change() -> None:
        await runner.run("/iohyve", ("create", "db", "8G"))

    return iohyve, runner, iohyve.mutate(change)


def test_a_finished_mutation_invalidates_the_cache() -> None:
    iohyve, runner, done = _cached_then_changing()
    runner.finish(1)
    assert result_of(done) is None
    after = iohyve.list_vms()
    assert runner.spawned == 3
    runner.finish(2, listing("db", "web"))
    assert sorted(result_of(after)) == ["db", "web"]


def test_a_mutation_in_flight_invalidates_the_cache_and_the_next_list_waits_for_it() -> None:
    iohyve, runner, done = _cached_then_changing()
    after = iohyve.list_vms()
    assert runner.spawned == 2  # the mutation runs; the list waits for it
    assert not after.called
    runner.finish(1)
    result_of(done)
    assert runner.spawned == 3
    runner.finish(2, listing("db", "web"))
    assert sorted(result_of(after)) == ["db", "web"]


def test_a_list_running_when_a_mutation_is_asked_for_is_not_shared_after_it() -> None:
    iohyve, runner, _ = make(60.0)
    early = iohyve.list_vms()

    async def change() -> None:
        await runner.run("/iohyve", ("create", "db", "8G"))

    done = iohyve.mutate(change)
    late = iohyve.list_vms()
    runner.finish(0, listing("web"))
    assert list(result_of(early)) == ["web"]
    runner.finish(1)
    result_of(done)
    runner.finish(2, listing("db", "web"))
    assert sorted(result_of(late)) == ["db", "web"]
    # The late list is the one cached now.
    assert sorted(result_of(iohyve.list_vms())) == ["db", "web"]
    assert runner.spawned == 3


def test_a_slow_guest_operation_invalidates_at_its_start_and_at_its_end() -> None:
    iohyve, runner, _ = make(60.0)

    async def delete() -> None:
        await runner.run("/iohyve", ("delete", "-f", "web"))

    first = iohyve.list_vms()
    runner.finish(0, listing("web"))
    result_of(first)
    done = iohyve.guest_operation("web", delete, slow=True)
    during = iohyve.list_vms()  # not in the write lane: runs meanwhile, afresh
    assert runner.spawned == 3
    runner.finish(2, listing("web"))
    result_of(during)
    runner.finish(1)
    result_of(done)
    after = iohyve.list_vms()  # the list during the delete is not reused
    assert runner.spawned == 4
    runner.finish(3, listing())
    assert result_of(after) == {}


def test_a_failed_list_is_not_cached() -> None:
    iohyve, runner, _ = make(60.0)
    first = iohyve.list_vms()
    runner.finish(0, b"", exit_code=1)
    failure = result_of(first)
    assert failure.check(IohyveFailed)
    again = iohyve.list_vms()
    assert runner.spawned == 2
    runner.finish(1, listing("web"))
    assert list(result_of(again)) == ["web"]


def test_window_zero_only_shares_a_running_list() -> None:
    iohyve, runner, _ = make(0.0)
    together = [iohyve.list_vms(), iohyve.list_vms()]
    assert runner.spawned == 1
    runner.finish(0, listing("web"))
    assert all(list(result_of(d)) == ["web"] for d in together)
    later = iohyve.list_vms()
    assert runner.spawned == 2
    runner.finish(1, listing("web"))
    result_of(later)


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="list_cache"):
        make(-1.0)


class _TimedRunner(FakeRunner):
    """Notes when each command started, on the test's clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.starts: list[float] = []

    def run(
        self, executable: str, args: tuple[str, ...], *, timeout: float | None = None
    ) -> Deferred[ProcessResult]:
        self.starts.append(self.clock.seconds())
        return super().run(executable, args, timeout=timeout)


@settings(max_examples=300, deadline=None)
@given(
    window=st.sampled_from([0.5, 1.0, 2.0]),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=1.5),  # seconds until this step
            st.integers(min_value=0, max_value=3),  # callers asking at that moment
            st.booleans(),  # whether the running list ends at that moment
            st.booleans(),  # whether a caller asks again from its own callback
        ),
        max_size=40,
    ),
)
def test_without_changes_no_two_lists_start_within_one_window(
    window: float, steps: list[tuple[float, int, bool, bool]]
) -> None:
    """However callers and lists interleave (pollers, callers that ask again as soon as
    their answer comes, lists slower or faster than the window), while nothing changes
    and every list succeeds, one ``iohyve list`` runs at a time and each starts at least
    one window after the one before."""
    clock = Clock()
    runner = _TimedRunner(clock)
    iohyve = Iohyve(cast(ProcessRunner, runner), ["/iohyve"], clock=clock, list_cache=window)
    starts = runner.starts
    finished = 0

    def ask(again: bool) -> None:
        d = iohyve.list_vms()
        if again:
            d.addCallback(lambda _: ask(False))

    for delay, callers, finish, again in steps:
        clock.advance(delay)
        for _ in range(callers):
            ask(again)
        if finish and finished < runner.spawned:
            assert runner.spawned - finished == 1, "two lists in flight"
            runner.finish(finished, listing("web"))
            finished += 1
    assert runner.spawned - finished <= 1, "two lists in flight"
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= window for gap in gaps), (starts, window)
