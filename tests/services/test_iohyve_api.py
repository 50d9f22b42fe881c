"""The iohyve class through the Api core, driving the real simulator through the real runner."""

from __future__ import annotations

import contextlib
import hashlib
import io
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from httpserver import HTTPServer
from probe import OpenGate
from support import async_fixture, async_test
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from wsclient import settle

from sysadmd.api import Api, ApiError, Connection, Registry, Role, declared_actions
from sysadmd.auth._authenticator import Account
from sysadmd.backends import Iohyve, ProcessRunner, VmBhyve, VmBhyveCommands
from sysadmd.services import IohyveActions
from sysadmd.simulator.cli import main as simulator
from sysadmd.tasks import Journal
from sysadmd.tasks._journal import TaskRecord
from sysadmd.tasks._queue import FetchQueue, TaskState

CONNECTION = Connection("127.0.0.1", "test")
SPECS = {spec.action: spec for _, spec in declared_actions(IohyveActions)}


class Stack:
    """The daemon's pieces below the transports, on the simulator's state in ``root``."""

    def __init__(
        self,
        root: Path,
        profile: str,
        file_roots: list[Path],
        *,
        delete_delay: float = 0.3,
        run_fetches: bool = True,
        journal: Journal | None = None,
        max_queued: int = 2,
    ) -> None:
        self.root = root
        self.profile = profile
        self.rc_conf = root / "rc.conf"
        self.runner = ProcessRunner(
            reactor, kill_grace=0.5, env={"IOHYVE_SIM_DELETE_DELAY": str(delete_delay)}
        )
        command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(root)]
        self.command = [*command, "--profile", profile]
        self.iohyve: Iohyve | VmBhyve = Iohyve(
            self.runner, self.command, rc_conf=self.rc_conf, iso_root=root / "iohyve" / "ISO"
        )
        self.fetches = FetchQueue(self.iohyve, reactor, max_queued=max_queued, journal=journal)
        if run_fetches:
            self.fetches.startService()
        registry = Registry()
        registry.register(IohyveActions(self.iohyve, self.fetches, file_roots))
        self.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))

    def sim(self, *args: str) -> str:
        """Run the simulator in this process (to seed state), returning its stdout."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            simulator(["--root", str(self.root), "--profile", self.profile, *args])
        return out.getvalue()

    def add_iso(self, path: Path) -> None:
        """Put the file ``path`` into the ISO store, as iohyve's fetch does."""
        self.sim("fetch", f"file://{path}")

    def iso(self, name: str) -> bytes:
        return (self.root / "iohyve" / "ISO" / name / name).read_bytes()

    def isos(self) -> list[str]:
        return sorted(p.name for p in (self.root / "iohyve" / "ISO").iterdir())

    async def call(self, action: str, **args: Any) -> Any:
        reply = await self.api.call("sysadm", "iohyve", {"action": action, **args}, CONNECTION)
        jsonschema.validate(reply, SPECS[action].reply_schema())
        return reply[action]

    async def error(self, action: str, **args: Any) -> tuple[int, str]:
        with pytest.raises(ApiError) as raised:
            await self.api.call("sysadm", "iohyve", {"action": action, **args}, CONNECTION)
        return raised.value.code, raised.value.message

    async def finished(self, task_id: str) -> TaskState:
        for _ in range(200):
            task = self.fetches.tasks[task_id]
            if task.finished is not None:
                return task.state
            await settle(0.05)
        raise AssertionError("the fetch did not finish")


#: The vm-bhyve lines the simulator speaks, as stack profiles.
VM_BHYVE_PROFILES = ["vm-bhyve-1.6", "vm-bhyve-1.7", "vm-bhyve-dev"]


class VmBhyveStack(Stack):
    """The same pieces on the simulator's vm-bhyve (``profile`` ``vm-bhyve-<line>``): a
    host whose ``/`` is ``root``, set up with ``vm_dir=/vm`` and ``vm init``, with the
    simulator's zfs, fetch and xz as the host's."""

    def __init__(
        self, root: Path, profile: str, file_roots: list[Path], *, set_up: bool = True, **kw: Any
    ) -> None:
        self.version = profile.removeprefix("vm-bhyve-")
        super().__init__(root, "0.7.9", file_roots, **kw)
        self.profile = profile
        self.iohyve = simulated_vm_bhyve(root, self.runner, self.version, set_up=set_up)
        #: The ISO store: ``$vm_dir/.iso``; without set_up, where ``setup pool=tank``
        #: puts it (``zfs:tank/vm``, mounted at ``/tank/vm``).
        self.iso_dir = root / "vm" / ".iso" if set_up else root / "tank" / "vm" / ".iso"
        if kw.get("run_fetches", True):
            self.fetches.stopService()
        self.fetches = FetchQueue(self.iohyve, reactor, max_queued=2)
        if kw.get("run_fetches", True):
            self.fetches.startService()
        registry = Registry()
        registry.register(IohyveActions(self.iohyve, self.fetches, file_roots))
        self.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))

    def vm(self, *args: str) -> str:
        """Run the simulator's ``vm`` in this process, returning its stdout."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            simulator(["--root", str(self.root), "--vm-version", self.version, "vm", *args])
        return out.getvalue()

    def add_iso(self, path: Path) -> None:
        """Put an ISO into the store as an operator would: a file in ``$vm_dir/.iso``."""
        self.iso_dir.mkdir(parents=True, exist_ok=True)
        (self.iso_dir / path.name).write_bytes(path.read_bytes())

    def iso(self, name: str) -> bytes:
        return (self.iso_dir / name).read_bytes()

    def isos(self) -> list[str]:
        """The ISOs ``vm iso`` lists (a download in progress is a dot directory)."""
        return sorted(p.name for p in self.iso_dir.iterdir() if not p.name.startswith("."))


async def _stack(profile: str, tmp_path: Path) -> AsyncIterator[Stack]:
    files = tmp_path / "files"
    files.mkdir()
    kind = VmBhyveStack if profile in VM_BHYVE_PROFILES else Stack
    stack = kind(tmp_path / "sim", profile, [files])
    yield stack
    await stack.fetches.stopService()
    await stack.runner.stop_all()


def simulated_vm_bhyve(
    root: Path, runner: ProcessRunner, version: str, *, set_up: bool = True
) -> VmBhyve:
    """The vm-bhyve backend on a simulated host whose ``/`` is ``root``, set up with
    ``vm_dir=/vm`` and ``vm init`` (without ``set_up``, a host that ``setup`` has yet to
    prepare); vm, sysrc, pgrep, zfs, fetch and xz are the simulator's (``runner`` is told
    which vm-bhyve line ``vm`` speaks)."""
    # The simulator of this source tree, told which vm-bhyve line to speak.
    runner._env["IOHYVE_SIM_VM_VERSION"] = version
    runner._env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(root)]
    (root / "etc").mkdir(parents=True)
    if set_up:
        (root / "vm").mkdir()
        (root / "etc" / "rc.conf").write_text('vm_enable="YES"\nvm_dir="/vm"\n')
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            simulator(["--root", str(root), "--vm-version", version, "vm", "init"])
    else:
        (root / "etc" / "rc.conf").write_text('hostname="bsdhost"\n')
    return VmBhyve(
        runner,
        VmBhyveCommands(
            vm=(*command, "vm"),
            sysrc=(*command, "sysrc"),
            pgrep=(*command, "pgrep"),
            zfs=(*command, "zfs"),
            fetch=(*command, "/usr/bin/fetch"),
            xz=(*command, "xz"),
        ),
        rc_conf=root / "etc" / "rc.conf",
        vmm_dir=root / "dev" / "vmm",
        host_root=root,
    )


@async_fixture(params=["0.7.3", "0.7.9", *VM_BHYVE_PROFILES])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """The API's behaviour, the same on every backend and dialect."""
    async for made in _stack(request.param, tmp_path):
        yield made


@async_fixture(params=["0.7.3", "0.7.9"])
async def iohyve_stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """For what is iohyve's own: its commands seed the state, its runs are counted."""
    async for made in _stack(request.param, tmp_path):
        yield made


def _seed_isos(stack: Stack, tmp_path: Path, *names: str) -> None:
    for name in names:
        path = tmp_path / "files" / name
        path.write_bytes(f"contents of {name}\n".encode())
        stack.add_iso(path)


@async_test
async def test_listvms(iohyve_stack: Stack) -> None:
    """Guests come back with iohyve's YES/NO strings and whole descriptions (seeded with
    iohyve's commands; test_guests_api covers listvms on vm-bhyve)."""
    stack = iohyve_stack
    assert await stack.call("listvms") == {}
    stack.sim("create", "web", "8G")
    stack.sim("create", "web2", "8G")
    stack.sim("set", "web", "description=Mon Feb  1 15:11:57 EST 2016")
    stack.sim("set", "web2", "boot=1")
    stack.sim("start", "web2")
    vms = await stack.call("listvms")
    assert vms["web"] == {
        "description": "Mon Feb 1 15:11:57 EST 2016",
        "rcboot": "NO",
        "running": "NO",
        "vmm": "NO",
    }
    assert {k: v for k, v in vms["web2"].items() if k != "description"} == {
        "rcboot": "YES",
        "running": "YES",
        "vmm": "YES",
    }


@async_test
async def test_renameiso(stack: Stack, tmp_path: Path) -> None:
    """A rename moves the ISO, bytes intact; the reply is the page's shape."""
    _seed_isos(stack, tmp_path, "test.iso")
    assert await stack.call("renameiso", source="test.iso", target="102.iso") == {
        "source": "test.iso",
        "target": "102.iso",
    }
    assert stack.isos() == ["102.iso"]
    assert stack.iso("102.iso") == b"contents of test.iso\n"


@async_test
async def test_refused_renames_lose_nothing(stack: Stack, tmp_path: Path) -> None:
    """Unknown sources, taken targets and bad names change nothing and spawn nothing bad."""
    _seed_isos(stack, tmp_path, "a.iso", "b.iso")
    before = {name: stack.iso(name) for name in stack.isos()}
    assert await stack.error("renameiso", source="nope.iso", target="c.iso") == (
        404,
        "ISO 'nope.iso' does not exist",
    )
    assert await stack.error("renameiso", source="a.iso", target="b.iso") == (
        409,
        "ISO 'b.iso' already exists",
    )
    assert (await stack.error("renameiso", source="a.iso", target="a.iso"))[0] == 409
    spawned = stack.runner.spawned
    for source, target in [("a.iso", "../b.iso"), ("-a", "c"), ("a.iso", "x y"), ("a.iso", "")]:
        assert (await stack.error("renameiso", source=source, target=target))[0] == 400
    assert (await stack.error("renameiso", source="a.iso"))[0] == 400
    assert stack.runner.spawned == spawned
    assert {name: stack.iso(name) for name in stack.isos()} == before


@async_test
async def test_rmiso(stack: Stack, tmp_path: Path) -> None:
    """rmiso removes exactly the ISO named; unknown ones are 404."""
    _seed_isos(stack, tmp_path, "FreeBSD-10.2-RELEASE-amd64-bootonly.iso", "keep.iso")
    target = "FreeBSD-10.2-RELEASE-amd64-bootonly.iso"
    assert await stack.call("rmiso", target=target) == {"target": target}
    assert stack.isos() == ["keep.iso"]
    assert await stack.error("rmiso", target=target) == (404, f"ISO '{target}' does not exist")
    spawned = stack.runner.spawned
    assert (await stack.error("rmiso", target="../keep.iso"))[0] == 400
    assert stack.runner.spawned == spawned
    assert stack.iso("keep.iso") == b"contents of keep.iso\n"


@async_test
async def test_isolibrary_gives_each_isos_size_and_listisos_keeps_its_shape(
    stack: Stack, tmp_path: Path, http: HTTPServer
) -> None:
    """isolibrary: the bytes of each ISO's file, the datastore where the backend has
    several (vm-bhyve), the digest of a verified one; listisos stays a list of names."""
    assert await stack.call("isolibrary") == {}
    _seed_isos(stack, tmp_path, "a.iso", "longer-name.iso")
    data = bytes(range(256)) * 300
    http.files.files["checked.iso"] = data
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reply = await stack.call("fetchiso", url=http.url("checked.iso"), checksum=digest)
    assert await stack.finished(reply["queueid"]) is TaskState.SUCCEEDED
    store = {"datastore": "default"} if isinstance(stack, VmBhyveStack) else {}
    library = await stack.call("isolibrary")
    assert library == {
        "a.iso": {"size": len(b"contents of a.iso\n"), **store},
        "longer-name.iso": {"size": len(b"contents of longer-name.iso\n"), **store},
        "checked.iso": {"size": len(data), "digest": digest, **store},
    }
    jsonschema.validate({"isolibrary": library}, SPECS["isolibrary"].reply_schema())
    listed = await stack.call("listisos")
    assert sorted(listed) == ["a.iso", "checked.iso", "longer-name.iso"]
    assert all(isinstance(name, str) for name in listed)
    # A renamed ISO keeps its size and loses the digest recorded under its old name.
    await stack.call("renameiso", source="checked.iso", target="renamed.iso")
    assert (await stack.call("isolibrary"))["renamed.iso"] == {"size": len(data), **store}


@async_test
async def test_fetchiso_over_http(stack: Stack, http: HTTPServer) -> None:
    """fetchiso replies at once with a braced id; the download lands byte for byte."""
    data = bytes(range(256)) * 4096
    http.files.files["disc1.iso"] = data
    url = http.url("disc1.iso")
    reply = await stack.call("fetchiso", url=url)
    assert reply["command"] == f"iohyve fetch {url}"
    assert reply["comment"] == "Task Queued"
    assert await stack.finished(reply["queueid"]) is TaskState.SUCCEEDED
    assert stack.iso("disc1.iso") == data
    assert await stack.error("fetchiso", url=url) == (
        409,
        "ISO 'disc1.iso' already exists; remove or rename it first",
    )


class HeldJournal:
    """A journal whose saves commit only when the test releases them, then at once."""

    def __init__(self) -> None:
        self.saved: list[TaskState] = []
        self.held: list[Deferred[None]] = []
        self.released = False

    def open(self) -> Deferred[None]:
        return succeed(None)

    def recent(self) -> Deferred[list[TaskRecord]]:
        return succeed([])

    def recover(self, now: float) -> Deferred[tuple[list[TaskRecord], list[TaskRecord]]]:
        return succeed(([], []))

    def digests(self) -> Deferred[dict[str, tuple[str, int, float]]]:
        return succeed({})

    def save(self, record: TaskRecord) -> Deferred[None]:
        self.saved.append(record.state)
        if self.released:
            return succeed(None)
        self.held.append(Deferred())
        return self.held[-1]

    def release(self) -> None:
        self.released = True
        while self.held:
            self.held.pop(0).callback(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


@async_test
async def test_fetchiso_replies_once_the_queued_task_is_journalled(
    tmp_path: Path, http: HTTPServer
) -> None:
    """The queueid is a promise: a crash after the reply cannot lose the task."""
    (tmp_path / "files").mkdir()
    journal = HeldJournal()
    stack = Stack(tmp_path / "sim", "0.7.9", [tmp_path / "files"], journal=cast(Journal, journal))
    http.files.files["held.iso"] = b"h" * 1000
    try:
        replies: list[Any] = []
        reply = Deferred.fromCoroutine(stack.call("fetchiso", url=http.url("held.iso")))
        reply.addCallback(replies.append)
        for _ in range(200):  # the reply first asks the server for the size
            if journal.saved:
                break
            await settle(0.05)
        await settle(0.1)
        assert journal.saved[0] is TaskState.QUEUED
        assert replies == []
        journal.release()
        await settle(0.05)
        assert [r["comment"] for r in replies] == ["Task Queued"]
    finally:
        journal.release()
        await stack.fetches.stopService()
        await stack.runner.stop_all()


@async_test
async def test_concurrent_fetchiso_calls_share_one_isolist_and_reply_once_journalled(
    tmp_path: Path, http: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight fetchiso calls at once run one ``iohyve isolist`` between them; each decision
    stays its own (409 for the ISO that exists), and each reply comes only once its task
    can be read from the journal's file by another connection."""
    (tmp_path / "files").mkdir()
    journal = Journal(tmp_path / "tasks.sqlite", reactor)
    stack = Stack(tmp_path / "sim", "0.7.9", [tmp_path / "files"], journal=journal, max_queued=8)
    (tmp_path / "there.iso").write_bytes(b"t")
    stack.add_iso(tmp_path / "there.iso")
    http.files.files["there.iso"] = b"t"
    for index in range(7):
        http.files.files[f"new{index}.iso"] = b"n" * 1000
        http.files.stall.add(f"new{index}.iso")  # the first one's download holds
    isolists: list[tuple[str, ...]] = []
    run = stack.runner.run

    def counting(executable: str, args: tuple[str, ...], **options: Any) -> Any:
        if "isolist" in args:
            isolists.append(args)
        return run(executable, args, **options)

    monkeypatch.setattr(stack.runner, "run", counting)

    def journalled(task_id: str) -> bool:
        with contextlib.closing(
            sqlite3.connect(f"file:{tmp_path / 'tasks.sqlite'}?mode=ro", uri=True)
        ) as reader:
            return (
                reader.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone()
                is not None
            )

    try:
        await stack.fetches.written()  # the journal is open
        names = [f"new{index}.iso" for index in range(7)]
        calls = [
            Deferred.fromCoroutine(stack.call("fetchiso", url=http.url(name))).addCallback(
                lambda reply: (reply, journalled(reply["queueid"]))
            )
            for name in names
        ]
        refused = Deferred.fromCoroutine(stack.error("fetchiso", url=http.url("there.iso")))
        replies = await gatherResults(calls)
        assert (await refused)[0] == 409
        assert len(isolists) == 1
        assert all(on_disk for _, on_disk in replies)
        assert len({reply["queueid"] for reply, _ in replies}) == 7
    finally:
        http.files.release()
        for task in stack.fetches.listing():
            stack.fetches.kill([task.id])
        await stack.fetches.stopService()
        await stack.runner.stop_all()


@async_test
async def test_a_fetch_asked_for_while_the_queue_starts_is_kept_once(
    tmp_path: Path, http: HTTPServer
) -> None:
    """The start-up recovery reads only what an earlier run left: a fetch queued before
    the journal opened gets no cancelled twin and can be killed."""
    (tmp_path / "files").mkdir()
    journal = Journal(tmp_path / "tasks.sqlite", reactor)
    stack = Stack(tmp_path / "sim", "0.7.9", [tmp_path / "files"], journal=journal)
    http.files.files["early.iso"] = b"e" * 100_000
    http.files.stall.add("early.iso")
    try:
        # Straight after the start, before the journal has opened.
        task = stack.fetches.submit(http.url("early.iso"), "early.iso")
        await stack.fetches.written()
        await settle(0.5)
        assert stack.fetches.tasks[task.id] is task
        assert [t.id for t in stack.fetches.listing()] == [task.id]
        assert task.state is TaskState.RUNNING
        assert stack.fetches.kill([task.id]) == [task.id]
        assert await stack.finished(task.id) is TaskState.CANCELLED
    finally:
        http.files.release()
        await stack.fetches.stopService()
        await stack.runner.stop_all()


@async_test
async def test_fetchiso_file_url(stack: Stack, tmp_path: Path) -> None:
    """file:// URLs work for files below the allowed directories, and only there."""
    (tmp_path / "files" / "local.iso").write_bytes(b"local")
    reply = await stack.call("fetchiso", url=f"file://{tmp_path}/files/local.iso")
    assert await stack.finished(reply["queueid"]) is TaskState.SUCCEEDED
    assert stack.iso("local.iso") == b"local"
    spawned = stack.runner.spawned
    (tmp_path / "secret.iso").write_bytes(b"secret")
    code, message = await stack.error("fetchiso", url=f"file://{tmp_path}/secret.iso")
    assert (code, "allowed directory" in message) == (400, True)
    assert stack.runner.spawned == spawned


@async_test
async def test_failed_fetch_leaves_nothing(stack: Stack, http: HTTPServer) -> None:
    """A 404 fails the task, and the empty dataset iohyve leaves is removed."""
    reply = await stack.call("fetchiso", url=http.url("missing.iso"))
    assert await stack.finished(reply["queueid"]) is TaskState.FAILED
    assert "Not Found" in (stack.fetches.tasks[reply["queueid"]].message or "")
    assert stack.isos() == []


@async_test
async def test_busy_names_and_full_queue(stack: Stack, http: HTTPServer, tmp_path: Path) -> None:
    """While a fetch owns a name it cannot be fetched, renamed or removed; a full queue is 503."""
    _seed_isos(stack, tmp_path, "old.iso")
    for name in ("slow.iso", "q1.iso", "q2.iso"):
        http.files.files[name] = b"x" * 100_000
        http.files.stall.add(name)
    running = await stack.call("fetchiso", url=http.url("slow.iso"))
    await settle(0.3)
    assert stack.fetches.tasks[running["queueid"]].state is TaskState.RUNNING
    assert (await stack.error("fetchiso", url=http.url("slow.iso")))[0] == 409
    assert (await stack.error("renameiso", source="old.iso", target="slow.iso"))[0] == 409
    assert (await stack.error("rmiso", target="slow.iso"))[0] == 409
    await stack.call("fetchiso", url=http.url("q1.iso"))
    await stack.call("fetchiso", url=http.url("q2.iso"))
    code, message = await stack.error("fetchiso", url=http.url("another.iso"))
    assert (code, "queue is full" in message) == (503, True)
    # Nothing was lost. iohyve shows the download as its ISO dataset; vm-bhyve's store
    # gets the file only once it is complete.
    in_store = ["old.iso"] if isinstance(stack, VmBhyveStack) else ["old.iso", "slow.iso"]
    assert stack.isos() == in_store
    assert stack.iso("old.iso") == b"contents of old.iso\n"


@async_test
async def test_pipelined_rename_then_list(stack: Stack, tmp_path: Path) -> None:
    """A list asked for right after a rename, without waiting, sees the rename."""
    _seed_isos(stack, tmp_path, "test.iso")
    rename: Deferred[Any] = Deferred.fromCoroutine(
        stack.call("renameiso", source="test.iso", target="new.iso")
    )
    listed = await stack.iohyve.list_isos()
    await rename
    assert [iso.name for iso in listed] == ["new.iso"]


@async_test
async def test_concurrent_lists_share_one_run(iohyve_stack: Stack, tmp_path: Path) -> None:
    """Lists asked for together cost one iohyve list; a list asked for after a
    mutation does not share a run that started before it (iohyve's runs, counted)."""
    stack = iohyve_stack
    stack.sim("create", "web", "8G")
    before = stack.runner.spawned
    results = await DeferredList([stack.iohyve.list_vms() for _ in range(20)])
    assert stack.runner.spawned == before + 1
    assert all(ok and list(value) == ["web"] for ok, value in results)
    _seed_isos(stack, tmp_path, "a.iso")
    before = stack.runner.spawned
    early = stack.iohyve.list_vms()
    rename = stack.iohyve.rename_iso("a.iso", "b.iso", busy=lambda _: False)
    late = stack.iohyve.list_vms()
    await DeferredList([early, cast(Deferred[Any], rename), late])
    # early list, the rename's isolist + renameiso + isolist, and a list of its own for late
    assert stack.runner.spawned == before + 5
    again = await stack.iohyve.list_vms()  # asked for from a callback: a fresh run
    assert list(again) == ["web"]
