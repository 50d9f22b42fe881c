"""Logins over the real transports, and the control socket that lifts blocks."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import treq
from authkit import USERS, make_authenticator
from daemon import Daemon
from support import async_test
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from wsclient import connect

from sysadmd.api import Api, Registry, client_address
from sysadmd.app import build_site
from sysadmd.auth import Authenticator, Lockout
from sysadmd.auth._control import (
    CONTROL_SOCKET,
    ControlError,
    ControlService,
    ControlUnavailable,
    LockoutClear,
    call,
    list_lockout,
)
from sysadmd.services import Rpc


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (IPv4Address("TCP", "192.0.2.7", 50122), "192.0.2.7"),
        (IPv6Address("TCP", "2001:0db8:0000::0001", 50122), "2001:db8::1"),
        (IPv6Address("TCP", "::ffff:192.0.2.7", 50122), "192.0.2.7"),
        (UNIXAddress(b"/tmp/x"), "unknown"),
        (None, "unknown"),
    ],
)
def test_the_peer_is_the_bare_ip_address(address: object, expected: str) -> None:
    assert client_address(address) == expected


def _api(auth: Authenticator) -> Api:
    registry = Registry()
    registry.register(Rpc(auth, "testhost"))
    return Api(registry, auth)


@pytest.fixture
def auth(tmp_path: Path) -> Authenticator:
    return make_authenticator(tmp_path)


@pytest.fixture
def port(auth: Authenticator) -> Iterator[int]:
    site = build_site(_api(auth), reactor)
    listening: IListeningPort = reactor.listenTCP(0, cast(Any, site), interface="127.0.0.1")
    yield listening.getHost().port  # type: ignore[attr-defined]
    listening.stopListening()


async def _ws_login(port: int, password: str) -> Any:
    """One login on a new WebSocket connection; the reply's args."""
    client = await connect("127.0.0.1", port)
    client.send(
        {
            "namespace": "rpc",
            "name": "auth",
            "id": "1",
            "args": {"username": "alice", "password": password},
        }
    )
    reply = await client.next()
    await client.close()
    return reply["args"]


@async_test
async def test_the_websocket_lockout_counts_the_address_over_new_connections(
    port: int, auth: Authenticator, tmp_path: Path
) -> None:
    """Each guess on a new connection still counts against 127.0.0.1; the blocked login is
    told the seconds left."""
    for _ in range(5):
        assert (await _ws_login(port, "guess"))["code"] == "401"
    auth.lockout.clear("user", "alice")  # only the address is left blocked
    refused = await _ws_login(port, USERS["alice"][0])
    assert refused["code"] == "429"
    assert refused["message"].endswith("try again in 3600 seconds")
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert {r["peer"] for r in records} == {"127.0.0.1"}
    assert records[-1]["outcome"] == "blocked" and records[-1]["retry_after"] == 3600


async def _rest(port: int, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return await treq.put(
        f"http://127.0.0.1:{port}/{path}",
        data=json.dumps(body).encode(),
        headers=cast(Any, {"Content-Type": "application/json", **(headers or {})}),
        persistent=False,
    )


@async_test
async def test_rest_and_websocket_share_the_address(port: int) -> None:
    for _ in range(4):
        assert (await _ws_login(port, "guess"))["code"] == "401"
    response = await _rest(
        port,
        "rpc/identify",
        {},
        {"Authorization": "Basic " + base64.b64encode(b"oscar:guess").decode()},
    )
    assert response.code == 401
    await response.content()
    assert (await _ws_login(port, USERS["alice"][0]))["code"] == "429"


@async_test
async def test_rest_sends_retry_after_while_blocked(port: int) -> None:
    async def login(password: str) -> Any:
        return await _rest(port, "rpc/auth", {"username": "alice", "password": password})

    for _ in range(5):
        response = await login("guess")
        assert response.code == 401
        assert response.headers.getRawHeaders("Retry-After") is None
        await response.content()
    response = await login(USERS["alice"][0])
    assert response.code == 429
    assert response.headers.getRawHeaders("Retry-After") == ["3600"]
    body = json.loads(await response.content())
    assert body["args"]["message"].endswith("try again in 3600 seconds")


# The control socket


@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[Path, Lockout]]:
    lockout = Lockout(reactor)
    path = tmp_path / CONTROL_SOCKET
    service = ControlService(path, lockout, reactor)
    service.startService()
    yield path, lockout
    service.stopService()


@async_test
async def test_control_socket_lists_and_clears(control: tuple[Path, Lockout]) -> None:
    path, lockout = control
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_uid == os.getuid()
    for n in range(5):
        lockout.failed("192.0.2.9", f"user{n}")
    for n in range(250):  # more than one page
        lockout.failed(f"10.0.{n // 256}.{n % 256}", None)
    rows = await deferToThread(list_lockout, path)
    assert len(rows) == 251 + 5
    blocked = [r for r in rows if r["key"] == "192.0.2.9"]
    assert blocked[0]["kind"] == "address" and blocked[0]["blocked_for"] == pytest.approx(
        3600, abs=5
    )
    answer = await deferToThread(call, path, LockoutClear, kind="address", key="192.0.2.9")
    assert answer == {"cleared": 1}
    assert lockout.blocked("192.0.2.9", None) is None
    with pytest.raises(ControlError, match="kind must be address, user or all"):
        await deferToThread(call, path, LockoutClear, kind="host", key="x")
    answer = await deferToThread(call, path, LockoutClear, kind="all")
    assert answer == {"cleared": 255}
    assert lockout.entries() == []


def test_the_admin_command_says_when_no_daemon_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sysadmd.auth.admin",
            "--state-dir",
            str(tmp_path),
            "lockout",
            "list",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"sysadmd-admin: the daemon is not running (nothing listens on "
        f"{tmp_path / CONTROL_SOCKET})\n"
    )
    with pytest.raises(ControlUnavailable):
        call(tmp_path / CONTROL_SOCKET, LockoutClear, kind="all")


def _admin(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sysadmd.auth.admin", "--state-dir", str(state), *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


@async_test
async def test_the_daemon_s_blocks_are_listed_and_lifted_from_the_command_line(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    daemon = Daemon(state, listen=["ssl:0:interface=127.0.0.1"])
    try:
        socket_path = state / CONTROL_SOCKET
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        http = daemon.http()
        url = f"https://localhost:{daemon.ports[0]}/rpc/auth"

        async def login(password: str) -> int:
            response = await http.put(
                url,
                data=json.dumps({"username": "admin", "password": password}).encode(),
                headers=cast(Any, {"Content-Type": "application/json"}),
            )
            await response.content()
            return cast(int, response.code)

        assert [await login("guess") for _ in range(5)] == [401] * 5
        assert await login(daemon.password) == 429
        listed = _admin(state, "lockout", "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["KIND", "KEY", "FAILURES", "CHECKING", "BLOCKED", "FOR"]
        assert lines[1].split()[:4] == ["address", "127.0.0.1", "0", "0"]
        assert lines[2].split()[:4] == ["user", "admin", "0", "0"]
        assert _admin(state, "lockout", "clear", "--address", "127.0.0.1").stdout == (
            "cleared address 127.0.0.1\n"
        )
        assert await login(daemon.password) == 429  # the user name is still blocked
        assert _admin(state, "lockout", "clear", "--user", "admin").returncode == 0
        assert await login(daemon.password) == 200
    finally:
        assert daemon.stop()
    assert not socket_path.exists()
