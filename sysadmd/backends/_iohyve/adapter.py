"""The iohyve backend: iohyve's command lines, outputs and layout, behind the VM interface.

:class:`Iohyve` implements :class:`~sysadmd.backends._interface.VMBackend`. It is the only
code that knows how to ask iohyve for something: it builds every argv, reads every
output (with the pure parsers of :mod:`sysadmd.backends._iohyve.parse`), keeps rc.conf's
``iohyve_flags`` (:mod:`sysadmd.backends._iohyve.rcconf`) and knows where ISOs and consoles
live. Because iohyve's exit codes do not tell whether a command worked (most failures
exit 0, and a rename is two separate steps), every change is checked beforehand and
verified afterwards against ``iohyve list``, ``isolist``, ``disks`` or ``getall``; a
change that did not take is a :class:`IohyveFailed` in iohyve's own words.

Mutations run one at a time, in the order they were asked for, and a read waits
for every mutation asked for before it: a client that renames an ISO and then
lists the ISOs sees the rename, even if it sent both requests at once. Changes of
one guest also hold that guest's lock.

The guest list is the one read clients poll, so it is shared and briefly cached: callers
that ask while a list runs share it, and for ``list_cache`` seconds after a list was
asked for its result is reused, unless a mutation has been asked for since that list was asked
for (finished or not). No client therefore ever reads a list older than its own last
mutation, and many clients polling cost at most one ``iohyve list`` per window.

When the window has passed, the next caller starts a new list, and while it runs callers are
answered with the previous one, as long as it is less than two windows old and no mutation
has been asked for since: polling clients never wait for ``iohyve list`` once the daemon has
a list, and no answer is older than two windows.

The ISO list (``iohyve isolist``) is shared the same way while it runs, with no reuse once it
has finished: every fetch checks that its ISO is absent, and a burst of fetches costs one
``isolist``, while a check asked for after a list finished (or after a mutation, or after a
download's process ended) runs a new one, so it sees every ISO added or removed before it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.backends._errors import BackendFailed, Conflict, NotFound, Unsupported
from sysadmd.backends._interface import (
    UPLOAD_TEMPORARY_PREFIX,
    DiskInfo,
    GuestSpec,
    GuestSummary,
    IsoInfo,
)
from sysadmd.backends._iohyve import parse, rcconf
from sysadmd.backends._output import describe_failure, text
from sysadmd.backends._partial import gather_partial
from sysadmd.backends._runner import ProcessResult, ProcessRunner, RunningProcess
from sysadmd.shared import OneShotObserver, settled

__all__ = ["Iohyve", "IohyveFailed", "describe_failure"]

T = TypeVar("T")


class IohyveFailed(BackendFailed):
    """iohyve ran but did not do what was asked: ``iohyve <what> failed: <detail>``,
    the detail in iohyve's own words unless given."""

    def __init__(self, what: str, result: ProcessResult | None, detail: str | None = None) -> None:
        if detail is None:
            detail = describe_failure(result) if result is not None else "no result"
        super().__init__(f"iohyve {what}", detail, result)


#: Where iohyve's console property points: the guest's end of a null-modem pair.
_CONSOLE_PROPERTY: Final = re.compile(r"nmdm([0-9]{1,4})")


class _Order:
    """Mutations one at a time in arrival order; reads after the mutations before them."""

    def __init__(self) -> None:
        self._last_write: Deferred[None] | None = None
        #: Counts the mutations asked for (and the ends of those that run outside the
        #: write lane); a read may share another read's result only if it is unchanged.
        self.generation = 0

    def touch(self) -> None:
        """Note a change made outside the write lane: no read from before it is reused."""
        self.generation += 1

    async def _after_writes(self) -> None:
        last = self._last_write
        if last is not None:
            await settled(last)

    def read(self, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        async def run() -> T:
            await self._after_writes()
            return await work()

        return ensureDeferred(run())

    def write(self, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        self.generation += 1
        previous = self._last_write

        async def run() -> T:
            if previous is not None:
                await settled(previous)
            return await work()

        result = ensureDeferred(run())
        done: Deferred[None] = Deferred()
        self._last_write = done

        def finished(outcome: object) -> object:
            if self._last_write is done:
                self._last_write = None
            done.callback(None)
            return outcome

        result.addBoth(finished)
        return result


class Iohyve:
    """The iohyve backend: runs iohyve commands and turns their output into values.

    ``command`` is the argv prefix that starts iohyve: ``["/usr/local/sbin/iohyve"]``
    on a real host, or the simulator's interpreter and options in simulate mode.
    """

    log = Logger()
    tool = "iohyve"

    def __init__(
        self,
        runner: ProcessRunner,
        command: Sequence[str],
        *,
        timeout: float = 120.0,
        iso_root: Path = Path("/iohyve/ISO"),
        clock: IReactorTime | None = None,
        list_cache: float = 0.0,
        rc_conf: Path = Path("/etc/rc.conf"),
        slow_timeout: float | None = None,
        device_root: Path = Path("/dev"),
        zfs: Sequence[str] = ("/sbin/zfs",),
        fetch: Sequence[str] | None = ("/usr/bin/fetch",),
        host_root: Path = Path("/"),
    ) -> None:
        """``list_cache`` is how many seconds a guest list is reused (0: only shared while
        it runs); its age is read from ``clock`` (the reactor unless given). ``iso_root``
        is where iohyve's ISO datasets are mounted, ``rc_conf`` the file that holds
        ``iohyve_flags``. ``slow_timeout`` bounds ``delete -f``, which waits 10 s first
        (default: ``timeout`` + 30 s). ``device_root`` is where the consoles' null-modem
        devices are (``/dev``; the simulator's own directory in simulate mode). ``zfs`` is the
        argv that runs ``zfs`` (an upload creates its ISO's dataset with it). ``fetch`` is
        the host's fetch(1) (its argv prefix), which continues an interrupted download (``None``:
        downloads always start again), and ``host_root`` where the host's ``/`` is (``/`` but
        for a simulated host): the path fetch is given is the host's."""
        if not command or not zfs:
            raise ValueError("the iohyve and zfs commands must not be empty")
        if fetch is not None and (not fetch or not os.path.isabs(fetch[0])):
            raise ValueError("the fetch command must start with an absolute path")
        if list_cache < 0:
            raise ValueError("list_cache must not be negative")
        if clock is None:
            from twisted.internet import reactor  # noqa: PLC0415 (the default only)

            clock = cast(IReactorTime, reactor)
        self._clock = clock
        self._list_cache = list_cache
        self.iso_root = iso_root
        self._runner = runner
        self._executable = command[0]
        self._prefix = tuple(command[1:])
        self._timeout = timeout
        self._slow_timeout = timeout + 30 if slow_timeout is None else slow_timeout
        self._rc_conf = rc_conf
        self._device_root = device_root
        self._zfs = tuple(zfs)
        self._fetch = tuple(fetch) if fetch is not None else None
        self._host_root = host_root
        self._order = _Order()
        self._listing: _Shared | None = None
        #: The list that ``_listing`` replaces, answered while ``_listing`` runs.
        self._previous: _Shared | None = None
        #: The ``isolist`` running now, which checks asked for meanwhile join.
        self._isolisting: _Shared | None = None
        #: How many downloads had ended when ``_isolisting`` was asked for, and now.
        self._isolisting_after = 0
        self._downloads_ended = 0
        self._guest_locks: dict[str, DeferredLock] = {}

    def _run(self, *args: str, timeout: float | None = None) -> Deferred[ProcessResult]:
        return self._runner.run(
            self._executable, (*self._prefix, *args), timeout=timeout or self._timeout
        )

    async def _read(self, what: str, *args: str) -> str:
        result = await self._run(*args)
        if not result.ok:
            raise IohyveFailed(what, result)
        return text(result.stdout)

    # Reads

    def list_vms(self) -> Deferred[dict[str, parse.Guest]]:
        """The guests, from ``iohyve list``.

        Callers that ask while a list is running, with no mutation asked for since it
        was asked for, share its result: many clients polling at once cost one
        ``iohyve list``. A list that succeeded is reused on the same terms for
        ``list_cache`` seconds from when it was asked for, and while the list that
        replaces it runs, for up to twice as long (see the module's documentation).
        """
        shared = self._listing
        now = self._clock.seconds()
        if shared is not None and self._usable(shared, now, self._list_cache):
            return succeed(shared.value)
        if shared is None or shared.finished or shared.generation != self._order.generation:
            self._previous = shared
            shared = _Shared(self._order.generation, now, self._order.read(self._list_vms))
            self._listing = shared
            if shared.finished:
                # Finished at once (a fake runner): the caller still gets the result.
                if shared.failure is not None:
                    return fail(shared.failure)
                return succeed(shared.value)
        previous = self._previous
        if previous is not None and self._usable(previous, now, 2 * self._list_cache):
            return succeed(previous.value)
        return shared.join()

    def _usable(self, shared: _Shared, now: float, age: float) -> bool:
        """Whether ``shared`` has finished with a list, asked for less than ``age`` seconds
        ago, that no mutation has made out of date."""
        return (
            shared.succeeded
            and shared.generation == self._order.generation
            and now - shared.asked < age
        )

    async def _list_vms(self) -> dict[str, parse.Guest]:
        # Every caller within the refresh window gets this very object, never changed.
        return _parsed("list", parse.parse_list, await self._read("list", "list"))

    def list_isos(self) -> Deferred[list[IsoInfo]]:
        """The ISOs, from ``iohyve isolist`` (iohyve has one ISO store), less the datasets
        an upload is still writing into (they hold its temporary file)."""

        async def run() -> list[IsoInfo]:
            names = await self._shared_isos()
            uploading = await deferToThread(_holding_uploads, self.iso_root, names)
            return [IsoInfo(name) for name in names if name not in uploading]

        return ensureDeferred(run())

    def iso_files(self) -> Deferred[list[tuple[IsoInfo, int]]]:
        """The ISOs with their sizes: ``isolist``, then a stat of each dataset's file."""

        async def run() -> list[tuple[IsoInfo, int]]:
            names = await self._shared_isos()
            return await deferToThread(
                sized_isos, [(IsoInfo(n), self.iso_directory(n) / n) for n in names]
            )

        return ensureDeferred(run())

    async def _list_isos(self) -> list[str]:
        """Run ``isolist`` now (in the write lane, or in a read of its own)."""
        return _parsed("isolist", parse.parse_isolist, await self._read("isolist", "isolist"))

    def _shared_isos(self) -> Deferred[list[str]]:
        """The ISO names, from the ``isolist`` running now if one is and no mutation was asked
        for (nor a download ended) since it was asked for, else from a new one, run after the
        mutations asked for before it. Callers share the list: they must not change it."""
        shared = self._isolisting
        if (
            shared is None
            or shared.finished
            or shared.generation != self._order.generation
            or self._isolisting_after != self._downloads_ended
        ):
            generation = self._order.generation
            self._isolisting_after = self._downloads_ended
            shared = _Shared(generation, self._clock.seconds(), self._order.read(self._list_isos))
            self._isolisting = shared
            if shared.finished:
                # Finished at once (a fake runner): the caller still gets the result.
                if shared.failure is not None:
                    return fail(shared.failure)
                return succeed(shared.value)
        listed: Deferred[list[str]] = shared.join()
        return listed

    def version(self) -> Deferred[str]:
        """iohyve's version string."""

        async def run() -> str:
            return _parsed("version", parse.parse_version, await self._read("version", "version"))

        return self._order.read(run)

    # Setup

    def is_setup(self) -> Deferred[bool]:
        """Whether rc.conf has a non-empty ``iohyve_flags`` line (read in a thread)."""

        async def run() -> bool:
            return bool(await deferToThread(rcconf.read_flags, self._rc_conf))

        return ensureDeferred(run())

    def setup(self, pool: str, nic: str) -> Deferred[None]:
        """Run ``iohyve setup pool=<pool> kmod=1 net=<nic>``, verify it, and only then
        write ``iohyve_flags="kmod=1 net=<nic>"`` to rc.conf (atomically, so a failure
        leaves the file as it was): :meth:`is_setup` reads rc.conf, so a setup that
        failed must not have written it.

        0.7.4+ refuses a pool it cannot use with status 1 (0.7.9: ``There are errors with
        the pool or pool name.``). 0.7.3 runs ``zfs create <pool>/iohyve`` and carries on
        whatever zfs said, ending with the status of its last step, so zfs's complaints
        about the pool's datasets on stderr are what tell. ``dataset already exists`` is
        not one: the pool was set up before, which is what was asked.
        """

        async def run() -> None:
            result = await self._run("setup", f"pool={pool}", "kmod=1", f"net={nic}")
            if not result.ok or _says_failure(result):
                raise IohyveFailed("setup", result)
            problem = _dataset_problem(text(result.stderr), f"{pool}/iohyve")
            if problem is not None:
                raise IohyveFailed("setup", result, problem)
            try:
                await deferToThread(rcconf.write_flags, self._rc_conf, f"kmod=1 net={nic}")
            except OSError as e:
                raise IohyveFailed(
                    "setup",
                    result,
                    f"iohyve is set up on '{pool}', but rc.conf could not be written "
                    f"({e.strerror or e})",
                ) from None

        return self._order.write(run)

    # ISOs

    def rename_iso(
        self, source: str, target: str, *, busy: Callable[[str], bool]
    ) -> Deferred[None]:
        """Rename ISO ``source`` to ``target``: NotFound if it is missing, Conflict if taken.

        ``busy(name)`` says whether a queued or running fetch owns a name; such
        names are refused with Conflict so that no download is renamed under its feet.
        """

        async def run() -> None:
            _refuse_busy(busy, source, target)
            isos = await self._list_isos()
            if source not in isos:
                raise NotFound(f"ISO '{source}' does not exist")
            if source == target:
                raise Conflict(f"ISO '{source}' cannot be renamed to itself")
            if target in isos:
                raise Conflict(f"ISO '{target}' already exists")
            result = await self._run("renameiso", source, target)
            after = await self._list_isos()
            if source in after or target not in after:
                raise IohyveFailed("renameiso", result)
            self.log.info("Renamed ISO {source} to {target}", source=source, target=target)

        return self._order.write(run)

    def remove_iso(self, target: str, *, busy: Callable[[str], bool]) -> Deferred[None]:
        """Remove ISO ``target``: NotFound if it is missing, Conflict if a fetch owns it."""

        async def run() -> None:
            _refuse_busy(busy, target)
            if target not in await self._list_isos():
                raise NotFound(f"ISO '{target}' does not exist")
            result = await self._run("rmiso", target)
            if target in await self._list_isos():
                raise IohyveFailed("rmiso", result)
            self.log.info("Removed ISO {target}", target=target)

        return self._order.write(run)

    def check_iso_absent(self, name: str) -> Deferred[None]:
        """Conflict if ISO ``name`` exists already (a fetch must not overwrite it)."""

        async def run() -> None:
            if name in await self._shared_isos():
                raise Conflict(f"ISO '{name}' already exists; remove or rename it first")

        return ensureDeferred(run())

    # Guests

    def guest_operation(
        self, name: str, work: Callable[[], Awaitable[T]], *, slow: bool = False
    ) -> Deferred[T]:
        """Run a change of guest ``name``: one at a time per guest.

        A quick change also runs in the write lane, in order with every other
        mutation. A ``slow`` one (``delete -f`` waits 10 s in iohyve 0.7.4+) holds only
        the guest's own lock, so that other requests do not wait for it.
        """
        lock = self._guest_locks.setdefault(name, DeferredLock())

        async def slow_work() -> T:
            # Outside the write lane the generation must move at both ends: a list
            # that ran meanwhile may show the guest as it was before the change.
            self._order.touch()
            try:
                return await work()
            finally:
                self._order.touch()

        async def locked() -> T:
            await lock.acquire()
            try:
                return await (slow_work() if slow else self._order.write(work))
            finally:
                lock.release()
                if not lock.locked and not lock.waiting:
                    self._guest_locks.pop(name, None)

        return ensureDeferred(locked())

    def mutate(self, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run a change that concerns no one guest, in order with every other change."""
        return self._order.write(work)

    def read(self, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run a read after every mutation asked for before it."""
        return self._order.read(work)

    async def _require_guest(self, name: str) -> GuestSummary:
        """The guest called ``name``, read now, or NotFound.

        Inside an operation only the ``_``-methods read: :meth:`list_vms` and the public
        reads wait for the mutations before them, the running one included.
        """
        guest = (await self._list_vms()).get(name)
        if guest is None:
            raise NotFound(f"guest '{name}' does not exist")
        return guest

    async def _run_checked(self, what: str, *args: str) -> None:
        """Run an iohyve command whose status and messages mean something."""
        result = await self._run(*args)
        if not result.ok or _says_failure(result):
            raise IohyveFailed(what, result)

    async def _disks(self, name: str) -> dict[str, str]:
        return _parsed("disks", parse.parse_disks, await self._read("disks", "disks", name))

    async def _properties(self, name: str) -> dict[str, str]:
        return _parsed("getall", parse.parse_getall, await self._read("getall", "getall", name))

    def guest(self, name: str) -> Deferred[GuestSummary]:
        """Guest ``name`` as ``iohyve list`` shows it, or NotFound."""
        return self._order.read(lambda: self._require_guest(name))

    def create(self, name: str, spec: GuestSpec) -> Deferred[None]:
        """``iohyve create <name> <size> [pool]``; Conflict if the name is taken.

        iohyve has no templates and sets CPUs and memory through properties after
        creation: those fields are refused (Unsupported)."""
        unsupported = [
            field
            for field, value in (("template", spec.template), ("cpu", spec.cpu))
            if value is not None
        ] + (["memory"] if spec.memory is not None else [])
        if unsupported:
            return fail(Unsupported(f"iohyve create takes no {', '.join(unsupported)}"))
        pool = (spec.datastore,) if spec.datastore else ()

        async def run() -> None:
            if name in await self._list_vms():
                raise Conflict(f"guest '{name}' already exists")
            result = await self._run("create", name, spec.size, *pool)
            if name not in await self._list_vms():
                raise IohyveFailed("create", result)

        return self.guest_operation(name, run)

    def install(self, name: str, iso: str) -> Deferred[None]:
        """``iohyve install <name> <iso>`` on a stopped guest."""

        async def run() -> None:
            guest = await self._require_guest(name)
            if iso not in await self._list_isos():
                raise NotFound(f"ISO '{iso}' does not exist")
            if guest["running"] == "YES":
                raise Conflict(f"guest '{name}' is running; stop it first")
            await self._run_checked("install", "install", name, iso)

        return self.guest_operation(name, run)

    def start(self, name: str) -> Deferred[None]:
        """``iohyve start <name>``; Conflict if it runs already."""

        async def run() -> None:
            guest = await self._require_guest(name)
            if guest["running"] == "YES":
                raise Conflict(f"guest '{name}' is running already")
            await self._run_checked("start", "start", name)

        return self.guest_operation(name, run)

    def stop(self, name: str, *, force: bool = False) -> Deferred[None]:
        """``iohyve stop <name>`` (ACPI shutdown), or ``forcekill`` with ``force``;
        Conflict if neither bhyve nor its VM is there."""

        async def run() -> None:
            guest = await self._require_guest(name)
            if guest["running"] != "YES" and guest["vmm"] != "YES":
                raise Conflict(f"guest '{name}' is not running")
            await self._run_checked("stop", "forcekill" if force else "stop", name)

        return self.guest_operation(name, run)

    def delete(self, name: str) -> Deferred[None]:
        """``iohyve delete -f <name>`` on a stopped guest, verified with ``iohyve list``.

        iohyve 0.7.4+ waits 10 s first: the delete holds only the guest's lock, and its
        reads wait in line like any other, so other requests do not wait for it."""

        async def run() -> None:
            guest = await self._order.read(lambda: self._require_guest(name))
            if guest["running"] == "YES":
                raise Conflict(f"guest '{name}' is running; stop it first")
            result = await self._run("delete", "-f", name, timeout=self._slow_timeout)
            if name in await self._order.read(self._list_vms):
                raise IohyveFailed("delete", result)

        return self.guest_operation(name, run, slow=True)

    def console_device(self, name: str) -> Deferred[Path]:
        """The host's end of guest ``name``'s null-modem console: its ``con`` property
        ``nmdm<N>`` (bhyve holds ``/dev/nmdm<N>A``) gives ``/dev/nmdm<N>B``."""

        async def run() -> Path:
            await self._require_guest(name)
            con = (await self._properties(name)).get("con", "")
            return console_device_path(name, con, self._device_root)

        return self._order.read(run)

    # Disks

    def disks(self, name: str) -> Deferred[dict[str, DiskInfo]]:
        """Guest ``name``'s disks and their sizes, from ``iohyve disks``."""

        async def run() -> dict[str, DiskInfo]:
            await self._require_guest(name)
            return {disk: DiskInfo(size) for disk, size in (await self._disks(name)).items()}

        return self._order.read(run)

    def add_disk(self, name: str, size: str, datastore: str | None = None) -> Deferred[None]:
        """``iohyve add <name> <size> [pool]``, verified by one more disk listed."""

        async def run() -> None:
            await self._require_guest(name)
            before = await self._disks(name)
            result = await self._run("add", name, size, *([datastore] if datastore else []))
            if len(await self._disks(name)) != len(before) + 1:
                raise IohyveFailed("add", result)

        return self.guest_operation(name, run)

    def resize_disk(self, name: str, disk: str, size: str) -> Deferred[None]:
        """``iohyve resize <name> <disk> <size>`` on a stopped guest, verified."""

        async def run() -> None:
            guest = await self._require_guest(name)
            if disk not in await self._disks(name):
                raise NotFound(f"guest '{name}' has no {disk}")
            if guest["running"] == "YES":
                raise Conflict(f"guest '{name}' is running; stop it first")
            result = await self._run("resize", name, disk, size)
            if (await self._disks(name)).get(disk) != size:
                raise IohyveFailed("resize", result)

        return self.guest_operation(name, run)

    def delete_disk(self, name: str, disk: str) -> Deferred[None]:
        """``iohyve remove -f <name> <disk>``, verified by the disk gone."""

        async def run() -> None:
            await self._require_guest(name)
            if disk not in await self._disks(name):
                raise NotFound(f"guest '{name}' has no {disk}")
            result = await self._run("remove", "-f", name, disk)
            if disk in await self._disks(name):
                raise IohyveFailed("remove", result)

        return self.guest_operation(name, run)

    # Properties (iohyve's names are the API's)

    def properties(self, name: str) -> Deferred[dict[str, str]]:
        """Guest ``name``'s iohyve properties, from ``iohyve getall``."""

        async def run() -> dict[str, str]:
            await self._require_guest(name)
            return await self._properties(name)

        return self._order.read(run)

    def set_properties(self, name: str, values: Mapping[str, str]) -> Deferred[None]:
        """``iohyve set <name> key=value...``, verified against ``iohyve getall``."""
        pairs = [f"{key}={value}" for key, value in sorted(values.items())]

        async def run() -> None:
            await self._require_guest(name)
            result = await self._run("set", name, *pairs)
            now = await self._properties(name)
            if any(now.get(k) not in stored_forms(k, v) for k, v in values.items()):
                raise IohyveFailed("set", result)

        return self.guest_operation(name, run)

    # Downloads of ISOs

    def start_fetch(
        self, url: str, *, timeout: float, on_output: Callable[[str, bytes], None] | None = None
    ) -> RunningProcess:
        """Start ``iohyve fetch URL``; the caller follows the process it returns."""
        return self._changes_isos(
            self._runner.start(
                self._executable,
                (*self._prefix, "fetch", url),
                timeout=timeout,
                on_output=on_output,
            )
        )

    def _changes_isos(self, process: RunningProcess) -> RunningProcess:
        """A download's process changes the ISOs outside the write lane: once it has ended,
        no ``isolist`` asked for before is shared (the guest list is not concerned)."""

        def ended(outcome: object) -> object:
            self._downloads_ended += 1
            return outcome

        process.done.addBoth(ended)
        return process

    def resume_fetch(
        self,
        url: str,
        name: str,
        *,
        timeout: float,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> RunningProcess:
        """``fetch -F -r -o /iohyve/ISO/<name>/<name> <url>``: the file ``iohyve fetch``
        writes, in the dataset its first attempt created. ``-F``: the caller has compared the
        source's validator itself, and fetch(1) sets the file's mtime only when it ends the
        transfer itself, so after a kill its own ``Last-Modified`` check would fail."""
        if self._fetch is None:
            raise Unsupported("this host has no fetch command: downloads cannot be resumed")
        target = self.iso_directory(name) / name
        host = "/" + str(target.relative_to(self._host_root)).removeprefix(".").lstrip("/")
        return self._changes_isos(
            self._runner.start(
                self._fetch[0],
                (*self._fetch[1:], "-F", "-r", "-o", host, url),
                timeout=timeout,
                on_output=on_output,
            )
        )

    def gather_partial(self, name: str) -> Deferred[int]:
        """The largest partial file in ISO ``name``'s dataset, kept as ``<name>``."""
        return self._order.write(
            lambda: deferToThread(gather_partial, self.iso_directory(name), name)
        )

    def iso_directory(self, name: str) -> Path:
        """Where ISO ``name``'s dataset is mounted (iohyve's layout: ``ISO/<name>/<name>``)."""
        return self.iso_root / name

    def iso_size(self, name: str) -> int | None:
        """The size of ISO ``name``'s file, or None if it is not there."""
        try:
            return (self.iso_directory(name) / name).stat().st_size
        except OSError:
            return None

    def discard_partial(self, name: str) -> Deferred[None]:
        """Remove what a failed or cancelled fetch left under ``name``, if anything."""

        async def run() -> None:
            if name in await self._list_isos():
                result = await self._run("rmiso", name)
                if not result.ok:
                    self.log.warn(
                        "Could not remove the remains of a failed fetch of {name}: {why}",
                        name=name,
                        why=describe_failure(result),
                    )

        return self._order.write(run)

    def fetched(self, name: str) -> Deferred[bool]:
        """Whether ISO ``name`` is listed, to check a finished fetch."""

        async def run() -> bool:
            return name in await self._list_isos()

        return self._order.read(run)

    # Uploads of ISOs

    def prepare_upload(self, name: str) -> Deferred[Path]:
        """``zfs create <pool>/iohyve/ISO/<name>``, as ``iohyve fetch`` does, and return
        where it is mounted: each ISO is a dataset of its own, so the upload is written
        there and renamed within it. Conflict if the dataset exists."""

        async def run() -> Path:
            if name in await self._list_isos():
                raise Conflict(f"ISO '{name}' already exists; remove or rename it first")
            dataset = f"{await self._iso_parent()}/{name}"
            result = await self._runner.run(
                self._zfs[0], (*self._zfs[1:], "create", dataset), timeout=self._timeout
            )
            if not result.ok:
                if text(result.stderr).rstrip().endswith(": dataset already exists"):
                    raise Conflict(f"ISO '{name}' already exists; remove or rename it first")
                raise BackendFailed("zfs create", describe_failure(result), result)
            directory = self.iso_directory(name)
            if not await deferToThread(directory.is_dir):
                raise BackendFailed("zfs create", f"'{dataset}' is not mounted at {directory}")
            return directory

        return self._order.write(run)

    async def _iso_parent(self) -> str:
        """The dataset that holds the ISO datasets: ``<pool>/iohyve/ISO`` of the first
        pool (in ``zfs list`` order) that has one, as iohyve's ISO commands choose it."""
        result = await self._runner.run(
            self._zfs[0],
            (*self._zfs[1:], "get", "-H", "-o", "name", "mountpoint"),
            timeout=self._timeout,
        )
        if not result.ok:
            raise BackendFailed("zfs get", describe_failure(result), result)
        for line in text(result.stdout).splitlines():
            if _ISO_PARENT.fullmatch(line.strip()):
                return line.strip()
        raise BackendFailed("zfs get", "no dataset <pool>/iohyve/ISO: is iohyve set up?")

    def upload_places(self) -> Deferred[list[tuple[Path, str | None]]]:
        """Every ISO dataset's directory, with its ISO's name."""

        def places() -> list[tuple[Path, str | None]]:
            try:
                entries = sorted(os.scandir(self.iso_root), key=lambda entry: entry.name)
            except OSError:
                return []
            return [
                (Path(entry.path), entry.name)
                for entry in entries
                if entry.is_dir(follow_symlinks=False)
            ]

        async def run() -> list[tuple[Path, str | None]]:
            return await deferToThread(places)

        return self._order.read(run)


#: The dataset that holds iohyve's ISO datasets.
_ISO_PARENT: Final = re.compile(r"[^/@\s]+/iohyve/ISO")


def _holding_uploads(root: Path, names: list[str]) -> set[str]:
    """Those of ``names`` whose directory below ``root`` holds an upload's temporary file."""
    holding = set()
    for name in names:
        try:
            with os.scandir(root / name) as entries:
                if any(entry.name.startswith(UPLOAD_TEMPORARY_PREFIX) for entry in entries):
                    holding.add(name)
        except OSError:
            continue
    return holding


def console_device_path(name: str, con: str, root: Path = Path("/dev")) -> Path:
    """The device for guest ``name``'s console from its ``con`` property (``nmdm3``:
    ``/dev/nmdm3B``, under ``root``); NotFound if the property names no null-modem device."""
    match = _CONSOLE_PROPERTY.fullmatch(con)
    if match is None:
        raise NotFound(f"guest '{name}' has no console device")
    return root / f"nmdm{match.group(1)}B"


def stored_forms(key: str, value: str) -> tuple[str, ...]:
    """The values ``iohyve getall`` may show for property ``key`` set to ``value``.

    Only a description may hold spaces, and bargs, which iohyve stores with ``_`` for
    each space. iohyve's shell collapses runs of white space in a description (its IFS
    has spaces; the simulator's any white space), and 0.7.3's getall shows only a
    value's first word.
    """
    if key == "bargs":
        return (value.replace(" ", "_"),)
    words = [word for word in value.split(" ") if word]
    split = value.split()
    return (" ".join(words), words[0], " ".join(split), *split[:1])


class _Shared:
    """One read whose result every caller that joins it while it runs receives.

    Once finished it keeps a successful result (``value``) for reuse by the cache.
    """

    def __init__(self, generation: int, asked: float, work: Deferred[Any]) -> None:
        self.generation = generation
        #: When the read was asked for (reactor seconds): the age of its result.
        self.asked = asked
        self.finished = False
        self.succeeded = False
        self.value: Any = None
        self.failure: Failure | None = None
        self._result: OneShotObserver[Any] = OneShotObserver()
        work.addBoth(self._deliver)

    def join(self) -> Deferred[Any]:
        return self._result.when_fired()

    def _deliver(self, result: Any) -> None:
        # Finished before anyone hears of it: a waiter that asks again at once, from
        # its callback, must start a new read rather than join this one.
        self.finished = True
        if isinstance(result, Failure):
            self.failure = result
        else:
            self.succeeded = True
            self.value = result
        self._result.fire(result)


def _parsed(what: str, parser: Callable[[str], T], output: str) -> T:
    try:
        return parser(output)
    except parse.ParseError as e:
        raise IohyveFailed(what, None, f"its output could not be read ({e})") from None


#: Messages iohyve prints, with exit status 0, when a start, stop, install or setup did
#: nothing. ("iohyve already exists on <pool>" from a second setup is not one: the pool
#: is set up, which is what was asked.)
_FAILURE_MESSAGES: Final = (
    "Not a valid guest name",
    "doesn't exist",
    "Not a valid PCIDEV property",
    "Please stop the guest first",
    "is not a valid command",
)


def _says_failure(result: ProcessResult) -> bool:
    output = text(result.stdout)
    return any(message in output for message in _FAILURE_MESSAGES)


def _dataset_problem(stderr: str, dataset: str) -> str | None:
    """The first zfs complaint about ``dataset`` or a child of it (``cannot create
    'tank/iohyve': no such pool 'tank'``), other than that it exists already."""
    for raw in stderr.splitlines():
        line = raw.strip()
        if (
            line.startswith("cannot ")
            and (f"'{dataset}'" in line or f"'{dataset}/" in line)
            and not line.endswith(": dataset already exists")
        ):
            return line
    return None


def _refuse_busy(busy: Callable[[str], bool], *names: str) -> None:
    for name in names:
        if busy(name):
            raise Conflict(f"ISO '{name}' is being fetched; wait for the fetch to finish")


def sized_isos(isos: list[tuple[IsoInfo, Path]]) -> list[tuple[IsoInfo, int]]:
    """Each ISO with its file's size; one whose file is gone is left out (blocking: run
    it in a thread)."""
    found = []
    for iso, path in isos:
        try:
            found.append((iso, path.stat().st_size))
        except OSError:
            continue
    return found
