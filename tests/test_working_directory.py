"""The daemon works in ``/`` whatever directory it was started from, so that its children are
spawned directly (one exec, no helper) in every mode; relative paths given at the start
still name what they named there."""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.request
from pathlib import Path

import pytest
from daemon import Daemon

pytestmark = pytest.mark.e2e


def test_the_daemon_works_in_root_and_relative_paths_keep_their_meaning(
    tmp_path: Path,
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    (start / "sysadmd.toml").write_text('[log]\nfile = "own.log"\n')
    daemon = Daemon(start / "state", "--config=sysadmd.toml", cwd=start)
    try:
        assert os.readlink(f"/proc/{daemon.process.pid}/cwd") == "/"
        # The relative state directory and log file are the start directory's.
        assert (start / "state" / "tls" / "cert.pem").exists()
        assert (start / "own.log").exists()
        scheme, where = daemon.addresses[0]
        assert scheme == "wss"
        context = ssl.create_default_context(cafile=str(start / "state" / "tls" / "cert.pem"))
        context.check_hostname = False
        pair = base64.b64encode(f"admin:{daemon.password}".encode()).decode()
        request = urllib.request.Request(
            f"https://{where}/sysadm/iohyve",
            data=b'{"action": "listvms"}',
            method="PUT",
            headers={"Content-Type": "application/json", "Authorization": f"Basic {pair}"},
        )
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            assert "listvms" in json.loads(response.read())["args"]
    finally:
        assert daemon.stop()


def test_a_relative_unix_listener_is_named_from_the_start_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket file of a ``unix:`` listener given relative to the start directory is
    removed by that name when the listener stops, after the daemon has moved to ``/``."""
    from twisted.internet import reactor  # noqa: PLC0415

    from sysadmd import app, config  # noqa: PLC0415

    monkeypatch.chdir(tmp_path)
    settings = config.load(
        None, {"daemon.listen": ["unix:api.sock"], "daemon.state_dir": str(tmp_path / "state")}
    )
    ((_, endpoint, _),) = app._endpoints(settings, reactor)
    assert endpoint._address == str(tmp_path / "api.sock")  # type: ignore[attr-defined]
