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

#: Bytes read per wake-up.
_CHUNK = 64 * 1024


class ConsoleDevice(abstract.FileDescriptor):
    """One open console device: ``received`` gets every byte read; ``lost`` is called once
    when the device closes (the guest's end went away, or :meth:`loseConnection`)."""

    def __init__(
        self,
        path: Path,
        reactor: Any,
        received: Callable[[bytes], None],
        lost: Callable[[], None],
    ) -> None:
        super().__init__(reactor)
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
        try:
            data = os.read(self._fd, _CHUNK)
        except BlockingIOError:
            return None
        except OSError:
            # EIO: nobody holds the other end any more (the guest is gone).
            return main.CONNECTION_LOST
        if not data:
            return main.CONNECTION_DONE
        self._received(data)
        return None

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
