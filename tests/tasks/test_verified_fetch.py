"""Verified fetches: ``checksum``, ``checksum_url`` and ``verify: "auto"`` of ``fetchiso``.

The daemon below its transports (the API, the fetch queue with its journal, the iohyve
backend on the simulator) fetches from a local HTTP server; the digest is computed while the
bytes arrive, a mismatch fails the task naming both digests and removes the ISO, and a match
is recorded in the journal and shown by ``isodigests``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from httpserver import HTTPServer
from probe import OpenGate
from support import async_fixture, async_test
from test_iohyve_api import VM_BHYVE_PROFILES, simulated_vm_bhyve
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from sysadmd.api import Api, ApiError, Connection, Registry, Role
from sysadmd.auth._authenticator import Account
from sysadmd.backends import Iohyve, ProcessRunner, VmBhyve
from sysadmd.services import IohyveActions
from sysadmd.simulator.cli import main as simulator
from sysadmd.tasks import FetchQueue, FetchTask, Journal
from sysadmd.tasks._checksum import (
    ChecksumError,
    DigestFollower,
    auto_checksum_urls,
    digests_in,
)

CONNECTION = Connection("127.0.0.1", "test")
DATA = b"an installation image " * 20_000
SHA256 = hashlib.sha256(DATA).hexdigest()
SHA512 = hashlib.sha512(DATA).hexdigest()
FREEBSD = "FreeBSD-14.3-RELEASE-amd64-disc1.iso"


@dataclass
class Host:
    root: Path
    http: HTTPServer
    runner: ProcessRunner
    iohyve: Iohyve | VmBhyve
    fetches: FetchQueue
    api: Api
    journal_path: Path

    async def call(self, action: str, **args: Any) -> Any:
        reply = await self.api.call("sysadm", "iohyve", {"action": action, **args}, CONNECTION)
        return reply[action] if isinstance(reply, dict) and action in reply else reply

    async def fetch(self, name: str, **args: Any) -> FetchTask:
        reply = await self.call("fetchiso", url=self.http.url(name), **args)
        return self.fetches.tasks[reply["queueid"]]

    def iso_files(self, name: str) -> list[str]:
        directory = self.iohyve.iso_directory(name)
        return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


async def _sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def until_final(task: FetchTask) -> FetchTask:
    for _ in range(400):
        if task.state.final:
            return task
        await _sleep(0.05)
    raise AssertionError(f"task did not finish: {task}")


async def release(http: HTTPServer) -> None:
    """Wait until a download is held half way by the server, then let it finish."""
    for _ in range(400):
        if any(r.method == b"GET" and not r._disconnected for r in http.files.stalled):
            break
        await _sleep(0.05)
    assert http.files.finish() > 0


#: The backends and dialects the fetch tests run on.
BACKENDS = ["iohyve", *VM_BHYVE_PROFILES]


def start_host(
    tmp_path: Path,
    http: HTTPServer,
    runner: ProcessRunner,
    backend: str = "iohyve",
    **queue: Any,
) -> Host:
    """The daemon's API and fetch queue on a fresh simulator of ``backend`` (``iohyve`` or
    ``vm-bhyve-<line>``); ``queue`` goes to the queue."""
    root = tmp_path / "sim"
    command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(root)]
    iohyve: Iohyve | VmBhyve
    if backend in VM_BHYVE_PROFILES:
        iohyve = simulated_vm_bhyve(root, runner, backend.removeprefix("vm-bhyve-"))
    else:
        # The simulator of this source tree (its zfs creates the ISO datasets of uploads).
        runner._env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        iohyve = Iohyve(
            runner,
            command,
            iso_root=root / "iohyve" / "ISO",
            zfs=(*command, "zfs"),
            fetch=(*command, "/usr/bin/fetch"),
            host_root=root,
        )
    journal_path = tmp_path / "tasks.sqlite"
    fetches = FetchQueue(iohyve, reactor, journal=Journal(journal_path, reactor), **queue)
    fetches.startService()
    registry = Registry()
    registry.register(IohyveActions(iohyve, fetches))
    api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))
    if isinstance(iohyve, Iohyve):
        with contextlib.redirect_stdout(io.StringIO()):
            simulator(["--root", str(root), "isolist"])
    return Host(root, http, runner, iohyve, fetches, api, journal_path)


@async_fixture(params=BACKENDS)
async def host(
    request: pytest.FixtureRequest, tmp_path: Path, http: HTTPServer
) -> AsyncIterator[Host]:
    """A fetching daemon on each backend: verification is the same on all of them."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    started = start_host(tmp_path, http, runner, request.param)
    yield started
    http.files.finish()
    await started.fetches.stopService()
    await runner.stop_all()


@async_test
async def test_a_matching_checksum_succeeds_and_is_recorded(host: Host) -> None:
    """The ISO arrives, its digest is on the task, in the journal and in isodigests;
    listisos keeps sysadm's shape (a list of names)."""
    host.http.files.files["good.iso"] = DATA
    task = await until_final(await host.fetch("good.iso", checksum=f"sha256:{SHA256.upper()}"))
    assert task.state.value == "succeeded", task.message
    assert task.digest == f"sha256:{SHA256}"
    assert host.iohyve.iso_size("good.iso") == len(DATA)
    assert "good.iso" in await host.call("listisos")
    digests = await host.call("isodigests")
    assert digests["good.iso"]["digest"] == f"sha256:{SHA256}"
    assert digests["good.iso"]["size"] == len(DATA)
    await host.fetches.stopService()
    reopened = Journal(host.journal_path, reactor)
    await reopened.open()
    try:
        recorded = await reopened.digests()
        [kept] = [r for r in await reopened.recent() if r.id == task.id]
    finally:
        await reopened.close()
    assert recorded["good.iso"][:2] == (f"sha256:{SHA256}", len(DATA))
    assert (kept.verify, kept.digest) == (f"sha256:{SHA256.lower()}", f"sha256:{SHA256}")
    host.fetches.startService()


@async_test
async def test_a_mismatching_checksum_fails_with_both_digests_and_leaves_no_file(
    host: Host,
) -> None:
    host.http.files.files["bad.iso"] = DATA
    wrong = "sha512:" + "ab" * 64
    task = await until_final(await host.fetch("bad.iso", checksum=wrong))
    assert task.state.value == "failed"
    assert task.message is not None
    assert wrong in task.message and f"sha512:{SHA512}" in task.message
    assert "bad.iso" not in await host.call("listisos")
    assert host.iso_files("bad.iso") == []
    assert "bad.iso" not in await host.call("isodigests")


@async_test
async def test_the_digest_is_computed_while_the_bytes_arrive(host: Host) -> None:
    """While the server holds the download half way, the half on disk is already hashed;
    at the end the finished file is not read again."""
    host.http.files.files["slow.iso"] = DATA
    host.http.files.stall.add("slow.iso")
    task = await host.fetch("slow.iso", checksum=f"sha256:{SHA256}")
    follower = None
    for _ in range(200):
        follower = task.follower or follower
        if follower is not None and follower.hashed >= len(DATA) // 2:
            break
        await _sleep(0.05)
    assert follower is not None and follower.hashed == len(DATA) // 2
    assert not task.state.final
    await release(host.http)
    await until_final(task)
    assert task.state.value == "succeeded", task.message
    assert follower.hashed == len(DATA) and not follower.reread


@async_test
async def test_auto_finds_a_freebsd_checksum_file_beside_the_image(host: Host) -> None:
    """verify "auto" reads CHECKSUM.SHA512-<release> (BSD lines, one per artefact)."""
    files = host.http.files.files
    files[FREEBSD] = DATA
    files["CHECKSUM.SHA512-FreeBSD-14.3-RELEASE-amd64"] = (
        f"SHA512 ({FREEBSD}) = {SHA512}\nSHA512 ({FREEBSD}.xz) = {'0' * 128}\n"
    ).encode()
    task = await until_final(await host.fetch(FREEBSD, verify="auto"))
    assert task.state.value == "succeeded", task.message
    assert task.digest == f"sha512:{SHA512}"
    assert (await host.call("isodigests"))[FREEBSD]["digest"] == f"sha512:{SHA512}"


@async_test
async def test_auto_falls_back_to_the_sha256_file(host: Host) -> None:
    files = host.http.files.files
    files[FREEBSD] = DATA
    files["CHECKSUM.SHA256-FreeBSD-14.3-RELEASE-amd64"] = (
        f"SHA256 ({FREEBSD}) = {'1' * 64}\n"
    ).encode()
    task = await until_final(await host.fetch(FREEBSD, verify="auto"))
    assert task.state.value == "failed"
    assert task.message is not None and f"sha256:{SHA256}" in task.message
    assert host.iso_files(FREEBSD) == []


@async_test
async def test_a_gnu_checksum_file_is_understood(host: Host) -> None:
    host.http.files.files["gnu.iso"] = DATA
    host.http.files.files["SHA256SUMS"] = f"{'2' * 64}  other.iso\n{SHA256} *gnu.iso\n".encode()
    task = await until_final(await host.fetch("gnu.iso", checksum_url=host.http.url("SHA256SUMS")))
    assert task.state.value == "succeeded", task.message
    assert task.digest == f"sha256:{SHA256}"


@async_test
async def test_a_missing_checksum_file_fails_before_any_byte(host: Host) -> None:
    host.http.files.files["orphan.iso"] = DATA
    task = await until_final(
        await host.fetch("orphan.iso", checksum_url=host.http.url("NOPE.SUMS"))
    )
    assert task.state.value == "failed"
    assert task.message is not None and "cannot verify" in task.message
    assert "HTTP 404" in task.message
    assert task.started is not None and task.process_group is None
    assert host.iso_files("orphan.iso") == []


@async_test
async def test_an_oversized_checksum_file_is_refused(host: Host) -> None:
    host.http.files.files["big.iso"] = DATA
    host.http.files.files["HUGE.SUMS"] = f"{SHA256}  big.iso\n".encode() * 20_000
    task = await until_final(await host.fetch("big.iso", checksum_url=host.http.url("HUGE.SUMS")))
    assert task.state.value == "failed"
    assert task.message is not None and "larger than 1048576 bytes" in task.message
    assert host.iso_files("big.iso") == []


@async_test
async def test_a_task_killed_while_it_reads_its_checksum_file_ends_at_once(
    host: Host, request: pytest.FixtureRequest
) -> None:
    """The checksum file is held half way; a kill cancels the task before any download."""
    host.http.files.files["wait.iso"] = DATA
    host.http.files.files["SLOW.SUMS"] = f"{SHA256}  wait.iso\n".encode()
    host.http.files.stall.add("SLOW.SUMS")
    task = await host.fetch("wait.iso", checksum_url=host.http.url("SLOW.SUMS"))
    for _ in range(200):
        if task.preparing is not None:
            break
        await _sleep(0.05)
    assert task.preparing is not None and task.state.value == "running"
    assert host.fetches.kill([task.id]) == [task.id]
    await until_final(task)
    assert (task.state.value, task.message) == ("cancelled", "killed")
    assert task.process_group is None and host.iso_files("wait.iso") == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"checksum": "sha256:abc"}, "argument 'checksum' must be"),
        ({"checksum": "md5:" + "0" * 32}, "argument 'checksum' must be"),
        ({"checksum": "sha256:" + "0" * 64 + "\n"}, "argument 'checksum' must be"),
        ({"checksum": "sha256:" + "0" * 64, "verify": "auto"}, "at most one"),
        ({"checksum_url": "ftp://127.0.0.1/SUMS"}, "argument 'checksum_url' must start"),
        ({"checksum_url": "http://127.0.0.1/SUMS?x=1"}, "argument 'checksum_url'"),
        ({"verify": "yes"}, "argument 'verify' must be"),
        ({"verify": "auto"}, "FreeBSD image name"),
    ],
)
@async_test
async def test_bad_verification_arguments_are_refused(
    host: Host, args: dict[str, Any], words: str
) -> None:
    host.http.files.files["x.iso"] = DATA
    with pytest.raises(ApiError) as refused:
        await host.fetch("x.iso", **args)
    assert refused.value.code == 400 and words in refused.value.message
    assert host.fetches.tasks == {}


@async_test
async def test_a_fetch_without_the_new_arguments_sees_no_change(host: Host) -> None:
    """No verification, no digest, and the finished event carries only sysadm's keys and
    the ones sysadmd had before."""
    events: list[dict[str, Any]] = []
    host.fetches._publish = lambda _name, args: events.append(dict(args))
    host.http.files.files["plain.iso"] = DATA
    task = await until_final(await host.fetch("plain.iso"))
    assert task.state.value == "succeeded" and task.verify is None and task.digest is None
    assert "plain.iso" not in await host.call("isodigests")
    for event in events:
        assert not {"stage", "digest", "verified"} & set(event), event


def test_checksum_file_lines() -> None:
    text = (
        f"SHA256 (a.iso) = {'A' * 64}\n"
        f"{'b' * 128}  a.iso\n"
        f"SHA512 (a.iso.xz) = {'c' * 128}\n"
        f"{'d' * 64}  a.iso.txt\n"
        "garbage line\n"
    )
    found = digests_in(text, "a.iso")
    assert [str(d) for d in found] == [f"sha512:{'b' * 128}", f"sha256:{'a' * 64}"]
    assert digests_in(text, "none.iso") == []
    with pytest.raises(ChecksumError, match="two different sha256"):
        digests_in(f"{'1' * 64}  a.iso\n{'2' * 64}  a.iso\n", "a.iso")


def test_auto_checksum_urls() -> None:
    base = "https://download.freebsd.org/releases/amd64/amd64/ISO-IMAGES/15.0"
    assert auto_checksum_urls(f"{base}/FreeBSD-15.0-RELEASE-arm64-aarch64-bootonly.iso.xz") == [
        f"{base}/CHECKSUM.SHA512-FreeBSD-15.0-RELEASE-arm64-aarch64",
        f"{base}/CHECKSUM.SHA256-FreeBSD-15.0-RELEASE-arm64-aarch64",
    ]
    with pytest.raises(ChecksumError):
        auto_checksum_urls(f"{base}/debian-12.iso")
    with pytest.raises(ChecksumError):
        auto_checksum_urls(f"ftp://ftp.freebsd.org/{FREEBSD}")


def _now(function: Any, *args: Any) -> Deferred[Any]:
    return succeed(function(*args))


def test_the_follower_reads_only_its_own_download(tmp_path: Path) -> None:
    """Other ISOs in a shared store (``b.a.iso``, larger) are not followed; the temporary
    file is, through its rename, and is not read a second time."""
    (tmp_path / "b.a.iso").write_bytes(b"other" * 100_000)
    temporary = tmp_path / ".fetch.Ab3dE9.a.iso"
    follower = DigestFollower(tmp_path, "a.iso", "sha256", _now)
    with temporary.open("wb") as out:
        out.write(DATA[:1000])
        out.flush()
        follower.step()
        assert follower.hashed == 1000
        out.write(DATA[1000:])
    temporary.rename(tmp_path / "a.iso")
    digest = _result(follower.finish())
    assert str(digest) == f"sha256:{SHA256}" and not follower.reread


def test_the_follower_hashes_a_replaced_file_from_its_start(tmp_path: Path) -> None:
    """When the file left under the name is not the one followed (decompressed, copied),
    it is read again, and the digest is the final file's."""
    follower = DigestFollower(tmp_path, "a.iso", "sha512", _now)
    (tmp_path / ".fetch.Zz0000.a.iso").write_bytes(b"compressed bytes")
    follower.step()
    (tmp_path / ".fetch.Zz0000.a.iso").unlink()
    (tmp_path / "a.iso").write_bytes(DATA)
    digest = _result(follower.finish())
    assert str(digest) == f"sha512:{SHA512}" and follower.reread


def _result(deferred: Deferred[Any]) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    [result] = results
    if isinstance(result, Failure):
        result.raiseException()
    return result
