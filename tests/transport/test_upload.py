"""End to end: ``PUT /iso/<name>`` stores an ISO from the client, through the real daemon."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from httpserver import HTTPServer
from support import async_fixture, async_test
from test_disk_space import Space
from test_e2e import rest, seed_vm_bhyve, ws
from test_verified_fetch import BACKENDS, DATA, Host, start_host, until_final
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.web.http_headers import Headers
from wsclient import WsClient

from sysadmd.api import ApiError
from sysadmd.backends import UPLOAD_TEMPORARY_PREFIX, Iohyve, ProcessRunner
from sysadmd.tasks import FetchQueue, Journal
from sysadmd.tasks._queue import STORED_BEFORE_THE_STOP, TaskState
from sysadmd.tasks._upload import INTERRUPTED_UPLOAD

pytestmark = pytest.mark.e2e

#: The upload cap of the test daemon.
CAP = 4 * 1024 * 1024
OPERATOR_PASSWORD = "operator password 1"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("upload")
    config = base / "sysadmd.toml"
    config.write_text(f"[fetch]\ngrace = 1\nupload_max = {CAP}\n")
    running = Daemon(base / "state", "--config", str(config))
    admin = [sys.executable, "-m", "sysadmd.auth.admin", "--state-dir", str(running.state_dir)]
    added = subprocess.run(
        [*admin, "user", "add", "oscar", "--role", "operator"],
        input=f"{OPERATOR_PASSWORD}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    yield running
    assert running.stop()


def _store(daemon: Daemon) -> Path:
    return daemon.state_dir / "simulator" / "iohyve" / "ISO"


def _temporaries(store: Path) -> list[Path]:
    """The upload temporaries anywhere below ``store``."""
    return list(store.rglob(f"{UPLOAD_TEMPORARY_PREFIX}*"))


async def _put(
    daemon: Daemon,
    name: str,
    data: bytes,
    *,
    query: str = "",
    auth: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    response = await daemon.http().put(
        f"https://localhost:{daemon.ports[1]}/iso/{name}{query}",
        data=io.BytesIO(data),
        headers=Headers({"Content-Type": ["application/octet-stream"]}),
        auth=auth or ("admin", daemon.password),
    )
    return response.code, await response.json()


def _raw(daemon: Daemon, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` and ``body`` on a TLS socket; return the daemon's first reply."""
    context = ssl.create_default_context(cadata=(daemon.state_dir / "tls" / "cert.pem").read_text())
    with (
        socket.create_connection(("127.0.0.1", daemon.ports[1]), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname="localhost") as tls,
    ):
        tls.sendall(head)
        if body:
            tls.sendall(body)
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < int(
            received.lower().partition(b"content-length: ")[2].split(b"\r\n")[0] or 0
        ):
            chunk = tls.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _basic(daemon: Daemon) -> bytes:
    return base64.b64encode(f"admin:{daemon.password}".encode())


async def _events(client: WsClient, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["state"] != "finished":
        message = await client.next()
        if message["name"] != "dispatcher":
            continue
        args: dict[str, Any] = message["args"]
        if args.get("filename") == name:
            events.append(args)
    return events


@async_test
async def test_an_upload_lands_byte_for_byte_and_shows_as_a_task(daemon: Daemon) -> None:
    data = bytes(range(256)) * 12_000  # 3 MB: several reads, one temporary file
    client = await ws(daemon)
    client.send({"namespace": "events", "name": "subscribe", "id": "s", "args": "dispatcher"})
    assert (await client.next())["args"] == {"subscribe": "dispatcher"}
    code, reply = await _put(daemon, "uploaded.iso", data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert (code, reply) == (
        201,
        {"args": {"name": "uploaded.iso", "size": len(data), "digest": digest}},
    )
    assert (_store(daemon) / "uploaded.iso" / "uploaded.iso").read_bytes() == data
    assert _temporaries(_store(daemon)) == []
    assert not (_store(daemon) / ".sysadmd-uploads").exists()
    events = await _events(client, "uploaded.iso")
    assert events[0]["stage"] == "uploading"
    assert events[-1]["result"] == "succeeded" and events[-1]["size"] == len(data)
    assert "storing" in [e.get("stage") for e in events]
    await client.close()
    code, listed = await rest(daemon, {"action": "listisos"})
    assert "uploaded.iso" in listed["args"]["listisos"]
    code, tasks = await rest(daemon, {"action": "list"}, path="rpc/dispatcher")
    assert code == 200, tasks
    jobs = tasks["args"]["jobs"]["no_queue"].values()
    assert "upload uploaded.iso" in [" ".join(job["commands"]) for job in jobs], tasks


@async_test
async def test_an_existing_iso_is_refused_with_409(daemon: Daemon) -> None:
    assert (await _put(daemon, "twice.iso", b"first"))[0] == 201
    code, reply = await _put(daemon, "twice.iso", b"second")
    assert code == 409, reply
    assert (_store(daemon) / "twice.iso" / "twice.iso").read_bytes() == b"first"


@async_test
async def test_an_operator_is_refused_with_403(daemon: Daemon) -> None:
    code, reply = await _put(daemon, "op.iso", b"x" * 100, auth=("oscar", OPERATOR_PASSWORD))
    assert code == 403, reply
    assert not (_store(daemon) / "op.iso").exists()


@async_test
async def test_a_bad_name_is_refused_with_400(daemon: Daemon) -> None:
    for name in ("..hidden.iso", "a%20b.iso", "-x.iso"):
        code, reply = await _put(daemon, name, b"x")
        assert code == 400, (name, reply)
        assert "name" in reply["args"]["message"]


@async_test
async def test_a_checksum_mismatch_names_both_digests_and_leaves_nothing(daemon: Daemon) -> None:
    wrong = "sha256:" + "0" * 64
    data = b"not what was promised" * 1000
    code, reply = await _put(daemon, "wrong.iso", data, query=f"?checksum={wrong}")
    assert code == 400, reply
    message = reply["args"]["message"]
    assert wrong in message and hashlib.sha256(data).hexdigest() in message
    assert not (_store(daemon) / "wrong.iso").exists()
    assert _temporaries(_store(daemon)) == []
    right = f"sha512:{hashlib.sha512(data).hexdigest()}"
    code, reply = await _put(daemon, "right.iso", data, query=f"?checksum={right}")
    assert (code, reply["args"]["digest"]) == (201, right)


@async_test
async def test_too_large_is_refused_before_any_byte_is_written(daemon: Daemon) -> None:
    """The 507 comes from the headers alone: the client waits for 100 Continue and never
    sends the body, and no file (not even the ISO's dataset) is created."""
    head = (
        b"PUT /iso/big.iso HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
        b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (_basic(daemon), CAP + 1)
    )
    answer = await deferToThread(_raw, daemon, head)
    assert answer.startswith(b"HTTP/1.1 507 "), answer
    assert b"100 Continue" not in answer
    assert b"at most %d bytes" % CAP in answer
    assert not (_store(daemon) / "big.iso").exists()
    assert _temporaries(_store(daemon)) == []


@async_test
async def test_without_content_length_the_answer_is_411(daemon: Daemon) -> None:
    head = (
        b"PUT /iso/chunked.iso HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % _basic(daemon)
    )
    answer = await deferToThread(_raw, daemon, head, b"5\r\nhello\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 "), answer
    assert not (_store(daemon) / "chunked.iso").exists()


@async_fixture(params=BACKENDS)
async def space_host(
    request: pytest.FixtureRequest, tmp_path: Path, http: HTTPServer
) -> AsyncIterator[tuple[Host, Space]]:
    """Each simulated backend, with the free space the test sets."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    space = Space(10 * len(DATA))
    host = start_host(tmp_path, http, runner, request.param, free_space=space)
    yield host, space
    await host.fetches.stopService()
    await runner.stop_all()


def _iso_path(host: Host, name: str) -> Path:
    """Where ISO ``name`` is stored: iohyve's ``ISO/<name>/<name>``, vm-bhyve's ``.iso/<name>``."""
    if isinstance(host.iohyve, Iohyve):
        return host.iohyve.iso_root / name / name
    return host.root / "vm" / ".iso" / name


def _store_root(host: Host) -> Path:
    return host.iohyve.iso_root if isinstance(host.iohyve, Iohyve) else host.root / "vm" / ".iso"


async def _listed(host: Host) -> list[str]:
    names: list[str] = await host.call("listisos")
    return names


@async_test
async def test_an_upload_larger_than_the_free_space_is_refused_before_any_file(
    space_host: tuple[Host, Space],
) -> None:
    """The ISO must fit in the free space once: no byte, no dataset, no task otherwise."""
    host, space = space_host
    space.free = len(DATA) - 1
    with pytest.raises(ApiError) as refused:
        await host.fetches.begin_upload("roomy.iso", len(DATA), "admin", None, 10 * len(DATA))
    assert refused.value.code == 507
    assert f"is {len(DATA)} bytes" in refused.value.message
    assert host.fetches.tasks == {}
    assert not _iso_path(host, "roomy.iso").exists()
    assert not _iso_path(host, "roomy.iso").parent.joinpath(".sysadmd-uploads").exists()
    assert _temporaries(_store_root(host)) == []
    if isinstance(host.iohyve, Iohyve):
        assert not (host.iohyve.iso_root / "roomy.iso").exists()  # no dataset either
    assert "roomy.iso" not in await _listed(host)


@async_test
async def test_an_upload_is_stored_in_place_without_a_second_copy(
    space_host: tuple[Host, Space],
) -> None:
    """Free space between 1x and 2x the size is enough; the body is written into the
    ISO's own place and renamed there: the stored ISO is the very file that was written
    (same inode, no copy), listed, readable as a fetched ISO is, with no temporary left."""
    host, space = space_host
    space.free = len(DATA) * 3 // 2
    upload = await host.fetches.begin_upload("roomy.iso", len(DATA), "admin", None, len(DATA))
    assert upload.temporary.parent == _iso_path(host, "roomy.iso").parent
    written = upload.temporary.stat().st_ino
    upload.write(DATA)
    stored = await upload.finish()
    assert stored["size"] == len(DATA)
    assert upload.task.state.value == "succeeded"
    iso = _iso_path(host, "roomy.iso")
    assert iso.read_bytes() == DATA
    assert iso.stat().st_ino == written
    assert iso.stat().st_mode & 0o777 == 0o644
    assert _temporaries(_store_root(host)) == []
    assert "roomy.iso" in await _listed(host)


@async_test
async def test_list_isos_never_shows_an_upload_or_its_temporary(
    space_host: tuple[Host, Space],
) -> None:
    """While the body arrives, neither the temporary file nor the ISO-to-be is listed."""
    host, _ = space_host
    before = await _listed(host)
    upload = await host.fetches.begin_upload("arriving.iso", len(DATA), "admin", None, len(DATA))
    upload.write(DATA[: len(DATA) // 2])
    assert upload.temporary.exists()
    assert await _listed(host) == before
    assert [iso.name for iso in await host.iohyve.list_isos()] == before
    upload.write(DATA[len(DATA) // 2 :])
    await upload.finish()
    assert set(await _listed(host)) == {*before, "arriving.iso"}


@async_test
async def test_a_killed_upload_ends_cancelled_and_leaves_nothing(
    space_host: tuple[Host, Space],
) -> None:
    """The temporary file goes, and so does iohyve's dataset for the ISO."""
    host, _ = space_host
    upload = await host.fetches.begin_upload("killed.iso", len(DATA), "admin", None, len(DATA))
    upload.write(DATA[:1000])
    assert upload.temporary.exists()
    assert host.fetches.kill([upload.task.id]) == [upload.task.id]
    await until_final(upload.task)
    assert upload.task.state.value == "cancelled"
    assert not upload.temporary.exists()
    if isinstance(host.iohyve, Iohyve):
        assert not (host.iohyve.iso_root / "killed.iso").exists()
    assert not host.fetches.busy("killed.iso")
    upload.write(DATA[1000:])
    with pytest.raises(ApiError) as ended:
        await upload.finish()
    assert ended.value.code == 409 and "killed" in ended.value.message
    assert "killed.iso" not in await _listed(host)
    assert _temporaries(_store_root(host)) == []


@async_test
async def test_left_over_temporaries_are_removed_at_start_and_nothing_else(
    space_host: tuple[Host, Space],
) -> None:
    """Temporaries no task owns (and the old staging directory) go when the queue starts;
    ISOs, other hidden files and datasets without a temporary stay."""
    host, _ = space_host
    await host.fetches.stopService()
    store = _store_root(host)
    kept = [_iso_path(host, "kept.iso"), store / ".not-an-upload"]
    orphan = f"{UPLOAD_TEMPORARY_PREFIX}0123-4567"
    if isinstance(host.iohyve, Iohyve):
        # A dataset holding only an upload's temporary, one with an ISO and a temporary.
        (store / "orphan.iso").mkdir()
        temporaries = [store / "orphan.iso" / orphan, store / "kept.iso" / orphan]
        staging = store / ".sysadmd-uploads"
        (store / "empty.iso").mkdir()  # an empty dataset, as a failed fetch leaves: kept
        kept.append(store / "empty.iso")
    else:
        temporaries = [store / orphan]
        staging = store / ".fetch" / ".sysadmd-uploads"
    kept[0].parent.mkdir(parents=True, exist_ok=True)
    for path in (*kept[:2], *temporaries):
        path.write_bytes(b"bytes")
    (staging / "{an-old-task}").mkdir(parents=True)
    (staging / "{an-old-task}" / "old.iso").write_bytes(b"old")
    queue = FetchQueue(host.iohyve, reactor, journal=Journal(host.journal_path, reactor))
    queue.startService()
    try:
        await queue._started
        for path in temporaries:
            assert not path.exists(), path
        assert not staging.exists()
        for path in kept:
            assert path.exists(), path
        assert kept[0].read_bytes() == b"bytes"
        if isinstance(host.iohyve, Iohyve):
            assert not (store / "orphan.iso").exists()
            listed = [iso.name for iso in await host.iohyve.list_isos()]
            assert "orphan.iso" not in listed and "kept.iso" in listed
    finally:
        await queue.stopService()


@async_test
async def test_an_upload_stored_just_before_a_crash_is_kept(
    space_host: tuple[Host, Space],
) -> None:
    """The daemon died once the upload had taken its ISO's name (here between the link and
    the unlink of the temporary) but before its end was journalled: the next start ends the
    task succeeded, records its digest and keeps the whole, verified ISO."""
    host, _ = space_host
    upload = await host.fetches.begin_upload("late.iso", len(DATA), "admin", None, 10**12)
    upload.write(DATA)
    task = upload.task
    # What finish() does up to the rename, then half of the rename.
    upload._close()
    task.digest = f"sha256:{hashlib.sha256(DATA).hexdigest()}"
    host.fetches.upload_storing(task)
    os.link(upload.temporary, _iso_path(host, "late.iso"))
    await host.fetches.written()
    await host.fetches.stopService()
    queue = FetchQueue(host.iohyve, reactor, journal=Journal(host.journal_path, reactor))
    queue.startService()
    try:
        await queue._started
        recovered = queue.tasks[task.id]
        assert recovered.state is TaskState.SUCCEEDED, recovered.message
        assert recovered.message == STORED_BEFORE_THE_STOP
        assert _iso_path(host, "late.iso").read_bytes() == DATA
        assert _temporaries(_store_root(host)) == []
        assert queue.digests["late.iso"][0] == task.digest
        assert "late.iso" in [iso.name for iso in await host.iohyve.list_isos()]
    finally:
        await queue.stopService()


def _partial_upload(daemon: Daemon, name: str, size: int, sent: bytes) -> socket.socket:
    """Start ``PUT /iso/<name>`` of ``size`` bytes and send only ``sent``; the open socket."""
    context = ssl.create_default_context(cadata=(daemon.state_dir / "tls" / "cert.pem").read_text())
    plain = socket.create_connection(("127.0.0.1", daemon.ports[1]), timeout=10)
    tls = context.wrap_socket(plain, server_hostname="localhost")
    tls.sendall(
        b"PUT /iso/%s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
        b"Content-Length: %d\r\n\r\n" % (name.encode(), _basic(daemon), size)
    )
    tls.sendall(sent)
    return tls


def _left(store: Path, backend: str) -> list[Path]:
    """What an upload of ``cut.iso`` left: temporaries and (iohyve) its dataset."""
    dataset = store / "cut.iso"
    return _temporaries(store) + ([dataset] if backend == "iohyve" and dataset.exists() else [])


async def _upload_arriving(daemon: Daemon, store: Path) -> tuple[socket.socket, str]:
    """An upload of ``cut.iso`` whose body is a third there: its connection and task id."""
    connection = await deferToThread(_partial_upload, daemon, "cut.iso", 1_000_000, b"c" * 300_000)
    for _ in range(200):
        arriving = [p for p in store.rglob("*") if "cut.iso" in str(p) and p.is_file()]
        arriving += _temporaries(store)
        if arriving and arriving[0].stat().st_size > 0:
            break
        await deferToThread(time.sleep, 0.05)
    assert arriving and arriving[0].stat().st_size > 0, list(store.rglob("*"))
    code, listed = await rest(daemon, {"action": "list"}, path="rpc/dispatcher")
    assert code == 200, listed
    (task_id,) = [
        job_id
        for job_id, job in listed["args"]["jobs"]["no_queue"].items()
        if job["commands"] == ["upload cut.iso"]
    ]
    return connection, task_id


async def _recovered(daemon: Daemon, task_id: str, store: Path, backend: str) -> Any:
    """The task as the restarted daemon lists it once its start-up recovery has ended."""
    job = None
    for _ in range(200):
        code, listed = await rest(daemon, {"action": "list"}, path="rpc/dispatcher")
        assert code == 200, listed
        job = listed["args"]["jobs"]["no_queue"].get(task_id)
        if job is not None and job["state"] == "finished" and not _left(store, backend):
            break
        await deferToThread(time.sleep, 0.05)
    return job


@pytest.mark.parametrize("end", ["kill -9", "SIGTERM"])
@pytest.mark.parametrize("backend", ["iohyve", "vm-bhyve"])
@async_test
async def test_a_restart_during_an_upload_fails_it_and_leaves_nothing(
    tmp_path: Path, backend: str, end: str
) -> None:
    """The daemon killed (or stopped: then it cleans up itself) while the body arrives:
    after the next start the task shows failed, saying the upload was interrupted and must
    be sent again; no temporary, no dataset, not listed, and the name takes a new upload."""
    state = tmp_path / "state"
    extra: tuple[str, ...] = ()
    store = state / "simulator" / "iohyve" / "ISO"
    if backend == "vm-bhyve":
        seed_vm_bhyve(state, tmp_path)
        extra = ("--backend", "vm-bhyve")
        store = state / "simulator" / "vm" / ".iso"
    first = Daemon(state, *extra)
    connection = None
    try:
        connection, task_id = await _upload_arriving(first, store)
    finally:
        if end == "kill -9":
            first.crash()
        else:
            assert first.stop()
        if connection is not None:
            connection.close()
    if end == "SIGTERM":
        # A clean stop ends the upload itself and removes what it wrote.
        assert _left(store, backend) == []
    second = Daemon(state, *extra, log_name="second.log")
    try:
        job = await _recovered(second, task_id, store, backend)
        assert job is not None
        assert (job["status"], job["state"]) == ("failed", "finished"), job
        assert job["message"] == INTERRUPTED_UPLOAD
        assert "send it again" in job["message"]
        assert _left(store, backend) == []
        code, isos = await rest(second, {"action": "listisos"})
        assert "cut.iso" not in isos["args"]["listisos"]
        code, reply = await _put(second, "cut.iso", b"whole" * 1000)
        assert code == 201, reply
    finally:
        assert second.stop()


@async_test
async def test_on_a_simulated_vm_bhyve_host_an_upload_is_stored(tmp_path: Path) -> None:
    """On a simulated vm-bhyve host the ISO is written into ``$vm_dir/.iso`` itself."""
    seed_vm_bhyve(tmp_path / "state", tmp_path)
    running = Daemon(tmp_path / "state", "--backend", "vm-bhyve")
    data = b"vm-bhyve upload " * 50_000
    try:
        code, reply = await _put(running, "bhyve.iso", data)
        assert code == 201, reply
        code, listed = await rest(running, {"action": "listisos"})
        assert "bhyve.iso" in listed["args"]["listisos"], listed
        stored = tmp_path / "state" / "simulator" / "vm" / ".iso" / "bhyve.iso"
        assert stored.read_bytes() == data
        assert _temporaries(stored.parent) == []
    finally:
        assert running.stop()
