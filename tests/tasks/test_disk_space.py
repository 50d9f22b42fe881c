"""Disk space: a fetch whose announced size does not fit in the ISO store is refused.

``fetchiso`` asks the source's size (``HEAD``) and the ISO store's free space, less what
queued and running fetches are still expected to write, and answers 507 before anything is
queued or written. A task whose size no longer fits when it starts fails and leaves nothing;
a download that fills the file system fails and its partial file is removed.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpserver import HTTPServer
from support import async_fixture, async_test
from test_verified_fetch import BACKENDS, DATA, Host, release, start_host, until_final
from twisted.internet import reactor

from sysadmd.api import ApiError
from sysadmd.backends import Iohyve, ProcessRunner
from sysadmd.tasks._queue import free_space


class Space:
    """Free space as the test sets it."""

    def __init__(self, free: int | None) -> None:
        self.free = free
        self.asked: list[Path] = []

    def __call__(self, directory: Path) -> int | None:
        self.asked.append(directory)
        return self.free


@async_fixture(params=BACKENDS)
async def space_host(
    request: pytest.FixtureRequest, tmp_path: Path, http: HTTPServer
) -> AsyncIterator[tuple[Host, Space]]:
    """Each backend with the free space the test sets: the checks are the same on all."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    space = Space(10 * len(DATA))
    host = start_host(tmp_path, http, runner, request.param, free_space=space)
    yield host, space
    http.files.finish()
    await host.fetches.stopService()
    await runner.stop_all()


@async_fixture()
async def iohyve_space_host(tmp_path: Path, http: HTTPServer) -> AsyncIterator[tuple[Host, Space]]:
    """iohyve with the free space the test sets."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    space = Space(10 * len(DATA))
    host = start_host(tmp_path, http, runner, free_space=space)
    yield host, space
    http.files.finish()
    await host.fetches.stopService()
    await runner.stop_all()


@async_test
async def test_a_fetch_too_large_for_the_store_is_refused_before_any_byte(
    space_host: tuple[Host, Space],
) -> None:
    host, space = space_host
    host.http.files.files["large.iso"] = DATA
    space.free = len(DATA) - 1
    with pytest.raises(ApiError) as refused:
        await host.fetch("large.iso")
    assert refused.value.code == 507
    assert f"is {len(DATA)} bytes" in refused.value.message
    assert f"has {len(DATA) - 1} bytes free" in refused.value.message
    assert host.fetches.tasks == {}
    assert host.iso_files("large.iso") == []
    assert space.asked == [host.iohyve.iso_directory("large.iso")]


@async_test
async def test_queued_fetches_claim_their_size(
    iohyve_space_host: tuple[Host, Space],
) -> None:
    """Two fetches that each fit but not together: the second is refused. iohyve only:
    the fixed free space here ignores the half the stalled first download wrote; vm-bhyve's
    progress counts those bytes, so its claim shrinks by them and the second fetch fits
    (the fake would have to lower the free space as bytes arrive)."""
    host, space = iohyve_space_host
    for name in ("one.iso", "two.iso"):
        host.http.files.files[name] = DATA
        host.http.files.stall.add(name)
    space.free = len(DATA) * 3 // 2
    first = await host.fetch("one.iso")
    with pytest.raises(ApiError) as refused:
        await host.fetch("two.iso")
    assert refused.value.code == 507
    await release(host.http)
    await until_final(first)
    assert first.state.value == "succeeded", first.message


@async_test
async def test_a_source_without_a_size_is_not_refused(space_host: tuple[Host, Space]) -> None:
    host, space = space_host
    host.http.files.files["nosize.iso"] = DATA
    host.http.files.chunked.add("nosize.iso")
    space.free = 0
    task = await until_final(await host.fetch("nosize.iso"))
    assert task.state.value == "succeeded", task.message


@async_test
async def test_a_fetch_that_no_longer_fits_when_it_starts_fails_and_leaves_nothing(
    space_host: tuple[Host, Space],
) -> None:
    host, space = space_host
    for name in ("first.iso", "second.iso"):
        host.http.files.files[name] = DATA
    host.http.files.stall.add("first.iso")
    first = await host.fetch("first.iso")
    second = await host.fetch("second.iso")
    assert second.state.value == "queued"
    space.free = len(DATA) // 4
    await release(host.http)
    await until_final(first)
    await until_final(second)
    assert first.state.value == "succeeded", first.message
    assert second.state.value == "failed"
    assert second.message is not None and "bytes free" in second.message
    assert host.iso_files("second.iso") == []


@async_test
async def test_the_real_free_space_refuses_a_fetch_too_large(
    tmp_path: Path, http: HTTPServer
) -> None:
    """With the file system's own free space: a 1 MiB store and a 3 MiB ISO give 507."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    host = start_host(tmp_path, http, runner)
    assert isinstance(host.iohyve, Iohyve)  # a small file system mounted on iohyve's store
    store = host.iohyve.iso_root
    _mount_small(store)
    try:
        http.files.files["big.iso"] = b"x" * (3 * 1024 * 1024)
        with pytest.raises(ApiError) as refused:
            await host.fetch("big.iso")
        assert refused.value.code == 507
        assert host.fetches.tasks == {} and list(store.iterdir()) == []
    finally:
        await host.fetches.stopService()
        await runner.stop_all()
        subprocess.run(["/bin/umount", str(store)], check=True)


def test_free_space_asks_the_nearest_existing_directory(tmp_path: Path) -> None:
    free = free_space(tmp_path / "not" / "yet" / "there")
    assert free is not None and free > 0


def _mount_small(directory: Path) -> None:
    """Put a 1 MiB file system (tmpfs) on ``directory``; needs the right to mount."""
    done = subprocess.run(
        ["/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@async_test
async def test_a_fetch_that_fills_the_disk_fails_and_removes_its_partial_file(
    tmp_path: Path, http: HTTPServer
) -> None:
    """The source announces no size (so nothing refuses it up front) and is larger than
    the file system holding the ISO store."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    host = start_host(tmp_path, http, runner)
    assert isinstance(host.iohyve, Iohyve)  # a small file system mounted on iohyve's store
    store = host.iohyve.iso_root
    _mount_small(store)
    try:
        http.files.files["huge.iso"] = b"x" * (3 * 1024 * 1024)
        http.files.chunked.add("huge.iso")
        task = await until_final(await host.fetch("huge.iso"))
        assert task.state.value == "failed"
        assert "No space left on device" in task.output, task.output
        assert not any(store.rglob("*huge.iso"))
        assert "huge.iso" not in await host.call("listisos")
    finally:
        await host.fetches.stopService()
        await runner.stop_all()
        subprocess.run(["/bin/umount", str(store)], check=True)
