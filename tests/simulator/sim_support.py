"""Helpers shared by the simulator tests: run ``iohyve-sim`` in-process or as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sysadmd.simulator.cli import main

#: The repository root, so ``python -m sysadmd.simulator`` finds the package in any case.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Fri Jan  8 20:15:33 CST 2016, the description in the reference's ``list`` example.
REFERENCE_NOW = "1452305733"
#: A POSIX TZ string glibc understands even without a zoneinfo database.
CST = "CST6CDT"
#: What sh says when iohyve reads its answer from /dev/tty without a controlling terminal.
NO_TTY = "/usr/local/sbin/iohyve: cannot open /dev/tty: Device not configured\n"
#: ``delete -f``'s pause in the tests, in seconds.
DELETE_DELAY = "0.1"


@pytest.fixture
def sim_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reference's clock and zone for ``create``, a short ``delete -f`` pause, no PAGER."""
    monkeypatch.setenv("TZ", CST)
    monkeypatch.setenv("IOHYVE_SIM_NOW", REFERENCE_NOW)
    monkeypatch.setenv("IOHYVE_SIM_DELETE_DELAY", DELETE_DELAY)
    monkeypatch.delenv("PAGER", raising=False)
    yield
    monkeypatch.undo()
    time.tzset()


class Sim:
    """Run the simulator in-process against one state directory and capture its output."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str], profile: str) -> None:
        self.root = root
        self.capsys = capsys
        self.profile = profile

    def __call__(self, *words: str, profile: str | None = None) -> tuple[int, str, str]:
        """Run ``iohyve <words>``; return the exit status, stdout and stderr."""
        self.capsys.readouterr()
        status = main(["--root", str(self.root), "--profile", profile or self.profile, *words])
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    def ok(self, *words: str, profile: str | None = None) -> str:
        """Run ``iohyve <words>``, require status 0 and no stderr, return stdout."""
        status, out, err = self(*words, profile=profile)
        assert (status, err) == (0, ""), (words, status, out, err)
        return out

    def iso(self, name: str) -> Path:
        """Return the directory standing for the ISO dataset ``name``."""
        return self.root / "iohyve" / "ISO" / name


def sim_env(root: Path, **extra: str) -> dict[str, str]:
    """Return an environment for running the simulator as a process."""
    env = dict(os.environ)
    env["IOHYVE_SIM_ROOT"] = str(root)
    env.pop("IOHYVE_SIM_PROFILE", None)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_process(
    root: Path, *args: str, timeout: float = 30, **extra: str
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m sysadmd.simulator <args>`` with ``root`` as state directory."""
    return subprocess.run(
        [sys.executable, "-m", "sysadmd.simulator", *args],
        capture_output=True,
        env=sim_env(root, **extra),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )


# Put SIGINT back to its default, then become ``python -m sysadmd.simulator <args>``: a signal
# ignored at exec stays ignored, and Python installs its KeyboardInterrupt handler only when
# SIGINT is at its default. Without this a test run started in the background by a script
# (which ignores SIGINT in what it starts) gives the simulator a SIGINT it cannot see.
_AS_FOREGROUND_JOB = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'sysadmd.simulator', *sys.argv[1:]])"
)


def start_process(root: Path, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``python -m sysadmd.simulator <args>`` in the background.

    The process gets SIGINT at its default disposition, as a terminal's foreground job does,
    whatever the disposition of the test run, so that a test can stand for a user's Ctrl+C.
    """
    return subprocess.Popen(
        [sys.executable, "-c", _AS_FOREGROUND_JOB, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=sim_env(root, **extra),
        cwd=REPO_ROOT,
    )
