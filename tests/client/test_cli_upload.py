"""End to end: ``sysadm iso upload`` streams a file into the daemon's ISO store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import login, seeded_daemon, sysadm_async
from daemon import Daemon
from support import async_test

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = seeded_daemon(tmp_path_factory.mktemp("cli-upload"))
    yield running
    assert running.stop()


@pytest.fixture(scope="module")
def logged_in(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tmp_path_factory.mktemp("cli-upload-config")
    login(config, daemon)
    return config


@async_test
async def test_iso_upload_streams_the_file_with_a_progress_bar(
    logged_in: Path, daemon: Daemon, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 8_000  # 2 MB
    source = tmp_path / "local.iso"
    source.write_bytes(data)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    result = await sysadm_async(
        logged_in,
        "iso",
        "upload",
        str(source),
        "--name",
        "laptop.iso",
        "--checksum",
        digest,
        columns=80,
    )
    assert result.status == 0, result
    lines = result.stdout.splitlines()
    bar = next(line for line in lines if line.startswith("laptop.iso (stored)"))
    assert "100%" in bar and "2.0/2.0 MB" in bar
    assert lines[-1] == f"Uploaded laptop.iso ({len(data)} bytes, {digest})."
    stored = daemon.state_dir / "simulator" / "iohyve" / "ISO" / "laptop.iso" / "laptop.iso"
    assert stored.read_bytes() == data


@async_test
async def test_iso_upload_reports_the_daemons_refusal(logged_in: Path, tmp_path: Path) -> None:
    source = tmp_path / "test.iso"
    source.write_bytes(b"already there")
    result = await sysadm_async(logged_in, "iso", "upload", str(source))
    assert result.status == 1
    assert result.stderr.startswith("sysadm: error 409: "), result
    wrong = "sha256:" + "0" * 64
    source = tmp_path / "other.iso"
    source.write_bytes(b"other bytes")
    result = await sysadm_async(logged_in, "iso", "upload", str(source), "--checksum", wrong)
    assert result.status == 1 and "checksum mismatch" in result.stderr, result
