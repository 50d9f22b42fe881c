"""End to end: the client library (sysadmd.client) against the real daemon.

The asynchronous client runs on the test reactor; the blocking wrapper needs a reactor of
its own in a thread, so it runs in a child Python process.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clientkit import PYTHON, fingerprint, free_port, seeded_daemon
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from daemon import Daemon
from httpserver import HTTPServer
from support import async_test
from twisted.internet.threads import deferToThread
from wsclient import settle

from sysadmd.client import (
    CATLS,
    ApiError,
    Client,
    ClientError,
    ConnectionFailed,
    FingerprintMismatch,
    KnownHosts,
    PinnedTLS,
    SessionExpired,
    TaskFailed,
    TLSVerificationFailed,
    UnknownHost,
)
from sysadmd.client.client import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    SESSION_ENDED_CODES,
    SYSADM_TO_STATUS,
    TASK_STATUSES,
)
from sysadmd.transport._tls import ensure_certificate
from sysadmd.transport._websocket import SESSION_END

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = seeded_daemon(tmp_path_factory.mktemp("client"))
    yield running
    assert running.stop()


def _pinned(daemon: Daemon, tmp_path: Path) -> PinnedTLS:
    known = KnownHosts(tmp_path / "known_hosts")
    known.add(f"127.0.0.1:{daemon.ports[0]}", fingerprint(daemon))
    return PinnedTLS(known)


async def _admin(daemon: Daemon, tmp_path: Path) -> Client:
    client = await Client.connect("127.0.0.1", daemon.ports[0], tls=_pinned(daemon, tmp_path))
    await client.login("admin", daemon.password)
    return client


@async_test
async def test_unknown_host_then_accepted_fingerprint(daemon: Daemon, tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "kh")
    with pytest.raises(UnknownHost) as raised:
        await Client.connect("127.0.0.1", daemon.ports[0], tls=PinnedTLS(known))
    assert raised.value.fingerprint == fingerprint(daemon)
    assert known.entries() == {}
    client = await Client.connect(
        "127.0.0.1", daemon.ports[0], tls=PinnedTLS(known, accept=fingerprint(daemon).lower())
    )
    assert client.fingerprint == fingerprint(daemon)
    assert known.entries() == {f"127.0.0.1:{daemon.ports[0]}": fingerprint(daemon)}
    assert (await client.identify())["type"] == "server"
    await client.close()


@async_test
async def test_pin_mismatch_is_refused_in_the_handshake(daemon: Daemon, tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "kh")
    wrong = ":".join(["01"] * 32)
    known.add(f"127.0.0.1:{daemon.ports[0]}", wrong)
    for tofu in (False, True):
        with pytest.raises(FingerprintMismatch) as raised:
            await Client.connect(
                "127.0.0.1", daemon.ports[0], tls=PinnedTLS(known, trust_on_first_use=tofu)
            )
        assert (raised.value.pinned, raised.value.presented) == (wrong, fingerprint(daemon))
        assert wrong in str(raised.value) and fingerprint(daemon) in str(raised.value)
    # Never replaced automatically.
    assert known.get(f"127.0.0.1:{daemon.ports[0]}") == wrong


@async_test
async def test_ca_mode(daemon: Daemon, tmp_path: Path) -> None:
    ca = CATLS(daemon.state_dir / "tls" / "cert.pem")
    for host in ("localhost", "127.0.0.1"):
        client = await Client.connect(host, daemon.ports[0], tls=ca)
        await client.login("admin", daemon.password)
        assert "testguest" in await client.list_vms()
        await client.close()
    other = CATLS(ensure_certificate(tmp_path / "other", "localhost").cert_path)
    with pytest.raises(TLSVerificationFailed, match="TLS verification failed"):
        await Client.connect("localhost", daemon.ports[0], tls=other)


@async_test
async def test_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}: connection refused"):
        await Client.connect("127.0.0.1", port, tls=PinnedTLS(KnownHosts(tmp_path / "kh")))


@async_test
async def test_calls_errors_and_tokens(daemon: Daemon, tmp_path: Path) -> None:
    client = await Client.connect("127.0.0.1", daemon.ports[0], tls=_pinned(daemon, tmp_path))
    with pytest.raises(ApiError) as raised:
        await client.list_vms()
    assert raised.value.code == 401 and not isinstance(raised.value, SessionExpired)
    token, seconds = await client.login("admin", daemon.password)
    assert seconds == 900
    vms = await client.list_vms()
    assert vms["testguest"]["running"] in ("YES", "NO")
    assert "test.iso" in await client.list_isos()
    assert (await client.version()).startswith("iohyve v")
    assert (await client.query())["sysadm/iohyve"] == "read/write"
    await client.create("libguest", "2G")
    assert await client.list_disks("libguest") == {"disk0": "2G"}
    assert await client.add_disk("libguest", "1G") == {"libguest": {"size": "1G"}}
    assert await client.resize_disk("libguest", "disk1", "3G") == {
        "disk": "disk1",
        "name": "libguest",
        "size": "3G",
    }
    await client.delete_disk("libguest", "disk1")
    assert await client.set_props("libguest", {"ram": "2G"}) == {"ram": "2G"}
    assert (await client.get_props("libguest"))["ram"] == "2G"
    await client.start("libguest")
    await client.stop("libguest", force=True)
    with pytest.raises(ApiError) as raised:
        await client.rename_iso("nope.iso", "other.iso")
    assert (raised.value.code, raised.value.message) == (404, "ISO 'nope.iso' does not exist")
    raw = await client.call("sysadm", "iohyve", {"action": "issetup"})
    assert raw == {"issetup": {"setup": "false"}}
    assert await client.is_setup() is False

    # The token works on another connection; once cleared it is refused everywhere.
    other = await Client.connect("127.0.0.1", daemon.ports[0], tls=_pinned(daemon, tmp_path))
    assert (await other.login_token(token)).token == token
    await client.logout()
    # The daemon closes the other connection (4004); its next call is the session's end.
    await other.when_closed
    with pytest.raises(SessionExpired, match="logged out elsewhere"):
        await other.list_isos()
    with pytest.raises(SessionExpired):
        await other.login_token(token)
    await other.close()
    await client.close()


@async_test
async def test_key_login(daemon: Daemon, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    admin = await _admin(daemon, tmp_path)
    await admin.call("rpc", "settings", {"action": "register_ssl_cert", "pub_key": pem.decode()})
    await admin.close()
    client = await Client.connect("127.0.0.1", daemon.ports[0], tls=_pinned(daemon, tmp_path))
    token, _ = await client.login_key(key)
    assert token and "testguest" in await client.list_vms()
    await client.close()


@async_test
async def test_fetch_task_progress_wait_and_failure(
    daemon: Daemon, tmp_path: Path, http: HTTPServer
) -> None:
    # Held at half: 3 MB, more than one of the simulated fetch(1)'s read chunks (1 MiB).
    size = 6_000_000
    http.files.files["lib.iso"] = b"l" * size
    http.files.stall.add("lib.iso")
    client = await _admin(daemon, tmp_path)
    task = await client.fetch_iso(http.url("lib.iso"))
    assert task.id.startswith("{") and task.iso == "lib.iso"
    seen: list[int] = []
    task.on_progress(lambda t: seen.append(t.progress.bytes_done))
    for _ in range(200):
        if task.progress.bytes_done:
            break
        await settle(0.05)
    assert task.progress.status == "running"
    assert task.progress.bytes_total == size
    assert 0 < task.progress.bytes_done <= size // 2
    assert task.progress.percent is not None and task.progress.percent <= 50
    jobs = await client.tasks()
    assert jobs[task.id]["status"] == "running"
    http.files.finish()
    final = await task
    assert (final.status, final.bytes_done) == ("succeeded", size)
    assert seen and task.done
    assert "lib.iso" in await client.list_isos()
    await client.remove_iso("lib.iso")

    failing = await client.fetch_iso(http.url("absent.iso"))
    with pytest.raises(TaskFailed) as raised:
        await failing.wait()
    assert raised.value.status == "failed" and "Not Found" in str(raised.value.message)
    await client.close()


@async_test
async def test_kill_a_task_and_follow_an_existing_one(
    daemon: Daemon, tmp_path: Path, http: HTTPServer
) -> None:
    http.files.files["killme.iso"] = b"k" * 400_000
    http.files.stall.add("killme.iso")
    client = await _admin(daemon, tmp_path)
    task = await client.fetch_iso(http.url("killme.iso"))
    watcher = await _admin(daemon, tmp_path)
    followed = await watcher.task(task.id)
    assert followed.progress.status in ("queued", "running")
    events: list[dict[str, Any]] = []
    await watcher.subscribe("dispatcher", events.append)
    assert await client.kill(task) == [task.id]
    with pytest.raises(TaskFailed, match="cancelled"):
        await task
    with pytest.raises(TaskFailed) as raised:
        await followed
    assert raised.value.status == "cancelled"
    assert any(e.get("result") == "cancelled" for e in events)
    assert await client.kill(task.id) == []
    with pytest.raises(ClientError, match="no event 'no-such-event'"):
        await client.subscribe("no-such-event", events.append)
    await watcher.close()
    await client.close()


@async_test
async def test_guests_events(daemon: Daemon, tmp_path: Path) -> None:
    client = await _admin(daemon, tmp_path)
    seen: list[dict[str, Any]] = []
    subscription = await client.subscribe("guests", seen.append)
    for _ in range(100):
        if seen:
            break
        await settle(0.05)
    assert "testguest" in seen[0]["guests"]
    await client.unsubscribe(subscription)
    await client.close()


_BLOCKING = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from sysadmd.client import BlockingClient, KnownHosts, PinnedTLS, TaskFailed

    port, password, url, known = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    tls = PinnedTLS(KnownHosts(Path(known)), trust_on_first_use=True)
    with BlockingClient.connect("127.0.0.1", int(port), tls=tls) as client:
        client.login("admin", password)
        out = {"vms": sorted(client.list_vms()), "fingerprint": client.fingerprint}
        task = client.fetch_iso(url)
        out["final"] = task.wait().status
        out["isos"] = client.list_isos()
        try:
            client.fetch_iso(url + "-missing.iso").wait()
        except TaskFailed as e:
            out["failed"] = e.status
    print(json.dumps(out))
    """
)


@async_test
async def test_blocking_client(daemon: Daemon, tmp_path: Path, http: HTTPServer) -> None:
    """Plain synchronous Python: the reactor in a thread, same methods, same errors."""
    http.files.files["sync.iso"] = b"s" * 100_000
    argv = [
        PYTHON,
        "-c",
        _BLOCKING,
        str(daemon.ports[0]),
        daemon.password,
        http.url("sync.iso"),
        str(tmp_path / "known_hosts"),
    ]
    done = await deferToThread(
        subprocess.run, argv, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "testguest" in out["vms"]
    assert out["fingerprint"] == fingerprint(daemon)
    assert (out["final"], out["failed"]) == ("succeeded", "failed")
    assert "sync.iso" in out["isos"]
    assert fingerprint(daemon) in (tmp_path / "known_hosts").read_text()


def test_the_client_knows_the_daemon_s_session_end_codes() -> None:
    """The client imports nothing from the daemon: the two lists are held equal here."""
    assert {code for code, _ in SESSION_END.values()} == SESSION_ENDED_CODES


def test_the_client_s_task_statuses_are_the_daemon_s_task_states() -> None:
    """The client reads the states from the shared vocabulary; these are its views of it."""
    assert TASK_STATUSES == ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
    assert {"succeeded", "failed", "cancelled", "interrupted"} == FINAL_STATUSES
    assert {"queued", "running"} == ACTIVE_STATUSES
    assert SYSADM_TO_STATUS == {"pending": "queued", "running": "running"}
