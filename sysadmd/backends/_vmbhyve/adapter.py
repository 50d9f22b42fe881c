"""The vm-bhyve backend: the sysadm ``iohyve`` API on hosts that run vm-bhyve's ``vm``.

:class:`VmBhyve` implements :class:`~sysadmd.backends._interface.VMBackend`. vm-bhyve has
no machine-readable output, so reads come from the files the tool itself keeps
(:mod:`sysadmd.backends._vmbhyve.host`: rc.conf, ``system.conf``, each guest's
``<name>.conf``, ``console``, ``run.lock``) plus one process listing (``pgrep -fl``) for
what runs; nothing is spawned per guest. Changes go through ``vm`` (with ``-f`` where it
would prompt, stdin closed) or, for configuration keys, ``sysrc -f <file>`` as vm-bhyve
does; ISOs are plain files in ``$vm_dir/.iso`` and ``iso:`` datastores. Every change is
checked beforehand (NotFound, Conflict) and verified afterwards against the files; a
change that did not take is a :class:`VmBhyveFailed` in the tool's own words.

Ordering is the iohyve backend's: changes one at a time in arrival order, a read after
every change asked for before it, and each guest's changes under its own lock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, fail
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from sysadmd.backends._errors import BackendFailed, Conflict, NotFound, Unsupported
from sysadmd.backends._interface import DiskInfo, GuestSpec, GuestSummary, IsoInfo
from sysadmd.backends._iohyve.adapter import _Order, sized_isos
from sysadmd.backends._output import describe_failure, text
from sysadmd.backends._partial import gather_partial
from sysadmd.backends._runner import ProcessResult, ProcessRunner, RunningProcess
from sysadmd.backends._vmbhyve import host, parse

__all__ = ["VmBhyve", "VmBhyveFailed"]

T = TypeVar("T")

#: The ISO store of the ``default`` datastore, below ``$vm_dir``.
ISO_DIR: Final = ".iso"
#: Where a download is written before it is decompressed and moved into its store.
FETCH_DIR: Final = ".fetch"
_VERSION_NUMBER: Final = re.compile(r"vm-bhyve: Bhyve virtual machine management v(\S+).*")
_PROCESS_LINE: Final = re.compile(r"\s*([0-9]+) (.*)")
_SWITCH: Final = "public"
#: The conf key that holds a guest's description: vm-bhyve has none and ignores keys it
#: does not know, so the backend keeps the API's ``description`` property there.
DESCRIPTION_KEY: Final = "description"


class VmBhyveFailed(BackendFailed):
    """A command ran but did not do what was asked: ``<tool> <what> failed: <detail>``."""

    def __init__(self, what: str, result: ProcessResult | None, detail: str | None = None) -> None:
        if detail is None:
            detail = describe_failure(result) if result is not None else "no result"
        super().__init__(what, detail, result)


@dataclass(frozen=True)
class Commands:
    """The argv prefixes of the tools the backend runs."""

    vm: Sequence[str] = ("/usr/local/sbin/vm",)
    sysrc: Sequence[str] = ("/usr/sbin/sysrc",)
    #: None: run states come from ``vm list`` instead (its fallback).
    pgrep: Sequence[str] | None = ("/bin/pgrep",)
    #: None: a ``zfs:pool/ds`` location is mounted at ``/pool/ds`` (ZFS's default).
    zfs: Sequence[str] | None = ("/sbin/zfs",)
    #: None: downloads are refused.
    fetch: Sequence[str] | None = ("/usr/bin/fetch",)
    xz: Sequence[str] = ("/usr/bin/xz",)


class VmBhyve:
    """The vm-bhyve backend. ``rc_conf`` is the host's rc.conf (``vm_enable``, ``vm_dir``,
    ``vm_list``); ``vmm_dir`` where the kernel shows its VMs (``/dev/vmm``). ``host_root``
    is where the host's ``/`` is (``/`` but for a host in a directory, as a simulated
    one): the paths the tools print and take are the host's, the files read are below it."""

    log = Logger()
    tool = "vm-bhyve"

    def __init__(
        self,
        runner: ProcessRunner,
        commands: Commands = Commands(),
        *,
        rc_conf: Path = Path("/etc/rc.conf"),
        vmm_dir: Path = Path("/dev/vmm"),
        timeout: float = 120.0,
        host_root: Path = Path("/"),
    ) -> None:
        for label, command in vars(commands).items():
            if command is not None and (not command or not os.path.isabs(command[0])):
                raise ValueError(f"the {label} command must start with an absolute path")
        self._runner = runner
        self._commands = commands
        self._rc_conf = rc_conf
        self._vmm_dir = vmm_dir
        self._timeout = timeout
        self._root = host_root
        self._order = _Order()
        self._guest_locks: dict[str, DeferredLock] = {}
        self._mountpoints: dict[str, Path] = {}
        #: ``$vm_dir`` as the last read of the layout found it.
        self._vm_dir: Path | None = None
        #: The dialect ``vm version`` named, once asked.
        self.dialect: parse.Dialect | None = None

    # Running tools

    def _local(self, path: str) -> Path:
        """Where the host's absolute ``path`` is read."""
        return self._root / path.lstrip("/")

    def _host_path(self, path: Path) -> str:
        """The host's name of the local ``path``, for a tool's argument."""
        return "/" + str(path.relative_to(self._root)).removeprefix(".").lstrip("/")

    def _zfs(self, what: str) -> Sequence[str]:
        if self._commands.zfs is None:
            raise Unsupported(f"{what} needs zfs, which this host does not offer")
        return self._commands.zfs

    def _run(self, command: Sequence[str], *args: str) -> Deferred[ProcessResult]:
        return self._runner.run(command[0], (*command[1:], *args), timeout=self._timeout)

    async def _vm(self, what: str, *args: str) -> ProcessResult:
        """Run ``vm <args>``; VmBhyveFailed if it exits non-zero or reports an error."""
        result = await self._run(self._commands.vm, *args)
        if not result.ok or _says_failure(result):
            raise VmBhyveFailed(f"vm {what}", result)
        return result

    async def _sysrc(self, conf: Path, *args: str) -> None:
        result = await self._run(self._commands.sysrc, "-f", self._host_path(conf), *args)
        if not result.ok:
            raise VmBhyveFailed("sysrc", result)

    # The host's layout

    async def _layout(self) -> host.Layout:
        rc = await deferToThread(host.read_settings, self._rc_conf)
        value = rc.get("vm_dir", "")
        if not value:
            raise BackendFailed("vm-bhyve", f"vm_dir is not set in {self._rc_conf}; run setup")
        dataset, path = host.location(value)
        vm_dir = await self._mountpoint(dataset) if dataset else self._local(path)
        self._vm_dir = vm_dir
        system = await deferToThread(host.read_settings, vm_dir / ".config" / "system.conf")
        stores = [host.Store("default", vm_dir, dataset)]
        iso_dirs = [("default", vm_dir / ISO_DIR)]
        for name in system.get("datastore_list", "").split():
            where = system.get(f"path_{name}", "")
            if where.startswith("iso:"):
                iso_dirs.append((name, self._local(where[4:])))
            elif where.startswith("img:") or not where or name == "default":
                continue
            else:
                ds, directory = host.location(where)
                stores.append(
                    host.Store(
                        name, await self._mountpoint(ds) if ds else self._local(directory), ds
                    )
                )
        return host.Layout(
            vm_dir=vm_dir,
            stores=tuple(stores),
            iso_dirs=tuple(iso_dirs),
            autostart=tuple(rc.get("vm_list", "").split()),
            system=system,
        )

    async def _mountpoint(self, dataset: str) -> Path:
        known = self._mountpoints.get(dataset)
        if known is not None:
            return known
        if self._commands.zfs is None:
            self._mountpoints[dataset] = self._local("/" + dataset)
            return self._mountpoints[dataset]
        result = await self._run(
            self._commands.zfs, "get", "-H", "-o", "value", "mountpoint", dataset
        )
        mountpoint = text(result.stdout).strip()
        if not result.ok or not mountpoint.startswith("/"):
            raise VmBhyveFailed("zfs get mountpoint", result)
        self._mountpoints[dataset] = self._local(mountpoint)
        return self._mountpoints[dataset]

    async def _processes(self) -> dict[str, str]:
        """One ``pgrep -fl`` for bhyve and its loaders: guest name to ``running`` or
        ``bootloader`` (the last word of each process line names the guest). Without
        pgrep, one ``vm list`` (whose guests in those states have a VM)."""
        if self._commands.pgrep is None:
            return await self._listed_states()
        result = await self._run(self._commands.pgrep, "-fl", "bhyve: |grub-bhyve|bhyveload")
        if not result.ok and result.exit_code != 1:  # 1: no process matched
            raise VmBhyveFailed("pgrep", result)
        states: dict[str, str] = {}
        for line in text(result.stdout).splitlines():
            match = _PROCESS_LINE.fullmatch(line)
            if match is None or not match.group(2).split():
                continue
            command = match.group(2)
            name = command.split()[-1]
            if command.startswith("bhyve: "):
                states[name] = "running"
            else:
                states.setdefault(name, "bootloader")
        return states

    async def _listed_states(self) -> dict[str, str]:
        if self.dialect is None:
            await self._version()
        result = await self._vm("list", "list")
        try:
            listed = parse.parse_list(text(result.stdout), self.dialect or "1.7")
        except parse.ParseError as e:
            raise VmBhyveFailed("vm list", result, str(e)) from None
        return {
            name: guest.state
            for name, guest in listed.items()
            if guest.state in ("running", "bootloader")
        }

    async def _guests(self) -> tuple[host.Layout, dict[str, host.GuestFiles], dict[str, str]]:
        layout = await self._layout()
        try:
            guests = await deferToThread(host.read_guests, layout, self._vmm_dir)
        except parse.ParseError as e:
            raise BackendFailed("vm-bhyve", str(e)) from None
        processes = await self._processes()
        if self._commands.pgrep is None:
            for name in processes.keys() & guests.keys():
                guests[name].vmm = True
        return layout, guests, processes

    # Reads

    def list_vms(self) -> Deferred[dict[str, GuestSummary]]:
        """Every guest, from the conf files and one process listing."""
        return self._order.read(self._list_vms)

    async def _list_vms(self) -> dict[str, GuestSummary]:
        layout, guests, processes = await self._guests()
        return {
            name: self._summary(layout, guest, processes.get(name))
            for name, guest in guests.items()
        }

    def _summary(
        self, layout: host.Layout, guest: host.GuestFiles, process: str | None
    ) -> GuestSummary:
        if process is not None:
            state = process
        elif guest.saved and self.dialect != "1.6":
            state = "suspended"
        elif guest.lock_host is not None:
            state = "locked"
        else:
            state = "stopped"
        return GuestSummary(
            description=guest.conf.get(DESCRIPTION_KEY, ""),
            rcboot="YES" if guest.name in layout.autostart else "NO",
            running="YES" if state == "running" else "NO",
            vmm="YES" if guest.vmm else "NO",
            state=state,
            cpu=guest.conf.get("cpu", ""),
            memory=guest.conf.get("memory", ""),
            loader=guest.conf.get("loader", "none"),
            datastore=guest.store.name,
        )

    async def _require(self, name: str) -> tuple[host.Layout, host.GuestFiles, GuestSummary]:
        layout, guests, processes = await self._guests()
        guest = guests.get(name)
        if guest is None:
            raise NotFound(f"guest '{name}' does not exist")
        return layout, guest, self._summary(layout, guest, processes.get(name))

    def guest(self, name: str) -> Deferred[GuestSummary]:
        """Guest ``name``, or NotFound."""

        async def run() -> GuestSummary:
            return (await self._require(name))[2]

        return self._order.read(run)

    def version(self) -> Deferred[str]:
        """The version ``vm version`` prints (``1.7.5``); remembers its dialect."""

        return self._order.read(self._version)

    async def _version(self) -> str:
        result = await self._vm("version", "version")
        line = text(result.stdout).strip()
        try:
            self.dialect = parse.parse_version(line)
        except parse.ParseError as e:
            raise VmBhyveFailed("vm version", result, str(e)) from None
        match = _VERSION_NUMBER.fullmatch(line)
        return match.group(1) if match else line

    # Setup

    def is_setup(self) -> Deferred[bool]:
        """Whether rc.conf enables vm-bhyve and names a ``vm_dir`` that exists."""

        async def run() -> bool:
            rc = await deferToThread(host.read_settings, self._rc_conf)
            if not host.enabled(rc.get("vm_enable")) or not rc.get("vm_dir"):
                return False
            try:
                layout = await self._layout()
            except BackendFailed:
                return False
            return bool(await deferToThread(layout.vm_dir.is_dir))

        return ensureDeferred(run())

    def setup(self, pool: str, nic: str) -> Deferred[None]:
        """``zfs create <pool>/vm``, rc.conf's ``vm_enable`` and ``vm_dir`` (``sysrc``),
        ``vm init``, then switch ``public`` on ``nic``. If a step after rc.conf was written
        fails, rc.conf's two lines are put back as they were."""

        async def run() -> None:
            dataset = f"{pool}/vm"
            created = await self._run(self._zfs("setup"), "create", dataset)
            if not created.ok and "dataset already exists" not in text(created.stderr):
                raise VmBhyveFailed("zfs create", created)
            before = await deferToThread(host.read_settings, self._rc_conf)
            await self._sysrc(self._rc_conf, "vm_enable=YES", f"vm_dir=zfs:{dataset}")
            try:
                await self._vm("init", "init")
                layout = await self._layout()
                if _SWITCH not in layout.system.get("switch_list", "").split():
                    await self._vm("switch create", "switch", "create", _SWITCH)
                    layout = await self._layout()
                if nic not in layout.system.get(f"ports_{_SWITCH}", "").split():
                    await self._vm("switch add", "switch", "add", _SWITCH, nic)
            except BackendFailed:
                await self._restore_rc(before)
                raise

        return self._order.write(run)

    async def _restore_rc(self, before: Mapping[str, str]) -> None:
        for key in ("vm_enable", "vm_dir"):
            if key in before:
                await self._sysrc(self._rc_conf, f"{key}={before[key]}")
            else:
                await self._sysrc(self._rc_conf, "-x", key)

    # Guests

    def guest_operation(self, name: str, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run a change of guest ``name`` in the write lane, under the guest's lock."""
        lock = self._guest_locks.setdefault(name, DeferredLock())

        async def locked() -> T:
            await lock.acquire()
            try:
                return await work()
            finally:
                lock.release()

        return self._order.write(locked)

    def create(self, name: str, spec: GuestSpec) -> Deferred[None]:
        """``vm create [-d ds] [-t tpl] [-c cpu] [-m mem] -s size name``, verified by its conf."""
        args = ["create"]
        for flag, value in (
            ("-d", spec.datastore),
            ("-t", spec.template),
            ("-c", spec.cpu),
            ("-m", spec.memory),
        ):
            if value is not None:
                args += [flag, value]
        args += ["-s", spec.size, name]

        async def run() -> None:
            if host.GUEST_NAME.fullmatch(name) is None:
                raise Unsupported(f"vm-bhyve refuses the guest name '{name}'")
            _, guests, _ = await self._guests()
            if name in guests:
                raise Conflict(f"guest '{name}' already exists")
            result = await self._vm("create", *args)
            _, after, _ = await self._guests()
            if name not in after:
                raise VmBhyveFailed("vm create", result)

        return self.guest_operation(name, run)

    def install(self, name: str, iso: str) -> Deferred[None]:
        """``vm install <name> <iso>`` on a stopped guest."""

        async def run() -> None:
            layout, _, guest = await self._require(name)
            if iso not in [file for _, file in await deferToThread(host.iso_files, layout)]:
                raise NotFound(f"ISO '{iso}' does not exist")
            if guest["running"] == "YES" or guest.get("state") == "bootloader":
                raise Conflict(f"guest '{name}' is running; stop it first")
            await self._vm("install", "install", name, iso)

        return self.guest_operation(name, run)

    def start(self, name: str) -> Deferred[None]:
        """``vm start <name>``; its status counts the guests that failed."""

        async def run() -> None:
            _, _, guest = await self._require(name)
            if guest["running"] == "YES" or guest.get("state") == "bootloader":
                raise Conflict(f"guest '{name}' is running already")
            await self._vm("start", "start", name)

        return self.guest_operation(name, run)

    def stop(self, name: str, *, force: bool = False) -> Deferred[None]:
        """``vm stop <name>`` (ACPI), or ``vm poweroff -f <name>`` with ``force``."""

        async def run() -> None:
            _, _, guest = await self._require(name)
            if guest["running"] != "YES" and guest["vmm"] != "YES":
                raise Conflict(f"guest '{name}' is not running")
            if force:
                await self._vm("poweroff", "poweroff", "-f", name)
            else:
                await self._vm("stop", "stop", name)

        return self.guest_operation(name, run)

    def delete(self, name: str) -> Deferred[None]:
        """``vm destroy -f <name>`` on a stopped guest, verified by its conf gone."""

        async def run() -> None:
            _, _, guest = await self._require(name)
            if guest["running"] == "YES" or guest["vmm"] == "YES":
                raise Conflict(f"guest '{name}' is running; stop it first")
            result = await self._vm("destroy", "destroy", "-f", name)
            _, after, _ = await self._guests()
            if name in after:
                raise VmBhyveFailed("vm destroy", result)

        return self.guest_operation(name, run)

    def console_device(self, name: str) -> Deferred[Path]:
        """The ``com1`` device of the guest's ``console`` file (written while it runs)."""

        async def run() -> Path:
            _, guest, _ = await self._require(name)
            try:
                content = await deferToThread((guest.directory / "console").read_text)
                return Path(parse.console_device(content))
            except (OSError, parse.ParseError):
                raise NotFound(f"guest '{name}' has no console device") from None

        return self._order.read(run)

    # Disks

    def disks(self, name: str) -> Deferred[dict[str, DiskInfo]]:
        """The guest's disks from its conf, sized from their files or zvols."""

        async def run() -> dict[str, DiskInfo]:
            _, guest, _ = await self._require(name)
            return await self._disks(guest)

        return self._order.read(run)

    async def _disks(self, guest: host.GuestFiles) -> dict[str, DiskInfo]:
        found: dict[str, DiskInfo] = {}
        for number in host.disk_numbers(guest.conf):
            found[f"disk{number}"] = await self._disk(guest, number)
        return found

    def _disk_target(self, guest: host.GuestFiles, number: int) -> tuple[str, str]:
        """``("file", path)`` or ``("zvol", dataset)`` for disk ``number``."""
        disk_name = guest.conf[f"disk{number}_name"]
        dev = guest.conf.get(f"disk{number}_dev", "file")
        if dev in ("zvol", "sparse-zvol"):
            if guest.store.dataset is None:
                raise BackendFailed(
                    "vm-bhyve", f"{guest.name}'s disk{number} is a zvol outside ZFS"
                )
            return "zvol", f"{guest.store.dataset}/{guest.name}/{disk_name}"
        if dev != "file":
            raise Unsupported(
                f"disk{number} of '{guest.name}' is a {dev} device, not a file or zvol"
            )
        path = self._local(disk_name) if disk_name.startswith("/") else guest.directory / disk_name
        return "file", str(path)

    async def _disk(self, guest: host.GuestFiles, number: int) -> DiskInfo:
        kind, where = self._disk_target(guest, number)
        if kind == "zvol":
            result = await self._run(
                self._zfs("a zvol disk"), "get", "-Hp", "-o", "value", "volsize", where
            )
            size = text(result.stdout).strip()
            if not result.ok or not size.isdigit():
                raise VmBhyveFailed("zfs get volsize", result)
            return DiskInfo(host.size_text(int(size)), f"/dev/zvol/{where}")
        try:
            stat = await deferToThread(os.stat, where)
        except OSError as e:
            raise BackendFailed(
                "vm-bhyve", f"disk{number} of '{guest.name}': {e.strerror}"
            ) from None
        return DiskInfo(host.size_text(stat.st_size), where)

    def add_disk(self, name: str, size: str, datastore: str | None = None) -> Deferred[None]:
        """``vm add -d disk -s <size> <name>``, verified by one more disk in the conf.
        vm-bhyve keeps a guest's disks in its own datastore: ``datastore`` is refused."""
        if datastore:
            return fail(Unsupported("vm-bhyve keeps a guest's disks in its own datastore"))

        async def run() -> None:
            _, guest, _ = await self._require(name)
            before = len(host.disk_numbers(guest.conf))
            result = await self._vm("add", "add", "-d", "disk", "-s", size, name)
            _, after, _ = await self._require(name)
            if len(host.disk_numbers(after.conf)) != before + 1:
                raise VmBhyveFailed("vm add", result)

        return self.guest_operation(name, run)

    def resize_disk(self, name: str, disk: str, size: str) -> Deferred[None]:
        """Resize a stopped guest's disk: its file (truncate) or zvol (``zfs set volsize``)."""

        async def run() -> None:
            _, guest, summary = await self._require(name)
            number = _disk_number(disk)
            if number not in host.disk_numbers(guest.conf):
                raise NotFound(f"guest '{name}' has no {disk}")
            if summary["running"] == "YES" or summary["vmm"] == "YES":
                raise Conflict(f"guest '{name}' is running; stop it first")
            kind, where = self._disk_target(guest, number)
            if kind == "zvol":
                result = await self._run(self._zfs("a zvol disk"), "set", f"volsize={size}", where)
                if not result.ok:
                    raise VmBhyveFailed("zfs set volsize", result)
            else:
                try:
                    await deferToThread(os.truncate, where, host.size_bytes(size))
                except OSError as e:
                    raise BackendFailed("truncate", f"{disk}: {e.strerror}") from None
            if (await self._disk(guest, number)).size != host.size_text(host.size_bytes(size)):
                raise BackendFailed("vm-bhyve", f"{disk} of '{name}' did not take the size {size}")

        return self.guest_operation(name, run)

    def delete_disk(self, name: str, disk: str) -> Deferred[None]:
        """Remove the guest's last disk: its ``disk<N>_*`` keys (``sysrc -x``), then its file
        or zvol. vm-bhyve stops reading disks at the first gap, so only the last disk can go,
        and ``disk0`` (the boot disk) never."""

        async def run() -> None:
            _, guest, _ = await self._require(name)
            number = _disk_number(disk)
            numbers = host.disk_numbers(guest.conf)
            if number not in numbers:
                raise NotFound(f"guest '{name}' has no {disk}")
            if number == 0:
                raise Conflict(f"disk0 is the boot disk of '{name}'; delete the guest instead")
            if number != numbers[-1]:
                raise Conflict(
                    f"only the last disk (disk{numbers[-1]}) can be removed: vm-bhyve stops "
                    "reading disks at a gap"
                )
            kind, where = self._disk_target(guest, number)
            conf = guest.directory / f"{name}.conf"
            await self._sysrc(conf, "-x", *host.disk_keys(guest.conf, number))
            if kind == "zvol":
                result = await self._run(self._zfs("a zvol disk"), "destroy", where)
                if not result.ok:
                    raise VmBhyveFailed("zfs destroy", result)
            else:
                try:
                    await deferToThread(os.unlink, where)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise BackendFailed("vm-bhyve", f"{disk}'s file: {e.strerror}") from None

        return self.guest_operation(name, run)

    # Properties

    def properties(self, name: str) -> Deferred[dict[str, str]]:
        """The guest's conf in iohyve's property names (parse's table), with ``boot``
        from rc.conf's ``vm_list``."""

        async def run() -> dict[str, str]:
            layout, guest, _ = await self._require(name)
            return dict(sorted(_properties(layout, guest).items()))

        return self._order.read(run)

    def set_properties(self, name: str, values: Mapping[str, str]) -> Deferred[None]:
        """Write translated keys with ``sysrc -f <conf>``; ``boot`` adds or removes the
        guest in rc.conf's ``vm_list``. A property with no vm-bhyve key, or a value the
        conf cannot hold, is refused (Unsupported) before anything changes."""
        pairs: list[str] = []
        boot: str | None = None
        try:
            for prop, value in sorted(values.items()):
                if prop == "boot":
                    if value not in ("0", "1"):
                        raise parse.ParseError("boot must be 0 or 1")
                    boot = value
                    continue
                if prop == "description":
                    key, stored = DESCRIPTION_KEY, value
                else:
                    key, stored = parse.to_vmbhyve(prop, value)
                problem = parse.conf_value_problem(stored)
                if problem is not None:
                    raise parse.ParseError(f"the value of {prop} cannot be stored: {problem}")
                pairs.append(f"{key}={stored}")
        except parse.ParseError as e:
            return fail(Unsupported(str(e)))

        async def run() -> None:
            layout, guest, _ = await self._require(name)
            if pairs:
                await self._sysrc(guest.directory / f"{name}.conf", *pairs)
            if boot is not None and (boot == "1") != (name in layout.autostart):
                await self._sysrc(self._rc_conf, f"vm_list{'+' if boot == '1' else '-'}={name}")
            layout, after, _ = await self._require(name)
            now = _properties(layout, after)
            wrong = [
                prop for prop, value in values.items() if now.get(prop) != _read_back(prop, value)
            ]
            if wrong:
                raise BackendFailed("sysrc", f"{', '.join(sorted(wrong))} did not take")

        return self.guest_operation(name, run)

    # ISOs

    async def _isos(self) -> tuple[host.Layout, list[tuple[str, str]]]:
        layout = await self._layout()
        return layout, await deferToThread(host.iso_files, layout)

    def list_isos(self) -> Deferred[list[IsoInfo]]:
        """Every file in the ISO stores, with its datastore."""

        async def run() -> list[IsoInfo]:
            return [IsoInfo(name, store) for store, name in (await self._isos())[1]]

        return self._order.read(run)

    def iso_files(self) -> Deferred[list[tuple[IsoInfo, int]]]:
        """The ISOs with their datastores and sizes (a stat of each store's file)."""

        async def run() -> list[tuple[IsoInfo, int]]:
            layout, files = await self._isos()
            directories = dict(layout.iso_dirs)
            isos = [(IsoInfo(name, store), directories[store] / name) for store, name in files]
            return await deferToThread(sized_isos, isos)

        return self._order.read(run)

    async def _iso_path(self, name: str) -> tuple[host.Layout, Path | None]:
        layout, files = await self._isos()
        directories = dict(layout.iso_dirs)
        for store, file in files:
            if file == name:
                return layout, directories[store] / file
        return layout, None

    async def _refuse_attached(self, layout: host.Layout, *names: str) -> None:
        guests = await deferToThread(host.read_guests, layout, self._vmm_dir)
        running = {name for name, state in (await self._processes()).items() if state}
        used = await deferToThread(host.attached_isos, guests, running)
        for name in names:
            if name in used:
                raise Conflict(f"ISO '{name}' is attached to guest '{used[name]}'")

    def rename_iso(
        self, source: str, target: str, *, busy: Callable[[str], bool]
    ) -> Deferred[None]:
        """Rename the file within its store; 409 while a fetch or a guest uses either name."""

        async def run() -> None:
            _refuse_busy(busy, source, target)
            layout, path = await self._iso_path(source)
            if path is None:
                raise NotFound(f"ISO '{source}' does not exist")
            if source == target:
                raise Conflict(f"ISO '{source}' cannot be renamed to itself")
            if (await self._iso_path(target))[1] is not None:
                raise Conflict(f"ISO '{target}' already exists")
            await self._refuse_attached(layout, source)
            try:
                await deferToThread(_rename_new, path, path.with_name(target))
            except FileExistsError:
                raise Conflict(f"ISO '{target}' already exists") from None
            except OSError as e:
                raise BackendFailed("rename", f"ISO '{source}': {e.strerror}") from None
            self.log.info("Renamed ISO {source} to {target}", source=source, target=target)

        return self._order.write(run)

    def remove_iso(self, target: str, *, busy: Callable[[str], bool]) -> Deferred[None]:
        """Remove the file; 409 while a fetch or a guest uses it."""

        async def run() -> None:
            _refuse_busy(busy, target)
            layout, path = await self._iso_path(target)
            if path is None:
                raise NotFound(f"ISO '{target}' does not exist")
            await self._refuse_attached(layout, target)
            try:
                await deferToThread(os.unlink, path)
            except OSError as e:
                raise BackendFailed("remove", f"ISO '{target}': {e.strerror}") from None
            self.log.info("Removed ISO {target}", target=target)

        return self._order.write(run)

    def check_iso_absent(self, name: str) -> Deferred[None]:
        """Conflict if ISO ``name`` (or, for ``x.xz``, the ``x`` it unpacks to) exists."""

        async def run() -> None:
            files = {file for _, file in (await self._isos())[1]}
            for candidate in {name, _unpacked(name)}:
                if candidate in files:
                    raise Conflict(f"ISO '{candidate}' already exists; remove or rename it first")

        return self._order.read(run)

    # Downloads (the fetch queue follows the process; ``fetched`` finishes the job)

    def _fetch_root(self) -> Path:
        """``$vm_dir/.iso/.fetch``, from the layout the last read found: every fetch is
        checked (``check_iso_absent``) before it starts, and that reads the layout."""
        if self._vm_dir is None:
            raise BackendFailed("vm-bhyve", "the ISO store is not known yet (no layout read)")
        return self._vm_dir / ISO_DIR / FETCH_DIR

    def iso_directory(self, name: str) -> Path:
        """Where a download of ``name`` is written: a directory of its own below the
        ``default`` ISO store, which ``vm iso`` does not list (it lists files)."""
        return self._fetch_root() / name

    def start_fetch(
        self, url: str, *, timeout: float, on_output: Callable[[str, bytes], None] | None = None
    ) -> RunningProcess:
        """``fetch -o <download directory>/<name> <url>``."""
        name = url.rstrip("/").rsplit("/", 1)[-1]
        directory = self.iso_directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        command = self._commands.fetch
        if command is None:
            raise Unsupported("this host has no fetch command: ISOs cannot be downloaded")
        return self._runner.start(
            command[0],
            (*command[1:], "-o", self._host_path(directory / name), url),
            timeout=timeout,
            on_output=on_output,
        )

    def resume_fetch(
        self,
        url: str,
        name: str,
        *,
        timeout: float,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> RunningProcess:
        """``fetch -F -r -o <download directory>/<name> <url>``: the file :meth:`start_fetch`
        writes (``-F``: see :meth:`Iohyve.resume_fetch`)."""
        command = self._commands.fetch
        if command is None:
            raise Unsupported("this host has no fetch command: ISOs cannot be downloaded")
        directory = self.iso_directory(name)
        return self._runner.start(
            command[0],
            (*command[1:], "-F", "-r", "-o", self._host_path(directory / name), url),
            timeout=timeout,
            on_output=on_output,
        )

    def gather_partial(self, name: str) -> Deferred[int]:
        """The largest partial file in ``name``'s download directory, kept as ``<name>``."""
        return self._order.write(
            lambda: deferToThread(gather_partial, self.iso_directory(name), name)
        )

    def iso_size(self, name: str) -> int | None:
        """The size of the fetched ISO, in the store or still in its download directory."""
        for path in (
            self._fetch_root().parent / _unpacked(name),
            self.iso_directory(name) / name,
        ):
            try:
                return path.stat().st_size
            except OSError:
                continue
        return None

    def fetched(self, name: str) -> Deferred[bool]:
        """Finish a download: ``xz -d`` a ``.xz`` file as vm-bhyve does, move the ISO into
        the store, and say whether it is listed there."""

        async def run() -> bool:
            directory = self.iso_directory(name)
            downloaded = directory / name
            if name.endswith(".xz") and await deferToThread(downloaded.is_file):
                result = await self._run(self._commands.xz, "-d", self._host_path(downloaded))
                if not result.ok:
                    raise VmBhyveFailed("xz -d", result)
                downloaded = directory / _unpacked(name)
            final = directory.parent.parent / downloaded.name
            try:
                await deferToThread(_rename_new, downloaded, final)
            except FileNotFoundError:
                return False
            except OSError as e:
                raise BackendFailed("vm-bhyve", f"ISO '{final.name}': {e.strerror}") from None
            await deferToThread(_remove_tree, directory)
            return downloaded.name in {file for _, file in (await self._isos())[1]}

        return self._order.read(run)

    # Uploads (written into the store itself, under a hidden name, then renamed)

    def prepare_upload(self, name: str) -> Deferred[Path]:
        """The ``default`` datastore's ISO store, ``$vm_dir/.iso`` (created as ``vm init``
        does if missing): an upload is written there under a hidden name, which
        :meth:`list_isos` skips, and renamed to ``name`` in the same directory. Conflict
        if the ISO exists."""

        async def run() -> Path:
            layout, path = await self._iso_path(name)
            if path is not None:
                raise Conflict(f"ISO '{name}' already exists; remove or rename it first")
            store = dict(layout.iso_dirs)["default"]
            await deferToThread(store.mkdir, mode=0o755, exist_ok=True)
            return store

        return self._order.write(run)

    def upload_places(self) -> Deferred[list[tuple[Path, str | None]]]:
        """The ``default`` datastore's ISO store, shared by all ISOs."""

        async def run() -> list[tuple[Path, str | None]]:
            layout = await self._layout()
            return [(dict(layout.iso_dirs)["default"], None)]

        return self._order.read(run)

    def discard_partial(self, name: str) -> Deferred[None]:
        """Remove a failed or cancelled download's directory."""

        async def run() -> None:
            try:
                await deferToThread(_remove_tree, self.iso_directory(name))
            except OSError as e:
                self.log.warn(
                    "Could not remove the remains of a failed fetch of {name}: {why}",
                    name=name,
                    why=e.strerror,
                )

        return self._order.write(run)


def _properties(layout: host.Layout, guest: host.GuestFiles) -> dict[str, str]:
    """The guest's properties in iohyve's names: its conf through parse's table, its
    description, and ``boot`` from rc.conf's ``vm_list``."""
    props = parse.from_vmbhyve(guest.conf)
    if DESCRIPTION_KEY in guest.conf:
        props["description"] = guest.conf[DESCRIPTION_KEY]
    props["boot"] = "1" if guest.name in layout.autostart else "0"
    return props


def _read_back(prop: str, value: str) -> str:
    """How property ``prop`` set to ``value`` reads back from the conf."""
    if prop in ("boot", "description"):
        return value
    return parse.from_vmbhyve(dict([parse.to_vmbhyve(prop, value)]))[prop]


def _disk_number(disk: str) -> int:
    match = re.fullmatch(r"disk([0-9]{1,3})", disk)
    if match is None:
        raise NotFound(f"'{disk}' is not a disk name")
    return int(match.group(1))


def _unpacked(name: str) -> str:
    return name.removesuffix(".xz")


def _rename_new(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, never replacing an existing file."""
    os.link(source, target)
    os.unlink(source)


def _remove_tree(directory: Path) -> None:
    if not directory.is_dir() or directory.is_symlink():
        return
    for entry in directory.iterdir():
        entry.unlink()
    directory.rmdir()


#: What ``vm`` prints when a command did nothing even where it exits 0: ``vm stop``'s
#: warning on stderr, ``vm start``'s ``  ! `` lines on stdout, any ``ERROR:``.
def _says_failure(result: ProcessResult) -> bool:
    stdout, stderr = text(result.stdout), text(result.stderr)
    return (
        any(line.startswith("  ! ") for line in stdout.splitlines())
        or ": WARNING: " in stderr
        or ": ERROR: " in stderr
    )


def _refuse_busy(busy: Callable[[str], bool], *names: str) -> None:
    for name in names:
        if busy(name):
            raise Conflict(f"ISO '{name}' is being fetched; wait for the fetch to finish")
