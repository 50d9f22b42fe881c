"""End to end: the ``sysadm`` command-line client, run as a real process against the daemon.

The daemon runs in simulate mode on loopback TLS; fetches download from a local HTTP
server on the test reactor, so those runs of ``sysadm`` happen in a thread while the
reactor serves. Every failing run must print exactly one line on stderr, never a traceback
(:func:`clientkit.sysadm` checks it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import stat
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from clientkit import (
    SYSADM,
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
from twisted.internet.threads import deferToThread
from wsclient import settle

from sysadmd.client.cli import CommandError, _binary_size, cli, resolve_task_id, short_ids
from sysadmd.transport._tls import ensure_certificate

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
        # Without a terminal to ask on, only --yes deletes.
        unasked = await run("vm", "delete", "clitest")
        assert unasked.status == 2, unasked
        assert "no terminal to confirm on: give --yes" in unasked.stderr
        assert "clitest" in json.loads((await run("vm", "list", "--json")).stdout)["listvms"]
        bad = await run("vm", "set", "clitest", "ram")
        assert bad.status == 2 and "PROP=VALUE" in bad.stderr

    await gatherResults(
        [ensureDeferred(chain()) for chain in (disks_and_props, lifecycle, listing_and_errors)],
        consumeErrors=True,
    )


# ISOs, tasks, raw calls


def test_sizes_are_shown_in_binary_units_within_ten_columns() -> None:
    assert [_binary_size(n) for n in (0, 1023, 1024, 790_626_304, 1_327_169_536)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "754.0 MiB",
        "1.2 GiB",
    ]
    assert len(_binary_size(1023 * 1024**4)) <= 10


def test_iso_commands(logged_in: Path) -> None:
    assert sysadm(logged_in, "iso", "list").stdout.splitlines() == sorted([BOOTONLY, "test.iso"])
    assert json.loads(sysadm(logged_in, "iso", "list", "--json").stdout) == {
        "listisos": sorted([BOOTONLY, "test.iso"])
    }
    # --sizes: each ISO's size in binary units before its name (the seeded ISOs are small).
    library = json.loads(sysadm(logged_in, "iso", "list", "--sizes", "--json").stdout)
    sizes = {name: entry["size"] for name, entry in library["isolibrary"].items()}
    assert sorted(sizes) == sorted([BOOTONLY, "test.iso"])
    assert all(0 < size < 1024 for size in sizes.values()), sizes
    assert sysadm(logged_in, "iso", "list", "--sizes").stdout.splitlines() == [
        f"{f'{sizes[name]} B':>10}  {name}" for name in sorted(sizes)
    ]
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


def _fits(text: str, columns: int) -> None:
    """Every line of ``text`` fits in ``columns`` columns."""
    too_long = [line for line in text.splitlines() if len(line.rstrip()) > columns]
    assert not too_long, too_long


@async_test
async def test_fetch_wait_downloads_with_a_progress_bar(
    logged_in: Path, daemon: Daemon, http: HTTPServer
) -> None:
    """At 80 columns the bar stays on one line: name, status, bar, percent, bytes, rate."""
    data = b"x" * 2_000_000
    http.files.files["cli.iso"] = data
    result = await sysadm_async(
        logged_in, "iso", "fetch", http.url("cli.iso"), "--wait", columns=80
    )
    assert result.status == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Queued the fetch of cli.iso: task {")
    bar = next(line for line in lines if line.startswith("cli.iso (succeeded)"))
    assert "100%" in bar and "2.0/2.0 MB" in bar and "/s" in bar
    _fits(result.stdout, 80)
    assert lines[-1] == "Fetched cli.iso (2000000 bytes)."
    arrived = daemon.state_dir / "simulator" / "iohyve" / "ISO" / "cli.iso" / "cli.iso"
    assert arrived.read_bytes() == data

    failed = await sysadm_async(logged_in, "iso", "fetch", http.url("gone.iso"), "--wait")
    assert failed.status == 1
    assert failed.stderr.startswith("sysadm: task {") and " failed: " in failed.stderr
    assert "Not Found" in failed.stderr

    listed = json.loads(sysadm(logged_in, "tasks", "--json").stdout)
    jobs = listed["jobs"]["no_queue"]
    statuses = {job["iso"]: job["status"] for job in jobs.values()}
    assert (statuses["cli.iso"], statuses["gone.iso"]) == ("succeeded", "failed")
    ids = {job["iso"]: task_id for task_id, job in jobs.items()}
    for columns in (80, 200):
        shown = sysadm(logged_in, "tasks", columns=columns).stdout
        _fits(shown, columns)
        tasks = shown.splitlines()
        assert tasks[0].split() == ["TASK", "STATUS", "ISO", "PROGRESS", "USER", "MESSAGE"]
        # Each row's first line holds whole words: the short id, the status, the ISO name,
        # the progress, the user.
        rows = {line.split()[2]: line for line in tasks[2:] if line[:1].strip()}
        cli_row = rows["cli.iso"].split()
        assert cli_row[:3] == [short_ids(list(jobs))[ids["cli.iso"]], "succeeded", "cli.iso"]
        assert "100% of 2.0 MB" in rows["cli.iso"] and "admin" in cli_row
        assert rows["gone.iso"].split()[1] == "failed"
        # A failed task's message wraps at spaces, not letter by letter.
        message = " ".join(line[tasks[0].index("MESSAGE") :].strip() for line in tasks[2:])
        assert "Not Found" in message


def _sysadm_on_a_terminal(config_dir: Path, *args: str, columns: int) -> tuple[int, list[str]]:
    """Run ``sysadm`` with its stdout on a pseudo-terminal ``columns`` wide (COLUMNS unset);
    return its status and the lines the terminal was left showing, escape sequences removed
    and each line as its last redraw left it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SYSADM_") and k not in ("COLUMNS", "LINES", "NO_COLOR")
    }
    env.update(SYSADM_CONFIG_DIR=str(config_dir), TERM="xterm-256color")
    with subprocess.Popen(
        [SYSADM, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    ) as process:
        os.close(slave)
        output = bytearray()
        with contextlib.suppress(OSError):  # EIO once the program has closed the terminal
            while chunk := os.read(master, 65536):
                output += chunk
        os.close(master)
        status = process.wait(timeout=60)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", output.decode())
    return status, [line.rstrip("\r").split("\r")[-1] for line in text.split("\n")]


@async_test
async def test_progress_bar_on_an_80_column_terminal(logged_in: Path, http: HTTPServer) -> None:
    """On a real terminal 80 columns wide, the live bar of an ISO with a long name ends as
    one line: the name cut short, then status, bar, percent, bytes and rate, whole."""
    name = "FreeBSD-14.1-RELEASE-amd64-bootonly-tty.iso"
    http.files.files[name] = b"t" * 3_000_000
    status, lines = await deferToThread(
        _sysadm_on_a_terminal, logged_in, "iso", "fetch", http.url(name), "--wait", columns=80
    )
    assert status == 0, lines
    bars = [line for line in lines if line.startswith("FreeBSD-14.1-RELEASE")]
    assert bars, lines
    last = bars[-1]
    assert "… (succeeded) " in last and "━" in last, bars
    assert "100%" in last and "3.0/3.0 MB" in last and "/s" in last, bars
    assert all(len(line.rstrip()) <= 80 for line in bars), bars
    assert f"Fetched {name} (3000000 bytes)." in lines


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
    # The start of the id, as the tasks table shows it, stands for the task.
    short = task_id[1:9]
    unknown = next(p for p in ("00000000", "ffffffff") if not task_id[1:].startswith(p))
    missing = await sysadm_async(logged_in, "kill", unknown)
    assert missing.status == 1
    assert missing.stderr == f"sysadm: no task id starts with '{unknown}' (see `sysadm tasks`)\n"
    invalid = await sysadm_async(logged_in, "kill", "held.iso")
    assert invalid.status == 2 and "not a task id" in invalid.stderr
    killed = await sysadm_async(logged_in, "kill", short.upper())
    assert killed.stdout == f"Killed {task_id}.\n"
    waited = await waiting
    assert waited.status == 1
    assert waited.stderr == f"sysadm: task {task_id} cancelled: killed\n"
    watched = await watching
    assert watched.status == 0, watched
    assert short in watched.stdout and "cancelled" in watched.stdout
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


# Task ids


IDS = [
    "{7ee59bb4-2d76-42ec-927f-848b690b0962}",
    "{7ee59bb4-9d76-42ec-927f-848b690b0962}",
    "{01234567-89ab-4cde-8f01-23456789abcd}",
]


def test_short_ids_are_eight_digits_or_as_many_as_tell_them_apart() -> None:
    assert short_ids(IDS) == {IDS[0]: "7ee59bb4-2", IDS[1]: "7ee59bb4-9", IDS[2]: "01234567"}
    assert short_ids([]) == {}


@pytest.mark.parametrize(
    ("given", "found"),
    [
        ("0", IDS[2]),
        ("{0123", IDS[2]),
        ("7EE59BB4-2", IDS[0]),
        (IDS[1], IDS[1]),
        (IDS[1].upper(), IDS[1]),
        # A full id is passed on even when not listed: the daemon answers for it.
        ("{00000000-0000-4000-8000-000000000000}", "{00000000-0000-4000-8000-000000000000}"),
    ],
)
def test_a_task_id_or_its_unique_start(given: str, found: str) -> None:
    assert resolve_task_id(given, IDS) == found


def test_an_ambiguous_start_names_the_candidates() -> None:
    with pytest.raises(CommandError, match="more than one task id") as raised:
        resolve_task_id("7ee5", IDS)
    assert IDS[0] in str(raised.value) and IDS[1] in str(raised.value)
    assert IDS[2] not in str(raised.value)
    assert raised.value.status == 1


@pytest.mark.parametrize("given", ["", "xyz", "{", "7ee5 9", "7ee59bb4}", "-1"])
def test_what_is_no_task_id_is_a_usage_error(given: str) -> None:
    with pytest.raises(CommandError, match="not a task id") as raised:
        resolve_task_id(given, IDS)
    assert raised.value.status == 2


def test_no_task_starts_so() -> None:
    with pytest.raises(CommandError, match="no task id starts with 'abc'"):
        resolve_task_id("abc", IDS)
