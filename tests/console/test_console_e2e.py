"""Guest consoles end to end: the real daemon in simulate mode, over TLS WebSockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolekit import ConsoleClient, add_user, console, run_simulator
from daemon import Daemon
from support import async_test
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.http_headers import Headers
from wsclient import _with_timeout

pytestmark = pytest.mark.e2e

OPERATOR = ("olga", "operator password")
FIRST_ADMIN = ("alice", "first admin password")
SECOND_ADMIN = ("adam", "second admin password")


def write_config(base: Path, **console: int | float) -> Path:
    path = base / "sysadmd.toml"
    values = {"interval": 0.5, **console}
    lines = "\n".join(f"{k} = {v}" for k, v in values.items())
    path.write_text(f"[fetch]\ngrace = 1\n[console]\n{lines}\n")
    return path


def start_daemon(base: Path, log_name: str | None = None, **console: int | float) -> Daemon:
    state = base / "state"
    if not state.exists():
        root = state / "simulator"
        for guest in ("web", "db", "quiet", "bulk"):
            run_simulator(root, "create", guest, "1G")
        add_user(state, *OPERATOR, "operator")
        add_user(state, *FIRST_ADMIN, "admin")
        add_user(state, *SECOND_ADMIN, "admin")
    return Daemon(state, "--config", str(write_config(base, **console)), log_name=log_name)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(tmp_path_factory.mktemp("console"), viewer_buffer=65536)
    yield running
    assert running.stop()


def admin(daemon: Daemon) -> tuple[str, str]:
    return FIRST_ADMIN


async def rest(
    daemon: Daemon, body: dict[str, Any], *, path: str = "sysadm/iohyve", code: int = 200
) -> Any:
    response = await daemon.http().put(
        f"https://localhost:{daemon.ports[1]}/{path}",
        data=json.dumps(body).encode(),
        headers=Headers({"Content-Type": ["application/json"]}),
        auth=admin(daemon),
    )
    body = json.loads(await response.content())
    assert response.code == code, body
    return body["args"]


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def closed(client: ConsoleClient) -> tuple[bool, int | None, str | None]:
    result: tuple[bool, int | None, str | None] = await _with_timeout(client.closed)
    return result


async def started(daemon: Daemon, guest: str) -> None:
    """Start ``guest`` unless it runs already."""
    guests = (await rest(daemon, {"action": "listvms"}))["listvms"]
    if guests[guest]["running"] != "YES":
        await rest(daemon, {"action": "start", "name": guest})


async def consolelog(daemon: Daemon, guest: str, limit: int | None = None) -> str:
    body: dict[str, Any] = {"action": "consolelog", "name": guest}
    if limit is not None:
        body["bytes"] = limit
    text: str = (await rest(daemon, body, path="sysadm/console"))["consolelog"]["log"]
    return text


@async_test
async def test_header_login_boot_transcript_and_shell(daemon: Daemon) -> None:
    await started(daemon, "web")
    client = await console(daemon, "web", auth=admin(daemon))
    first, binary = await client.frame()
    assert not binary
    assert first["type"] == "status" and first["guest"] == "web"
    assert first["writer"] is True
    await client.until(b"login: ")
    assert b"FreeBSD/amd64 (web) (ttyu0)" in client.output
    client.type("root\r")
    await client.until(b"root@web:~ # ")
    client.type("uname -a\r")
    output = await client.until(b"amd64\r\nroot@web:~ # ")
    assert b"uname -a\r\nFreeBSD web 14.1-RELEASE FreeBSD 14.1-RELEASE amd64\r\n" in output
    await client.close()


@async_test
async def test_token_login_by_first_message_and_history_first(daemon: Daemon) -> None:
    await started(daemon, "web")
    token = (
        await rest(
            daemon, {"username": FIRST_ADMIN[0], "password": FIRST_ADMIN[1]}, path="rpc/auth"
        )
    )[0]
    client = await console(daemon, "web")
    await sleep(0.3)
    assert client.frames == []  # nothing before a login
    client.send({"token": token})
    first, binary = await client.frame()
    assert not binary and first["type"] == "status" and first["state"] == "running"
    history, binary = await client.frame()
    assert binary and b"login: " in history
    await client.close()


@async_test
async def test_no_login_no_bytes_and_unknown_guest(daemon: Daemon) -> None:
    await started(daemon, "web")
    client = await console(daemon, "web")
    client.type("root\r")
    client.send({"hello": "there"})
    _, code, reason = await closed(client)
    assert code == 1008 and client.frames == []
    wrong = await console(daemon, "web", auth=(FIRST_ADMIN[0], "wrong password"))
    _, code, reason = await closed(wrong)
    assert code == 1008 and reason is not None and "not logged in" in reason
    assert wrong.frames == []
    unknown = await console(daemon, "nosuchguest", auth=admin(daemon))
    _, code, reason = await closed(unknown)
    assert code == 1008 and reason is not None and "nosuchguest" in reason
    assert unknown.frames == []


@async_test
async def test_operator_watches_only_and_take_moves_control(daemon: Daemon) -> None:
    await started(daemon, "web")
    first = await console(daemon, "web", auth=admin(daemon))
    status = await first.control()
    operator = await console(daemon, "web", auth=OPERATOR)
    status = await operator.control()
    assert status["writer"] is False and status["viewers"] >= 2
    operator.type("echo from-operator\r")
    error = await operator.control()
    assert error["type"] == "error" and "only watch" in error["message"]
    second = await console(daemon, "web", auth=SECOND_ADMIN)
    assert (await second.control())["writer"] is False
    second.send({"type": "take"})
    while not (second.statuses and second.statuses[-1]["writer"]):
        await second.control()
    while not (first.statuses and first.statuses[-1]["writer"] is False):
        await first.control()
    second.type("echo from-second\r")
    await first.until(b"\r\nfrom-second\r\n")
    first.type("echo from-first\r")
    await second.until(b"from-second")
    await sleep(0.5)
    assert b"from-operator" not in second.output
    assert b"from-first" not in second.output
    for client in (first, operator, second):
        await client.close()


@async_test
async def test_output_with_nobody_watching_is_in_history_and_consolelog(daemon: Daemon) -> None:
    await started(daemon, "quiet")
    for _ in range(50):
        log = await consolelog(daemon, "quiet", 65536)
        if "login: " in log:
            break
        await sleep(0.2)
    assert "FreeBSD/amd64 (quiet) (ttyu0)" in log
    assert await consolelog(daemon, "quiet", 7) == "login: "
    client = await console(daemon, "quiet", auth=OPERATOR)
    await client.control()
    await client.until(b"(quiet) (ttyu0)")
    await client.close()


@async_test
async def test_a_slow_viewer_is_cut_off_while_a_fast_one_keeps_up(daemon: Daemon) -> None:
    await started(daemon, "bulk")
    fast = await console(daemon, "bulk", auth=admin(daemon))
    await fast.control()
    await fast.until(b"login: ")
    fast.type("root\r")
    await fast.until(b"root@bulk:~ # ")
    slow = await console(daemon, "bulk", auth=OPERATOR)
    await slow.control()
    slow.transport.pauseProducing()  # reads nothing more
    fast.type("jot 400000\r")
    await fast.until(b"\r\n400000\r\nroot@bulk:~ # ")
    # The server closed it with 1008; a client that reads nothing cannot see the close
    # frame before the server drops the connection (its close handshake times out).
    assert "(1008): too slow" in daemon.log_text()
    slow.transport.resumeProducing()
    _, code, _ = await closed(slow)
    assert code in (1006, 1008)
    await fast.close()


@async_test
async def test_poweroff_stops_the_guest_and_the_viewer_stays(daemon: Daemon) -> None:
    await started(daemon, "db")
    client = await console(daemon, "db", auth=admin(daemon))
    await client.control()
    await client.until(b"login: ")
    client.type("root\rpoweroff\r")
    await client.until(b"halted")
    while not (client.statuses and client.statuses[-1]["state"] == "stopped"):
        await client.control()
    guests = await rest(daemon, {"action": "listvms"})
    assert guests["listvms"]["db"]["running"] == "NO"
    await started(daemon, "db")
    while not (client.statuses and client.statuses[-1]["state"] == "running"):
        await client.control()
    marker = len(client.output)
    while b"login: " not in client.output[marker:]:
        await client.frame()
    await client.close()


@async_test
async def test_history_survives_a_restart(tmp_path: Path) -> None:
    first = start_daemon(tmp_path)
    try:
        await started(first, "web")
        client = await console(first, "web", auth=admin(first))
        await client.until(b"login: ")
        client.type("root\recho before-the-restart\r")
        await client.until(b"\r\nbefore-the-restart\r\n")
        await client.close()
    finally:
        assert first.stop()
    second = start_daemon(tmp_path, log_name="second.log")
    try:
        assert "before-the-restart" in await consolelog(second, "web")
        client = await console(second, "web", auth=OPERATOR)
        await client.control()
        await client.until(b"before-the-restart")
        await client.close()
    finally:
        assert second.stop()
        run_simulator(tmp_path / "state" / "simulator", "forcekill", "web")
