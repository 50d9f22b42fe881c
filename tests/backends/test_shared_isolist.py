"""The ISO list of the iohyve backend: callers that ask while an ``isolist`` runs share it,
and no caller gets a list asked for before a change it could know of.

A fake runner answers each command only when the test says so (the guest list's tests use
the same one), so what runs, and when, is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

from test_list_cache import FakeRunner, result_of
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sysadmd.backends import ProcessRunner
from sysadmd.backends._errors import Conflict
from sysadmd.backends._iohyve.adapter import Iohyve


def isolist(*names: str) -> bytes:
    return ("Listing ISO's...\n" + "".join(f"{name}\n" for name in names)).encode()


class Runner(FakeRunner):
    """The fake runner, which can also start a download whose end the test decides."""

    def __init__(self) -> None:
        super().__init__()
        self.downloads: list[Deferred[Any]] = []

    def start(
        self,
        executable: str,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> Any:
        done: Deferred[Any] = Deferred()
        self.downloads.append(done)
        return SimpleNamespace(done=done)

    def isolists(self) -> list[int]:
        """The indexes of the ``isolist`` commands run so far."""
        return [i for i, (argv, _) in enumerate(self.calls) if argv == ("isolist",)]


def make() -> tuple[Iohyve, Runner]:
    runner = Runner()
    iohyve = Iohyve(cast(ProcessRunner, runner), ["/iohyve"], clock=Clock())
    return iohyve, runner


def conflicted(d: Deferred[Any]) -> bool:
    outcome = result_of(d)
    if isinstance(outcome, Failure):
        outcome.trap(Conflict)
        return True
    return False


def test_checks_asked_for_while_an_isolist_runs_share_it() -> None:
    """Fifty checks at once run one isolist; each decision is its own (409 for the ISO that
    is listed, none for the others)."""
    iohyve, runner = make()
    checks = {f"new{i}.iso": iohyve.check_iso_absent(f"new{i}.iso") for i in range(49)}
    checks["there.iso"] = iohyve.check_iso_absent("there.iso")
    assert runner.isolists() == [0]
    runner.finish(0, isolist("there.iso"))
    assert [name for name, d in checks.items() if conflicted(d)] == ["there.iso"]


def test_a_check_after_the_isolist_finished_runs_a_new_one() -> None:
    """A finished list is never reused: an ISO added since it ran is seen."""
    iohyve, runner = make()
    first = iohyve.check_iso_absent("os.iso")
    runner.finish(0, isolist())
    assert not conflicted(first)
    second = iohyve.check_iso_absent("os.iso")
    assert runner.isolists() == [0, 1]
    runner.finish(1, isolist("os.iso"))
    assert conflicted(second)


def test_a_check_after_a_mutation_does_not_share_an_earlier_isolist() -> None:
    """An ISO renamed after a list was asked for: a check asked for after the rename waits
    for it and runs its own list."""
    iohyve, runner = make()
    early = iohyve.check_iso_absent("b.iso")
    renamed = iohyve.rename_iso("a.iso", "b.iso", busy=lambda name: False)
    late = iohyve.check_iso_absent("b.iso")
    assert runner.isolists() == [0, 1]  # the early check's, the rename's own
    runner.finish(0, isolist("a.iso"))  # from before the rename
    assert not conflicted(early)
    runner.finish(1, isolist("a.iso"))
    assert runner.calls[2][0] == ("renameiso", "a.iso", "b.iso")
    runner.finish(2)
    runner.finish(3, isolist("b.iso"))  # the rename's verification
    assert result_of(renamed) is None
    assert not late.called
    assert runner.isolists() == [0, 1, 3, 4]  # the late check's own, after the rename
    runner.finish(4, isolist("b.iso"))
    assert conflicted(late)


def test_a_download_that_ended_makes_a_new_isolist() -> None:
    """A download's process changes the ISOs outside the write lane: a check asked for once
    it has ended does not join a list asked for before."""
    iohyve, runner = make()
    early = iohyve.check_iso_absent("os.iso")
    iohyve.start_fetch("http://example.org/os.iso", timeout=60)
    runner.downloads[0].callback(None)
    late = iohyve.check_iso_absent("os.iso")
    assert runner.isolists() == [0, 1]
    runner.finish(0, isolist())
    runner.finish(1, isolist("os.iso"))
    assert not conflicted(early)
    assert conflicted(late)


def test_a_failed_isolist_fails_every_check_that_shared_it_and_is_not_kept() -> None:
    iohyve, runner = make()
    checks = [iohyve.check_iso_absent(f"n{i}.iso") for i in range(5)]
    runner.finish(0, b"", exit_code=1)
    assert all(isinstance(result_of(d), Failure) for d in checks)
    again = iohyve.check_iso_absent("n0.iso")
    assert runner.isolists() == [0, 1]
    runner.finish(1, isolist())
    assert not conflicted(again)
