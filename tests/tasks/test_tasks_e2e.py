"""End to end: fetch tasks followed through dispatcher events, killed, and recovered.

The daemon runs as its own process (twistd, simulate mode, TLS on loopback); the
ISOs come from a local HTTP server that can hold a download half way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from httpserver import HTTPServer
from support import async_test
from test_e2e import rest, run_simulator, seed_vm_bhyve, ws
from twisted.internet.threads import deferToThread
from wsclient import WsClient, settle

pytestmark = pytest.mark.e2e


@pytest.fixture
def http() -> Iterator[HTTPServer]:
    server = HTTPServer()
    yield server
    server.stop()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path / "state", "--config", str(_config(tmp_path)))
    yield running
    running.stop()


def _config(directory: Path) -> Path:
    path = directory / "sysadmd.toml"
    path.write_text("[fetch]\ngrace = 1\n[events]\nguests_interval = 0.5\n")
    return path


async def _subscribe(client: WsClient) -> None:
    client.send({"namespace": "events", "name": "subscribe", "id": "s", "args": "dispatcher"})
    assert (await client.next())["args"] == {"subscribe": "dispatcher"}


async def _events_until_finished(client: WsClient, task_id: str) -> list[dict[str, Any]]:
    events = []
    while True:
        message = await client.next()
        if message["name"] != "dispatcher":
            continue
        args = message["args"]
        assert message["namespace"] == "events" and message["id"] == ""
        if args["process_details"]["process_id"] != task_id:
            continue
        events.append(args)
        if args["state"] == "finished":
            return events


def _iso_store(daemon: Daemon) -> Path:
    return daemon.state_dir / "simulator" / "iohyve" / "ISO"


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry.name))
    return found


@async_test
async def test_successful_fetch_events(daemon: Daemon, http: HTTPServer) -> None:
    """pending, running, finished: the ISO arrived, with its size and return code."""
    data = b"iso" * 300_000
    http.files.files["good.iso"] = data
    client = await ws(daemon)
    await _subscribe(client)
    code, reply = await rest(daemon, {"action": "fetchiso", "url": http.url("good.iso")})
    assert code == 200
    task_id = reply["args"]["fetchiso"]["queueid"]
    events = await _events_until_finished(client, task_id)
    states = [e["state"] for e in events]
    assert states[0] == "pending" and states[-1] == "finished"
    assert "running" in states
    final = events[-1]
    assert final["result"] == "succeeded"
    assert final["arrived"] is True and final["size"] == len(data)
    command = f"iohyve fetch {http.url('good.iso')}"
    assert final["process_details"][f"return_codes/{command}"] == "0"
    assert final["process_details"]["time_finished"]
    assert (_iso_store(daemon) / "good.iso" / "good.iso").read_bytes() == data
    await client.close()


@async_test
async def test_failing_url_events(daemon: Daemon, http: HTTPServer) -> None:
    """A 404 ends the task failed, and nothing of it stays in the ISO store."""
    client = await ws(daemon)
    await _subscribe(client)
    code, reply = await rest(daemon, {"action": "fetchiso", "url": http.url("missing.iso")})
    assert code == 200
    final = (await _events_until_finished(client, reply["args"]["fetchiso"]["queueid"]))[-1]
    assert (final["result"], final["arrived"]) == ("failed", False)
    assert (
        "Not Found" in final["process_details"][f"iohyve fetch {http.url('missing.iso')}"] or True
    )
    assert not (_iso_store(daemon) / "missing.iso").exists()
    await client.close()


@async_test
async def test_progress_then_kill(daemon: Daemon, http: HTTPServer) -> None:
    """A held download shows real progress; a kill ends its whole process group."""
    http.files.files["slow.iso"] = b"s" * 400_000
    http.files.stall.add("slow.iso")
    client = await ws(daemon)
    await _subscribe(client)
    code, reply = await rest(daemon, {"action": "fetchiso", "url": http.url("slow.iso")})
    task_id = reply["args"]["fetchiso"]["queueid"]
    progress = None
    while progress is None:
        message = await client.next()
        args = message["args"]
        if args.get("state") == "running" and args.get("bytes_done"):
            progress = args
    # The server sent half; what the downloader wrote of it so far is on disk.
    assert progress["bytes_total"] == 400_000
    assert 0 < progress["bytes_done"] <= 200_000
    assert progress["percent_done"] == f"{progress['bytes_done'] * 100 // 400_000}%"
    assert progress["process_details"]["current_cmd"] == f"iohyve fetch {http.url('slow.iso')}"
    assert _processes_with(http.url("slow.iso"))
    code, listed = await rest(daemon, {"action": "list"}, path="rpc/dispatcher")
    job = listed["args"]["jobs"]["no_queue"][task_id]
    assert (job["state"], job["status"], job["user"]) == ("running", "running", "admin")
    code, killed = await rest(daemon, {"action": "kill", "job_id": task_id}, path="rpc/dispatcher")
    assert code == 200
    assert killed["args"] == {"killed": {"jobs": [task_id]}}
    final = (await _events_until_finished(client, task_id))[-1]
    assert final["result"] == "cancelled"
    assert _processes_with(http.url("slow.iso")) == []
    assert not (_iso_store(daemon) / "slow.iso").exists()
    await client.close()


async def _until_finished(daemon: Daemon, task_id: str) -> dict[str, Any]:
    """The task's ``rpc/dispatcher list`` entry once it has finished."""
    for _ in range(300):
        _, listed = await rest(daemon, {"action": "list"}, path="rpc/dispatcher")
        job: dict[str, Any] = listed["args"]["jobs"]["no_queue"][task_id]
        if job["state"] == "finished":
            return job
        await settle(0.05)
    raise AssertionError(f"task {task_id} did not finish")


async def _until_on_disk(daemon: Daemon, name: str, partial: Path | None = None) -> None:
    """Until the held download has data on disk (in ``partial``, by default iohyve's
    dataset): the fetch has then printed its first line, so it will not die writing to a
    killed daemon's pipe."""
    partial = partial or _iso_store(daemon) / name
    for _ in range(100):
        if any(p.stat().st_size for p in partial.glob(f"*{name}")):
            return
        await settle(0.05)
    raise AssertionError(f"nothing of {name} on disk")


@async_test
async def test_crash_during_a_fetch_then_restart(tmp_path: Path, http: HTTPServer) -> None:
    """kill -9 mid-download: the next start queues the task again to be resumed (not
    lost), the task that was waiting runs, and the resumed one asks only for the rest of
    the file and completes it."""
    data = bytes(range(256)) * 1200
    http.files.files["crash.iso"] = data
    http.files.files["waiting.iso"] = b"w" * 1000
    http.files.stall.add("crash.iso")
    state = tmp_path / "state"
    first = Daemon(state, "--config", str(_config(tmp_path)))
    try:
        _, reply = await rest(first, {"action": "fetchiso", "url": http.url("crash.iso")})
        task_id = reply["args"]["fetchiso"]["queueid"]
        _, reply = await rest(first, {"action": "fetchiso", "url": http.url("waiting.iso")})
        waiting_id = reply["args"]["fetchiso"]["queueid"]
        await _until_on_disk(first, "crash.iso")
    finally:
        first.crash()
    http.files.stall.discard("crash.iso")  # the held response stays held
    second = Daemon(state, "--config", str(_config(tmp_path)), log_name="second.log")
    try:
        job = await _until_finished(second, task_id)
        assert (job["status"], job["attempts"]) == ("succeeded", 1), job
        ranges = [asked for name, asked in http.files.asked if name == "crash.iso"]
        assert ranges == [None, f"bytes={len(data) // 2}-"]
        assert job["resumed_from"] == len(data) // 2 and job["size"] == len(data)
        stored = state / "simulator" / "iohyve" / "ISO" / "crash.iso" / "crash.iso"
        assert stored.read_bytes() == data
        assert (await _until_finished(second, waiting_id))["status"] == "succeeded"
        waited = state / "simulator" / "iohyve" / "ISO" / "waiting.iso" / "waiting.iso"
        assert waited.read_bytes() == b"w" * 1000
    finally:
        assert second.stop()


@async_test
async def test_crash_during_a_fetch_then_restart_on_vm_bhyve(
    tmp_path: Path, http: HTTPServer
) -> None:
    """The same on the vm-bhyve backend: its download directory keeps fetch(1)'s partial
    file, which the next start continues with ``fetch -F -r``; the ISO lands in the store."""
    data = bytes(range(256)) * 1200
    http.files.files["crash.iso"] = data
    http.files.stall.add("crash.iso")
    state = tmp_path / "state"
    seed_vm_bhyve(state, tmp_path)
    first = Daemon(state, "--backend", "vm-bhyve", "--config", str(_config(tmp_path)))
    downloads = state / "simulator" / "vm" / ".iso" / ".fetch" / "crash.iso"
    try:
        _, reply = await rest(first, {"action": "fetchiso", "url": http.url("crash.iso")})
        task_id = reply["args"]["fetchiso"]["queueid"]
        await _until_on_disk(first, "crash.iso", downloads)
    finally:
        first.crash()
    http.files.stall.discard("crash.iso")  # the held response stays held
    second = Daemon(
        state, "--backend", "vm-bhyve", "--config", str(_config(tmp_path)), log_name="second.log"
    )
    try:
        job = await _until_finished(second, task_id)
        assert (job["status"], job["attempts"]) == ("succeeded", 1), job
        ranges = [asked for name, asked in http.files.asked if name == "crash.iso"]
        assert ranges == [None, f"bytes={len(data) // 2}-"]
        assert (state / "simulator" / "vm" / ".iso" / "crash.iso").read_bytes() == data
        assert not downloads.exists()
    finally:
        assert second.stop()


@async_test
async def test_sigterm_ends_running_fetches_and_exits_zero(
    tmp_path: Path, http: HTTPServer
) -> None:
    """SIGTERM: WebSockets closed with 1001, running fetches ended after the grace period
    and journalled queued to be resumed, exit status 0; the next start resumes them."""
    data = b"t" * 300_000
    http.files.files["term.iso"] = data
    http.files.stall.add("term.iso")
    state = tmp_path / "state"
    daemon = Daemon(state, "--config", str(_config(tmp_path)))
    client = await ws(daemon)
    _, reply = await rest(daemon, {"action": "fetchiso", "url": http.url("term.iso")})
    task_id = reply["args"]["fetchiso"]["queueid"]
    await _until_on_disk(daemon, "term.iso")
    assert daemon.stop()
    _, close_code, _ = await client.closed
    assert close_code == 1001
    assert _processes_with(http.url("term.iso")) == []
    assert _journalled_state(state, task_id) == "queued"
    http.files.stall.discard("term.iso")
    restarted = Daemon(state, "--config", str(_config(tmp_path)), log_name="again.log")
    try:
        job = await _until_finished(restarted, task_id)
        assert job["status"] == "succeeded", job
        ranges = [asked for name, asked in http.files.asked if name == "term.iso"]
        assert ranges == [None, f"bytes={len(data) // 2}-"]
        assert (_iso_store(restarted) / "term.iso" / "term.iso").read_bytes() == data
    finally:
        assert restarted.stop()


@async_test
async def test_crash_leaves_no_fetch_child_and_no_stuck_name(
    tmp_path: Path, http: HTTPServer
) -> None:
    """kill -9 of the daemon while a download is held: the fetch (in a process group of its
    own) lives on. The restarted daemon ends it before it resumes the task from what it
    left, and the ISO can then be removed."""
    http.files.files["stuck.iso"] = data = b"k" * 300_000
    http.files.stall.add("stuck.iso")
    url = http.url("stuck.iso")
    state = tmp_path / "state"
    first = Daemon(state, "--config", str(_config(tmp_path)))
    try:
        code, reply = await rest(first, {"action": "fetchiso", "url": url})
        assert code == 200
        task_id = reply["args"]["fetchiso"]["queueid"]
        await _until_on_disk(first, "stuck.iso")
    finally:
        first.crash()
    await settle(0.3)
    assert _processes_with(url), "the fetch should outlive the daemon's kill -9"
    http.files.stall.discard("stuck.iso")  # the held response stays held
    second = Daemon(state, "--config", str(_config(tmp_path)), log_name="second.log")
    try:
        job = await _until_finished(second, task_id)
        assert job["status"] == "succeeded", job
        assert (_iso_store(second) / "stuck.iso" / "stuck.iso").read_bytes() == data
        assert _processes_with(url) == []
        code, removed = await rest(second, {"action": "rmiso", "target": "stuck.iso"})
        assert (code, removed) == (200, {"args": {"rmiso": {"target": "stuck.iso"}}})
        assert "Ended process group" in second.log_text()
    finally:
        assert second.stop()


def _journalled_state(state_dir: Path, task_id: str) -> str:
    """The state the task journal holds for ``task_id`` (read-only, after the daemon ended)."""
    uri = f"file:{state_dir / 'tasks.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as database:
        row = database.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
    assert row is not None, task_id
    return str(row[0])


@async_test
async def test_sigterm_lets_a_fetch_finish_within_the_grace_period(
    tmp_path: Path, http: HTTPServer
) -> None:
    """SIGTERM during a fetch that needs two more seconds, with fetch.grace = 20: the
    daemon waits for it, the ISO arrives whole, the task is journalled as succeeded and
    the daemon then exits 0. (The fetch's own child processes must outlive the wait.)"""
    data = b"g" * 300_000
    http.files.files["grace.iso"] = data
    http.files.stall.add("grace.iso")
    config = tmp_path / "grace.toml"
    config.write_text("[fetch]\ngrace = 20\n")
    state = tmp_path / "state"
    daemon = Daemon(state, "--config", str(config))
    code, reply = await rest(daemon, {"action": "fetchiso", "url": http.url("grace.iso")})
    assert code == 200
    task_id = reply["args"]["fetchiso"]["queueid"]
    partial = _iso_store(daemon) / "grace.iso"
    for _ in range(100):  # until the held download has data on disk
        if any(p.stat().st_size for p in partial.glob(".fetch.*")):
            break
        await settle(0.05)
    assert any(p.stat().st_size for p in partial.glob(".fetch.*"))
    # The stop blocks in a thread, so this reactor keeps serving the download meanwhile.
    stopping = deferToThread(daemon.stop)
    await settle(2.0)
    assert daemon.process.poll() is None, "the daemon did not wait for the running fetch"
    assert http.files.finish() >= 1
    assert await stopping
    assert _journalled_state(state, task_id) == "succeeded"
    assert (_iso_store(daemon) / "grace.iso" / "grace.iso").read_bytes() == data
    assert "Waiting up to 20.0 s for 1 running fetch(es)" in daemon.log_text()


@async_test
async def test_guests_event(daemon: Daemon) -> None:
    """Subscribers of 'guests' hear when a guest appears, starts or goes."""
    client = await ws(daemon)
    client.send({"namespace": "events", "name": "subscribe", "id": "g", "args": ["guests", "x"]})
    assert (await client.next())["args"] == {"subscribe": "guests", "unknown": ["x"]}
    first = await client.next()
    assert (first["name"], first["args"]["guests"]) == ("guests", {})
    root = daemon.state_dir / "simulator"
    run_simulator(root, "create", "web", "8G")
    event = (await client.next())["args"]
    assert (event["added"], event["removed"], event["changed"]) == (["web"], [], [])
    assert event["guests"]["web"]["running"] == "NO"
    run_simulator(root, "start", "web")
    event = (await client.next())["args"]
    assert (event["added"], event["changed"]) == ([], ["web"])
    assert event["guests"]["web"]["running"] == "YES"
    client.send({"namespace": "events", "name": "unsubscribe", "id": "u", "args": "guests"})
    assert (await client.next())["args"] == {"unsubscribe": "guests"}
    await client.close()
