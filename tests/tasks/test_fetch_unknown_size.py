"""End to end: a source that announces no size gives progress in bytes, never a percentage.

The ISO comes from a local HTTP server that sends no ``Content-Length`` (to ``HEAD`` nor to
``GET``: the body is chunked) and holds the download half way, so the running events can be
looked at while bytes arrive.
"""

from __future__ import annotations

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


async def _next_event(client: WsClient, task_id: str) -> dict[str, Any]:
    while True:
        message = await client.next()
        if message["name"] != "dispatcher":
            continue
        args: dict[str, Any] = message["args"]
        if args["process_details"]["process_id"] == task_id:
            return args


@async_test
async def test_progress_without_content_length(daemon: Daemon, http: HTTPServer) -> None:
    """Every event of the task has bytes_done, bytes_total null, a rate, and neither
    percent_done nor percent; the finished event has the size that arrived."""
    data = b"n" * 400_000
    http.files.files["nosize.iso"] = data
    http.files.chunked.add("nosize.iso")
    http.files.stall.add("nosize.iso")
    client = await ws(daemon)
    client.send({"namespace": "events", "name": "subscribe", "id": "s", "args": "dispatcher"})
    assert (await client.next())["args"] == {"subscribe": "dispatcher"}
    code, reply = await rest(daemon, {"action": "fetchiso", "url": http.url("nosize.iso")})
    assert code == 200, reply
    task_id = reply["args"]["fetchiso"]["queueid"]

    events = []
    while True:
        event = await _next_event(client, task_id)
        events.append(event)
        if event["state"] == "running" and event["bytes_done"] > 0:
            break
    during = events[-1]
    assert 0 < during["bytes_done"] <= len(data) // 2
    assert during["bytes_total"] is None
    assert isinstance(during["rate"], float) and isinstance(during["download_rate"], str)

    http.files.finish()
    while events[-1]["state"] != "finished":
        events.append(await _next_event(client, task_id))
    final = events[-1]
    assert (final["result"], final["arrived"], final["size"]) == ("succeeded", True, len(data))
    assert final["bytes_done"] == len(data)
    for event in events:
        assert "percent_done" not in event and "percent" not in event, event
        assert "bytes_done" in event and "rate" in event and event["bytes_total"] is None
    await client.close()
