"""Helpers for the client library and CLI tests: daemons, the ``sysadm`` script, a config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from daemon import Daemon
from test_e2e import seed
from twisted.internet.threads import deferToThread

from sysadmd.transport._tls import certificate_fingerprint

SYSADM = str(Path(sys.executable).with_name("sysadm"))
PYTHON = sys.executable


def write_config(directory: Path) -> Path:
    """A daemon config that makes the guests event and the SIGTERM grace quick."""
    path = directory / "sysadmd.toml"
    path.write_text("[fetch]\ngrace = 1\n[events]\nguests_interval = 0.5\n")
    return path


def seeded_daemon(base: Path) -> Daemon:
    """The daemon with the API page's guest and ISOs and the quick config, under ``base``."""
    state = base / "state"
    seed(state, base)
    return Daemon(state, "--config", str(write_config(base)))


def fingerprint(daemon: Daemon) -> str:
    """The SHA-256 fingerprint of the daemon's certificate, as the daemon logs it."""
    return certificate_fingerprint((daemon.state_dir / "tls" / "cert.pem").read_bytes())


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fixed_port_daemon(state_dir: Path, port: int, *extra: str, log_name: str) -> Daemon:
    """The daemon on one loopback TLS port chosen by the test, so that it can be restarted
    on the same ``host:port`` (the key of a known-hosts pin and of a saved session)."""
    return Daemon(state_dir, *extra, log_name=log_name, listen=[f"ssl:{port}:interface=127.0.0.1"])


@dataclass(frozen=True)
class Result:
    """What one ``sysadm`` run did."""

    status: int
    stdout: str
    stderr: str


def sysadm(
    config_dir: Path,
    *args: str,
    password: str | None = None,
    stdin: str = "",
    timeout: float = 60,
    columns: int = 200,
    env: dict[str, str] | None = None,
) -> Result:
    """Run the installed ``sysadm`` script with ``config_dir`` (and the ``SYSADM_…``
    variables of ``env`` only); never a traceback."""
    given = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSADM_")}
    env.update(given)
    env["SYSADM_CONFIG_DIR"] = str(config_dir)
    env["COLUMNS"] = str(columns)
    if password is not None:
        env["SYSADM_PASSWORD"] = password
    done = subprocess.run(
        [SYSADM, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )
    result = Result(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result
    if result.status != 0:
        # Exactly one clear line on stderr for every error.
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("sysadm: "), result
    return result


async def sysadm_async(
    config_dir: Path, *args: str, password: str | None = None, columns: int = 200
) -> Result:
    """:func:`sysadm` in a thread, so the test reactor (and its HTTP server) keeps running."""
    result: Result = await deferToThread(
        sysadm, config_dir, *args, password=password, columns=columns
    )
    return result


def login(config_dir: Path, daemon: Daemon, host: str = "127.0.0.1") -> Result:
    """``sysadm login`` as admin, accepting the daemon's fingerprint."""
    result = sysadm(
        config_dir,
        "login",
        f"{host}:{daemon.ports[0]}",
        "--user",
        "admin",
        "--accept-fingerprint",
        fingerprint(daemon),
        password=daemon.password,
    )
    assert result.status == 0, result
    return result
