"""The simulator's guest console: a pseudo-terminal playing a small FreeBSD system."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sysadmd.simulator.guestconsole import boot_transcript, iohyve_console


class Sim:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "sysadmd.simulator", "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return result.stdout


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    sim = Sim(tmp_path / "sim")
    sim.run("setup", "pool=tank")
    sim.run("create", "web", "1G")
    yield sim
    sim.run("forcekill", "web")


def read_until(fd: int, wanted: bytes, timeout: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while wanted not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            got += os.read(fd, 4096)
    assert wanted in got, got
    return got


def open_console(sim: Sim) -> int:
    device, _ = iohyve_console(str(sim.root), "web", "nmdm0")
    return os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def running(sim: Sim) -> str:
    return sim.run("list").splitlines()[1].split()[2]


def test_start_boots_to_login_and_the_shell_answers(sim: Sim) -> None:
    sim.run("start", "web")
    fd = open_console(sim)
    try:
        boot = read_until(fd, b"login: ")
        assert b"FreeBSD/amd64 (web) (ttyu0)" in boot
        os.write(fd, b"root\r")
        echoed = read_until(fd, b"root@web:~ # ")
        assert echoed.startswith(b"root\r\n")
        os.write(fd, b"uname -a\r")
        answer = read_until(fd, b"root@web:~ # ")
        assert b"FreeBSD web 14.1-RELEASE FreeBSD 14.1-RELEASE amd64\r\n" in answer
        os.write(fd, b"echo hello there\r")
        assert b"\r\nhello there\r\n" in read_until(fd, b"root@web:~ # ")
        os.write(fd, b"poweroff\r")
        read_until(fd, b"halted")
    finally:
        os.close(fd)
    deadline = time.monotonic() + 10
    while running(sim) != "NO" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(sim) == "NO"


def test_install_names_the_iso_and_stop_removes_the_console(sim: Sim) -> None:
    (sim.root / "iohyve" / "ISO" / "FreeBSD-14.1.iso").mkdir(parents=True, exist_ok=True)
    sim.run("install", "web", "FreeBSD-14.1.iso")
    device, pidfile = iohyve_console(str(sim.root), "web", "nmdm0")
    fd = open_console(sim)
    try:
        assert b"FreeBSD-14.1.iso" in read_until(fd, b"login: ")
    finally:
        os.close(fd)
    pid = int(Path(pidfile).read_text())
    sim.run("stop", "web")
    assert not os.path.lexists(device)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_the_transcript_without_an_iso_boots_from_disk() -> None:
    lines = boot_transcript("db", None)
    assert lines[-2] == "FreeBSD/amd64 (db) (ttyu0)"
    assert not any(".iso" in line for line in lines)
