"""Starts the real daemon with ``twistd`` for end-to-end tests, and talks to it over TLS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

TWISTD = str(Path(sys.executable).with_name("twistd"))
_LISTENING = re.compile(r"WebSocket (wss?)://([^/]+)/ and REST (https?)://")


class Daemon:
    """``twistd -n sysadmd --simulate`` on loopback ports chosen by the kernel."""

    def __init__(
        self,
        state_dir: Path,
        *extra: str,
        log_name: str | None = None,
        listen: Sequence[str] = ("ssl:0:interface=127.0.0.1",) * 2,
        cwd: Path | None = None,
    ) -> None:
        """``cwd``: start twistd there, naming the state directory relative to it."""
        self.state_dir = state_dir
        self.log = state_dir.parent / (log_name or f"{state_dir.name}.log")
        self.addresses: list[tuple[str, str]] = []
        argv = [
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            f"--logfile={self.log}",
            "sysadmd",
            "--simulate",
            f"--state-dir={state_dir if cwd is None else os.path.relpath(state_dir, cwd)}",
            *(f"--listen={description}" for description in listen),
            *extra,
        ]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd
        )
        self._wait_for_listeners(len(listen))

    def _wait_for_listeners(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"twistd exited: {output}{self.log_text()}")
            self.addresses = [
                (m.group(1), m.group(2)) for m in _LISTENING.finditer(self.log_text())
            ]
            if len(self.addresses) >= count:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not start listening:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    @property
    def ports(self) -> list[int]:
        return [int(where.rsplit(":", 1)[1]) for _, where in self.addresses]

    @property
    def password(self) -> str:
        """The password simulate mode gave the account 'admin' on the first start."""
        return (self.state_dir / "initial-admin-password").read_text().strip()

    @property
    def certificate(self) -> Certificate:
        return Certificate.loadPEM((self.state_dir / "tls" / "cert.pem").read_bytes())

    def tls(self) -> object:
        """Client TLS options that trust only the daemon's own certificate."""
        return optionsForClientTLS("localhost", trustRoot=self.certificate)

    def http(self) -> HTTPClient:
        """A treq client that verifies the daemon's certificate and host name."""
        policy = BrowserLikePolicyForHTTPS(trustRoot=self.certificate)
        return HTTPClient(Agent(reactor, contextFactory=policy))

    def stop(self) -> bool:
        """SIGTERM, as a service manager stops it; True if it shut down cleanly (exit 0)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=60)
        finally:
            if self.process.stdout:
                self.process.stdout.close()
        return status == 0 and "Server Shut Down." in self.log_text()

    def crash(self) -> None:
        """SIGKILL, as a power cut would end it: no shutdown at all."""
        self.process.kill()
        self.process.wait(timeout=20)
        if self.process.stdout:
            self.process.stdout.close()
