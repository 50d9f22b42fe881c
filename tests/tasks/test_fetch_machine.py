"""A property-based state machine over fetch, rename, remove and kill.

Hypothesis picks sequences of operations on a few ISO names; downloads come from a
local server that holds each one half way until the machine lets them finish. A
model predicts every reply; after every step the ISO store on disk must match it.
Whatever the sequence: no 500, no ISO lost, duplicated or corrupted, every task
ends in a final state.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest_twisted
from httpserver import HTTPServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from probe import OpenGate
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from sysadmd.api import Api, ApiError, Connection, Registry, Role
from sysadmd.auth._authenticator import Account
from sysadmd.backends import Iohyve, ProcessRunner
from sysadmd.services import IohyveActions
from sysadmd.simulator.cli import main as simulator
from sysadmd.tasks import FetchQueue

NAMES = ("a.iso", "b.iso", "c.iso")
CONNECTION = Connection("127.0.0.1", "test")


def _wait(seconds: float) -> None:
    pytest_twisted.blockon(deferLater(reactor, seconds, lambda: None))


class FetchMachine(RuleBasedStateMachine):
    """The daemon below its transports, against a model of the ISO store."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="sysadmd-machine-"))
        self.root = self.directory / "sim"
        self.http = HTTPServer()
        for name in NAMES:
            self.http.files.files[name] = f"contents of {name} ".encode() * 5000
            self.http.files.stall.add(name)
        self.runner = ProcessRunner(reactor, kill_grace=0.5)
        command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(self.root)]
        self.iohyve = Iohyve(self.runner, command, iso_root=self.root / "iohyve" / "ISO")
        self.fetches = FetchQueue(self.iohyve, reactor, max_queued=2)
        self.fetches.startService()
        registry = Registry()
        registry.register(IohyveActions(self.iohyve, self.fetches))
        self.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))
        with contextlib.redirect_stdout(io.StringIO()):
            simulator(["--root", str(self.root), "isolist"])
        #: name -> the content it must have; what the store holds when nothing is pending
        self.store: dict[str, bytes] = {}
        #: name -> (task id, the content it will have if it arrives)
        self.pending: dict[str, tuple[str, bytes]] = {}

    def teardown(self) -> None:
        self.settle_all()
        for task in self.fetches.tasks.values():
            assert task.state.final, task
        pytest_twisted.blockon(self.fetches.stopService())
        pytest_twisted.blockon(self.runner.stop_all())
        self.http.stop()

    def call(self, action: str, **args: Any) -> int:
        try:
            pytest_twisted.blockon(
                Deferred.fromCoroutine(
                    self.api.call("sysadm", "iohyve", {"action": action, **args}, CONNECTION)
                )
            )
        except ApiError as e:
            assert e.code != 500, e.message
            return e.code
        return 200

    def refresh(self) -> None:
        """Fold finished tasks into the model."""
        for name, (task_id, content) in list(self.pending.items()):
            task = self.fetches.tasks[task_id]
            if task.state.final:
                del self.pending[name]
                if task.state.value == "succeeded":
                    self.store[name] = content

    def settle_all(self) -> None:
        for _ in range(400):
            self.http.files.finish()
            if all(t.state.final for t in self.fetches.tasks.values()):
                break
            _wait(0.05)
        self.refresh()

    @rule(name=st.sampled_from(NAMES))
    def fetch(self, name: str) -> None:
        self.refresh()
        queued = sum(1 for t in self.fetches.tasks.values() if t.state.value == "queued")
        if name in self.store or name in self.pending:
            expected = 409
        elif queued >= 2:
            expected = 503
        else:
            expected = 200
        before = set(self.fetches.tasks)
        assert self.call("fetchiso", url=self.http.url(name)) == expected
        if expected == 200:
            (task_id,) = set(self.fetches.tasks) - before
            self.pending[name] = (task_id, self.http.files.files[name])

    @rule(source=st.sampled_from(NAMES), new=st.sampled_from(NAMES))
    def rename(self, source: str, new: str) -> None:
        self.refresh()
        if source in self.pending or new in self.pending:
            expected = 409
        elif source == new:
            expected = 409 if source in self.store else 404
        elif source not in self.store:
            expected = 404
        elif new in self.store:
            expected = 409
        else:
            expected = 200
        assert self.call("renameiso", source=source, target=new) == expected
        if expected == 200:
            self.store[new] = self.store.pop(source)

    @rule(name=st.sampled_from(NAMES))
    def remove(self, name: str) -> None:
        self.refresh()
        if name in self.pending:
            expected = 409
        elif name not in self.store:
            expected = 404
        else:
            expected = 200
        assert self.call("rmiso", target=name) == expected
        if expected == 200:
            del self.store[name]

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.pending)))
        task_id, _ = self.pending[name]
        self.fetches.kill([task_id])
        for _ in range(200):
            if self.fetches.tasks[task_id].state.final:
                break
            _wait(0.05)
        self.refresh()
        assert name not in self.pending

    @rule()
    def finish_downloads(self) -> None:
        self.settle_all()

    @invariant()
    def store_matches_the_model(self) -> None:
        store = self.root / "iohyve" / "ISO"
        if not store.exists():
            return
        on_disk = {
            p.name: (p / p.name).read_bytes()
            for p in store.iterdir()
            if p.name not in self.pending and p.name in NAMES
        }
        assert on_disk == self.store


FetchMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFetchMachine = FetchMachine.TestCase
