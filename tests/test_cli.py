"""End to end: the ``sysadm`` command-line client, run as a real process against the daemon.

The daemon runs in simulate mode on loopback TLS; fetches download from a local HTTP
server on the test reactor, so those runs of ``sysadm`` happen in a thread while the
reactor serves. Every failing run must print exactly one line on stderr, never a traceback
(:func:`clientkit.sysadm` checks it).
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from clientkit import (
    Result,
    fingerprint,
    fixed_port_daemon,
    free_port,
    login,
    seeded_daemon,
    sysadm,
    sysadm_async,
)
from daemon import Daemon
from httpserver import HTTPServer
from support import async_test
from test_e2e import BOOTONLY, DESCRIPTION
from twisted.internet.defer import ensureDeferred, gatherResults
from wsclient import settle

from sysadmd.client.cli import cli
from sysadmd.tls import ensure_certificate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = seeded_daemon(tmp_path_factory.mktemp("cli"))
    yield running
    assert running.stop()


@pytest.fixture(scope="module")
def logged_in(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configuration directory with a session of admin's."""
    config = tmp_path_factory.mktemp("cli-config")
    login(config, daemon)
    return config


def _files_text(directory: Path) -> str:
    return "".join(p.read_text() for p in directory.rglob("*") if p.is_file())


# Logging in and TLS pinning


def test_login_refuses_an_unknown_host_and_names_its_fingerprint(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Without a terminal to ask on, an unpinned host is refused; nothing is saved."""
    result = sysadm(
        tmp_path, "login", f"127.0.0.1:{daemon.ports[0]}", "-u", "admin", password=daemon.password
    )
    assert result.status == 3
    assert "is not a known host" in result.stderr
    assert f"--accept-fingerprint {fingerprint(daemon)}" in result.stderr
    assert not (tmp_path / "session.json").exists()
    assert not (tmp_path / "known_hosts").exists()


def test_login_pins_the_fingerprint_and_saves_only_the_token(
    daemon: Daemon, tmp_path: Path
) -> None:
    """login --accept-fingerprint: known_hosts pinned, the token saved 0600, no password."""
    result = login(tmp_path, daemon)
    assert result.stdout == (
        f"Logged in to 127.0.0.1:{daemon.ports[0]} as admin; "
        "the session stays valid for 900 s unused.\n"
    )
    session = tmp_path / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    saved = json.loads(session.read_text())
    assert saved["user"] == "admin" and len(saved["token"]) > 20
    assert daemon.password not in _files_text(tmp_path)
    assert saved["token"] not in result.stdout + result.stderr
    pins = (tmp_path / "known_hosts").read_text()
    assert f"127.0.0.1:{daemon.ports[0]} {fingerprint(daemon)}\n" in pins
    listed = sysadm(tmp_path, "known-hosts", "list")
    assert listed.stdout == f"127.0.0.1:{daemon.ports[0]} {fingerprint(daemon)}\n"
    assert saved["token"] not in daemon.log_text()


def test_login_with_the_wrong_accepted_fingerprint_is_refused(
    daemon: Daemon, tmp_path: Path
) -> None:
    wrong = ":".join(["AB"] * 32)
    result = sysadm(
        tmp_path,
        "login",
        f"127.0.0.1:{daemon.ports[0]}",
        "-u",
        "admin",
        "--accept-fingerprint",
        wrong,
        password=daemon.password,
    )
    assert result.status == 3
    assert fingerprint(daemon) in result.stderr and wrong in result.stderr
    assert not (tmp_path / "session.json").exists()


def test_trust_on_first_use_and_password_on_stdin(daemon: Daemon, tmp_path: Path) -> None:
    result = sysadm(
        tmp_path,
        "login",
        f"localhost:{daemon.ports[0]}",
        "--user",
        "admin",
        "--trust-on-first-use",
        stdin=daemon.password + "\n",
    )
    assert result.status == 0, result
    assert (
        f"localhost:{daemon.ports[0]} {fingerprint(daemon)}"
        in (tmp_path / "known_hosts").read_text()
    )
    assert sysadm(tmp_path, "vm", "list").status == 0


def test_wrong_password(daemon: Daemon, tmp_path: Path) -> None:
    result = sysadm(
        tmp_path,
        "login",
        f"127.0.0.1:{daemon.ports[0]}",
        "-u",
        "admin",
        "--accept-fingerprint",
        fingerprint(daemon),
        password="not the password",
    )
    assert (result.status, result.stderr) == (
        1,
        "sysadm: error 401: invalid user name or password\n",
    )
    assert not (tmp_path / "session.json").exists()


def test_ca_file_mode(daemon: Daemon, tmp_path: Path) -> None:
    """--ca-file verifies the chain and the host name instead of pinning."""
    ca = daemon.state_dir / "tls" / "cert.pem"
    good = tmp_path / "good"
    result = sysadm(
        good,
        "login",
        f"localhost:{daemon.ports[0]}",
        "-u",
        "admin",
        "--ca-file",
        str(ca),
        password=daemon.password,
    )
    assert result.status == 0, result
    assert not (good / "known_hosts").exists()
    assert "testguest" in sysadm(good, "vm", "list").stdout
    other = ensure_certificate(tmp_path / "other-ca", "localhost").cert_path
    result = sysadm(
        tmp_path / "bad",
        "login",
        f"localhost:{daemon.ports[0]}",
        "-u",
        "admin",
        "--ca-file",
        str(other),
        password=daemon.password,
    )
    assert result.status == 3
    assert "TLS verification failed" in result.stderr


def test_not_logged_in_and_connection_refused(tmp_path: Path) -> None:
    result = sysadm(tmp_path, "vm", "list")
    assert (result.status, result.stderr) == (
        4,
        "sysadm: not logged in; run `sysadm login HOST` first\n",
    )
    port = free_port()
    (tmp_path / "session.json").write_text(
        json.dumps({"host": "127.0.0.1", "port": port, "user": "admin", "token": "x"})
    )
    result = sysadm(tmp_path, "iso", "list")
    assert (result.status, result.stderr) == (
        3,
        f"sysadm: cannot connect to 127.0.0.1:{port}: connection refused\n",
    )


# Guests


@async_test
async def test_vm_commands(logged_in: Path) -> None:
    """Three independent chains of vm commands, run side by side to keep the test quick."""

    async def run(*args: str) -> Result:
        return await sysadm_async(logged_in, *args)

    async def disks_and_props() -> None:
        assert (await run("vm", "create", "clitest", "4G")).stdout == (
            "Created clitest (disk0: 4G).\n"
        )
        assert (await run("vm", "add-disk", "clitest", "2G")).stdout == (
            "Added a disk of 2G to clitest.\n"
        )
        disks = (await run("vm", "disks", "clitest")).stdout.splitlines()
        assert disks[0].split() == ["DISK", "SIZE"]
        assert [line.split() for line in disks[2:]] == [["disk0", "4G"], ["disk1", "2G"]]
        assert (await run("vm", "resize-disk", "clitest", "disk1", "3G")).stdout == (
            "Resized disk1 of clitest to 3G.\n"
        )
        assert (await run("vm", "remove-disk", "clitest", "disk1")).stdout == (
            "Removed disk1 from clitest.\n"
        )
        assert json.loads((await run("vm", "disks", "clitest", "--json")).stdout) == {
            "listdisks": {"disk0": "4G"}
        }
        assert (await run("vm", "set", "clitest", "ram=1G", "cpu=2")).stdout == (
            "Set cpu=2, ram=1G on clitest.\n"
        )
        props = (await run("vm", "props", "clitest")).stdout.splitlines()
        assert props[0].split() == ["PROPERTY", "VALUE"]
        assert ["ram", "1G"] in [line.split() for line in props]

    async def lifecycle() -> None:
        assert (await run("vm", "install", "testguest", "test.iso")).stdout == (
            "Installing testguest from test.iso.\n"
        )
        assert (await run("vm", "stop", "--force", "testguest")).stdout == ("Stopped testguest.\n")
        assert (await run("vm", "start", "testguest")).stdout == "Started testguest.\n"
        again = await run("vm", "start", "testguest")
        assert again.status == 1 and again.stderr.startswith("sysadm: error 409: ")
        assert (await run("vm", "stop", "testguest")).stdout == ("Asked testguest to shut down.\n")

    async def listing_and_errors() -> None:
        table = (await run("vm", "list")).stdout.splitlines()
        assert table[0].split() == ["NAME", "RUNNING", "VMM", "RCBOOT", "DESCRIPTION"]
        row = next(line for line in table if line.startswith("testguest "))
        # The columns line up: each value starts where its header does.
        assert row[table[0].index("DESCRIPTION") :].startswith(DESCRIPTION)
        listed = json.loads((await run("vm", "list", "--json")).stdout)
        assert listed["listvms"]["testguest"]["description"] == DESCRIPTION
        missing = await run("vm", "delete", "--yes", "nosuchguest")
        assert missing.status == 1 and missing.stderr.startswith("sysadm: error 404: ")
        bad = await run("vm", "set", "clitest", "ram")
        assert bad.status == 2 and "PROP=VALUE" in bad.stderr

    await gatherResults(
        [ensureDeferred(chain()) for chain in (disks_and_props, lifecycle, listing_and_errors)],
        consumeErrors=True,
    )


# ISOs, tasks, raw calls


def test_iso_commands(logged_in: Path) -> None:
    assert sysadm(logged_in, "iso", "list").stdout.splitlines() == sorted([BOOTONLY, "test.iso"])
    assert json.loads(sysadm(logged_in, "iso", "list", "--json").stdout) == {
        "listisos": sorted([BOOTONLY, "test.iso"])
    }
    assert sysadm(logged_in, "iso", "rename", BOOTONLY, "boot.iso").stdout == (
        f"Renamed {BOOTONLY} to boot.iso.\n"
    )
    assert sysadm(logged_in, "iso", "rm", "boot.iso").stdout == "Removed boot.iso.\n"
    assert sysadm(logged_in, "iso", "list").stdout == "test.iso\n"
    result = sysadm(logged_in, "iso", "rm", "nope.iso")
    assert (result.status, result.stderr) == (
        1,
        "sysadm: error 404: ISO 'nope.iso' does not exist\n",
    )
    result = sysadm(logged_in, "iso", "rename", "test.iso", "bad name")
    assert result.status == 1 and result.stderr.startswith("sysadm: error 400: ")


def test_call(logged_in: Path) -> None:
    version = json.loads(
        sysadm(logged_in, "call", "sysadm", "iohyve", '{"action": "version"}').stdout
    )
    assert version["version"]["version"].startswith("iohyve v")
    query = json.loads(sysadm(logged_in, "call", "rpc", "query").stdout)
    assert query["sysadm/iohyve"] == "read/write"
    result = sysadm(logged_in, "call", "sysadm", "iohyve", '{"action": "nope"}')
    assert result.status == 1 and result.stderr.startswith("sysadm: error 400: ")
    result = sysadm(logged_in, "call", "sysadm", "iohyve", "{not json")
    assert result.status == 2 and "not JSON" in result.stderr


@async_test
async def test_fetch_wait_downloads_with_a_progress_bar(
    logged_in: Path, daemon: Daemon, http: HTTPServer
) -> None:
    data = b"x" * 2_000_000
    http.files.files["cli.iso"] = data
    result = await sysadm_async(logged_in, "iso", "fetch", http.url("cli.iso"), "--wait")
    assert result.status == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Queued the fetch of cli.iso: task {")
    bar = next(line for line in lines if line.startswith("cli.iso (succeeded)"))
    assert "100%" in bar and "2.0/2.0 MB" in bar
    assert lines[-1] == "Fetched cli.iso (2000000 bytes)."
    arrived = daemon.state_dir / "simulator" / "iohyve" / "ISO" / "cli.iso" / "cli.iso"
    assert arrived.read_bytes() == data

    failed = await sysadm_async(logged_in, "iso", "fetch", http.url("gone.iso"), "--wait")
    assert failed.status == 1
    assert failed.stderr.startswith("sysadm: task {") and " failed: " in failed.stderr
    assert "Not Found" in failed.stderr

    tasks = sysadm(logged_in, "tasks").stdout.splitlines()
    assert tasks[0].split() == ["TASK", "STATUS", "ISO", "PROGRESS", "USER", "MESSAGE"]
    rows = {line.split()[2]: line.split() for line in tasks[2:]}
    assert rows["cli.iso"][1] == "succeeded" and "100%" in rows["cli.iso"]
    assert rows["gone.iso"][1] == "failed"
    listed = json.loads(sysadm(logged_in, "tasks", "--json").stdout)
    jobs = listed["jobs"]["no_queue"]
    statuses = {job["iso"]: job["status"] for job in jobs.values()}
    assert (statuses["cli.iso"], statuses["gone.iso"]) == ("succeeded", "failed")


@async_test
async def test_kill_a_waited_fetch_and_watch_tasks(logged_in: Path, http: HTTPServer) -> None:
    """A held download: tasks shows it running, kill ends it, the waiting fetch exits 1."""
    http.files.files["held.iso"] = b"h" * 400_000
    http.files.stall.add("held.iso")
    waiting = ensureDeferred(
        sysadm_async(logged_in, "iso", "fetch", http.url("held.iso"), "--wait")
    )
    task_id = None
    for _ in range(200):
        jobs = json.loads((await sysadm_async(logged_in, "tasks", "--json")).stdout)
        running = [
            i
            for i, j in jobs["jobs"]["no_queue"].items()
            if j["iso"] == "held.iso" and j["status"] == "running"
        ]
        if running:
            task_id = running[0]
            break
        await settle(0.1)
    assert task_id is not None
    watching = ensureDeferred(sysadm_async(logged_in, "tasks", "--watch", "--until-idle"))
    await settle(0.5)
    killed = await sysadm_async(logged_in, "kill", task_id)
    assert killed.stdout == f"Killed {task_id}.\n"
    waited = await waiting
    assert waited.status == 1
    assert waited.stderr == f"sysadm: task {task_id} cancelled: killed\n"
    watched = await watching
    assert watched.status == 0, watched
    assert task_id in watched.stdout and "cancelled" in watched.stdout
    again = await sysadm_async(logged_in, "kill", task_id)
    assert again.status == 1 and "not running" in again.stderr


def test_logout_ends_the_session_on_the_server(daemon: Daemon, tmp_path: Path) -> None:
    login(tmp_path, daemon)
    saved = (tmp_path / "session.json").read_text()
    result = sysadm(tmp_path, "logout")
    assert result.stdout == f"Logged out of 127.0.0.1:{daemon.ports[0]}.\n"
    assert not (tmp_path / "session.json").exists()
    assert sysadm(tmp_path, "vm", "list").status == 4
    # The token is dead on the server too, not just forgotten here.
    (tmp_path / "session.json").write_text(saved)
    result = sysadm(tmp_path, "vm", "list")
    assert (result.status, result.stderr) == (
        4,
        f"sysadm: session expired or revoked; run `sysadm login 127.0.0.1:{daemon.ports[0]}` "
        "again\n",
    )


# A restarted daemon: sessions end, and a new certificate is refused


def test_expired_session_and_changed_certificate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    config = tmp_path / "client"
    first = fixed_port_daemon(state, port, log_name="first.log")
    try:
        old = fingerprint(first)
        login(config, first)
        assert sysadm(config, "vm", "list").status == 0
    finally:
        assert first.stop()

    # Sessions do not outlive the daemon: the saved token is now invalid.
    second = fixed_port_daemon(state, port, log_name="second.log")
    try:
        result = sysadm(config, "vm", "list")
        assert (result.status, result.stderr) == (
            4,
            f"sysadm: session expired or revoked; run `sysadm login 127.0.0.1:{port}` again\n",
        )
        login(config, second)
        assert sysadm(config, "vm", "list").stdout == "No guests.\n"
    finally:
        assert second.stop()

    # A new certificate on the same host:port: refused, the pin kept.
    shutil.rmtree(state / "tls")
    third = fixed_port_daemon(state, port, log_name="third.log")
    try:
        new = fingerprint(third)
        assert new != old
        logins_before = _logins(state)
        for args in (["vm", "list"], ["login", f"127.0.0.1:{port}", "-u", "admin"]):
            result = sysadm(config, *args, password=third.password)
            assert result.status == 3
            assert "has CHANGED" in result.stderr
            assert f"pinned {old}" in result.stderr and f"presented {new}" in result.stderr
            assert f"sysadm known-hosts remove 127.0.0.1:{port}" in result.stderr
        assert f"127.0.0.1:{port} {old}" in (config / "known_hosts").read_text()
        # No credential reached the other server: it saw no login attempt at all.
        assert _logins(state) == logins_before
        assert sysadm(config, "known-hosts", "remove", f"127.0.0.1:{port}").status == 0
        login(config, third)
        assert f"127.0.0.1:{port} {new}" in (config / "known_hosts").read_text()
    finally:
        assert third.stop()


def test_every_command_has_help() -> None:
    runner = CliRunner()

    def walk(command: click.Command, path: list[str]) -> Iterator[list[str]]:
        yield path
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, [*path, name])

    paths = list(walk(cli, []))
    assert len(paths) > 20
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output


def _logins(state: Path) -> int:
    """How many logins (of any outcome) the daemon's audit log holds."""
    lines = (state / "audit.log").read_text().splitlines()
    return sum(1 for line in lines if json.loads(line).get("event") == "login")
