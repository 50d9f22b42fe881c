"""The REST request cycle leaves nothing for the cyclic garbage collector.

Every object an API call builds must be freed by reference counting once its reply is written:
a reference cycle per request (a closure that refers to itself, an adapter and the request
holding each other) keeps the objects alive until a collection, which then runs more often
and walks them all, and shows in the tail latency under load.
"""

from __future__ import annotations

import gc
import json
import random
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from klein import Klein
from probe import probe_api
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from sysadmd.app import build_site
from sysadmd.transport._rest import (
    CALL_ROUTE,
    _claimed_segments,
    _encode,
    _RestRoot,
    _Shapes,
)

REQUESTS = 1000
#: Allowance for objects that reach the collector once, not per request (caches warming up).
ONCE = 100


def _request(path: bytes, body: bytes, method: bytes = b"PUT") -> bytes:
    return (
        b"%s %s HTTP/1.1\r\nHost: sysadmd.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (method, path, len(body), body)
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (_request(b"/test/probe", b'{"action": "echo", "word": "hi"}'), b"200"),
        (_request(b"/test/probe", b'{"action": "nosuch"}'), b"400"),
        (_request(b"/test/probe", b"", b"GET"), b"405"),
    ],
    ids=["call", "api-error", "wrong-method"],
)
@pytest.mark.usefixtures("no_automatic_collection")
def test_requests_leave_no_cyclic_garbage(request_bytes: bytes, status: bytes) -> None:
    api, _ = probe_api()
    site = build_site(api, Clock())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    # One request first, so that what is built once (caches, the route map) is not counted.
    channel.dataReceived(request_bytes)
    assert transport.value().startswith(b"HTTP/1.1 " + status), transport.value()[:200]
    gc.collect()
    for _ in range(REQUESTS):
        transport.clear()
        channel.dataReceived(request_bytes)
        assert transport.value().startswith(b"HTTP/1.1 " + status), transport.value()[:200]
    unreachable = gc.collect()
    channel.connectionLost(None)
    assert unreachable < ONCE, f"{unreachable} objects in cycles after {REQUESTS} requests"


def _scan(count: int) -> list[bytes]:
    """``count`` paths a scanner might try: one to five segments, none of them a route's."""
    chosen = random.Random(20)  # noqa: S311 (test data, not secrets)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._-"
    paths = []
    for _ in range(count):
        words = ["".join(chosen.choices(alphabet, k=chosen.randint(1, 12)))]
        words += ["".join(chosen.choices(alphabet, k=chosen.randint(1, 12)))]
        words += [chosen.choice(["x", "admin", "index.php", ".env"]) for _ in range(1, 4)]
        depth = chosen.choice([1, 3, 4, 5])
        paths.append(("/" + "/".join(words[:depth])).encode())
    return paths


@pytest.mark.usefixtures("no_automatic_collection")
def test_a_scan_of_unknown_paths_leaves_no_cyclic_garbage() -> None:
    """1,000 requests for paths no route has (GET, as a scanner sends them) are answered 404
    without the router, and leave nothing in reference cycles."""
    api, _ = probe_api()
    site = build_site(api, Clock())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    paths = _scan(REQUESTS + 1)
    channel.dataReceived(_request(paths[0], b"", b"GET"))
    assert transport.value().startswith(b"HTTP/1.1 404"), transport.value()[:200]
    gc.collect()
    for path in paths[1:]:
        transport.clear()
        channel.dataReceived(_request(path, b"", b"GET"))
        assert transport.value().startswith(b"HTTP/1.1 404"), (path, transport.value()[:200])
    unreachable = gc.collect()
    channel.connectionLost(None)
    assert unreachable < ONCE, f"{unreachable} objects in cycles after {REQUESTS} requests"


def _exchange(request_bytes: bytes) -> bytes:
    api, _ = probe_api()
    site = build_site(api, Clock())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    assert channel is not None
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request_bytes)
    channel.connectionLost(None)
    # The Date header is the only thing that may differ between two answers.
    return re.sub(rb"\r\nDate: [^\r]*", b"", transport.value())


_PATHS = [
    b"/",
    b"/nosuch",
    b"/a/b/c",
    b"/iso",
    b"/iso/x/y",
    b"/iso/x/",
    b"/openapi.json/x/y",
    b"/test/probe/x",
    b"//",
    b"//nosuch",
    b"/a//b//c",
    b"/a%2Fb/c",
    b"/a%2Fb%2Fc/d",
    b"/%C3%A9t%C3%A9/x/y",
    b"/%FF/x/y",
    b"/openapi.json",
    b"/iso/x",
    b"/test/probe",
    b"/nosuch?query=1",
    b"/a/b/c/d/e/f/g",
]


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"HEAD"])
@pytest.mark.parametrize("path", _PATHS, ids=[p.decode() for p in _PATHS])
def test_what_skips_the_router_answers_as_the_router_does(
    path: bytes, method: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever path the direct root answers itself, the bytes on the wire (status, headers,
    body) are the router's for the same request."""
    request_bytes = _request(path, b'{"action": "echo", "word": "hi"}', method)
    direct = _exchange(request_bytes)
    monkeypatch.setattr(_Shapes, "unmatched", lambda self, path: False)
    monkeypatch.setattr(_RestRoot, "_websocket_path", staticmethod(lambda path: False))
    routed = _exchange(request_bytes)
    assert direct == routed


def test_paths_no_route_can_match_are_told_from_the_routes_shapes() -> None:
    shapes = _Shapes(_app("/", CALL_ROUTE, "/openapi.json", "/iso/<name>"))
    for unmatched in (b"/nosuch", b"/a/b/c", b"/iso/x/y/", b"/a//b//c", b"/a%2Fb/c"):
        segments = [s.replace(b"%2F", b"/") for s in unmatched[1:].split(b"/")]
        assert shapes.unmatched(segments), unmatched
    for routed in (b"/", b"//", b"/openapi.json", b"/iso/x", b"/a/b", b"/a//b", b"/iso/x/"):
        assert not shapes.unmatched(routed[1:].split(b"/")), routed
    assert not shapes.unmatched([b"\xff", b"x", b"y"])  # the router answers 400
    assert not _Shapes(_app(CALL_ROUTE, "/files/<path:rest>")).unmatched([b"a", b"b", b"c"])
    assert not _Shapes(_app(CALL_ROUTE, "/x-<a>-<b>")).unmatched([b"a", b"b", b"c"])
    assert _Shapes(_app(CALL_ROUTE, "/<int:n>/<a>/<b>")).unmatched([b"a", b"b", b"c", b"d"])


_KEYS = st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(), inner, max_size=4),
    ),
    max_leaves=20,
)


@given(_VALUES)
def test_replies_are_encoded_as_before(value: Any) -> None:
    """The REST reply encoder writes the same bytes as ``json.dumps(indent=4, sort_keys=True,
    ensure_ascii=False)`` did (NaN and infinities included)."""
    expected = json.dumps(value, indent=4, sort_keys=True, ensure_ascii=False) + "\n"
    assert _encode(value) == expected.encode()


@given(st.dictionaries(_KEYS, st.integers(), max_size=1))
def test_non_string_keys_are_encoded_as_before(value: dict[Any, int]) -> None:
    expected = json.dumps(value, indent=4, sort_keys=True, ensure_ascii=False) + "\n"
    assert _encode(value) == expected.encode()


@pytest.mark.parametrize("value", [{"a": object()}, {(1, 2): 3}])
def test_what_json_refuses_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value, indent=4, sort_keys=True)
    with pytest.raises(TypeError):
        _encode(value)


def test_a_circular_value_is_refused() -> None:
    value: list[Any] = []
    value.append(value)
    with pytest.raises(ValueError, match="Circular"):
        _encode(value)


def _app(*routes: str) -> Klein:
    app = Klein()
    for route in routes:
        app.route(route)(lambda request: b"")
    return app


def test_routes_with_a_fixed_first_segment_keep_their_paths() -> None:
    """Calls skip the router only on paths no other route claims: ``PUT /iso/<name>`` stays
    the router's, and a route that could match any two-segment path sends every path there."""
    claimed = _claimed_segments(_app("/", CALL_ROUTE, "/openapi.json", "/iso/<name>"))
    assert claimed == frozenset({b"", b"openapi.json", b"iso"})
    assert _claimed_segments(_app(CALL_ROUTE, "/<kind>/list")) is None
    assert _claimed_segments(_app(CALL_ROUTE, "/<a>/<b>/<c>")) == frozenset()
