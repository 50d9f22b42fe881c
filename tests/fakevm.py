"""An in-memory VM backend: guests, disks, properties and ISOs in dictionaries.

It implements :class:`sysadmd.backends.VMBackend` with the iohyve backend's rules
(NotFound, Conflict) and no process at all, so handler tests run without a tool. Set
``fail`` to an operation's name to make it raise BackendFailed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from sysadmd.backends import RunningProcess
from sysadmd.backends._errors import BackendError, BackendFailed, Conflict, NotFound
from sysadmd.backends._interface import DiskInfo, GuestSpec, GuestSummary, IsoInfo

T = TypeVar("T")


class FakeBackend:
    """Guests, disks, properties and ISOs kept in memory."""

    tool = "fakevm"

    def __init__(self) -> None:
        self.guests: dict[str, GuestSummary] = {}
        self.guest_disks: dict[str, dict[str, DiskInfo]] = {}
        self.props: dict[str, dict[str, str]] = {}
        self.isos: list[str] = []
        #: The size of each ISO's file, where a test gives one (0 otherwise).
        self.iso_bytes: dict[str, int] = {}
        self.set_up: tuple[str, str] | None = None
        #: The name of an operation that fails with BackendFailed.
        self.fail: str | None = None
        #: Every operation asked for, with its arguments.
        self.calls: list[tuple[object, ...]] = []

    def _do(self, what: str, *args: object) -> None:
        self.calls.append((what, *args))
        if self.fail == what:
            raise BackendFailed(f"fakevm {what}", "it broke")

    def _guest(self, name: str) -> GuestSummary:
        guest = self.guests.get(name)
        if guest is None:
            raise NotFound(f"guest '{name}' does not exist")
        return guest

    @staticmethod
    def _answer(work: Callable[[], T]) -> Deferred[T]:
        try:
            return succeed(work())
        except BackendError as e:
            return fail(e)

    def version(self) -> Deferred[str]:
        def run() -> str:
            self._do("version")
            return "fakevm v1"

        return self._answer(run)

    def is_setup(self) -> Deferred[bool]:
        return self._answer(lambda: self.set_up is not None)

    def setup(self, pool: str, nic: str) -> Deferred[None]:
        def run() -> None:
            self._do("setup", pool, nic)
            self.set_up = (pool, nic)

        return self._answer(run)

    def list_vms(self) -> Deferred[dict[str, GuestSummary]]:
        def run() -> dict[str, GuestSummary]:
            self._do("list")
            return dict(self.guests)

        return self._answer(run)

    def guest(self, name: str) -> Deferred[GuestSummary]:
        return self._answer(lambda: self._guest(name))

    def create(self, name: str, spec: GuestSpec) -> Deferred[None]:
        def run() -> None:
            if name in self.guests:
                raise Conflict(f"guest '{name}' already exists")
            self._do("create", name, spec)
            self.guests[name] = GuestSummary(description="new", rcboot="NO", running="NO", vmm="NO")
            self.guest_disks[name] = {"disk0": DiskInfo(spec.size)}
            self.props[name] = {"con": "nmdm0", "ram": "256M"}

        return self._answer(run)

    def _stopped(self, name: str) -> None:
        if self._guest(name)["running"] == "YES":
            raise Conflict(f"guest '{name}' is running; stop it first")

    def install(self, name: str, iso: str) -> Deferred[None]:
        def run() -> None:
            self._guest(name)
            if iso not in self.isos:
                raise NotFound(f"ISO '{iso}' does not exist")
            self._stopped(name)
            self._do("install", name, iso)
            self.guests[name] = {**self.guests[name], "running": "YES", "vmm": "YES"}

        return self._answer(run)

    def start(self, name: str) -> Deferred[None]:
        def run() -> None:
            if self._guest(name)["running"] == "YES":
                raise Conflict(f"guest '{name}' is running already")
            self._do("start", name)
            self.guests[name] = {**self.guests[name], "running": "YES", "vmm": "YES"}

        return self._answer(run)

    def stop(self, name: str, *, force: bool = False) -> Deferred[None]:
        def run() -> None:
            guest = self._guest(name)
            if guest["running"] != "YES" and guest["vmm"] != "YES":
                raise Conflict(f"guest '{name}' is not running")
            self._do("stop", name, force)
            self.guests[name] = {**guest, "running": "NO", "vmm": "NO"}

        return self._answer(run)

    def delete(self, name: str) -> Deferred[None]:
        def run() -> None:
            self._stopped(name)
            self._do("delete", name)
            del self.guests[name]

        return self._answer(run)

    def console_device(self, name: str) -> Deferred[Path]:
        return self._answer(lambda: (self._guest(name), Path("/dev/nmdm0B"))[1])

    def disks(self, name: str) -> Deferred[dict[str, DiskInfo]]:
        return self._answer(lambda: (self._guest(name), dict(self.guest_disks[name]))[1])

    def add_disk(self, name: str, size: str, datastore: str | None = None) -> Deferred[None]:
        def run() -> None:
            self._guest(name)
            self._do("add_disk", name, size, datastore)
            disks = self.guest_disks[name]
            disks[f"disk{len(disks)}"] = DiskInfo(size)

        return self._answer(run)

    def _disk(self, name: str, disk: str) -> None:
        self._guest(name)
        if disk not in self.guest_disks[name]:
            raise NotFound(f"guest '{name}' has no {disk}")

    def resize_disk(self, name: str, disk: str, size: str) -> Deferred[None]:
        def run() -> None:
            self._disk(name, disk)
            self._stopped(name)
            self._do("resize_disk", name, disk, size)
            self.guest_disks[name][disk] = DiskInfo(size)

        return self._answer(run)

    def delete_disk(self, name: str, disk: str) -> Deferred[None]:
        def run() -> None:
            self._disk(name, disk)
            self._do("delete_disk", name, disk)
            del self.guest_disks[name][disk]

        return self._answer(run)

    def properties(self, name: str) -> Deferred[dict[str, str]]:
        return self._answer(lambda: (self._guest(name), dict(self.props[name]))[1])

    def set_properties(self, name: str, values: Mapping[str, str]) -> Deferred[None]:
        def run() -> None:
            self._guest(name)
            self._do("set_properties", name, dict(values))
            self.props[name].update(values)

        return self._answer(run)

    def list_isos(self) -> Deferred[list[IsoInfo]]:
        return self._answer(lambda: [IsoInfo(name, "default") for name in self.isos])

    def iso_files(self) -> Deferred[list[tuple[IsoInfo, int]]]:
        return self._answer(
            lambda: [(IsoInfo(name, "default"), self.iso_bytes.get(name, 0)) for name in self.isos]
        )

    def rename_iso(
        self, source: str, target: str, *, busy: Callable[[str], bool]
    ) -> Deferred[None]:
        def run() -> None:
            if source not in self.isos:
                raise NotFound(f"ISO '{source}' does not exist")
            if target in self.isos or busy(source) or busy(target):
                raise Conflict(f"ISO '{target}' already exists")
            self._do("rename_iso", source, target)
            self.isos[self.isos.index(source)] = target

        return self._answer(run)

    def remove_iso(self, target: str, *, busy: Callable[[str], bool]) -> Deferred[None]:
        def run() -> None:
            if target not in self.isos:
                raise NotFound(f"ISO '{target}' does not exist")
            self._do("remove_iso", target)
            self.isos.remove(target)

        return self._answer(run)

    def check_iso_absent(self, name: str) -> Deferred[None]:
        def run() -> None:
            if name in self.isos:
                raise Conflict(f"ISO '{name}' already exists; remove or rename it first")

        return self._answer(run)

    def start_fetch(
        self, url: str, *, timeout: float, on_output: Callable[[str, bytes], None] | None = None
    ) -> RunningProcess:
        raise AssertionError("the in-memory backend downloads nothing")

    def resume_fetch(
        self,
        url: str,
        name: str,
        *,
        timeout: float,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> RunningProcess:
        raise AssertionError("the in-memory backend downloads nothing")

    def gather_partial(self, name: str) -> Deferred[int]:
        return succeed(0)

    def iso_directory(self, name: str) -> Path:
        return Path("/nonexistent") / name

    def iso_size(self, name: str) -> int | None:
        return None

    def fetched(self, name: str) -> Deferred[bool]:
        return succeed(name in self.isos)

    def discard_partial(self, name: str) -> Deferred[None]:
        return succeed(None)

    def prepare_upload(self, name: str) -> Deferred[Path]:
        return fail(BackendFailed("upload", "the in-memory backend stores no file"))

    def upload_places(self) -> Deferred[list[tuple[Path, str | None]]]:
        return succeed([])
