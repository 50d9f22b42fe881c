"""The host's end of a guest's null-modem pair, read and written on the reactor.

The device is opened with ``O_NONBLOCK | O_NOCTTY`` and, being a terminal, put in raw
mode; the descriptor is added to the reactor as a reader, so no thread ever waits on it
and no ``cu`` runs. Unlike a serial port object, opening flushes nothing: what the guest
printed before the daemon came is read too.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import abstract, main
from twisted.python.failure import Failure

#: Bytes asked for per read (a terminal returns at most its line buffer, about 4 KiB).
_CHUNK = 64 * 1024
#: Bytes read per wake-up at most: what the device holds is read in one go up to this, so a
#: burst reaches the viewers in a few large chunks instead of thousands of 4 KiB ones.
BURST = 256 * 1024


class ConsoleDevice(abstract.FileDescriptor):
    """One open console device: ``received`` gets every byte read, at most ``burst`` bytes
    at a time; ``lost`` is called once when the device closes (the guest's end went away, or
    :meth:`loseConnection`)."""

    def __init__(
        self,
        path: Path,
        reactor: Any,
        received: Callable[[bytes], None],
        lost: Callable[[], None],
        *,
        burst: int = BURST,
    ) -> None:
        super().__init__(reactor)
        if burst <= 0:
            raise ValueError("a console device must read at least one byte per wake-up")
        self.burst = burst
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if os.isatty(self._fd):
                tty.setraw(self._fd, termios.TCSANOW)
        except (OSError, termios.error):
            os.close(self._fd)
            raise
        self._received = received
        self._lost = lost
        # A FileDescriptor drops what is written unless it is connected.
        self.connected = 1
        self.startReading()

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> object:
        """Read what the device holds now (up to ``burst`` bytes) and hand it on as one
        chunk. A keystroke's echo is one read and is handed on at once; a burst, which a
        terminal gives out a line buffer (4 KiB) per read, is handed on in large chunks, so
        what is done per chunk for every viewer (framing, encryption, a send) is done a
        sixtieth as often. Nothing waits for more to come."""
        parts: list[bytes] = []
        size = 0
        end: object = None
        while size < self.burst:
            try:
                data = os.read(self._fd, min(_CHUNK, self.burst - size))
            except BlockingIOError:
                break
            except OSError:
                # EIO: nobody holds the other end any more (the guest is gone).
                end = main.CONNECTION_LOST
                break
            if not data:
                end = main.CONNECTION_DONE
                break
            parts.append(data)
            size += len(data)
        if parts:
            self._received(parts[0] if len(parts) == 1 else b"".join(parts))
        return end

    def write(self, data: bytes) -> None:
        """Write ``data`` at once when nothing waits in the buffer, the rest as usual.

        A file descriptor's ``write`` only buffers: the bytes go out in a later reactor turn,
        once the reactor has polled the descriptor writable. For a keystroke that is one more
        poll and turn between the frame and the guest on every key; written here, it reaches
        the guest in the turn that read it. What the device does not take now (it is full,
        or failed) goes through the buffer, which retries it and reports a failure.
        """
        idle = not self._tempDataLen and self.offset == len(self.dataBuffer)
        if data and idle and self.connected and not self.disconnecting:
            with contextlib.suppress(OSError):
                data = data[os.write(self._fd, data) :]
            if not data:
                return
        super().write(data)

    def writeSomeData(self, data: bytes) -> int | BaseException:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return main.CONNECTION_LOST

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        self._lost()
