"""The iohyve adapter: iohyve's command lines, run through the process runner.

It is the only code that knows how to ask iohyve for something. Because iohyve's
exit codes do not tell whether a command worked (most failures exit 0, and a
rename is two separate steps), every mutation is checked beforehand and verified
afterwards against ``iohyve isolist``.

Mutations run one at a time, in the order they were asked for, and a read waits
for every mutation asked for before it: a client that renames an ISO and then
lists the ISOs sees the rename, even if it sent both requests at once.

The guest list is the one read clients poll, so it is shared and briefly cached: callers
that ask while a list runs share it, and for ``list_cache`` seconds after a list was
asked for its result is reused, unless a mutation has been asked for since that list was asked
for (finished or not). No client therefore ever reads a list older than its own last
mutation, and many clients polling cost at most one ``iohyve list`` per window.

When the window has passed, the next caller starts a new list, and while it runs callers are
answered with the previous one, as long as it is less than two windows old and no mutation
has been asked for since: polling clients never wait for ``iohyve list`` once the daemon has
a list, and no answer is older than two windows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.errors import ApiError, conflict, not_found
from sysadmd.iohyve import parse
from sysadmd.runner import ProcessResult, ProcessRunner, RunningProcess

T = TypeVar("T")


class IohyveFailed(ApiError):
    """iohyve ran but did not do what was asked; carries the tool's own message."""

    def __init__(self, what: str, result: ProcessResult | None, detail: str | None = None) -> None:
        if detail is None and result is not None:
            detail = describe_failure(result)
        super().__init__(500, f"iohyve {what} failed: {detail}")
        self.result = result


def describe_failure(result: ProcessResult) -> str:
    """A one-line account of why a command failed, in iohyve's own words if it had any."""
    if result.timed_out:
        return "it did not finish in time and was stopped"
    if result.cancelled:
        return "it was cancelled"
    if result.truncated:
        return "it printed more output than the daemon accepts"
    message = parse.first_message(_text(result.stdout), _text(result.stderr))
    if result.signal is not None:
        return f"it was ended by signal {result.signal} ({message})"
    return message


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


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
            waiter: Deferred[None] = Deferred()
            last.addBoth(lambda _: waiter.callback(None))
            await waiter

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
                waiter: Deferred[None] = Deferred()
                previous.addBoth(lambda _: waiter.callback(None))
                await waiter
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
    """Runs iohyve commands and turns their output into values.

    ``command`` is the argv prefix that starts iohyve: ``["/usr/local/sbin/iohyve"]``
    on a real host, or the simulator's interpreter and options in simulate mode.
    """

    log = Logger()

    def __init__(
        self,
        runner: ProcessRunner,
        command: Sequence[str],
        *,
        timeout: float = 120.0,
        iso_root: Path = Path("/iohyve/ISO"),
        clock: IReactorTime | None = None,
        list_cache: float = 0.0,
    ) -> None:
        """``list_cache`` is how many seconds a guest list is reused (0: only shared while
        it runs); its age is read from ``clock`` (the reactor unless given)."""
        if not command:
            raise ValueError("the iohyve command must not be empty")
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
        self._order = _Order()
        self._listing: _Shared | None = None
        #: The list that ``_listing`` replaces, answered while ``_listing`` runs.
        self._previous: _Shared | None = None
        self._guest_locks: dict[str, DeferredLock] = {}

    def _run(self, *args: str, timeout: float | None = None) -> Deferred[ProcessResult]:
        return self._runner.run(
            self._executable, (*self._prefix, *args), timeout=timeout or self._timeout
        )

    async def _read(self, what: str, *args: str) -> str:
        result = await self._run(*args)
        if not result.ok:
            raise IohyveFailed(what, result)
        return _text(result.stdout)

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

    def list_isos(self) -> Deferred[list[str]]:
        """The ISO names, from ``iohyve isolist``."""
        return self._order.read(self._list_isos)

    async def _list_isos(self) -> list[str]:
        return _parsed("isolist", parse.parse_isolist, await self._read("isolist", "isolist"))

    def version(self) -> Deferred[str]:
        """iohyve's version string."""

        async def run() -> str:
            return _parsed("version", parse.parse_version, await self._read("version", "version"))

        return self._order.read(run)

    # Mutations

    def rename_iso(
        self, source: str, target: str, *, busy: Callable[[str], bool]
    ) -> Deferred[None]:
        """Rename ISO ``source`` to ``target``: 404 if it is missing, 409 if taken.

        ``busy(name)`` says whether a queued or running fetch owns a name; such
        names are refused with 409 so that no download is renamed under its feet.
        """

        async def run() -> None:
            _refuse_busy(busy, source, target)
            isos = await self._list_isos()
            if source not in isos:
                raise not_found(f"ISO '{source}' does not exist")
            if source == target:
                raise conflict(f"ISO '{source}' cannot be renamed to itself")
            if target in isos:
                raise conflict(f"ISO '{target}' already exists")
            result = await self._run("renameiso", source, target)
            after = await self._list_isos()
            if source in after or target not in after:
                raise IohyveFailed("renameiso", result)
            self.log.info("Renamed ISO {source} to {target}", source=source, target=target)

        return self._order.write(run)

    def remove_iso(self, target: str, *, busy: Callable[[str], bool]) -> Deferred[None]:
        """Remove ISO ``target``: 404 if it is missing, 409 if a fetch owns it."""

        async def run() -> None:
            _refuse_busy(busy, target)
            if target not in await self._list_isos():
                raise not_found(f"ISO '{target}' does not exist")
            result = await self._run("rmiso", target)
            if target in await self._list_isos():
                raise IohyveFailed("rmiso", result)
            self.log.info("Removed ISO {target}", target=target)

        return self._order.write(run)

    def check_iso_absent(self, name: str) -> Deferred[None]:
        """Raise 409 if ISO ``name`` exists already (a fetch must not overwrite it)."""

        async def run() -> None:
            if name in await self._list_isos():
                raise conflict(f"ISO '{name}' already exists; remove or rename it first")

        return self._order.read(run)

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

    async def guests_now(self) -> dict[str, parse.Guest]:
        """The guest list, read now (for checks inside a guest operation).

        Inside an operation use these, never :meth:`list_vms` or :meth:`list_isos`:
        those wait for the mutations before them, the running one included.
        """
        return await self._list_vms()

    async def isos_now(self) -> list[str]:
        """The ISO list, read now (for checks inside a guest operation)."""
        return await self._list_isos()

    async def require_guest(self, name: str) -> parse.Guest:
        """The guest called ``name``, or a 404."""
        guest = (await self._list_vms()).get(name)
        if guest is None:
            raise not_found(f"guest '{name}' does not exist")
        return guest

    async def run_checked(self, what: str, *args: str, timeout: float | None = None) -> str:
        """Run an iohyve command whose exit status means something; 500 if it failed."""
        result = await self._run(*args, timeout=timeout)
        if not result.ok or _says_failure(result):
            raise IohyveFailed(what, result)
        return _text(result.stdout)

    def run(self, *args: str, timeout: float | None = None) -> Deferred[ProcessResult]:
        """Run an iohyve command whose exit status says little; the caller verifies."""
        return self._run(*args, timeout=timeout)

    async def disks(self, name: str) -> dict[str, str]:
        """The disks of guest ``name`` and their sizes, from ``iohyve disks``."""
        return _parsed("disks", parse.parse_disks, await self._read("disks", "disks", name))

    async def properties(self, name: str) -> dict[str, str]:
        """The iohyve properties of guest ``name``, from ``iohyve getall``."""
        return _parsed("getall", parse.parse_getall, await self._read("getall", "getall", name))

    async def setup(self, pool: str, nic: str) -> None:
        """Run ``iohyve setup pool=<pool> kmod=1 net=<nic>`` (inside :meth:`mutate`) and
        verify it: 500, in iohyve's or zfs's words, if its status or its output says that
        ``<pool>/iohyve`` could not be made.

        0.7.4+ refuses a pool it cannot use with status 1 (0.7.9: ``There are errors with
        the pool or pool name.``). 0.7.3 runs ``zfs create <pool>/iohyve`` and carries on
        whatever zfs said, ending with the status of its last step, so zfs's complaints
        about the pool's datasets on stderr are what tell. ``dataset already exists`` is
        not one: the pool was set up before, which is what was asked.
        """
        result = await self._run("setup", f"pool={pool}", "kmod=1", f"net={nic}")
        if not result.ok or _says_failure(result):
            raise IohyveFailed("setup", result)
        problem = _dataset_problem(_text(result.stderr), f"{pool}/iohyve")
        if problem is not None:
            raise IohyveFailed("setup", result, problem)

    def mutate(self, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run a change that concerns no one guest, in order with every other change."""
        return self._order.write(work)

    def read(self, work: Callable[[], Awaitable[T]]) -> Deferred[T]:
        """Run a read after every mutation asked for before it."""
        return self._order.read(work)

    def start_fetch(
        self, url: str, *, timeout: float, on_output: Callable[[str, bytes], None] | None = None
    ) -> RunningProcess:
        """Start ``iohyve fetch URL``; the caller follows the process it returns."""
        return self._runner.start(
            self._executable, (*self._prefix, "fetch", url), timeout=timeout, on_output=on_output
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
        self._waiters: list[Deferred[Any]] = []
        work.addBoth(self._deliver)

    def join(self) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _deliver(self, result: Any) -> None:
        # Finished before anyone hears of it: a waiter that asks again at once, from
        # its callback, must start a new read rather than join this one.
        self.finished = True
        if isinstance(result, Failure):
            self.failure = result
        else:
            self.succeeded = True
            self.value = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)


def _parsed(what: str, parser: Callable[[str], T], text: str) -> T:
    try:
        return parser(text)
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
    text = _text(result.stdout)
    return any(message in text for message in _FAILURE_MESSAGES)


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
            raise conflict(f"ISO '{name}' is being fetched; wait for the fetch to finish")
