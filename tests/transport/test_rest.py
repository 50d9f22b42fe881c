"""The REST transport, in memory through treq.testing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from probe import OpenGate, probe_api
from support import async_test
from treq import put as treq_put
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

from sysadmd.api import Api, EventHub, Registry, Role
from sysadmd.app import build_site
from sysadmd.auth._authenticator import Account
from sysadmd.services import EVENT_NAMES, EventActions

URL = "http://sysadmd.test/test/probe"
JSON_HEADERS: Any = {"Content-Type": "application/json"}


@pytest.fixture
def treq(tmp_path: Path) -> Any:
    api, _ = probe_api()
    return StubTreq(build_site(api, reactor).resource)


async def _call(treq: Any, method: str, url: str, body: bytes | None) -> tuple[int, Any]:
    response = await treq.request(
        method, url, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
    return response.code, json.loads(await response.content())


@pytest.mark.parametrize("method", ["PUT", "POST"])
@async_test
async def test_call_with_body_as_args(treq: Any, method: str) -> None:
    """The body is the arguments; the reply is ``{"args": …}``."""
    assert await _call(treq, method, URL, b'{"action": "echo", "word": "hi"}') == (
        200,
        {"args": {"echo": {"word": "hi"}}},
    )


@async_test
async def test_call_with_wrapped_args(treq: Any) -> None:
    """``{"args": …}`` works too, and envelope keys in a bare body are not arguments."""
    assert await _call(treq, "PUT", URL, b'{"args": {"action": "echo", "word": "a"}}') == (
        200,
        {"args": {"echo": {"word": "a"}}},
    )
    assert await _call(
        treq, "PUT", URL, b'{"action": "echo", "word": "b", "id": "x", "name": "probe"}'
    ) == (200, {"args": {"echo": {"word": "b"}}})


@pytest.mark.parametrize(
    ("url", "body", "code", "words"),
    [
        (URL, b'{"action": "taken"}', 409, "it is taken"),
        (URL, b'{"action": "echo"}', 400, "needs argument 'word'"),
        (URL, b'{"action": "echo", "word": "../etc"}', 400, "argument 'word' may hold"),
        (URL, b"{not json", 400, "not valid JSON"),
        (URL, b"", 400, "not valid JSON"),
        (URL, b"[1, 2]", 400, "JSON object"),
        (URL, b'{"a": 1, "a": 2}', 400, "same key"),
        ("http://sysadmd.test/test/nothing", b'{"action": "echo"}', 404, "no API class"),
        ("http://sysadmd.test/a/b/c", b"{}", 404, "no such path"),
    ],
)
@async_test
async def test_errors(treq: Any, url: str, body: bytes, code: int, words: str) -> None:
    """The status is the error's code; the body says what is wrong."""
    status, reply = await _call(treq, "PUT", url, body)
    assert status == code
    assert reply["args"]["code"] == str(code)
    assert words in reply["args"]["message"]
    assert set(reply) == {"args"}


@async_test
async def test_other_methods(treq: Any) -> None:
    """GET and friends get a JSON 405 naming the methods to use."""
    response = await treq.get(URL)
    assert response.code == 405
    assert response.headers.getRawHeaders("Allow") == ["PUT, POST"]
    assert json.loads(await response.content())["args"]["code"] == "405"


@pytest.mark.parametrize("enabled", [False, True])
@async_test
async def test_access_log_only_when_asked_for(tmp_path: Path, enabled: bool) -> None:
    """``log.access``: each request is logged in the combined format, or not at all."""
    api, _ = probe_api()
    site: Any = build_site(api, reactor, access_log=enabled)
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        text = event.get("log_io") or ""
        if "/test/probe" in text:
            lines.append(text)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/test/probe"
        response = await treq_put(
            url, data=b'{"action": "echo", "word": "w"}', headers=JSON_HEADERS
        )
        assert response.code == 200
        await response.content()
    finally:
        globalLogPublisher.removeObserver(observer)
        await port.stopListening()
    if enabled:
        assert len(lines) == 1 and '"PUT /test/probe HTTP/1.1" 200' in lines[0]
    else:
        assert lines == []


@async_test
async def test_events_are_refused_over_rest() -> None:
    """events/subscribe acts on a lasting connection: REST answers 400 and subscribes nobody."""
    hub = EventHub(EVENT_NAMES)
    registry = Registry()
    registry.register(EventActions(hub))
    api = Api(registry, OpenGate(Account("alice", Role.OPERATOR)))
    rest: Any = StubTreq(build_site(api, reactor).resource)
    url = "http://sysadmd.test/events/subscribe"
    status, reply = await _call(rest, "PUT", url, b'{"args": "dispatcher"}')
    assert status == 400
    assert reply == {
        "args": {"code": "400", "message": "events are delivered over WebSocket connections only"}
    }
