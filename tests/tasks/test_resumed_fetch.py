"""Resumed fetches: a download interrupted by a network failure, a kill of its process or
a stop of the daemon continues from where its partial file ends, with fetch(1)'s ``-r``
(a range request), when the source still announces ranges with the same validator;
otherwise it starts again. A user's kill still cancels.

The daemon below its transports (the API, the fetch queue with its journal, each backend on
the simulator) fetches from a local HTTP server that can cut a download midway, refuse
ranges or change its file between attempts.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpserver import HTTPServer
from support import async_fixture, async_test
from test_verified_fetch import BACKENDS, Host, _sleep, start_host, until_final
from twisted.internet import reactor

import sysadmd
from sysadmd.backends import Iohyve, ProcessRunner
from sysadmd.shared import TaskState
from sysadmd.tasks import FetchQueue, FetchTask, Journal
from sysadmd.tasks._progress import bytes_on_disk

DATA = bytes(range(256)) * 4000  # 1,024,000 bytes
SHA256 = hashlib.sha256(DATA).hexdigest()
NAME = "resume.iso"
CUT = len(DATA) // 3
SOURCE = Path(sysadmd.__file__).resolve().parent.parent


@async_fixture(params=BACKENDS)
async def host(
    request: pytest.FixtureRequest, tmp_path: Path, http: HTTPServer
) -> AsyncIterator[Host]:
    """A fetching daemon on each backend, resuming after a short back-off; its commands
    (the simulator's) run from this source tree, as the daemon's own do."""
    runner = ProcessRunner(reactor, kill_grace=0.5, env={"PYTHONPATH": str(SOURCE)})
    started = start_host(tmp_path, http, runner, request.param, retry_backoff=0.2)
    yield started
    http.files.finish()
    await started.fetches.stopService()
    await runner.stop_all()


def stored(host: Host, name: str) -> bytes:
    """The ISO as the backend stored it."""
    if isinstance(host.iohyve, Iohyve):
        return (host.iohyve.iso_directory(name) / name).read_bytes()
    return (host.iohyve.iso_directory(name).parent.parent / name).read_bytes()


def gets(http: HTTPServer, name: str) -> list[str | None]:
    """The ``Range`` header of each GET of ``name``."""
    return [asked for file, asked in http.files.asked if file == name]


async def until(condition: object, what: str) -> None:
    assert callable(condition)
    for _ in range(400):
        if condition():
            return
        await _sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@async_test
async def test_a_download_cut_midway_resumes_and_matches_the_digest(host: Host) -> None:
    """The server closes the connection after a third: the task is queued again to be
    resumed, the second attempt asks for the rest only (fewer bytes than the file), and
    the whole file verifies against its digest."""
    host.http.files.files[NAME] = DATA
    host.http.files.cuts[NAME] = [CUT]
    task = await until_final(await host.fetch(NAME, checksum=f"sha256:{SHA256}"))
    assert task.state is TaskState.SUCCEEDED, task.message
    assert gets(host.http, NAME) == [None, f"bytes={CUT}-"]
    assert (task.attempts, task.resumed_from) == (1, CUT)
    transferred = len(DATA) - CUT  # what the second attempt asked for and received
    assert 0 < transferred < len(DATA)
    assert task.digest == f"sha256:{SHA256}"
    assert hashlib.sha256(stored(host, NAME)).hexdigest() == SHA256
    assert (await host.call("isodigests"))[NAME]["digest"] == f"sha256:{SHA256}"


#: The keys of sysadm's process log in each state of a dispatcher event (beside the
#: command's own output and return code keys).
SYSADM_DETAILS = {
    "pending": {"cmd_list", "process_id", "state"},
    "running": {"cmd_list", "process_id", "state", "time_started", "current_cmd"},
    "finished": {"cmd_list", "process_id", "state", "time_started", "time_finished"},
}


@async_test
async def test_the_events_of_a_resumed_fetch_keep_sysadms_shape(host: Host) -> None:
    """pending, running, pending again (``resume``, ``attempts`` and the reason), running,
    finished: every event keeps sysadm's keys and process log, and the resumed attempt's
    events say from which byte it continued."""
    events: list[dict[str, Any]] = []
    host.fetches._publish = lambda topic, args: events.append(dict(args))
    host.http.files.files[NAME] = DATA
    host.http.files.cuts[NAME] = [CUT]
    task = await until_final(await host.fetch(NAME))
    assert task.state is TaskState.SUCCEEDED, task.message
    command = task.command
    for event in events:
        details = event["process_details"]
        assert event["event_system"] == "sysadm/iohyve" and event["filename"] == NAME
        assert details["cmd_list"] == [command] and details["process_id"] == task.id
        extra = set(details) - SYSADM_DETAILS[event["state"]]
        if event["state"] == "pending":
            assert extra == set()
        elif event["state"] == "running":
            assert extra == {command}
        else:
            assert extra == {command, f"return_codes/{command}"}
    states = [e["state"] for e in events]
    assert states[0] == "pending" and states[-1] == "finished"
    again = states.index("pending", 1)
    assert "running" in states[:again] and "running" in states[again:]
    waiting = events[again]
    assert (waiting["resume"], waiting["attempts"]) == (True, 1)
    assert "appears to be truncated" in waiting["message"] and "resumed in" in waiting["message"]
    assert all("resume" not in e for e in events[:again])
    final = events[-1]
    assert (final["result"], final["resumed_from"], final["size"]) == ("succeeded", CUT, len(DATA))


@async_test
async def test_a_resumed_download_that_does_not_match_fails_and_leaves_no_file(
    host: Host,
) -> None:
    """The digest of a resumed download covers the whole file: a wrong checksum still
    fails naming both digests, and neither the ISO nor a partial file stays."""
    wrong = "sha256:" + "0" * 64
    host.http.files.files[NAME] = DATA
    host.http.files.cuts[NAME] = [CUT]
    task = await until_final(await host.fetch(NAME, checksum=wrong))
    assert task.state is TaskState.FAILED
    assert (task.attempts, task.resumed_from) == (1, CUT)
    assert task.message is not None
    assert wrong in task.message and f"sha256:{SHA256}" in task.message
    assert host.iso_files(NAME) == []
    assert NAME not in await host.call("listisos")


@async_test
async def test_a_server_without_ranges_starts_again(host: Host) -> None:
    """No ``Accept-Ranges``: the partial file is removed and the whole file fetched again,
    without a range request."""
    host.http.files.files[NAME] = DATA
    host.http.files.no_ranges.add(NAME)
    host.http.files.cuts[NAME] = [CUT]
    task = await until_final(await host.fetch(NAME, checksum=f"sha256:{SHA256}"))
    assert task.state is TaskState.SUCCEEDED, task.message
    assert gets(host.http, NAME) == [None, None]
    assert (task.attempts, task.resumed_from) == (1, 0)
    assert stored(host, NAME) == DATA


@async_test
async def test_a_changed_file_starts_again(host: Host) -> None:
    """The source's ETag changed between the attempts: the partial file (of the old
    version) is dropped and the new version fetched whole."""
    new = DATA[::-1]
    host.fetches._retry_backoff = 1.0
    host.http.files.files[NAME] = DATA
    host.http.files.cuts[NAME] = [CUT]
    task = await host.fetch(NAME)
    await until(lambda: task.resume and task.state is TaskState.QUEUED, "the interruption")
    host.http.files.files[NAME] = new
    host.http.files.etags[NAME] = '"version-2"'
    await until_final(task)
    assert task.state is TaskState.SUCCEEDED, task.message
    assert gets(host.http, NAME) == [None, None]
    assert task.resumed_from == 0
    assert stored(host, NAME) == new


@async_test
async def test_a_kill_9_of_the_download_resumes(host: Host) -> None:
    """SIGKILL of the download process from outside: the attempt ends, its bytes stay
    (under fetch(1)'s temporary name or the ISO's), and the next attempt continues them."""
    host.http.files.files[NAME] = DATA
    host.http.files.stall.add(NAME)
    task = await host.fetch(NAME, checksum=f"sha256:{SHA256}")
    directory = host.iohyve.iso_directory(NAME)
    await until(lambda: bytes_on_disk(directory) >= len(DATA) // 2, "half the file on disk")
    host.http.files.stall.discard(NAME)
    assert task.process is not None and task.process.pid is not None
    os.kill(task.process.pid, signal.SIGKILL)
    await until_final(task)
    assert task.state is TaskState.SUCCEEDED, task.message
    assert gets(host.http, NAME) == [None, f"bytes={len(DATA) // 2}-"]
    assert (task.attempts, task.resumed_from) == (1, len(DATA) // 2)
    assert stored(host, NAME) == DATA


@async_test
async def test_a_user_kill_cancels_without_resuming(host: Host) -> None:
    host.http.files.files[NAME] = DATA
    host.http.files.stall.add(NAME)
    task = await host.fetch(NAME)
    directory = host.iohyve.iso_directory(NAME)
    await until(lambda: bytes_on_disk(directory) >= len(DATA) // 2, "half the file on disk")
    assert host.fetches.kill([task.id]) == [task.id]
    await until_final(task)
    await _sleep(0.5)  # longer than the back-off: no attempt follows
    assert (task.state, task.attempts, task.resume) == (TaskState.CANCELLED, 0, False)
    assert gets(host.http, NAME) == [None]
    assert host.iso_files(NAME) == []


@async_test
async def test_a_kill_while_waiting_to_resume_cancels_and_removes_the_partial_file(
    host: Host,
) -> None:
    host.fetches._retry_backoff = 30.0
    host.http.files.files[NAME] = DATA
    host.http.files.cuts[NAME] = [CUT]
    task = await host.fetch(NAME)
    await until(lambda: task.resume and task.state is TaskState.QUEUED, "the interruption")
    assert host.fetches.kill([task.id]) == [task.id]
    await until_final(task)
    assert task.state is TaskState.CANCELLED
    assert gets(host.http, NAME) == [None]
    assert host.iso_files(NAME) == []
    assert not host.fetches.busy(NAME)


@async_test
async def test_retries_are_counted_and_then_the_task_fails(host: Host) -> None:
    """Cut at every attempt: ``retries`` more attempts, each resuming where the previous
    one ended, then the task fails and its partial file goes."""
    host.http.files.files[NAME] = DATA
    host.http.files.cuts[NAME] = [100_000, 200_000, 300_000, 400_000]
    task = await until_final(await host.fetch(NAME))
    assert task.state is TaskState.FAILED
    assert task.attempts == 3
    assert gets(host.http, NAME) == [None, "bytes=100000-", "bytes=200000-", "bytes=300000-"]
    assert "appears to be truncated: 400000/1024000 bytes" in task.output.splitlines()[-1]
    assert host.iso_files(NAME) == []


@async_test
async def test_a_missing_file_is_not_retried(host: Host) -> None:
    task = await until_final(await host.fetch("absent.iso"))
    assert (task.state, task.attempts) == (TaskState.FAILED, 0)


@async_test
async def test_a_daemon_stop_keeps_the_task_to_be_resumed_at_the_next_start(
    host: Host, tmp_path: Path
) -> None:
    """A stop whose grace period ends the download journals the task queued, to be
    resumed: the next start continues its partial file."""
    host.http.files.files[NAME] = DATA
    host.http.files.stall.add(NAME)
    host.fetches._grace = 0.0
    task = await host.fetch(NAME, checksum=f"sha256:{SHA256}")
    directory = host.iohyve.iso_directory(NAME)
    await until(lambda: bytes_on_disk(directory) >= len(DATA) // 2, "half the file on disk")
    host.http.files.stall.discard(NAME)
    await host.fetches.stopService()
    assert (task.state, task.resume) == (TaskState.QUEUED, True)
    again = FetchQueue(
        host.iohyve,
        reactor,
        journal=Journal(host.journal_path, reactor),
        retry_backoff=0.2,
    )
    again.startService()
    host.fetches = again  # stopped by the fixture
    await until(lambda: task.id in again.tasks, "the recovery")
    resumed: FetchTask = await until_final(again.tasks[task.id])
    assert resumed.state is TaskState.SUCCEEDED, resumed.message
    assert gets(host.http, NAME) == [None, f"bytes={len(DATA) // 2}-"]
    assert resumed.resumed_from == len(DATA) // 2
    assert resumed.digest == f"sha256:{SHA256}"
    assert stored(host, NAME) == DATA
