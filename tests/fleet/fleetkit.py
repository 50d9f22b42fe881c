"""A real Crossbar.io router on loopback, and simulated hosts joined to it (the ``fleet``
fixture: import it into a test module).

The router runs from its own pinned virtual environment (``dev/crossbar`` makes it once and
prints where it is; it is never installed with sysadmd), with the configuration
``sysadmd-admin fleet router-config`` writes.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemon import Daemon

from sysadmd.fleet import ensure_host_key
from sysadmd.fleet.admin import main as admin
from sysadmd.simulator.cli import main as simulator

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("h1", "h2", "h3")
#: A host the router knows that never runs a daemon: it tries to take another's procedures.
INTRUDER = "h4"
#: A user who logs in with an Ed25519 key (kept like a host's, in this directory) instead of a
#: ticket.
KEY_USER = "kim"


def crossbar_venv() -> Path:
    """The router's virtual environment, made by dev/crossbar if missing (cached)."""
    done = subprocess.run(
        [str(REPO / "dev" / "crossbar")], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Router:
    """``crossbar start`` on a node directory; stopped with SIGTERM."""

    def __init__(self, venv: Path, cbdir: Path, port: int) -> None:
        self.venv = venv
        self.cbdir = cbdir
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.log = cbdir / "router.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.venv / "bin" / "crossbar"), "start", "--cbdir", str(self.cbdir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cbdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("crossbar exited:\n" + self.log.read_text())
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                if "NODE_BOOT_COMPLETE" in self.log.read_text():
                    return
            time.sleep(0.1)
        raise RuntimeError("crossbar did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class Fleet:
    """The router, its users' tickets, and the running hosts by name."""

    router: Router
    tickets: dict[str, str]
    base: Path
    hosts: dict[str, Daemon] = field(default_factory=dict)
    #: Each host's HTTPS port, chosen at its first start and kept across restarts, so that
    #: its ``[fleet] url`` stays true.
    ports: dict[str, int] = field(default_factory=dict)

    def state(self, host: str) -> Path:
        return self.base / host

    def url(self, host: str) -> str:
        """The host's own base URL, as its ``[fleet] url`` publishes it."""
        return f"https://127.0.0.1:{self.ports[host]}"

    def config(self, host: str) -> Path:
        path = self.base / f"{host}.toml"
        path.write_text(
            f'[fleet]\nrouter = "{self.router.url}"\nrealm = "sysadmd"\nhost = "{host}"\n'
            f'url = "{self.url(host)}"\n'
            "[events]\nguests_interval = 0.5\n"
        )
        return path

    def start(self, host: str) -> Daemon:
        log = self.base / f"{host}.log"
        before = log.read_text().count("Fleet: joined") if log.exists() else 0
        port = self.ports.setdefault(host, free_port())
        daemon = Daemon(
            self.state(host),
            f"--config={self.config(host)}",
            log_name=f"{host}.log",
            listen=(f"ssl:{port}:interface=127.0.0.1",),
        )
        self.hosts[host] = daemon
        wait_for(lambda: daemon.log_text().count("Fleet: joined") > before, f"{host} to join")
        return daemon


def wait_for(condition: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_admin(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert admin(list(argv)) == 0
    return out.getvalue()


def seed(state: Path, guest: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert simulator(["--root", str(state / "simulator"), "create", guest, "1G"]) == 0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A router and three simulated hosts h1, h2, h3, each with a guest of its own
    (``guest-h1``...); users ``alice`` (admin) and ``olga`` (operator) log in with tickets,
    ``kim`` (operator) with the key in ``base/kim``."""
    base = tmp_path_factory.mktemp("fleet")
    keys = {}
    for host in (*HOSTS, INTRUDER, KEY_USER):
        key, _ = ensure_host_key(base / host)
        keys[host] = key.public_hex
    cbdir = base / "router"
    port = free_port()
    printed = run_admin(
        "fleet", "router-config", str(cbdir), "--port", str(port),
        *(f"--host={h}={k}" for h, k in keys.items() if h != KEY_USER),
        "--user=alice:admin", "--user=olga:operator", f"--user=kim:operator:{keys[KEY_USER]}",
    )  # fmt: skip
    tickets = dict(line.split()[1:3] for line in printed.splitlines() if line.startswith("ticket "))
    router = Router(crossbar_venv(), cbdir, port)
    router.start()
    running = Fleet(router, tickets, base)
    try:
        for host in HOSTS:
            seed(base / host, f"guest-{host}")
            running.start(host)
        yield running
    finally:
        stopped = [d.stop() for d in running.hosts.values() if d.process.poll() is None]
        router.stop()
        # A host leaves the router as it stops, and still stops cleanly.
        assert all(stopped)
