"""The console device writes a keystroke in the turn that received it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactor

from sysadmd.console._device import BURST, ConsoleDevice


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, Path]]:
    """The other end of a pseudo-terminal (non-blocking), and the path of the device end."""
    other, device = os.openpty()
    os.set_blocking(other, False)
    try:
        yield other, Path(os.ttyname(device))
    finally:
        os.close(other)
        os.close(device)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def test_a_keystroke_reaches_the_guest_without_waiting_for_the_reactor(
    pty_pair: tuple[int, Path],
) -> None:
    other, path = pty_pair
    reactor = MemoryReactor()
    device = ConsoleDevice(path, reactor, lambda data: None, lambda: None)
    try:
        device.write(b"a")
        # No reactor turn has run: the byte is on the other end already, nothing buffered.
        assert _read(other) == b"a"
        assert device not in reactor.getWriters()
    finally:
        device.connectionLost(None)  # type: ignore[arg-type]


def test_what_the_device_does_not_take_waits_in_the_buffer_in_order(
    pty_pair: tuple[int, Path],
) -> None:
    other, path = pty_pair
    reactor = MemoryReactor()
    device = ConsoleDevice(path, reactor, lambda data: None, lambda: None)
    try:
        big = bytes(range(256)) * 4096  # 1 MiB: more than the terminal's buffer holds
        device.write(big)
        device.write(b"after")
        assert device in reactor.getWriters()  # the rest waits for the device to drain
        received = bytearray()
        while len(received) < len(big) + 5:
            chunk = _read(other)
            received += chunk
            if device in reactor.getWriters():
                device.doWrite()
            elif not chunk:
                break
        assert bytes(received) == big + b"after"
    finally:
        device.connectionLost(None)  # type: ignore[arg-type]


def test_what_the_device_holds_is_read_in_one_chunk_per_wake_up(
    pty_pair: tuple[int, Path],
) -> None:
    """A terminal gives out at most its line buffer (4 KiB) per read; one wake-up hands on
    everything the device holds (up to BURST) as one chunk, and an echo on its own at once."""
    other, path = pty_pair
    reactor = MemoryReactor()
    chunks: list[bytes] = []
    device = ConsoleDevice(path, reactor, chunks.append, lambda: None)
    try:
        printed = bytearray()
        line = b"".join(b"%d\r\n" % n for n in range(1000))
        while len(printed) < 64 * 1024:
            try:
                printed += line[: os.write(other, line)]
            except BlockingIOError:
                break
        device.doRead()
        assert len(chunks) == 1
        assert len(chunks[0]) > 4096
        while len(b"".join(chunks)) < len(printed):
            assert device.doRead() is None
        assert b"".join(chunks) == printed
        assert all(len(chunk) <= BURST for chunk in chunks)
        chunks.clear()
        os.write(other, b"a")
        device.doRead()
        assert chunks == [b"a"]
    finally:
        device.connectionLost(None)  # type: ignore[arg-type]
