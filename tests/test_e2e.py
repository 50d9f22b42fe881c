"""End to end: the real twistd plugin on loopback TLS, every example of the API page.

The daemon runs in simulate mode as its own process; the tests reach it like any
client would, with an HTTPS client and a WebSocket client that trust only the
daemon's own certificate.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import TWISTD, Daemon
from httpserver import HTTPServer
from support import async_test
from twisted.web.http_headers import Headers
from wsclient import WsClient, connect, settle

from sysadmd.simulator.cli import main as simulator

pytestmark = pytest.mark.e2e

DESCRIPTION = "February 1, 2016 at 03:11:57 PM EST"
SEED_FETCH_URL = (
    "ftp://ftp.freebsd.org/pub/FreeBSD/releases/amd64/amd64/ISO-IMAGES/10.1/"
    "FreeBSD-10.1-RELEASE-amd64-disc1.iso"
)
BOOTONLY = "FreeBSD-10.2-RELEASE-amd64-bootonly.iso"


def run_simulator(root: Path, *args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert simulator(["--root", str(root), *args]) == 0


def seed(state: Path, base: Path) -> None:
    """The simulator's guest 'testguest' and two ISOs, as the API page's examples have."""
    root = state / "simulator"
    run_simulator(root, "create", "testguest", "8G")
    run_simulator(root, "set", "testguest", f"description={DESCRIPTION}")
    for name in ("test.iso", BOOTONLY):
        (base / name).write_bytes(f"bytes of {name}".encode())
        run_simulator(root, "fetch", f"file://{base / name}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon whose simulator holds the guest and ISOs the API page's examples use."""
    base = tmp_path_factory.mktemp("e2e")
    state = base / "state"
    seed(state, base)
    running = Daemon(state)
    yield running
    assert running.stop()


async def rest(
    daemon: Daemon,
    body: dict[str, Any],
    port: int | None = None,
    *,
    path: str = "sysadm/iohyve",
    auth: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    """``PUT /sysadm/iohyve`` as the API page shows it, logged in as admin by default."""
    port = port or daemon.ports[1]
    response = await daemon.http().put(
        f"https://localhost:{port}/{path}",
        data=json.dumps(body).encode(),
        headers=Headers({"Content-Type": ["application/json"]}),
        auth=auth or ("admin", daemon.password),
    )
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
    return response.code, json.loads(await response.content())


async def ws(daemon: Daemon, port: int | None = None, **headers: str) -> WsClient:
    """A WebSocket logged in as admin with rpc/auth, the way sysadm's clients do it."""
    client = await connect(
        "localhost",
        port or daemon.ports[0],
        tls=daemon.tls(),  # type: ignore[arg-type]
        headers=headers,
    )
    client.send(
        {
            "args": {"password": daemon.password, "username": "admin"},
            "id": "sysadm-client-auth-auto",
            "name": "auth",
            "namespace": "rpc",
        }
    )
    reply = await client.next()
    assert reply["name"] == "response", reply
    return client


def _isos(daemon: Daemon) -> dict[str, bytes]:
    store = daemon.state_dir / "simulator" / "iohyve" / "ISO"
    return {
        p.name: (p / p.name).read_bytes() for p in sorted(store.iterdir()) if (p / p.name).exists()
    }


def _spawns(daemon: Daemon) -> int:
    return len(re.findall(r"spawned pid \d+", daemon.log_text()))


def test_initial_admin_password_is_in_a_file_not_the_log(daemon: Daemon) -> None:
    """Simulate mode's first start makes 'admin'; the log names the file, not the password."""
    path = daemon.state_dir / "initial-admin-password"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert f"its password is in {path}" in daemon.log_text()
    assert daemon.password not in daemon.log_text()


@async_test
async def test_listvms_rest_and_websocket_on_both_ports(daemon: Daemon) -> None:
    """The List VMs examples, over REST and WebSocket, on each of the two listeners."""
    guest = {"description": DESCRIPTION, "rcboot": "NO", "running": "NO", "vmm": "NO"}
    for port in daemon.ports:
        assert await rest(daemon, {"action": "listvms"}, port) == (
            200,
            {"args": {"listvms": {"testguest": guest}}},
        )
        client = await ws(daemon, port)
        client.send(
            {"namespace": "sysadm", "args": {"action": "listvms"}, "name": "iohyve", "id": "fooid"}
        )
        assert await client.next() == {
            "args": {"listvms": {"testguest": guest}},
            "id": "fooid",
            "name": "response",
            "namespace": "sysadm",
        }
        await client.close()


@async_test
async def test_fetchiso_examples(tmp_path: Path, http: HTTPServer) -> None:
    """The Fetch ISO examples: queued at once, with the page's reply shape.

    A download from the local server that never finishes holds the only worker, so
    the page's ftp:// URL is queued behind it and never fetched: the tests reach
    no address beyond this machine. The stop ends that download after a one-second grace
    (the default 30 s would only make the test wait).
    """
    http.files.files["hold.iso"] = b"x" * 1000
    http.files.stall.add("hold.iso")
    config = tmp_path / "sysadmd.toml"
    config.write_text("[fetch]\ngrace = 1\n")
    daemon = Daemon(tmp_path / "state", f"--config={config}")
    try:
        assert (await rest(daemon, {"url": http.url("hold.iso"), "action": "fetchiso"}))[0] == 200
        code, reply = await rest(daemon, {"url": SEED_FETCH_URL, "action": "fetchiso"})
        assert code == 200
        fetch = reply["args"]["fetchiso"]
        assert fetch["command"] == f"iohyve fetch {SEED_FETCH_URL}"
        assert fetch["comment"] == "Task Queued"
        assert re.fullmatch(r"\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\}", fetch["queueid"])
        client = await ws(daemon)
        client.send(
            {
                "namespace": "sysadm",
                "name": "iohyve",
                "args": {"url": SEED_FETCH_URL.replace("disc1", "disc2"), "action": "fetchiso"},
                "id": "fooid",
            }
        )
        reply = await client.next()
        assert (reply["id"], reply["name"], reply["namespace"]) == ("fooid", "response", "sysadm")
        assert reply["args"]["fetchiso"]["comment"] == "Task Queued"
        client.send(
            {
                "namespace": "sysadm",
                "name": "iohyve",
                "args": {"url": SEED_FETCH_URL, "action": "fetchiso"},
                "id": "again",
            }
        )
        reply = await client.next()
        assert reply["args"] == {
            "code": "409",
            "message": "ISO 'FreeBSD-10.1-RELEASE-amd64-disc1.iso' is already being fetched",
        }
        await client.close()
    finally:
        assert daemon.stop()
    assert "Fetching ftp://" not in daemon.log_text()


@async_test
async def test_fetchiso_downloads_from_a_local_server(daemon: Daemon, http: HTTPServer) -> None:
    """A fetch really downloads, and the ISO store then holds identical bytes."""
    data = bytes(range(256)) * 8192
    http.files.files["disc1.iso"] = data
    code, _ = await rest(daemon, {"url": http.url("disc1.iso"), "action": "fetchiso"})
    assert code == 200
    for _ in range(200):
        if "disc1.iso" in _isos(daemon) and _isos(daemon)["disc1.iso"] == data:
            break
        await settle(0.05)
    assert _isos(daemon)["disc1.iso"] == data
    for _ in range(100):
        code, listed = await rest(daemon, {"action": "rmiso", "target": "disc1.iso"})
        if code != 409:
            break
        await settle(0.05)
    assert (code, listed) == (200, {"args": {"rmiso": {"target": "disc1.iso"}}})


@async_test
async def test_renameiso_examples(daemon: Daemon) -> None:
    """The Rename ISO examples, REST then back over WebSocket."""
    before = _isos(daemon)
    assert await rest(
        daemon, {"source": "test.iso", "target": "102.iso", "action": "renameiso"}
    ) == (
        200,
        {"args": {"renameiso": {"source": "test.iso", "target": "102.iso"}}},
    )
    assert _isos(daemon)["102.iso"] == before["test.iso"]
    client = await ws(daemon)
    client.send(
        {
            "args": {"target": "test.iso", "source": "102.iso", "action": "renameiso"},
            "id": "fooid",
            "name": "iohyve",
            "namespace": "sysadm",
        }
    )
    assert await client.next() == {
        "args": {"renameiso": {"source": "102.iso", "target": "test.iso"}},
        "id": "fooid",
        "name": "response",
        "namespace": "sysadm",
    }
    await client.close()
    assert _isos(daemon) == before


@async_test
async def test_rmiso_examples(daemon: Daemon) -> None:
    """The Remove ISO examples: REST removes it, WebSocket then finds it gone."""
    assert await rest(daemon, {"action": "rmiso", "target": BOOTONLY}) == (
        200,
        {"args": {"rmiso": {"target": BOOTONLY}}},
    )
    assert BOOTONLY not in _isos(daemon)
    client = await ws(daemon)
    client.send(
        {
            "id": "fooid",
            "name": "iohyve",
            "args": {"target": BOOTONLY, "action": "rmiso"},
            "namespace": "sysadm",
        }
    )
    assert await client.next() == {
        "args": {"code": "404", "message": f"ISO '{BOOTONLY}' does not exist"},
        "id": "fooid",
        "name": "error",
        "namespace": "error",
    }
    await client.close()


@async_test
async def test_rejected_requests_spawn_nothing_and_lose_nothing(daemon: Daemon) -> None:
    """Invalid names and URLs are refused at the edge: no process, no change."""
    before, spawns = _isos(daemon), _spawns(daemon)
    for body in [
        {"action": "rmiso", "target": "../../etc/passwd"},
        {"action": "rmiso", "target": "-rf"},
        {"action": "renameiso", "source": "test.iso", "target": "a b"},
        {"action": "renameiso", "source": "test.iso"},
        {"action": "fetchiso", "url": "http://127.0.0.1/x.iso?evil"},
        {"action": "fetchiso", "url": "file:///etc/master.passwd"},
        {"action": "fetchiso", "url": "gopher://host/a.iso"},
        {"action": "LISTVMS"},
    ]:
        code, reply = await rest(daemon, body)
        assert code == 400, body
        assert reply["args"]["code"] == "400"
    await settle(0.1)
    assert _spawns(daemon) == spawns
    assert _isos(daemon) == before


@async_test
async def test_sysadm_client_conversation(daemon: Daemon) -> None:
    """sysadm's Qt client, message by message: identify, auth, subscribe, pipelined calls."""
    client = await connect(
        "localhost",
        daemon.ports[0],
        tls=daemon.tls(),  # type: ignore[arg-type]
        headers={"Origin": "sysadm-client"},
    )
    client.send(
        {"args": "", "id": "sysadm_client_identify", "name": "identify", "namespace": "rpc"}
    )
    identify = await client.next()
    assert identify["args"]["type"] == "server"
    assert identify["id"] == "sysadm_client_identify"
    client.send(
        {
            "args": {"password": daemon.password, "username": "admin"},
            "id": "sysadm-client-auth-auto",
            "name": "auth",
            "namespace": "rpc",
        }
    )
    token, seconds = (await client.next())["args"]
    assert isinstance(token, str) and len(token) >= 40
    assert seconds == 900
    client.send(
        {
            "args": "system-state",
            "id": "sysadm-client-event-auto",
            "name": "subscribe",
            "namespace": "events",
        }
    )
    for i in range(3):
        client.send(
            {"args": {"action": "listvms"}, "id": str(i), "name": "iohyve", "namespace": "sysadm"}
        )
        await settle(0.02)
    replies = {r["id"]: r for r in [await client.next() for _ in range(4)]}
    assert sorted(replies) == ["0", "1", "2", "sysadm-client-event-auto"]
    assert all(replies[str(i)]["name"] == "response" for i in range(3))
    await settle(0.2)
    assert not client.closed.called
    await client.close()


@async_test
async def test_auth_and_request_pipelined(daemon: Daemon) -> None:
    """sysadm's test script sends the login and the request at once; the request sees it."""
    client = await connect("localhost", daemon.ports[0], tls=daemon.tls())  # type: ignore[arg-type]
    client.send(
        {
            "namespace": "rpc",
            "name": "auth",
            "id": "a",
            "args": {"username": "admin", "password": daemon.password},
        }
    )
    client.send({"namespace": "sysadm", "name": "iohyve", "id": "b", "args": {"action": "listvms"}})
    first, second = await client.next(), await client.next()
    assert (first["id"], first["name"]) == ("a", "response")
    assert (second["id"], second["name"]) == ("b", "response")
    await client.close()


@pytest.mark.parametrize(
    ("file_text", "flags", "line"),
    [
        (
            "[fetch]\nconcurrency = 99\n",
            [],
            "sysadmd: fetch.concurrency: must be a whole number from 1 to 16",
        ),
        (
            "",
            ["--listen=nonsense:1"],
            "sysadmd: daemon.listen: 'nonsense:1' is not a usable endpoint: "
            "Unknown endpoint type: 'nonsense'",
        ),
        (
            "[daemon]\nlisten = 'tcp:1'\n",
            [],
            "sysadmd: daemon.listen: must be a non-empty list of non-empty strings",
        ),
        (
            "",
            ["--listen=ssl:0:privateKey=/nonexistent/key.pem"],
            "sysadmd: daemon.listen: 'ssl:0:privateKey=/nonexistent/key.pem': "
            "/nonexistent/key.pem: cannot read private key: no such file",
        ),
    ],
)
def test_bad_configuration_exits_with_one_line(
    tmp_path: Path, file_text: str, flags: list[str], line: str
) -> None:
    """A bad setting stops the start with one line naming the key."""
    config = tmp_path / "bad.toml"
    config.write_text(file_text)
    result = _twistd(tmp_path, f"--config={config}", *flags)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [line]


def test_port_in_use_stops_the_start(tmp_path: Path) -> None:
    """A listener that cannot bind stops the daemon with a clear log line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _twistd(tmp_path, f"--listen=tcp:{port}:interface=127.0.0.1")
    assert result.returncode == 1
    assert f"Cannot listen on tcp:{port}:interface=127.0.0.1: " in result.stdout


def _twistd(state: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sysadmd", "--simulate", f"--state-dir={state}", *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_twistd_lists_the_plugin() -> None:
    """``twistd --help`` names sysadmd in the development install."""
    result = subprocess.run(
        [TWISTD, "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert re.search(r"^\s+sysadmd\s+Serve the sysadm iohyve API", result.stdout, re.M)


def test_plain_install_lists_the_plugin(tmp_path: Path) -> None:
    """After a plain (non-editable) ``pip install .`` twistd finds the plugin too."""
    project = Path(__file__).parent.parent
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert (target / "twisted" / "plugins" / "sysadmd_plugin.py").is_file()
    assert not (target / "twisted" / "plugins" / "__init__.py").exists()
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert re.search(r"^\s+sysadmd\s+Serve the sysadm iohyve API", result.stdout, re.M), (
        result.stderr
    )


def test_stop_right_after_the_listening_line_is_clean(tmp_path: Path) -> None:
    """A service manager may stop the daemon the moment it says where it listens: the
    SIGTERM handler that makes that a clean stop (exit 0) is in place by then."""
    argv = [TWISTD, "-n", "--pidfile=", "--logfile=-", "sysadmd", "--simulate"]
    argv += [f"--state-dir={tmp_path}", "--listen=tcp:0:interface=127.0.0.1"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if "Listening on" in line:
                process.send_signal(signal.SIGTERM)
                break
        output = process.stdout.read()
        assert process.wait(timeout=30) == 0, output


@async_test
async def test_the_backend_is_named_at_start_in_rpc_query_and_in_version(daemon: Daemon) -> None:
    """The start-up line names the simulated backend and its version; rpc/query and the
    version reply carry the extra field 'backend' (iohyve when nothing else is chosen)."""
    code, query = await rest(daemon, {}, path="rpc/query")
    classes = query["args"]
    assert code == 200 and classes["backend"] == "iohyve"
    assert classes["sysadm/iohyve"] == "read/write"
    code, version = await rest(daemon, {"action": "version"})
    assert code == 200 and version["args"]["version"]["backend"] == "iohyve"
    log = daemon.log_text()
    assert "sysadmd starting with simulated iohyve 0.7.9" in log
    assert re.search(r"Backend iohyve iohyve v0\.7\.9", log), log[-2000:]


def seed_vm_bhyve(state: Path, base: Path) -> None:
    """The API page's guest and ISOs on a simulated vm-bhyve host, as ./dev/serve
    --backend vm-bhyve seeds it."""
    root = state / "simulator"
    (root / "etc").mkdir(parents=True)
    (root / "vm").mkdir()
    (root / "etc" / "rc.conf").write_text('vm_enable="YES"\nvm_dir="/vm"\n')
    run_simulator(root, "vm", "init")
    run_simulator(root, "vm", "create", "-s", "8G", "testguest")
    conf = "/vm/testguest/testguest.conf"
    run_simulator(root, "sysrc", "-f", conf, f"description={DESCRIPTION}")
    for name in ("test.iso", BOOTONLY):
        (root / "vm" / ".iso" / name).write_bytes(f"bytes of {name}".encode())


@async_test
async def test_the_api_on_a_simulated_vm_bhyve_host(tmp_path: Path) -> None:
    """--backend vm-bhyve --simulate: the page's guest and ISOs answer as on iohyve, the
    backend is named, and a guest starts and stops through the simulated vm."""
    state = tmp_path / "state"
    seed_vm_bhyve(state, tmp_path)
    daemon = Daemon(state, "--backend", "vm-bhyve")
    try:
        code, listed = await rest(daemon, {"action": "listvms"})
        assert code == 200
        assert listed["args"]["listvms"] == {
            "testguest": {"description": DESCRIPTION, "rcboot": "NO", "running": "NO", "vmm": "NO"}
        }
        code, isos = await rest(daemon, {"action": "listisos"})
        assert sorted(isos["args"]["listisos"]) == sorted(["test.iso", BOOTONLY])
        code, version = await rest(daemon, {"action": "version"})
        assert version["args"]["version"] == {"version": "1.7.5", "backend": "vm-bhyve"}
        code, query = await rest(daemon, {}, path="rpc/query")
        assert query["args"]["backend"] == "vm-bhyve"
        assert (await rest(daemon, {"action": "start", "name": "testguest"}))[0] == 200
        code, listed = await rest(daemon, {"action": "listvms"})
        assert listed["args"]["listvms"]["testguest"]["running"] == "YES"
        code, stopped = await rest(daemon, {"action": "stop", "name": "testguest", "force": "true"})
        assert code == 200, stopped
        log = daemon.log_text()
        assert "sysadmd starting with simulated vm-bhyve 1.7" in log
        assert "Backend vm-bhyve 1.7.5" in log
    finally:
        assert daemon.stop()
