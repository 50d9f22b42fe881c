"""Every running guest's console, read all the time, kept, and shared among viewers.

The service lists the guests every ``interval`` seconds. For each running guest it opens
the device :meth:`VMBackend.console_device` names (one reader per guest, inside the
daemon) and keeps what the guest prints: the last ``history`` bytes in memory and a
size-capped, rotated log in the state directory, so a viewer that comes later, and a
daemon that restarted, still see it. A stopped guest's device is closed. Viewers (the
console transport's connections) get a status message whenever the guest's state, the
writer or the number of viewers changes, then the guest's output. One viewer at a time
writes; only viewers that may write (admins) can become the writer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sysadmd.api import ApiError, conflict, not_found
from sysadmd.backends import VMBackend
from sysadmd.console._device import BURST, ConsoleDevice
from sysadmd.console._history import ConsoleLog, Ring

#: Guest names as they become file names of the console logs (the API validates names
#: before they get here; this is the last line of defence for a path).
_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Viewer(Protocol):
    """One connection watching a guest's console."""

    @property
    def user(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def may_write(self) -> bool: ...

    def send_status(self, status: dict[str, Any]) -> None:
        """Send a status control message."""

    def send_output(self, output: Output) -> None:
        """Send console bytes (bounded: a viewer too far behind closes itself)."""


class Output:
    """One chunk of a guest's output, the same object for every viewer it goes to.

    A transport makes its wire form once for all its viewers: :meth:`framed` calls
    ``frame`` the first time and hands the same result to every later caller that passes
    the same ``frame``. Only the encryption and the send stay per viewer.
    """

    __slots__ = ("_frames", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._frames: dict[Callable[[bytes], bytes], bytes] = {}

    def framed(self, frame: Callable[[bytes], bytes]) -> bytes:
        """``frame(self.data)``, computed once per ``frame``."""
        framed = self._frames.get(frame)
        if framed is None:
            framed = self._frames[frame] = frame(self.data)
        return framed


#: Records an audit event: the event name and its fields.
Audit = Callable[..., None]


@dataclass(frozen=True)
class ConsoleLimits:
    """The console's bounds (``[console]`` in the configuration)."""

    #: Bytes of history kept in memory per guest and sent to a new viewer.
    history: int = 256 * 1024
    #: Bytes of a guest's console log before it is rotated, and old files kept.
    log_size: int = 4 * 1024 * 1024
    log_keep: int = 2
    #: Viewers of one guest, and console connections of one user, at a time.
    viewers_per_guest: int = 16
    viewers_per_user: int = 8
    #: Bytes queued for one viewer before it is cut off as too slow.
    viewer_buffer: int = 1024 * 1024
    #: Seconds between looks at which guests run.
    interval: float = 2.0

    @property
    def chunk(self) -> int:
        """Bytes of output read and sent to the viewers at most at a time: a quarter of a
        viewer's buffer (at least 4 KiB, at most 256 KiB), so that a viewer whose connection
        is briefly full, as every one is after a large write, has room for a few chunks
        before it counts as too slow."""
        return min(BURST, max(4096, self.viewer_buffer // 4))


class GuestConsole:
    """One guest's console: its device while it runs, its history and its viewers."""

    log = Logger()

    def __init__(self, name: str, log: ConsoleLog, history: int) -> None:
        self.name = name
        self.state = "stopped"
        self.device: ConsoleDevice | None = None
        self.viewers: list[Viewer] = []
        self.writer: Viewer | None = None
        self.ring = Ring(history)
        self._log = log
        # What the log kept from before this daemon started is history too.
        self.ring.append(log.tail(history))
        #: Until when the device is let go for a local ``cu`` (clock seconds), if it is.
        self.released_until: float | None = None

    def status(self, viewer: Viewer) -> dict[str, Any]:
        return {
            "type": "status",
            "guest": self.name,
            "state": self.state,
            "writer": self.writer is viewer,
            "viewers": len(self.viewers),
        }

    def tell_all(self) -> None:
        for viewer in list(self.viewers):
            viewer.send_status(self.status(viewer))

    def received(self, data: bytes) -> None:
        self.ring.append(data)
        self._log.append(data)
        output = Output(data)
        for viewer in list(self.viewers):
            viewer.send_output(output)

    def history(self, limit: int) -> bytes:
        """The last ``limit`` bytes of output: memory first, the log for more."""
        if limit <= len(self.ring):
            return self.ring.tail(limit)
        return self._log.tail(limit)

    def close(self) -> None:
        self._log.close()


class ConsoleService(Service):
    """The guests' consoles (see the module's documentation)."""

    log = Logger()

    def __init__(
        self,
        backend: VMBackend,
        reactor: Any,
        directory: Path,
        *,
        limits: ConsoleLimits | None = None,
        audit: Audit | None = None,
    ) -> None:
        self._backend = backend
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self._directory = directory
        self.limits = limits or ConsoleLimits()
        self._audit = audit
        self.guests: dict[str, GuestConsole] = {}
        self._loop = LoopingCall(self._poll)
        self._loop.clock = reactor
        self._opening: set[str] = set()
        self._reattach: dict[str, IDelayedCall] = {}

    # The service

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.limits.interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        for call in self._reattach.values():
            if call.active():
                call.cancel()
        for console in self.guests.values():
            if console.device is not None:
                console.device.loseConnection()
            console.close()

    def _poll(self) -> Deferred[None]:
        return ensureDeferred(self.refresh()).addErrback(
            lambda f: self.log.failure("Could not list the guests for their consoles", f)
        )

    async def refresh(self) -> None:
        """Look at which guests run; open the consoles of new ones, close the others."""
        guests = await self._backend.list_vms()
        for name, summary in guests.items():
            running = summary["running"] == "YES"
            console = self._console(name) if running or name in self.guests else None
            if console is None:
                continue
            state = "running" if running else "stopped"
            if console.state != state:
                console.state = state
                console.tell_all()
            if running and console.device is None:
                await self._open(console)
            elif not running and console.device is not None:
                console.device.loseConnection()
        for name in [n for n in self.guests if n not in guests]:
            console = self.guests[name]
            if console.state != "gone":
                console.state = "gone"
                if console.device is not None:
                    console.device.loseConnection()
                console.tell_all()

    def _console(self, name: str) -> GuestConsole | None:
        console = self.guests.get(name)
        if console is None:
            if _SAFE_NAME.fullmatch(name) is None or ".." in name:
                return None
            log = ConsoleLog(
                self._directory, name, max_bytes=self.limits.log_size, keep=self.limits.log_keep
            )
            console = self.guests[name] = GuestConsole(name, log, self.limits.history)
        return console

    async def _open(self, console: GuestConsole) -> None:
        name = console.name
        if name in self._opening or console.released_until is not None:
            return
        self._opening.add(name)
        try:
            path = await self._backend.console_device(name)
            if console.device is not None or console.state != "running":
                return
            console.device = ConsoleDevice(
                path,
                self._reactor,
                console.received,
                lambda: self._closed(console),
                burst=self.limits.chunk,
            )
            self.log.info("Reading the console of {guest} from {path}", guest=name, path=str(path))
        except (ApiError, OSError) as e:
            self.log.warn("Cannot open the console of {guest}: {error}", guest=name, error=e)
        finally:
            self._opening.discard(name)

    def _closed(self, console: GuestConsole) -> None:
        console.device = None
        self.log.info("Closed the console of {guest}", guest=console.name)

    # What the API asks

    async def _known(self, name: str) -> GuestConsole:
        console = self.guests.get(name)
        if console is not None and console.state != "gone":
            return console
        guests = await self._backend.list_vms()
        if name not in guests:
            raise not_found(f"no guest named '{name}'")
        console = self._console(name)
        if console is None:
            raise not_found(f"no guest named '{name}'")
        console.state = "running" if guests[name]["running"] == "YES" else "stopped"
        if console.state == "running" and console.device is None:
            await self._open(console)
        return console

    async def attach(self, name: str, viewer: Viewer) -> GuestConsole:
        """Add ``viewer`` to guest ``name``'s console: it gets the status, then the history,
        then the output. An admin becomes the writer if there is none."""
        console = await self._known(name)
        if len(console.viewers) >= self.limits.viewers_per_guest:
            raise ApiError(
                429, f"guest '{name}' has {len(console.viewers)} console viewers already"
            )
        mine = sum(1 for c in self.guests.values() for v in c.viewers if v.user == viewer.user)
        if mine >= self.limits.viewers_per_user:
            raise ApiError(429, f"user '{viewer.user}' has {mine} consoles open already")
        console.viewers.append(viewer)
        if console.writer is None and viewer.may_write:
            console.writer = viewer
        self._record("console_attach", console, viewer)
        viewer.send_status(console.status(viewer))
        history = console.ring.tail()
        if history:
            viewer.send_output(Output(history))
        for other in console.viewers:
            if other is not viewer:
                other.send_status(console.status(other))
        return console

    def detach(self, console: GuestConsole, viewer: Viewer) -> None:
        """Remove ``viewer`` (its connection closed)."""
        if viewer not in console.viewers:
            return
        console.viewers.remove(viewer)
        if console.writer is viewer:
            console.writer = None
        self._record("console_detach", console, viewer)
        console.tell_all()

    def take(self, console: GuestConsole, viewer: Viewer) -> None:
        """Make ``viewer`` the writer; the previous one is told by a status message."""
        if viewer not in console.viewers:
            raise conflict(f"not attached to the console of '{console.name}'")
        if not viewer.may_write:
            raise ApiError(403, "only an admin may type on a console")
        if console.writer is not viewer:
            console.writer = viewer
            self._record("console_take", console, viewer)
            console.tell_all()

    def release(self, console: GuestConsole, viewer: Viewer) -> None:
        """Stop ``viewer`` being the writer."""
        if console.writer is viewer:
            console.writer = None
            self._record("console_release", console, viewer)
            console.tell_all()

    def write(self, console: GuestConsole, viewer: Viewer, data: bytes) -> bool:
        """Type ``data`` on the guest's console if ``viewer`` is its writer; False if not
        (the bytes are dropped). Nothing is written while the guest is not running."""
        if console.writer is not viewer:
            return False
        if console.device is not None:
            console.device.write(data)
        return True

    async def history(self, name: str, limit: int) -> bytes:
        """The last ``limit`` bytes guest ``name`` printed."""
        console = await self._known(name)
        return console.history(limit)

    async def let_go(self, name: str, seconds: float) -> float:
        """Close guest ``name``'s device for ``seconds`` so a local ``cu`` may open it;
        returns when (clock seconds) the daemon opens it again."""
        console = await self._known(name)
        if console.device is not None:
            console.device.loseConnection()
        until = self._clock.seconds() + seconds
        console.released_until = until
        old = self._reattach.pop(name, None)
        if old is not None and old.active():
            old.cancel()

        def again() -> None:
            self._reattach.pop(name, None)
            console.released_until = None
            self._poll()

        self._reattach[name] = self._clock.callLater(seconds, again)
        return until

    def _record(self, event: str, console: GuestConsole, viewer: Viewer) -> None:
        if self._audit is not None:
            self._audit(event, user=viewer.user, peer=viewer.address, guest=console.name)
