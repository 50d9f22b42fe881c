"""The daemon's services stop one after another, the last added first."""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from sysadmd.app import StopInOrder


class Recorded(Service):
    """A service whose stop is recorded and ends only when the test says so."""

    def __init__(self, name: str, log: list[str], *, fails: bool = False) -> None:
        self.name = name
        self._log = log
        self._fails = fails
        self.stopped: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._log.append(f"stop {self.name}")
        if self._fails:
            raise RuntimeError(f"{self.name} cannot stop")
        return self.stopped


def test_each_service_stops_only_after_the_one_added_after_it() -> None:
    """The runner (added first) is not asked to stop while the fetch queue (added later)
    still takes its grace period; the whole stop ends with the last one."""
    log: list[str] = []
    top = StopInOrder()
    runner, fetches, listener = (Recorded(n, log) for n in ("runner", "fetches", "listener"))
    for service in (runner, fetches, listener):
        service.setServiceParent(top)
    top.startService()
    ended: list[None] = []
    top.stopService().addCallback(ended.append)
    assert log == ["stop listener"]
    listener.stopped.callback(None)
    assert log == ["stop listener", "stop fetches"]
    assert not ended
    fetches.stopped.callback(None)
    assert log == ["stop listener", "stop fetches", "stop runner"]
    assert not ended
    runner.stopped.callback(None)
    assert ended == [None]
    assert not top.running


def test_a_service_that_fails_to_stop_does_not_keep_the_others_running(
    errors: list[str],
) -> None:
    """The failure is logged and the services added before it are still stopped."""
    log: list[str] = []
    top = StopInOrder()
    first = Recorded("first", log)
    first.stopped.callback(None)
    first.setServiceParent(top)
    Recorded("broken", log, fails=True).setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert log == ["stop broken", "stop first"]
    assert done.called
    assert len(errors) == 1 and "cannot stop" in errors[0]
