"""``sysadm vm console`` end to end in a real pseudo-terminal, against the daemon."""

from __future__ import annotations

import os
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import SYSADM, login, seeded_daemon, sysadm
from daemon import Daemon

from sysadmd.client.console import Escape

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def logged_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path]]:
    base = tmp_path_factory.mktemp("cli")
    daemon = seeded_daemon(base)
    config = base / "config"
    login(config, daemon)
    assert sysadm(config, "vm", "start", "testguest").status == 0
    yield daemon, config
    sysadm(config, "vm", "stop", "--force", "testguest")
    assert daemon.stop()


class Terminal:
    """``sysadm`` running on the slave side of a new pseudo-terminal."""

    def __init__(self, config: Path, *args: str) -> None:
        self.master, self.slave = os.openpty()
        self.before = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYSADM_")}
        env["SYSADM_CONFIG_DIR"] = str(config)
        self.process = subprocess.Popen(
            [SYSADM, *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
        )
        self.seen = b""

    def until(self, wanted: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                self.seen += os.read(self.master, 65536)
        assert wanted in self.seen, self.seen[-2000:]
        return self.seen

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self) -> int:
        status = self.process.wait(timeout=15)
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        after = termios.tcgetattr(self.slave)
        os.close(self.master)
        os.close(self.slave)
        # Echo, canonical input and the output processing are back as they were.
        assert after == self.before
        return status


def test_console_in_a_terminal_history_typing_and_detach(
    logged_in: tuple[Daemon, Path],
) -> None:
    _, config = logged_in
    terminal = Terminal(config, "vm", "console", "testguest")
    terminal.until(b"login: ")  # printed before the client came: the history
    assert b"connected to testguest (running, writer)" in terminal.seen
    # While attached the terminal is raw: no local echo, no line editing.
    assert not termios.tcgetattr(terminal.slave)[3] & termios.ECHO
    terminal.type(b"root\r")
    terminal.until(b"root@testguest:~ # ")
    terminal.type(b"uname -a\r")
    terminal.until(b"FreeBSD testguest 14.1-RELEASE FreeBSD 14.1-RELEASE amd64")
    terminal.type(b"\r~.")
    assert terminal.finish() == 0
    assert b"detached from testguest" in terminal.seen


def test_read_only_sends_nothing(logged_in: tuple[Daemon, Path]) -> None:
    _, config = logged_in
    terminal = Terminal(config, "vm", "console", "--read-only", "testguest")
    terminal.until(b"read-only")
    terminal.type(b"echo not-sent\r")
    time.sleep(0.5)
    terminal.type(b"~.")
    assert terminal.finish() == 0
    assert b"not-sent" not in terminal.seen


def test_escapes_like_cu() -> None:
    escape = Escape()
    assert escape.feed(b"ls~.\r") == (b"ls~.\r", False)  # not at a line start
    assert escape.feed(b"~~x") == (b"~x", False)
    assert escape.feed(b"\r~q") == (b"\r~q", False)
    assert escape.feed(b"\r~.more") == (b"\r", True)
    fresh = Escape()
    assert fresh.feed(b"~") == (b"", False)
    assert fresh.feed(b".") == (b"", True)
