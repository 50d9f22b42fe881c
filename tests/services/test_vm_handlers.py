"""The sysadm/iohyve handlers over an in-memory backend: they speak only the interface.

No process runs: the backend keeps its guests in dictionaries, and spawning a process
fails the test. The backend's errors reach the client as the API's codes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakevm import FakeBackend
from probe import OpenGate
from support import async_test
from twisted.internet.task import Clock

import sysadmd.services._iohyve
from sysadmd.api import Api, ApiError, Connection, Registry, Role
from sysadmd.auth._authenticator import Account
from sysadmd.backends import GuestSpec, GuestSummary, ProcessRunner, VMBackend
from sysadmd.services import IohyveActions
from sysadmd.tasks import FetchQueue

CONNECTION = Connection("127.0.0.1", "test")


class Handlers:
    """IohyveActions over a :class:`FakeBackend`, behind the Api core."""

    def __init__(self) -> None:
        self.vm = FakeBackend()
        backend: VMBackend = self.vm
        registry = Registry()
        registry.register(IohyveActions(backend, FetchQueue(backend, Clock())))
        self.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))

    async def call(self, action: str, **args: Any) -> Any:
        reply = await self.api.call("sysadm", "iohyve", {"action": action, **args}, CONNECTION)
        return reply[action]

    async def error(self, action: str, **args: Any) -> tuple[int, str]:
        with pytest.raises(ApiError) as raised:
            await self.call(action, **args)
        return raised.value.code, raised.value.message


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Starting any process through the runner fails the test."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("a handler tried to run a process")

    monkeypatch.setattr(ProcessRunner, "run", refuse)
    monkeypatch.setattr(ProcessRunner, "start", refuse)
    yield


@async_test
async def test_the_handlers_drive_a_guest_through_the_interface() -> None:
    """Create, install, stop, disks, properties and delete: each handler asks the backend
    and answers in sysadm's shapes, with no process run."""
    h = Handlers()
    h.vm.isos.append("os.iso")
    assert await h.call("create", name="web", size="8G") == {"name": "web", "size": "8G"}
    assert ("create", "web", GuestSpec("8G")) in h.vm.calls
    assert await h.call("listvms") == {
        "web": {"description": "new", "rcboot": "NO", "running": "NO", "vmm": "NO"}
    }
    assert await h.call("install", name="web", iso="os.iso") == {"name": "web", "iso": "os.iso"}
    assert await h.call("stop", name="web", force="true") == {"name": "web"}
    assert ("stop", "web", True) in h.vm.calls
    assert await h.call("adddisk", name="web", size="2G") == {"web": {"size": "2G"}}
    assert await h.call("listdisks", name="web") == {"disk0": "8G", "disk1": "2G"}
    assert await h.call("resizedisk", name="web", disk="disk1", size="4G") == {
        "name": "web",
        "disk": "disk1",
        "size": "4G",
    }
    assert await h.call("deletedisk", name="web", disk="disk1") == {"name": "web", "disk": "disk1"}
    assert await h.call("setprop", name="web", ram="1G") == {"web": {"ram": "1G"}}
    assert (await h.call("getprops", name="web"))["web"]["ram"] == "1G"
    assert await h.call("listisos") == ["os.iso"]
    assert await h.call("renameiso", source="os.iso", target="new.iso") == {
        "source": "os.iso",
        "target": "new.iso",
    }
    assert await h.call("rmiso", target="new.iso") == {"target": "new.iso"}
    assert await h.call("version") == {"version": "fakevm v1", "backend": "fakevm"}
    assert await h.call("issetup") == {"setup": "false"}
    assert await h.call("setup", pool="tank", nic="em0") == {"pool": "tank", "nic": "em0"}
    assert await h.call("issetup") == {"setup": "true"}
    assert await h.call("delete", name="web") == {"name": "web"}
    assert await h.call("listvms") == {}


@async_test
async def test_backend_errors_become_the_api_codes() -> None:
    """NotFound is 404, Conflict 409, BackendFailed 500 with the tool's message."""
    h = Handlers()
    assert await h.error("start", name="nope") == (404, "guest 'nope' does not exist")
    assert await h.error("listdisks", name="nope") == (404, "guest 'nope' does not exist")
    await h.call("create", name="web", size="8G")
    assert await h.error("create", name="web", size="8G") == (
        409,
        "guest 'web' already exists",
    )
    assert await h.error("stop", name="web") == (409, "guest 'web' is not running")
    assert await h.error("install", name="web", iso="none.iso") == (
        404,
        "ISO 'none.iso' does not exist",
    )
    h.vm.fail = "start"
    assert await h.error("start", name="web") == (500, "fakevm start failed: it broke")
    h.vm.fail = "list"
    assert await h.error("listvms") == (500, "fakevm list failed: it broke")


@async_test
async def test_api_rules_are_checked_before_the_backend_is_asked() -> None:
    """disk0 is never removed and setprop needs a property: 400, and the backend is not asked."""
    h = Handlers()
    await h.call("create", name="web", size="8G")
    asked = len(h.vm.calls)
    assert await h.error("deletedisk", name="web", disk="disk0") == (
        400,
        "disk0 cannot be removed",
    )
    assert (await h.error("setprop", name="web"))[0] == 400
    assert len(h.vm.calls) == asked


@async_test
async def test_listvms_answers_sysadms_four_fields_only() -> None:
    """A backend that lists more about a guest (vm-bhyve's CPU, memory, loader and
    datastore) is answered with sysadm's four fields."""
    h = Handlers()
    h.vm.guests["db"] = GuestSummary(
        description="",
        rcboot="YES",
        running="NO",
        vmm="NO",
        cpu="2",
        memory="2G",
        loader="uefi",
        datastore="default",
    )
    assert await h.call("listvms") == {
        "db": {"description": "", "rcboot": "YES", "running": "NO", "vmm": "NO"}
    }


def test_the_handlers_module_builds_no_command_and_reads_no_output() -> None:
    """sysadmd/services/_iohyve.py imports neither the process runner, nor iohyve's
    parsers, nor its backend: it can only call the interface it is given."""
    source = Path(sysadmd.services._iohyve.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    forbidden = {
        "sysadmd.backends._runner",
        "sysadmd.backends._iohyve.parse",
        "sysadmd.backends._iohyve.adapter",
        "sysadmd.backends._iohyve.rcconf",
        # the same, through the backends' public surface
        "sysadmd.backends.Iohyve",
        "sysadmd.backends.ProcessRunner",
        "sysadmd.backends.RunningProcess",
        "sysadmd.backends.end_left_over_group",
        "subprocess",
        "os",
    }
    assert not {
        name
        for name in imported
        if name in forbidden or name.startswith("sysadmd.backends._iohyve.")
    }


@async_test
async def test_isolibrary_asks_the_backend_for_sizes_and_listisos_stays_names() -> None:
    """isolibrary answers from the backend's iso_files (no process); listisos keeps
    sysadm's reply, a list of names."""
    h = Handlers()
    h.vm.isos.extend(["b.iso", "a.iso"])
    h.vm.iso_bytes.update({"a.iso": 1234, "b.iso": 5_000_000_000})
    assert await h.call("isolibrary") == {
        "b.iso": {"size": 5_000_000_000, "datastore": "default"},
        "a.iso": {"size": 1234, "datastore": "default"},
    }
    assert await h.call("listisos") == ["b.iso", "a.iso"]
