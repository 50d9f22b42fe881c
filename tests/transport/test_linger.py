"""The lingering close of a refused request, on a clock the test moves."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.static import Data
from zope.interface import implementer

from sysadmd.transport._limits import ConnectionCounter
from sysadmd.transport._linger import LINGER_BYTES, LINGER_SECONDS, LingeringChannel
from sysadmd.transport._rest import ApiSite

#: A REST call whose body is over the site's cap: refused with 413 from its headers.
HEAD = b"PUT /sysadm/iohyve HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"


@implementer(ITCPTransport)
class HalfClosingTransport(StringTransport):
    """A TCP transport that records a shutdown of its write side."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False


def _aborted(transport: StringTransport) -> bool:
    return bool(transport.disconnected)


def _connect(clock: Clock) -> tuple[HalfClosingTransport, Any]:
    page = Data(b"ok", "text/plain")
    page.isLeaf = True
    site = ApiSite(page, clock, max_body=1024, request_deadline=10)
    transport = HalfClosingTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 4242))
    channel = site.buildProtocol(transport.getPeer())
    assert isinstance(channel, LingeringChannel)
    channel.makeConnection(transport)
    return transport, channel


def test_a_refusal_half_closes_and_discards_what_follows_until_the_time_bound() -> None:
    """The answer is written whole, the write side shut; the body that goes on arriving is
    dropped unparsed and does not extend the bound: at ``LINGER_SECONDS`` the connection
    is aborted."""
    clock = Clock()
    transport, channel = _connect(clock)
    transport.pauseProducing()  # as a request being decided leaves it
    channel.dataReceived(HEAD + b"x" * 1000)
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b"}")
    assert b"at most 1024 bytes" in answer
    assert transport.write_closed and not transport.disconnecting
    assert transport.producerState == "producing"  # it reads on
    for _ in range(19):
        clock.advance(LINGER_SECONDS / 20)
        channel.dataReceived(b"x" * 4096)
    assert not _aborted(transport)
    assert channel.discarded == 19 * 4096
    assert channel._dataBuffer == [] and channel.requests[0].content.getvalue() == b""
    assert transport.value() == answer  # nothing more is sent
    clock.advance(LINGER_SECONDS / 20)
    assert _aborted(transport)  # at the bound
    assert channel._linger_timer is None


def test_a_refusal_s_connection_ends_once_the_byte_bound_is_passed() -> None:
    """Past ``LINGER_BYTES`` discarded, the connection is aborted before the time bound."""
    clock = Clock()
    transport, channel = _connect(clock)
    channel.dataReceived(HEAD)
    channel.dataReceived(b"x" * LINGER_BYTES)
    assert not _aborted(transport)
    channel.dataReceived(b"x")
    assert _aborted(transport)
    assert channel._linger_timer is None


def test_a_client_that_closes_after_the_answer_ends_the_lingering() -> None:
    """The usual end: the client reads the answer and closes; nothing is left to fire."""
    clock = Clock()
    transport, channel = _connect(clock)
    channel.dataReceived(HEAD)
    assert channel.lingering
    channel.connectionLost(Failure(ConnectionDone()))
    clock.advance(LINGER_SECONDS)
    assert not transport.disconnected  # no abort after the close


def test_an_accepted_request_does_not_linger() -> None:
    """A request that is not refused is served on a connection that stays open."""
    clock = Clock()
    transport, channel = _connect(clock)
    channel.dataReceived(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert not channel.lingering and not transport.write_closed
    clock.advance(LINGER_SECONDS)
    assert not transport.disconnecting and not transport.disconnected


def test_a_lingering_connection_holds_its_place_under_the_caps() -> None:
    """Until the lingering ends, the connection counts as open, as any other does."""
    clock = Clock()
    counter = ConnectionCounter(total=4, per_address=1, clock=clock)
    page = Data(b"ok", "text/plain")
    page.isLeaf = True
    factory = counter.wrap(ApiSite(page, clock, max_body=1024, request_deadline=10))
    transport = HalfClosingTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 4242))
    wrapper = factory.buildProtocol(transport.getPeer())
    assert wrapper is not None
    wrapper.makeConnection(transport)
    wrapper.dataReceived(HEAD)
    assert transport.value().startswith(b"HTTP/1.1 413 ") and transport.write_closed
    assert counter.open == 1
    assert factory.buildProtocol(transport.getPeer()) is None  # the address's one place
    clock.advance(LINGER_SECONDS)
    assert _aborted(transport)
    wrapper.connectionLost(Failure(ConnectionDone()))
    assert counter.open == 0
