"""Connection caps, the monitoring reserve, the first-request deadline, the refusal log."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, cast

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.web.server import Site
from twisted.web.static import Data

from sysadmd.transport._limits import ConnectionCounter, address_key, first_request_channel

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every line the connection counter logs while the test runs."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace", "").startswith("sysadmd.transport._limits"):
            lines.append(formatEvent(event))

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def test_ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    """One host's many IPv6 addresses share one count, and so do both spellings of an
    IPv4 address: otherwise the per-address cap is easy to walk around."""
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::7")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
    counter = ConnectionCounter(total=100, per_address=2, clock=Clock())
    assert [counter.admit(h) for h in ("2001:db8::1", "2001:db8::2", "2001:db8::3")] == [
        True,
        True,
        False,
    ]
    assert [counter.admit(h) for h in ("10.0.0.1", "::ffff:10.0.0.1", "10.0.0.1")] == [
        True,
        True,
        False,
    ]


def test_the_reserve_is_kept_for_the_monitoring_addresses() -> None:
    """When other addresses hold every place but the reserved ones, only a monitoring
    address gets in; the total cap still holds for it."""
    counter = ConnectionCounter(
        total=6, per_address=2, reserved=2, reserved_for=LOOPBACK, clock=Clock()
    )
    assert [counter.admit(f"10.0.0.{n}") for n in (1, 1, 2, 2, 3)] == [True] * 4 + [False]
    assert counter.admit("127.0.0.1") and counter.admit("::ffff:127.0.0.1")
    assert not counter.admit("127.0.0.1")  # its per-address cap
    counter.release("127.0.0.1")
    assert not counter.admit("10.0.0.3")
    assert counter.admit("127.0.0.1")
    assert counter.open == 6


def test_the_reserve_must_leave_room() -> None:
    with pytest.raises(ValueError, match="fewer than the total"):
        ConnectionCounter(total=4, per_address=2, reserved=4)


def test_refusals_are_logged_as_one_line_per_interval(logged: list[str]) -> None:
    """A thousand refusals make one line at the end of the interval, with the counts by
    cap and the address most refused; a quiet interval logs nothing."""
    clock = Clock()
    counter = ConnectionCounter(total=4, per_address=2, reserved=1, clock=clock)
    assert all(counter.admit(host) for host in ("10.0.0.1", "10.0.0.1", "10.0.0.2"))
    for _ in range(999):
        assert not counter.admit("10.0.0.1")  # the total (less the reserve) is reached
    counter.release("10.0.0.2")
    assert not counter.admit("10.0.0.1")  # its own cap
    counter.timed_out("10.0.0.9", 5.0)
    assert logged == []
    clock.advance(59)
    assert logged == []
    clock.advance(1)
    assert logged == [
        "Refused 1000 connection(s) in the last 60 s (999 at the cap of 4 open connections, "
        "1 of them kept for the monitoring addresses; 1 at the per-address cap of 2); "
        "closed 1 connection(s) that sent no request within 5 s; most from 10.0.0.1 (1000)"
    ]
    clock.advance(600)
    assert len(logged) == 1
    assert not counter.admit("10.0.0.1")
    clock.advance(60)
    assert len(logged) == 2 and logged[1].startswith("Refused 1 connection(s)")


def _connect(clock: Clock, expired: list[tuple[str, float]]) -> tuple[StringTransport, Any]:
    """A connection to a Site whose channels give 5 s for the first request line."""
    page = Data(b"ok", "text/plain")
    page.isLeaf = True
    site = Site(page, reactor=clock)
    site.protocol = first_request_channel(  # type: ignore[assignment]
        5.0, lambda host, seconds: expired.append((host, seconds))
    )
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 4242))
    channel = site.buildProtocol(transport.getPeer())
    assert channel is not None
    channel.makeConnection(transport)
    return transport, channel


def test_a_connection_that_sends_no_request_line_is_closed_at_the_deadline() -> None:
    """Bytes that complete no line, and the one blank line HTTP allows, do not extend the
    deadline, so a drip cannot hold the place; the closing is reported (to be counted in
    the refusal log)."""
    clock = Clock()
    expired: list[tuple[str, float]] = []
    transport, channel = _connect(clock, expired)
    clock.advance(3)
    channel.dataReceived(b"\r\n")
    clock.advance(1)
    channel.dataReceived(b"GET /li")
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnected  # aborted
    assert expired == [("10.0.0.7", 5.0)]


def test_a_request_line_in_time_lifts_the_deadline() -> None:
    """Once the first line is in, the request is served and this deadline is gone."""
    clock = Clock()
    expired: list[tuple[str, float]] = []
    transport, channel = _connect(clock, expired)
    clock.advance(4.9)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200")
    clock.advance(30)
    assert not transport.disconnecting and expired == []
