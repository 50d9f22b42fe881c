"""End to end: the real daemon and the real ``sysadmd-admin`` process, as an operator uses them.

Within 5 seconds of ``user passwd``, ``user role`` or ``user del``, on the running daemon and
without a restart, every session of that user ends: its WebSockets are closed with 4003, its
token is refused over REST and by ``rpc/auth_token``. Other users' sessions stay.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from support import async_test
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.web.http_headers import Headers
from wsclient import WsClient, connect

from sysadmd.auth import WATCH_INTERVAL, Ended
from sysadmd.transport._websocket import SESSION_END

pytestmark = pytest.mark.e2e

#: The promise: sessions end within this many seconds of the change.
WITHIN = 5.0

PASSWORDS = {"alice": "alice first pw", "oscar": "oscar first pw", "nina": "nina first pw"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = Daemon(tmp_path_factory.mktemp("sessions") / "state")
    for name, role in (("alice", "admin"), ("oscar", "operator"), ("nina", "admin")):
        result = admin(running, "user", "add", name, "--role", role, password=PASSWORDS[name])
        assert result.returncode == 0, result.stderr
    yield running
    assert running.stop()


def admin(
    daemon: Daemon, *argv: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``sysadmd-admin`` on the daemon's state directory."""
    script = Path(sys.executable).parent / "sysadmd-admin"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sysadmd.auth.admin"]
    return subprocess.run(
        [*command, "--state-dir", str(daemon.state_dir), *argv],
        input=f"{password}\n" if password is not None else "",
        capture_output=True,
        text=True,
        check=False,
    )


async def admin_in_thread(daemon: Daemon, *argv: str, password: str | None = None) -> None:
    result = await deferToThread(lambda: admin(daemon, *argv, password=password))
    assert result.returncode == 0, result.stderr


async def login(daemon: Daemon, user: str, password: str | None = None) -> tuple[WsClient, str]:
    """A WebSocket logged in as ``user`` with rpc/auth; and its token."""
    client = await connect("localhost", daemon.ports[0], tls=daemon.tls())  # type: ignore[arg-type]
    args = {"username": user, "password": password or PASSWORDS[user]}
    client.send({"namespace": "rpc", "name": "auth", "id": "login", "args": args})
    reply = await client.next()
    assert reply["name"] == "response", reply
    return client, reply["args"][0]


async def rest_code(daemon: Daemon, token: str) -> int:
    """The status of ``rpc/query`` over REST with ``token`` as its Bearer token."""
    response = await daemon.http().put(
        f"https://localhost:{daemon.ports[1]}/rpc/query",
        data=b"{}",
        headers=Headers(
            {"Content-Type": ["application/json"], "Authorization": [f"Bearer {token}"]}
        ),
    )
    await response.content()
    code: int = response.code
    return code


async def token_login_code(daemon: Daemon, token: str) -> str:
    """``rpc/auth_token`` with ``token`` on a new WebSocket: "response" or the error code."""
    client = await connect("localhost", daemon.ports[0], tls=daemon.tls())  # type: ignore[arg-type]
    client.send({"namespace": "rpc", "name": "auth_token", "id": "t", "args": {"token": token}})
    reply: Any = await client.next()
    await client.close()
    return "response" if reply["name"] == "response" else str(reply["args"]["code"])


async def ended_within(client: WsClient, started: float) -> float:
    """Wait for the daemon to close ``client`` with 4003; the seconds since ``started``."""
    _, code, reason = await client.closed.addTimeout(WITHIN * 2, reactor)
    assert (code, reason) == SESSION_END[Ended.REVOKED]
    return time.monotonic() - started


@async_test
async def test_passwd_role_and_del_end_that_users_sessions_only(daemon: Daemon) -> None:
    alice, alice_token = await login(daemon, "alice")
    alice_too, _ = await login(daemon, "alice")
    oscar, oscar_token = await login(daemon, "oscar")
    nina, nina_token = await login(daemon, "nina")
    assert await rest_code(daemon, alice_token) == 200

    started = time.monotonic()
    await admin_in_thread(daemon, "user", "passwd", "alice", password="alice new pw")
    assert await ended_within(alice, started) < WITHIN
    assert await ended_within(alice_too, started) < WITHIN
    assert await rest_code(daemon, alice_token) == 401
    assert await token_login_code(daemon, alice_token) == "401"
    # Everyone else carries on, on the same sockets and tokens.
    assert await rest_code(daemon, oscar_token) == 200
    oscar.send({"namespace": "rpc", "name": "query", "id": "q", "args": {}})
    assert (await oscar.next())["name"] == "response"
    assert not nina.closed.called
    # The new password works.
    alice, _ = await login(daemon, "alice", "alice new pw")
    await alice.close()

    started = time.monotonic()
    await admin_in_thread(daemon, "user", "role", "oscar", "admin")
    assert await ended_within(oscar, started) < WITHIN
    assert await rest_code(daemon, oscar_token) == 401
    assert await rest_code(daemon, nina_token) == 200

    started = time.monotonic()
    await admin_in_thread(daemon, "user", "del", "nina")
    assert await ended_within(nina, started) < WITHIN
    assert await rest_code(daemon, nina_token) == 401
    assert await token_login_code(daemon, nina_token) == "401"
    assert "Ended 1 session(s) of nina" in daemon.log_text()


@async_test
async def test_a_first_login_right_after_user_add_stays(daemon: Daemon) -> None:
    """A login made at once after ``user add`` (or ``user passwd``) was checked against the
    new record: the look that then sees the change leaves it alone."""
    await admin_in_thread(daemon, "lockout", "clear", "--all")  # the other tests' 401s
    await admin_in_thread(daemon, "user", "add", "erin", "--role", "operator", password="erin pw")
    erin, erin_token = await login(daemon, "erin", "erin pw")
    await admin_in_thread(daemon, "user", "passwd", "erin", password="erin new pw")
    erin_again, again_token = await login(daemon, "erin", "erin new pw")
    # Two looks at least run after both changes (one a second).
    await deferLater(reactor, 2 * WATCH_INTERVAL + 0.2)
    assert not erin_again.closed.called
    assert await rest_code(daemon, again_token) == 200
    # The first login was checked against the record passwd replaced: it ended.
    assert erin.closed.called
    assert await rest_code(daemon, erin_token) == 401
    await erin_again.close()


def test_the_initial_password_file_goes_when_admin_changes_it(daemon: Daemon) -> None:
    initial = daemon.state_dir / "initial-admin-password"
    assert initial.exists()
    assert admin(daemon, "user", "passwd", "admin", password="my own pw").returncode == 0
    assert not initial.exists()
    listed = admin(daemon, "user", "list")
    assert listed.stdout.splitlines()[1].split() == ["admin", "admin"]
    assert json.loads((daemon.state_dir / "accounts.json").read_text())["users"]["admin"]
