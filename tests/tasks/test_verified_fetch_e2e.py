"""End to end: a verified fetch through the running daemon, seen in its dispatcher events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clientkit import write_config
from daemon import Daemon
from httpserver import HTTPServer
from support import async_test
from test_e2e import rest, ws
from wsclient import WsClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path / "state", "--config", str(write_config(tmp_path)))
    yield running
    running.stop()


async def _events(client: WsClient, task_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while not events or events[-1]["state"] != "finished":
        message = await client.next()
        if message["name"] != "dispatcher":
            continue
        args: dict[str, Any] = message["args"]
        if args["process_details"]["process_id"] == task_id:
            events.append(args)
    return events


@async_test
async def test_a_verified_fetch_reports_its_stages_and_digest(
    daemon: Daemon, http: HTTPServer
) -> None:
    data = b"verified bytes " * 30_000
    digest = hashlib.sha256(data).hexdigest()
    http.files.files["checked.iso"] = data
    http.files.files["SHA256SUMS"] = f"{digest}  checked.iso\n".encode()
    client = await ws(daemon)
    client.send({"namespace": "events", "name": "subscribe", "id": "s", "args": "dispatcher"})
    assert (await client.next())["args"] == {"subscribe": "dispatcher"}
    code, reply = await rest(
        daemon,
        {
            "action": "fetchiso",
            "url": http.url("checked.iso"),
            "checksum_url": http.url("SHA256SUMS"),
        },
    )
    assert code == 200, reply
    events = await _events(client, reply["args"]["fetchiso"]["queueid"])
    final = events[-1]
    assert (final["result"], final["verified"]) == ("succeeded", True)
    assert final["digest"] == f"sha256:{digest}"
    stages = [e["stage"] for e in events[:-1]]
    assert stages[0] == "queued" and "verifying" in stages
    code, reply = await rest(daemon, {"action": "isodigests"})
    assert code == 200, reply
    assert reply["args"]["isodigests"]["checked.iso"]["digest"] == f"sha256:{digest}"
    code, reply = await rest(daemon, {"action": "listisos"})
    assert "checked.iso" in reply["args"]["listisos"]
    await client.close()
