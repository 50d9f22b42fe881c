"""Caps on open connections, in total and per peer address, over all listeners.

Twisted's own ``LimitConnectionsByPeer`` indexes the peer address as a tuple,
which ``IPv4Address`` is not, so it cannot be used as it is; this counts by host.
Each listener wraps its outermost factory (outside TLS, so a refused connection
costs no handshake) in a :class:`LimitedFactory` sharing one
:class:`ConnectionCounter`.
"""

from __future__ import annotations

from collections import Counter
from typing import cast

from twisted.internet.interfaces import IAddress, IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory


class ConnectionCounter:
    """Open connections by host, and the caps they must stay under."""

    log = Logger()

    def __init__(self, *, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._by_host: Counter[str] = Counter()

    @property
    def open(self) -> int:
        """How many connections are open now."""
        return self._by_host.total()

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host`` if the caps allow it."""
        if self.open >= self.total:
            self.log.warn(
                "Refused a connection from {host}: {total} are open", host=host, total=self.total
            )
            return False
        if self._by_host[host] >= self.per_address:
            self.log.warn(
                "Refused a connection from {host}: it has {count} open",
                host=host,
                count=self._by_host[host],
            )
            return False
        self._by_host[host] += 1
        return True

    def release(self, host: str) -> None:
        """A connection from ``host`` has closed."""
        self._by_host[host] -= 1
        if self._by_host[host] <= 0:
            del self._by_host[host]

    def wrap(self, factory: IProtocolFactory) -> LimitedFactory:
        """``factory`` behind these caps."""
        return LimitedFactory(self, factory)


class LimitedFactory(WrappingFactory):
    """Refuses (closes at once) connections past the counter's caps."""

    def __init__(self, counter: ConnectionCounter, wrapped: IProtocolFactory) -> None:
        super().__init__(cast(Factory, wrapped))
        self._counter = counter
        self._hosts: dict[int, str] = {}

    # IProtocolFactory lets buildProtocol return None to refuse a connection;
    # WrappingFactory's annotation does not say so.
    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        host = str(getattr(addr, "host", addr))
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
