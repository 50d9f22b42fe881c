"""What the backends run to continue an interrupted download, and how the partial file
is made ready for it (fetch(1) leaves it under the ISO's name or a temporary name)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from support import async_test
from twisted.internet.defer import Deferred

from sysadmd.backends import Iohyve, ProcessRunner
from sysadmd.backends._errors import Unsupported
from sysadmd.backends._partial import gather_partial


class Recorder:
    """Stands for the runner: records what would be started."""

    def __init__(self) -> None:
        self.started: list[tuple[str, tuple[str, ...]]] = []

    def start(
        self,
        executable: str,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> Any:
        self.started.append((executable, tuple(args)))
        return SimpleNamespace(done=Deferred())  # a process that has not ended


def test_iohyve_resumes_with_fetch_F_r_on_the_file_iohyve_fetch_writes(tmp_path: Path) -> None:
    runner = Recorder()
    root = tmp_path / "host"
    iohyve = Iohyve(
        cast(ProcessRunner, runner),
        ["/usr/local/sbin/iohyve"],
        iso_root=root / "iohyve" / "ISO",
        fetch=("/usr/bin/fetch",),
        host_root=root,
    )
    iohyve.resume_fetch("https://mirror.example/a.iso", "a.iso", timeout=60)
    assert runner.started == [
        (
            "/usr/bin/fetch",
            ("-F", "-r", "-o", "/iohyve/ISO/a.iso/a.iso", "https://mirror.example/a.iso"),
        )
    ]


def test_iohyve_without_fetch_cannot_resume(tmp_path: Path) -> None:
    iohyve = Iohyve(cast(ProcessRunner, Recorder()), ["/usr/local/sbin/iohyve"], fetch=None)
    with pytest.raises(Unsupported):
        iohyve.resume_fetch("https://mirror.example/a.iso", "a.iso", timeout=60)
    with pytest.raises(ValueError, match="absolute path"):
        Iohyve(cast(ProcessRunner, Recorder()), ["/usr/local/sbin/iohyve"], fetch=("fetch",))


def test_the_largest_partial_file_is_kept_under_the_iso_name(tmp_path: Path) -> None:
    (tmp_path / "a.iso").write_bytes(b"x" * 10)
    (tmp_path / ".fetch.AbC123.a.iso").write_bytes(b"y" * 30)
    (tmp_path / ".fetch.ZZZZZZ.a.iso").write_bytes(b"z" * 20)
    (tmp_path / "other.iso").write_bytes(b"o" * 99)
    assert gather_partial(tmp_path, "a.iso") == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.iso", "other.iso"]
    assert (tmp_path / "a.iso").read_bytes() == b"y" * 30


def test_links_and_missing_directories_give_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"s" * 50)
    store = tmp_path / "store"
    store.mkdir()
    os.symlink(outside, store / ".fetch.AbC123.a.iso")
    assert gather_partial(store, "a.iso") == 0
    assert (store / ".fetch.AbC123.a.iso").is_symlink() and outside.read_bytes() == b"s" * 50
    assert gather_partial(tmp_path / "absent", "a.iso") == 0


@async_test
async def test_gather_partial_runs_in_the_write_lane(tmp_path: Path) -> None:
    root = tmp_path / "host"
    directory = root / "iohyve" / "ISO" / "a.iso"
    directory.mkdir(parents=True)
    (directory / ".fetch.AbC123.a.iso").write_bytes(b"p" * 7)
    iohyve = Iohyve(
        cast(ProcessRunner, Recorder()),
        ["/usr/local/sbin/iohyve"],
        iso_root=root / "iohyve" / "ISO",
        host_root=root,
    )
    assert await iohyve.gather_partial("a.iso") == 7
    assert [p.name for p in directory.iterdir()] == ["a.iso"]
