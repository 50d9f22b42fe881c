"""The console service on its own: history, the rotated log, device paths, letting go."""

from __future__ import annotations

import os
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import async_test
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.task import deferLater

from sysadmd.backends._iohyve.adapter import console_device_path
from sysadmd.backends._vmbhyve import parse as vmbhyve
from sysadmd.console import ConsoleLimits, ConsoleService, Output
from sysadmd.console._history import ConsoleLog, Ring


def test_the_ring_keeps_the_last_bytes() -> None:
    ring = Ring(8)
    ring.append(b"0123456789")
    ring.append(b"ab")
    assert ring.tail() == b"456789ab"
    assert ring.tail(3) == b"9ab"
    with pytest.raises(ValueError, match="at least one byte"):
        Ring(0)


def test_the_log_rotates_at_its_cap_and_reads_across_files(tmp_path: Path) -> None:
    log = ConsoleLog(tmp_path, "web", max_bytes=10, keep=2)
    for chunk in (b"aaaaaa", b"bbbbbb", b"cccccc", b"dddddd"):
        log.append(chunk)
    log.close()
    assert (tmp_path / "web.log").read_bytes() == b"dddddd"
    assert (tmp_path / "web.log.1").read_bytes() == b"cccccc"
    assert (tmp_path / "web.log.2").read_bytes() == b"bbbbbb"
    assert not (tmp_path / "web.log.3").exists()
    assert log.tail(8) == b"ccdddddd"
    assert log.tail(100) == b"bbbbbbccccccdddddd"
    assert oct((tmp_path / "web.log").stat().st_mode & 0o777) == "0o600"


def test_iohyve_device_from_the_con_property() -> None:
    assert console_device_path("web", "nmdm3") == Path("/dev/nmdm3B")
    assert console_device_path("web", "nmdm3", Path("/sim/dev")) == Path("/sim/dev/nmdm3B")
    for bad in ("nmdm", "nmdm3B", "../nmdm3", "-", "nmdm12345"):
        with pytest.raises(Exception, match="no console device"):
            console_device_path("web", bad)


def test_vmbhyve_device_from_the_console_file() -> None:
    text = "com1=/dev/nmdm-web.1B\ncom2=/dev/nmdm-web.2B\n"
    assert vmbhyve.console_device(text) == "/dev/nmdm-web.1B"
    with pytest.raises(vmbhyve.ParseError, match="no com1 line"):
        vmbhyve.console_device("com2=/dev/nmdm-web.2B\n")


class FakeBackend:
    """One guest whose console is a pseudo-terminal this test plays the guest on."""

    def __init__(self, device: Path, running: bool = True) -> None:
        self.device = device
        self.running = running

    def list_vms(self) -> Any:
        return succeed({"web": {"running": "YES" if self.running else "NO"}})

    def console_device(self, name: str) -> Any:
        return succeed(self.device)


class Viewer:
    def __init__(self, user: str, may_write: bool) -> None:
        self.user = user
        self.address = "192.0.2.1"
        self.may_write = may_write
        self.messages: list[Any] = []

    def send_status(self, status: dict[str, Any]) -> None:
        self.messages.append(status)

    def send_output(self, output: Output) -> None:
        self.messages.append(output.data)

    @property
    def output(self) -> bytes:
        return b"".join(m for m in self.messages if isinstance(m, bytes))


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "nmdm0B"
    link.symlink_to(os.ttyname(slave))
    os.set_blocking(master, False)
    yield master, link
    os.close(master)
    os.close(slave)


async def turn(seconds: float = 0.05) -> None:
    await deferLater(reactor, seconds, lambda: None)


@async_test
async def test_history_first_one_writer_and_letting_go(
    tmp_path: Path, pty: tuple[int, Path]
) -> None:
    master, device = pty
    os.write(master, b"printed before anyone came\r\n")
    audit: list[tuple[str, dict[str, Any]]] = []
    service = ConsoleService(
        FakeBackend(device),  # type: ignore[arg-type]
        reactor,
        tmp_path / "console",
        limits=ConsoleLimits(interval=3600),
        audit=lambda event, **fields: audit.append((event, fields)),
    )
    service.startService()
    try:
        await turn()
        admin, operator = Viewer("alice", True), Viewer("olga", False)
        console = await service.attach("web", admin)
        await service.attach("web", operator)
        assert operator.messages[0] == {
            "type": "status",
            "guest": "web",
            "state": "running",
            "writer": False,
            "viewers": 2,
        }
        assert operator.messages[1] == b"printed before anyone came\r\n"
        assert admin.messages[-1]["viewers"] == 2 and admin.messages[-1]["writer"] is True
        assert not service.write(console, operator, b"x")
        assert service.write(console, admin, b"ls\r")
        await turn()
        assert os.read(master, 100) == b"ls\r"
        until = await service.let_go("web", 5)
        await turn()
        assert console.device is None and until > reactor.seconds()
        os.write(master, b"while let go\r\n")
        await service.refresh()
        assert console.device is None  # not reopened while let go
        service.detach(console, admin)
        assert [e for e, _ in audit] == ["console_attach", "console_attach", "console_detach"]
        assert audit[0][1] == {"user": "alice", "peer": "192.0.2.1", "guest": "web"}
    finally:
        service.stopService()
    assert (tmp_path / "console" / "web.log").read_bytes() == b"printed before anyone came\r\n"
