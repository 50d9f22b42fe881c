"""Caps on open connections, a deadline for a new connection's first request, and a
reserve of connections for the monitoring addresses.

Twisted's own ``LimitConnectionsByPeer`` indexes the peer address as a tuple,
which ``IPv4Address`` is not, so it cannot be used as it is; this counts by
address. Each listener wraps its outermost factory (outside TLS, so a refused
connection costs no handshake) in a :class:`LimitedFactory` sharing one
:class:`ConnectionCounter`; the Site's channels are :class:`FirstRequestChannel`.

Why a per-address cap alone does not protect the daemon
    With 256 connections in all and 16 per address, 16 addresses that open
    connections and send nothing fill every place for as long as Twisted lets an idle
    connection live (60 s), and then everyone is locked out, ``/livez`` included. So:

    - a new connection must finish its TLS handshake and send its first request line
      within ``handshake_timeout`` seconds (then the request deadline of
      :class:`sysadmd.transport._rest.LimitedRequest` takes over); idle connections no longer
      hold places for a minute;
    - the per-address cap is well below the total (8 of 256 by default), and an IPv6
      client is counted by its /64 network, the block one host usually holds (an
      IPv4-mapped IPv6 address counts as the IPv4 address);
    - ``reserved`` places of the total are kept for the addresses in
      ``reserved_for`` (the monitoring addresses, ``metrics.allow``): when the others
      have filled everything else, ``/livez``, ``/readyz`` and ``/metrics`` still
      answer there.

Refusals are logged as a rate, one line per ``report_every`` seconds at most, never
one line per connection: a flood must not flood the log as well.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from typing import cast

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure

from sysadmd.api import address_in
from sysadmd.config import Network
from sysadmd.transport._linger import LingeringChannel

#: IPv6 clients are counted by this prefix: one host usually holds a whole /64.
IPV6_PREFIX = 64


def address_key(host: str) -> str:
    """The key a peer's connections are counted under.

    An IPv4 address is its own key; an IPv4-mapped IPv6 address counts as that IPv4
    address; any other IPv6 address counts as its /64 network. Anything else (a UNIX
    socket's name) is its own key.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def peer_host(addr: IAddress | None) -> str:
    """The host part of a peer address, as text."""
    return str(getattr(addr, "host", addr))


class ConnectionCounter:
    """Open connections by address, the caps they must stay under, and the refusal log."""

    log = Logger()

    def __init__(
        self,
        *,
        total: int,
        per_address: int,
        reserved: int = 0,
        reserved_for: Iterable[Network] = (),
        clock: IReactorTime | None = None,
        report_every: float = 60.0,
    ) -> None:
        if not 0 <= reserved < total:
            raise ValueError("the reserved connections must be fewer than the total")
        self.total = total
        self.per_address = per_address
        self.reserved = reserved
        self.reserved_for = tuple(reserved_for)
        self.report_every = report_every
        self._clock = clock
        self._by_key: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()  # by reason
        self._refused_from: Counter[str] = Counter()  # by address key
        self._timed_out = 0
        self._handshake_timeout: float | None = None
        self._report: IDelayedCall | None = None

    @property
    def open(self) -> int:
        """How many connections are open now."""
        return self._by_key.total()

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host`` if the caps allow it."""
        key = address_key(host)
        limit = self.total if address_in(host, self.reserved_for) else self.total - self.reserved
        if self.open >= limit:
            self._note("total", key)
            return False
        if self._by_key[key] >= self.per_address:
            self._note("per_address", key)
            return False
        self._by_key[key] += 1
        return True

    def release(self, host: str) -> None:
        """A connection from ``host`` has closed."""
        key = address_key(host)
        self._by_key[key] -= 1
        if self._by_key[key] <= 0:
            del self._by_key[key]

    def timed_out(self, host: str, seconds: float) -> None:
        """A connection from ``host`` sent no request within ``seconds``; it is closed."""
        self._timed_out += 1
        self._handshake_timeout = seconds
        self._refused_from[address_key(host)] += 1
        self._schedule_report()

    def wrap(self, factory: IProtocolFactory) -> LimitedFactory:
        """``factory`` behind these caps."""
        return LimitedFactory(self, factory)

    def _note(self, reason: str, key: str) -> None:
        self._refused[reason] += 1
        self._refused_from[key] += 1
        self._schedule_report()

    def _schedule_report(self) -> None:
        if self._report is not None and self._report.active():
            return
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor  # noqa: PLC0415 - only when none was given

            clock = cast(IReactorTime, reactor)
        self._report = clock.callLater(self.report_every, self.report)

    def report(self) -> None:
        """Log what was refused since the last report (one line), and start counting anew."""
        self._report = None
        refused = self._refused.total()
        if not refused and not self._timed_out:
            return
        parts = []
        if refused:
            parts.append(
                f"refused {refused} connection(s) in the last {self.report_every:g} s "
                f"({self._refused['total']} at the cap of {self.total} open connections, "
                f"{self.reserved} of them kept for the monitoring addresses; "
                f"{self._refused['per_address']} at the per-address cap of "
                f"{self.per_address})"
            )
        if self._timed_out:
            parts.append(
                f"closed {self._timed_out} connection(s) that sent no request within "
                f"{self._handshake_timeout:g} s"
            )
        busiest, count = self._refused_from.most_common(1)[0]
        self.log.warn(
            "{summary}; most from {busiest} ({count})",
            summary=_sentence("; ".join(parts)),
            busiest=busiest,
            count=count,
        )
        self._refused.clear()
        self._refused_from.clear()
        self._timed_out = 0


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class LimitedFactory(WrappingFactory):
    """Refuses (closes at once) connections past the counter's caps."""

    def __init__(self, counter: ConnectionCounter, wrapped: IProtocolFactory) -> None:
        super().__init__(cast(Factory, wrapped))
        self._counter = counter
        self._hosts: dict[int, str] = {}

    # IProtocolFactory lets buildProtocol return None to refuse a connection;
    # WrappingFactory's annotation does not say so.
    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        host = peer_host(addr)
        if not self._counter.admit(host):
            return None
        protocol = super().buildProtocol(addr)
        self._hosts[id(protocol)] = host
        return protocol

    def unregisterProtocol(self, protocol: Protocol) -> None:
        super().unregisterProtocol(protocol)
        host = self._hosts.pop(id(protocol), None)
        if host is not None:
            self._counter.release(host)


class FirstRequestChannel(LingeringChannel):
    """An HTTP channel whose first request line must arrive within ``first_line_timeout``
    seconds of the connection, or the connection is aborted.

    Twisted's own idle timeout restarts with every byte and lasts a minute. This one does
    not restart: bytes that do not complete a line do not count, nor does the one blank
    line HTTP allows before a request. Under TLS the channel is connected as soon as the
    TCP connection is accepted (Twisted's TLS layer connects the protocol it wraps at
    once), so the handshake counts too. Once the request line is in, the request has its
    own deadline (:class:`sysadmd.transport._rest.LimitedRequest`).
    """

    first_line_timeout: float = 5.0
    on_expired: Callable[[str, float], object] | None = None
    _first_line_timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._first_line_timer = self.callLater(self.first_line_timeout, self._no_first_line)

    def lineReceived(self, line: bytes) -> None:
        if line:
            self._stop_first_line_timer()
        super().lineReceived(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_first_line_timer()
        super().connectionLost(reason)

    def _stop_first_line_timer(self) -> None:
        timer, self._first_line_timer = self._first_line_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _no_first_line(self) -> None:
        self._first_line_timer = None
        transport = self.transport
        if transport is None:
            return
        if self.on_expired is not None:
            self.on_expired(peer_host(transport.getPeer()), self.first_line_timeout)
        cast(ITCPTransport, transport).abortConnection()


def first_request_channel(
    seconds: float, on_expired: Callable[[str, float], object] | None = None
) -> Callable[[], FirstRequestChannel]:
    """A ``Site.protocol`` building :class:`FirstRequestChannel` with this deadline;
    ``on_expired(host, seconds)`` hears of each connection closed for it."""

    def build() -> FirstRequestChannel:
        channel = FirstRequestChannel()
        channel.first_line_timeout = seconds
        channel.on_expired = on_expired
        return channel

    return build
