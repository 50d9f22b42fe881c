"""Download progress measured on disk, the expected size from the source, and event payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
from httpserver import HTTPServer
from jsonschema import Draft202012Validator
from support import async_test
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from sysadmd.simulator.fetch import stat_rate
from sysadmd.tasks import local_time
from sysadmd.tasks._progress import (
    MAX_REDIRECTS,
    Progress,
    ProgressMeter,
    RemoteInfo,
    bytes_on_disk,
    dispatcher_event,
    format_percent,
    format_rate,
    remote_info,
    remote_size,
    result_of,
    sysadm_state,
)

NAME = "FreeBSD-13.2-RELEASE-amd64-bootonly.iso"
TEMP = f".fetch.a1B2c3.{NAME}"


def grow(path: Path, count: int) -> None:
    """Append ``count`` bytes to ``path``."""
    with path.open("ab") as handle:
        handle.write(b"\0" * count)


# --------------------------------------------------------------------------------------------
# bytes_on_disk


def test_bytes_on_disk_temporary_then_final(tmp_path: Path) -> None:
    directory = tmp_path / NAME
    directory.mkdir()
    assert bytes_on_disk(directory) == 0
    temp = directory / TEMP
    grow(temp, 100)
    assert bytes_on_disk(directory) == 100
    grow(temp, 400)
    assert bytes_on_disk(directory) == 500
    temp.rename(directory / NAME)
    assert bytes_on_disk(directory) == 500


def test_bytes_on_disk_largest_file_wins(tmp_path: Path) -> None:
    grow(tmp_path / NAME, 300)
    grow(tmp_path / TEMP, 700)
    grow(tmp_path / "small", 1)
    assert bytes_on_disk(tmp_path) == 700
    grow(tmp_path / NAME, 1000)
    assert bytes_on_disk(tmp_path) == 1300


def test_bytes_on_disk_missing_or_not_a_directory(tmp_path: Path) -> None:
    assert bytes_on_disk(tmp_path / "missing") == 0
    grow(tmp_path / "file", 10)
    assert bytes_on_disk(tmp_path / "file") == 0


def test_bytes_on_disk_ignores_symlinks_and_subdirectories(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    grow(outside / "big", 5000)
    directory = tmp_path / NAME
    directory.mkdir()
    grow(directory / TEMP, 10)
    (directory / NAME).symlink_to(outside / "big")
    (directory / "dir").mkdir()
    grow(directory / "dir" / "nested", 9000)
    assert bytes_on_disk(directory) == 10
    # The directory itself is not followed either.
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    assert bytes_on_disk(tmp_path / "link") == 0


# --------------------------------------------------------------------------------------------
# Progress and ProgressMeter


def test_progress_percent() -> None:
    assert Progress(done=5, total=None, rate=0).percent is None
    assert Progress(done=25, total=100, rate=0).percent == 25.0
    assert Progress(done=250, total=100, rate=0).percent == 100.0
    assert Progress(done=0, total=0, rate=0).percent == 100.0
    assert Progress(done=1, total=3, rate=0).percent == pytest.approx(33.333, abs=0.001)


@pytest.fixture
def download(tmp_path: Path) -> Iterator[Path]:
    """An ISO dataset directory holding fetch's temporary file."""
    directory = tmp_path / NAME
    directory.mkdir()
    (directory / TEMP).touch()
    yield directory


def test_meter_done_and_rate_over_window(download: Path) -> None:
    clock = Clock()
    meter = ProgressMeter(clock, download, window=5.0)
    first = meter.sample()
    assert first == Progress(done=0, total=None, rate=0.0)
    assert meter.last == first
    # 1000 B/s for 10 seconds.
    for second in range(1, 11):
        clock.advance(1)
        grow(download / TEMP, 1000)
        progress = meter.sample()
        assert progress.done == 1000 * second
        assert progress.rate == pytest.approx(1000.0)
    # A burst of 6000 bytes in one second counts over the 5 s window.
    clock.advance(1)
    grow(download / TEMP, 6000)
    assert meter.sample().rate == pytest.approx((6000 + 4 * 1000) / 5)
    # Nothing for four more seconds: only the burst is left in the window.
    for _ in range(4):
        clock.advance(1)
        progress = meter.sample()
    assert progress.rate == pytest.approx(6000 / 5)
    # A fifth idle second: the window holds no growth.
    clock.advance(1)
    assert meter.sample().rate == 0.0
    # The rename to the final name changes nothing.
    (download / TEMP).rename(download / NAME)
    clock.advance(1)
    assert meter.sample() == Progress(done=16000, total=None, rate=0.0)


def test_meter_young_and_sparse_samples(download: Path) -> None:
    clock = Clock()
    meter = ProgressMeter(clock, download, window=5.0)
    meter.sample()
    clock.advance(2)
    grow(download / TEMP, 3000)
    # Younger than the window: averaged over the time since the first sample.
    assert meter.sample().rate == pytest.approx(1500.0)
    # The same instant again: still measured against the older sample.
    assert meter.sample().rate == pytest.approx(1500.0)
    # A sample long after the last: the only reference is that old sample.
    clock.advance(20)
    grow(download / TEMP, 2000)
    assert meter.sample().rate == pytest.approx(100.0)


def test_meter_percent_total_and_clamping(download: Path) -> None:
    clock = Clock()
    meter = ProgressMeter(clock, download)
    grow(download / TEMP, 420)
    progress = meter.sample()
    assert progress.total is None
    assert progress.percent is None
    assert format_percent(progress) == ""
    meter.total = 1000
    progress = meter.sample()
    assert progress.total == 1000
    assert progress.percent == 42.0
    assert format_percent(progress) == "42%"
    grow(download / TEMP, 1000)
    clock.advance(1)
    progress = meter.sample()
    assert progress.percent == 100.0
    assert format_percent(progress) == "100%"
    meter.total = 0
    assert meter.sample().percent == 100.0


def test_meter_restarts_when_the_file_shrinks(download: Path) -> None:
    clock = Clock()
    meter = ProgressMeter(clock, download)
    grow(download / TEMP, 5000)
    meter.sample()
    clock.advance(1)
    (download / TEMP).unlink()
    assert meter.sample() == Progress(done=0, total=None, rate=0.0)
    clock.advance(1)
    grow(download / TEMP, 700)
    assert meter.sample().rate == pytest.approx(700.0)


def test_meter_rejects_a_bad_window(download: Path) -> None:
    for window in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="window"):
            ProgressMeter(Clock(), download, window=window)


# --------------------------------------------------------------------------------------------
# remote_size


class Redirects(Resource):
    """``/hop/<n>`` redirects to ``/hop/<n-1>`` (302, or 303 under ``/see/``); ``/hop/0`` has
    ``size`` bytes. ``/length/<value>`` answers 200 with ``Content-Length: <value>`` raw.
    ``/to?location=<target>`` redirects to ``<target>`` (302)."""

    isLeaf = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.methods: list[bytes] = []

    def render(self, request: Request) -> bytes:
        self.methods.append(request.method)
        parts = request.path.decode().strip("/").split("/")
        if parts[0] == "to":
            request.setResponseCode(302)
            request.responseHeaders.setRawHeaders(b"Location", request.args[b"location"])
            return b""
        if parts[0] == "length":
            values = [value.encode() for value in parts[1].split("+")]
            request.responseHeaders.setRawHeaders(b"Content-Length", values)
            return b""
        hops = int(parts[1])
        if hops == 0:
            return b"x" * self.size
        request.setResponseCode(303 if parts[0] == "see" else 302)
        request.responseHeaders.setRawHeaders(b"Location", [f"{hops - 1}".encode()])
        return b""


class Silent(Protocol):
    """Accepts a connection and never answers."""

    def connectionMade(self) -> None:
        cast(SilentFactory, self.factory).transports.append(cast(ITransport, self.transport))


class SilentFactory(Factory):
    protocol = Silent

    def __init__(self) -> None:
        self.transports: list[ITransport] = []


def listen(factory: Factory) -> tuple[IListeningPort, int]:
    port = cast(Any, reactor).listenTCP(0, factory, interface="127.0.0.1")
    return port, int(port.getHost().port)


async def stop(port: IListeningPort) -> None:
    stopped = port.stopListening()
    if stopped is not None:
        await stopped


@async_test
async def test_remote_size_http_content_length(http: HTTPServer) -> None:
    http.files.files[NAME] = b"z" * 12345
    http.files.files["empty.iso"] = b""
    assert await remote_size(http.url(NAME), reactor, timeout=2) == 12345
    assert await remote_size(http.url("empty.iso"), reactor, timeout=2) == 0
    assert await remote_size(http.url("missing.iso"), reactor, timeout=2) is None


@async_test
async def test_remote_info_has_the_validators_and_the_ranges(http: HTTPServer) -> None:
    """The size request also tells what a resumed fetch compares: the ETag, Last-Modified
    and whether ranges are announced; a source that does not answer tells nothing."""
    http.files.files[NAME] = b"z" * 100
    http.files.etags[NAME] = '"v1"'
    info = await remote_info(http.url(NAME), reactor, timeout=2)
    assert info == RemoteInfo(100, '"v1"', http.files.last_modified, ranges=True, found=True)
    assert info.validator == 'etag:"v1"'
    http.files.no_ranges.add(NAME)
    assert not (await remote_info(http.url(NAME), reactor, timeout=2)).ranges
    missing = await remote_info(http.url("missing.iso"), reactor, timeout=2)
    assert missing == RemoteInfo() and missing.validator is None
    assert RemoteInfo(last_modified="Fri, 08 Jan 2016 20:15:33 GMT").validator == (
        "modified:Fri, 08 Jan 2016 20:15:33 GMT"
    )


@async_test
async def test_remote_size_redirects_and_bad_lengths() -> None:
    resource = Redirects(4321)
    port, number = listen(cast(Any, Site(resource)))
    base = f"http://127.0.0.1:{number}"
    try:
        assert await remote_size(f"{base}/hop/{MAX_REDIRECTS}", reactor, timeout=2) == 4321
        assert await remote_size(f"{base}/see/2", reactor, timeout=2) == 4321
        assert set(resource.methods) == {b"HEAD"}  # 303 does not turn into a GET
        assert await remote_size(f"{base}/hop/{MAX_REDIRECTS + 1}", reactor, timeout=2) is None
        assert await remote_size(f"{base}/length/77+77", reactor, timeout=2) == 77
        for bad in ("abc", "-5", "1e3", "12+13", "99999999999999999999"):
            assert await remote_size(f"{base}/length/{bad}", reactor, timeout=2) is None, bad
    finally:
        await stop(port)


@async_test
async def test_every_redirect_target_passes_the_url_check() -> None:
    """A hop to anything but an http(s) URL with a host is not followed: the server behind it
    is never contacted. A hop to another http server is."""
    silent = SilentFactory()
    silent_port, silent_number = listen(silent)
    other = Redirects(999)
    other_port, other_number = listen(cast(Any, Site(other)))
    resource = Redirects(4321)
    port, number = listen(cast(Any, Site(resource)))
    base = f"http://127.0.0.1:{number}/to?location="
    try:
        for target in (
            f"gopher://127.0.0.1:{silent_number}/x.iso",
            f"ftp://127.0.0.1:{silent_number}/x.iso",
            "file:///etc/passwd",
            f"http://127.0.0.1:{silent_number}/a%20b.iso\x7f",
        ):
            size = await remote_size(base + quote(target, safe=""), reactor, timeout=2)
            assert size is None, target
        assert silent.transports == []
        target = f"http://127.0.0.1:{other_number}/hop/1"
        assert await remote_size(base + quote(target, safe=""), reactor, timeout=2) == 999
        assert other.methods == [b"HEAD", b"HEAD"]
    finally:
        for listening in (port, other_port, silent_port):
            await stop(listening)


@implementer(IAgent)
class RecordingAgent:
    """An agent that records the URLs it is asked for and answers nothing."""

    def __init__(self) -> None:
        self.asked: list[bytes] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        self.asked.append(uri)
        return Deferred()


@async_test
async def test_the_first_url_passes_the_same_check_as_every_hop() -> None:
    """The check wraps the agent a caller gives too: a refused URL never reaches it."""
    agent = RecordingAgent()
    for bad in ("http://exa mple.org/x.iso", "http://é.example/x.iso", "http://:80/x.iso"):
        assert await remote_size(bad, reactor, timeout=1, agent=agent) is None
    assert agent.asked == []
    asked = remote_size("https://mirror.example/x.iso", reactor, timeout=5, agent=agent)
    assert agent.asked == [b"https://mirror.example/x.iso"]
    asked.cancel()
    assert await asked is None


@async_test
async def test_remote_size_times_out_on_a_silent_server() -> None:
    factory = SilentFactory()
    port, number = listen(factory)
    try:
        started = time.monotonic()
        size = await remote_size(f"http://127.0.0.1:{number}/x.iso", reactor, timeout=0.3)
        assert size is None
        assert time.monotonic() - started < 1.5
        assert factory.transports  # it did connect, and was left waiting
    finally:
        for transport in factory.transports:
            transport.loseConnection()
        await stop(port)


@async_test
async def test_remote_size_local_and_other_schemes(tmp_path: Path) -> None:
    iso = tmp_path / "local image.iso"
    grow(iso, 2048)
    assert await remote_size(iso.as_uri(), reactor) == 2048
    assert await remote_size(f"file://localhost{iso}", reactor) == 2048
    assert await remote_size(str(iso), reactor) == 2048  # fetch(1): no scheme, a path
    assert await remote_size((tmp_path / "missing.iso").as_uri(), reactor) is None
    assert await remote_size(tmp_path.as_uri(), reactor) is None  # not a regular file
    assert await remote_size("ftp://ftp.freebsd.org/pub/x.iso", reactor) is None
    assert await remote_size("gopher://example.org/x.iso", reactor) is None
    assert await remote_size("http://[::1", reactor) is None  # unparsable: no exception


@async_test
async def test_remote_size_unreachable_port() -> None:
    port, number = listen(SilentFactory())
    await stop(port)
    assert await remote_size(f"http://127.0.0.1:{number}/x.iso", reactor, timeout=2) is None


# --------------------------------------------------------------------------------------------
# Formatting


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (0, "0 Bps"),
        (-3, "0 Bps"),
        (float("nan"), "0 Bps"),
        (0.9, "0 Bps"),
        (512, "512 Bps"),
        (512.7, "512 Bps"),
        (9999, "9999 Bps"),
        (10000, "9 kBps"),
        (12 * 1024, "12 kBps"),
        (12 * 1024 + 1023, "12 kBps"),
        (9999 * 1024 + 1023, "9999 kBps"),
        (10000 * 1024, "9 MBps"),
        (3 * 1024 * 1024, "3072 kBps"),  # fetch switches to M only above 9999 kB
        (10 * 1000 * 1000, "9765 kBps"),
        (11 * 1024 * 1024, "11 MBps"),
        (5 * 1024**3, "5120 MBps"),
        (20 * 1024**3, "20 GBps"),
        (20 * 1024**6, "20480 PBps"),
    ],
)
def test_format_rate(rate: float, text: str) -> None:
    assert format_rate(rate) == text


def test_format_rate_agrees_with_the_simulated_fetch() -> None:
    """The simulator prints fetch(1)'s padded ``stat_bps``; only the padding differs."""
    for rate in (*range(0, 30000, 37), *(int(1.37**power) for power in range(20, 120))):
        padded = stat_rate(rate, 1.0)
        assert format_rate(rate) == " ".join(padded.split()), rate


def test_format_percent_rounds_down() -> None:
    assert format_percent(Progress(done=999, total=1000, rate=0)) == "99%"
    assert format_percent(Progress(done=0, total=1000, rate=0)) == "0%"
    assert format_percent(Progress(done=1, total=None, rate=0)) == ""


def test_event_times_are_local_without_a_zone() -> None:
    moment = datetime(2016, 3, 4, 11, 5, 39, 123456, tzinfo=timezone(timedelta(hours=5)))
    expected = moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
    assert local_time(moment.timestamp()) == expected
    assert local_time(moment.astimezone(UTC).timestamp()) == expected
    assert local_time(None) is None


def test_state_mapping_and_results() -> None:
    assert sysadm_state("queued") == "pending"
    assert sysadm_state("running") == "running"
    for final in ("succeeded", "failed", "cancelled", "interrupted", "finished"):
        assert sysadm_state(final) == "finished"
        assert result_of(final, 0) == ("succeeded" if final == "finished" else final)
    assert result_of("finished", 1) == "failed"
    assert result_of("finished", None) == "failed"
    assert result_of("running", None) is None
    with pytest.raises(ValueError, match="unknown task state"):
        sysadm_state("done")


# --------------------------------------------------------------------------------------------
# dispatcher_event

TASK = "sysadm_iohyve_fetch::{b3a8b980-a564-4ff8-86a2-1971bd4f58d1}"
URL = f"http://mirror.example.org/ISO-IMAGES/{NAME}"
COMMAND = f"iohyve fetch {URL}"
RETURN_KEY = f"return_codes/{COMMAND}"
TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"

_COMMON: dict[str, Any] = {
    "event_system": {"const": "sysadm/iohyve"},
    "filename": {"type": "string"},
    "percent_done": {"type": "string", "pattern": r"^\d{1,3}%$"},
    "download_rate": {"type": "string", "pattern": r"^(\d+ [kMGTP]?Bps)?$"},
    "bytes_done": {"type": "integer", "minimum": 0},
    "bytes_total": {"type": ["integer", "null"], "minimum": 0},
    "percent": {"type": "number", "minimum": 0, "maximum": 100},
    "rate": {"type": "number", "minimum": 0},
}
#: percent_done and percent are there exactly when the total is known.
_COMMON_REQUIRED = [
    *(key for key in _COMMON if key not in ("percent_done", "percent")),
    "state",
    "process_details",
]
_DETAILS_BASE: dict[str, Any] = {
    "cmd_list": {"type": "array", "items": {"const": COMMAND}, "minItems": 1, "maxItems": 1},
    "process_id": {"const": TASK},
}


def _schema(state: str, details: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    properties = {**_COMMON, "state": {"const": state}, **extra}
    details_properties = {**_DETAILS_BASE, "state": {"const": state}, **details}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            **properties,
            "process_details": {
                "type": "object",
                "properties": details_properties,
                "required": list(details_properties),
                "additionalProperties": False,
            },
        },
        "required": [*_COMMON_REQUIRED, *extra],
        "dependentRequired": {"percent_done": ["percent"], "percent": ["percent_done"]},
        "additionalProperties": False,
    }


PENDING_SCHEMA = _schema("pending", {}, {})
RUNNING_SCHEMA = _schema(
    "running",
    {
        "time_started": {"type": "string", "pattern": TIME},
        "current_cmd": {"const": COMMAND},
        COMMAND: {"type": "string"},
    },
    {},
)
FINISHED_SCHEMA = _schema(
    "finished",
    {
        "time_started": {"type": "string", "pattern": TIME},
        "time_finished": {"type": "string", "pattern": TIME},
        COMMAND: {"type": "string"},
        RETURN_KEY: {"type": "string", "pattern": r"^-?\d+$"},
    },
    {
        "result": {"enum": ["succeeded", "failed", "cancelled", "interrupted"]},
        "arrived": {"type": "boolean"},
        "size": {"type": ["integer", "null"], "minimum": 0},
    },
)


def validate(schema: dict[str, Any], event: dict[str, object]) -> None:
    Draft202012Validator.check_schema(schema)
    Draft202012Validator(schema).validate(event)


STARTED = "2016-03-04T11:05:39"
FINISHED = "2016-03-04T11:07:02"


def test_pending_event() -> None:
    event = dispatcher_event(
        task_id=TASK,
        command=COMMAND,
        state="queued",
        started=None,
        finished=None,
        progress=None,
        filename=NAME,
        new_output="",
        return_code=None,
    )
    validate(PENDING_SCHEMA, event)
    assert event == {
        "event_system": "sysadm/iohyve",
        "state": "pending",
        "filename": NAME,
        "download_rate": "",
        "process_details": {"cmd_list": [COMMAND], "process_id": TASK, "state": "pending"},
        "bytes_done": 0,
        "bytes_total": None,
        "rate": 0.0,
    }


def test_running_event() -> None:
    progress = Progress(done=42 * 1024 * 1024, total=100 * 1024 * 1024, rate=3.5 * 1024 * 1024)
    event = dispatcher_event(
        task_id=TASK,
        command=COMMAND,
        state="running",
        started=STARTED,
        finished=None,
        progress=progress,
        filename=NAME,
        new_output="Fetching ...\n",
        return_code=None,
    )
    validate(RUNNING_SCHEMA, event)
    assert event["percent_done"] == "42%"
    assert event["download_rate"] == "3584 kBps"
    assert event["bytes_done"] == 42 * 1024 * 1024
    assert event["bytes_total"] == 100 * 1024 * 1024
    assert event["percent"] == 42.0
    assert event["rate"] == 3.5 * 1024 * 1024
    assert event["process_details"] == {
        "cmd_list": [COMMAND],
        "process_id": TASK,
        "state": "running",
        "time_started": STARTED,
        "current_cmd": COMMAND,
        COMMAND: "Fetching ...\n",
    }


def test_running_event_with_unknown_total() -> None:
    event = dispatcher_event(
        task_id=TASK,
        command=COMMAND,
        state="running",
        started=STARTED,
        finished=None,
        progress=Progress(done=10, total=None, rate=512),
        filename=NAME,
        new_output="",
        return_code=None,
    )
    validate(RUNNING_SCHEMA, event)
    # No percentage at all, rather than an empty one: bytes and rate only.
    assert "percent_done" not in event and "percent" not in event
    assert (event["bytes_done"], event["bytes_total"], event["rate"]) == (10, None, 512.0)
    assert event["download_rate"] == "512 Bps"


def test_finished_event_succeeded() -> None:
    progress = Progress(done=2048, total=2048, rate=0.0)
    event = dispatcher_event(
        task_id=TASK,
        command=COMMAND,
        state="succeeded",
        started=STARTED,
        finished=FINISHED,
        progress=progress,
        filename=NAME,
        new_output="     2 kB  1 MBps\n",
        return_code=0,
    )
    validate(FINISHED_SCHEMA, event)
    assert set(event) == {
        "event_system",
        "state",
        "filename",
        "percent_done",
        "download_rate",
        "process_details",
        "bytes_done",
        "bytes_total",
        "percent",
        "rate",
        "result",
        "arrived",
        "size",
    }
    assert event["process_details"] == {
        "cmd_list": [COMMAND],
        "process_id": TASK,
        "state": "finished",
        "time_started": STARTED,
        COMMAND: "     2 kB  1 MBps\n",
        RETURN_KEY: "0",
        "time_finished": FINISHED,
    }
    assert (event["result"], event["arrived"], event["size"]) == ("succeeded", True, 2048)
    assert (event["percent_done"], event["download_rate"]) == ("100%", "0 Bps")


def test_finished_event_failed_cancelled_interrupted() -> None:
    for state, code, text in (
        ("failed", 1, "1"),
        ("cancelled", -15, "-15"),
        ("interrupted", None, "-1"),
    ):
        event = dispatcher_event(
            task_id=TASK,
            command=COMMAND,
            state=state,
            started=STARTED,
            finished=FINISHED,
            progress=Progress(done=100, total=None, rate=0.0),
            filename=NAME,
            new_output="fetch: ...: Not Found\n",
            return_code=code,
        )
        validate(FINISHED_SCHEMA, event)
        details = cast(dict[str, object], event["process_details"])
        assert details[RETURN_KEY] == text
        assert "current_cmd" not in details
        assert (event["result"], event["arrived"], event["size"]) == (state, False, None)


def test_finished_event_cancelled_while_queued_and_overrides() -> None:
    event = dispatcher_event(
        task_id=TASK,
        command=COMMAND,
        state="cancelled",
        started=None,
        finished=FINISHED,
        progress=None,
        filename=NAME,
        new_output="",
        return_code=None,
        arrived=True,
        size=99,
        extra={"message": "cancelled", "percent_done": "n/a"},
    )
    details = cast(dict[str, object], event["process_details"])
    assert set(details) == {"cmd_list", "process_id", "state", COMMAND, RETURN_KEY, "time_finished"}
    assert (event["arrived"], event["size"], event["message"]) == (True, 99, "cancelled")
    assert event["percent_done"] == "n/a"  # extra is merged last


def test_event_rejects_unknown_state_and_colliding_command() -> None:
    arguments: dict[str, Any] = {
        "task_id": TASK,
        "command": COMMAND,
        "started": None,
        "finished": None,
        "progress": None,
        "filename": NAME,
        "new_output": "",
        "return_code": None,
    }
    with pytest.raises(ValueError, match="unknown task state"):
        dispatcher_event(**{**arguments, "state": "paused"})
    with pytest.raises(ValueError, match="collides"):
        dispatcher_event(**{**arguments, "state": "running", "command": "state"})


def test_events_are_json() -> None:
    event = dispatcher_event(
        task_id=TASK,
        command=COMMAND,
        state="running",
        started=local_time(time.time()),
        finished=None,
        progress=Progress(done=1, total=3, rate=1 / 3),
        filename=NAME,
        new_output="x",
        return_code=None,
    )
    assert json.loads(json.dumps(event)) == event
    validate(RUNNING_SCHEMA, event)
