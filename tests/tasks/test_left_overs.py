"""Process groups a killed daemon left running: ended only if they still look like ours."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from sysadmd.backends._runner import end_left_over_group, start_time

_SLEEPER = "import time; time.sleep(60)"
# The leader forks a member of its group and exits at once, as a shell script's
# command can outlive the script.
_ORPHANING = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nos._exit(0)"


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in sessions of their own; whatever is left is killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        for member in _members(process.pid):
            member.kill()
        process.kill()
        process.wait()


def _members(group: int) -> list[psutil.Process]:
    """The live (not zombie) processes of ``group``."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def _start(groups: list[subprocess.Popen[bytes]], code: str, *argv: str) -> int:
    """Start ``python -c code argv...`` in a session of its own, once it runs Python."""
    process = subprocess.Popen([sys.executable, "-c", code, *argv], start_new_session=True)
    groups.append(process)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until exec: before, the command line is pytest's
        try:
            if psutil.Process(process.pid).cmdline()[-len(argv) :] == list(argv):
                break
        except psutil.Error:
            break
        time.sleep(0.01)
    return process.pid


def test_a_group_naming_the_iso_and_started_when_recorded_is_ended(
    groups: list[subprocess.Popen[bytes]],
) -> None:
    """The group is ended (and waited for); the pids ended are returned."""
    pid = _start(groups, _SLEEPER, "fetch", "http://mirror.example/disc1.iso")
    started = start_time(pid)
    assert started is not None
    assert end_left_over_group(pid, started, "disc1.iso", grace=5) == [pid]
    assert _members(pid) == []


def test_a_member_outliving_its_leader_is_ended(groups: list[subprocess.Popen[bytes]]) -> None:
    """The leader is gone, so only the command line vouches for the group."""
    pid = _start(groups, _ORPHANING, "-o", "/iohyve/ISO/disc1.iso")
    started = start_time(pid)
    groups[0].wait(timeout=5)
    deadline = time.monotonic() + 5
    while not _members(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    [member] = _members(pid)
    assert end_left_over_group(pid, started, "disc1.iso", grace=5) == [member.pid]
    assert _members(pid) == []


def test_a_reused_pid_is_left_alone(groups: list[subprocess.Popen[bytes]]) -> None:
    """A leader that started at another time than the one recorded is not ours."""
    pid = _start(groups, _SLEEPER, "disc1.iso")
    started = start_time(pid)
    assert started is not None
    assert end_left_over_group(pid, started - 60, "disc1.iso", grace=5) == []
    assert groups[0].poll() is None


def test_a_group_not_naming_the_iso_is_left_alone(groups: list[subprocess.Popen[bytes]]) -> None:
    """Even at the recorded start time, a command line must name the task's ISO."""
    pid = _start(groups, _SLEEPER, "other.iso")
    assert end_left_over_group(pid, start_time(pid), "disc1.iso", grace=5) == []
    assert groups[0].poll() is None


def test_a_group_that_is_gone_needs_nothing() -> None:
    """No member: nothing to end (a pid beyond any the system hands out)."""
    assert end_left_over_group(2**22 + 12345, None, "disc1.iso") == []
