"""The local control socket: what ``sysadmd-admin`` asks of a running daemon.

The daemon listens on the UNIX socket ``control.sock`` in its state directory (mode 0600,
made by the daemon's own user after any privilege drop, inside the 0700 state directory),
and speaks Twisted's AMP (:mod:`twisted.protocols.amp`) on it. Only that user (and root)
can connect, so the socket needs no login of its own. Two commands:

:class:`LockoutList`
    The addresses and user names the lockout holds: failures within the window, checks in
    flight, and the seconds left of a block. Paged (``start``), as an AMP value holds at most
    64 KiB.
:class:`LockoutClear`
    Lift the block of one address or user name and forget its failures, or of everything.

:class:`ControlService` serves the socket; :func:`call` is the blocking client
``sysadmd-admin`` uses (it runs no reactor). A ``.lock`` file next to the socket, Twisted's
``wantPID``, tells a live daemon's socket from one a crashed daemon left behind.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any, ClassVar, Final

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from sysadmd.auth._lockout import Entry, Lockout

__all__ = [
    "CONTROL_SOCKET",
    "PAGE",
    "ControlError",
    "ControlService",
    "ControlUnavailable",
    "LockoutClear",
    "LockoutList",
    "call",
    "list_lockout",
]

CONTROL_SOCKET: Final = "control.sock"
"""The socket's file name in the state directory."""

PAGE: Final = 100
"""Entries per :class:`LockoutList` reply: 100 keys of up to 256 characters fit in 64 KiB."""

_KINDS: Final = ("address", "user", "all")

log = Logger()


class ControlError(Exception):
    """The daemon refused a control command; the message says why."""


class ControlUnavailable(Exception):
    """No daemon answers on the control socket; the message names the socket."""


class LockoutList(amp.Command):
    """The lockout's entries from index ``start``, and how many there are in all."""

    arguments: ClassVar[list[tuple[bytes, amp.Argument]]] = [(b"start", amp.Integer())]
    response: ClassVar[list[tuple[bytes, amp.Argument]]] = [
        (
            b"entries",
            amp.AmpList(
                [
                    (b"kind", amp.Unicode()),
                    (b"key", amp.Unicode()),
                    (b"failures", amp.Integer()),
                    (b"pending", amp.Integer()),
                    (b"blocked_for", amp.Float(optional=True)),
                ]
            ),
        ),
        (b"total", amp.Integer()),
    ]


class LockoutClear(amp.Command):
    """Lift the block and forget the failures of one key (``kind`` address or user), or of
    every key (``kind`` all, no ``key``); ``cleared`` is how many entries went."""

    arguments: ClassVar[list[tuple[bytes, amp.Argument]]] = [
        (b"kind", amp.Unicode()),
        (b"key", amp.Unicode(optional=True)),
    ]
    response: ClassVar[list[tuple[bytes, amp.Argument]]] = [(b"cleared", amp.Integer())]
    errors: ClassVar[dict[type[Exception], bytes]] = {ControlError: b"CONTROL_ERROR"}


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "kind": entry.kind,
        "key": entry.key,
        "failures": entry.failures,
        "pending": entry.pending,
        "blocked_for": entry.blocked_for,
    }


class ControlProtocol(amp.AMP):
    """One connection to the control socket."""

    def __init__(self, lockout: Lockout) -> None:
        super().__init__()
        self._lockout = lockout

    @LockoutList.responder
    def lockout_list(self, start: int) -> dict[str, Any]:
        entries = self._lockout.entries()
        start = max(0, start)
        return {"entries": [_row(e) for e in entries[start : start + PAGE]], "total": len(entries)}

    @LockoutClear.responder
    def lockout_clear(self, kind: str, key: str | None = None) -> dict[str, Any]:
        if kind not in _KINDS:
            raise ControlError("kind must be address, user or all")
        if kind == "all":
            if key is not None:
                raise ControlError("clearing all takes no key")
            cleared = self._lockout.clear_all()
        elif not key:
            raise ControlError(f"name the {kind} to clear")
        else:
            cleared = int(self._lockout.clear("address" if kind == "address" else "user", key))
        log.info(
            "Lockout cleared through the control socket: {kind} {key} ({cleared} entries)",
            kind=kind,
            key=key or "",
            cleared=cleared,
        )
        return {"cleared": cleared}


class _ControlFactory(Factory):
    def __init__(self, lockout: Lockout) -> None:
        self._lockout = lockout

    def buildProtocol(self, addr: object) -> ControlProtocol:
        return ControlProtocol(self._lockout)


class ControlService(Service):
    """Listens on the control socket while the daemon runs.

    It listens in ``startService``, that is after twistd has dropped privileges, so the
    socket belongs to the user the daemon runs as. A socket that cannot be made (another
    daemon uses this state directory) is logged; the daemon serves on without it.
    """

    def __init__(self, path: Path, lockout: Lockout, reactor: Any) -> None:
        self.path = path
        self._lockout = lockout
        self._reactor = reactor
        self._port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        try:
            self._port = self._reactor.listenUNIX(
                str(self.path), _ControlFactory(self._lockout), mode=0o600, wantPID=True
            )
        except (CannotListenError, OSError) as e:
            log.error(
                "No control socket at {path}: {error}; sysadmd-admin lockout cannot reach "
                "this daemon",
                path=str(self.path),
                error=str(e),
            )

    def stopService(self) -> Any:
        super().stopService()
        port, self._port = self._port, None
        return port.stopListening() if port is not None else None


# The blocking client


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ControlUnavailable("the daemon closed the control connection")
        data += chunk
    return data


def _read_box(sock: socket.socket) -> amp.AmpBox:
    box = amp.AmpBox()
    while True:
        (length,) = struct.unpack("!H", _read_exactly(sock, 2))
        if length == 0:
            return box
        key = _read_exactly(sock, length)
        (length,) = struct.unpack("!H", _read_exactly(sock, 2))
        box[key] = _read_exactly(sock, length)


def call(path: Path, command: type[amp.Command], timeout: float = 10.0, **arguments: Any) -> Any:
    """Send ``command`` with ``arguments`` to the daemon at ``path``; its parsed answer.

    :raises ControlUnavailable: nothing listens there (the daemon is not running) or the
        connection broke.
    :raises ControlError: the daemon refused the command.
    """
    box = command.makeArguments(arguments, None)
    box[amp.COMMAND] = command.commandName
    box[amp.ASK] = b"1"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise ControlUnavailable(
                    f"the daemon is not running (nothing listens on {path})"
                ) from None
            except PermissionError:
                raise ControlUnavailable(
                    f"{path}: permission denied; run this as the daemon's user or root"
                ) from None
            sock.sendall(box.serialize())
            reply = _read_box(sock)
    except TimeoutError:
        raise ControlUnavailable(f"the daemon did not answer on {path}") from None
    except OSError as e:
        raise ControlUnavailable(f"{path}: {e.strerror or e}") from None
    if amp.ERROR in reply:
        raise ControlError(reply.get(amp.ERROR_DESCRIPTION, b"refused").decode("utf-8", "replace"))
    return command.parseResponse(reply, None)


def list_lockout(path: Path) -> list[dict[str, Any]]:
    """Every entry of the daemon's lockout, page after page."""
    rows: list[dict[str, Any]] = []
    while True:
        answer = call(path, LockoutList, start=len(rows))
        page = answer["entries"]
        rows.extend(page)
        if not page or len(rows) >= answer["total"]:
            return rows
