"""Who is calling: the connection a request came on, and the call a handler receives."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred

from sysadmd.roles import Role
from sysadmd.sessions import Ended

_K = TypeVar("_K")
_V = TypeVar("_V")


class Shared(dict[_K, _V]):
    """A result handed unchanged to many callers (the guest list within its refresh
    window). Nobody changes it once made, so a transport may encode it once and
    reuse the bytes for as long as the same object comes back."""

    __slots__ = ()


class Identity(Protocol):
    """A logged-in user: a session, or the account behind a REST Basic login."""

    @property
    def user(self) -> str: ...

    @property
    def role(self) -> Role: ...


def client_address(address: object) -> str:
    """The client's IP address as the daemon counts, logs and audits it: no port, no prefix.

    Both transports make :attr:`Connection.peer` with this, so a client is the same address
    over REST and over WebSocket, on every connection: ``192.0.2.7``, ``2001:db8::1`` (in
    its compressed form), an IPv4-mapped IPv6 address as its IPv4 address. ``address`` is
    what Twisted gives (``IPv4Address``, ``IPv6Address``); anything without an IP host
    (a UNIX socket) is ``unknown``.
    """
    host = getattr(address, "host", None)
    if not isinstance(host, str) or not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass
class Connection:
    """One WebSocket connection, or one REST request.

    ``token`` is the session token the connection logged in with (WebSocket logins,
    REST Bearer); ``identity`` is set for a REST request, which lasts one request: the
    account of a Basic login (which needs no session), or the session of its Bearer
    token. The transport hooks ``on_login`` (to lift its pre-login limits),
    ``on_logout`` (to drop the connection's event subscriptions) and, for a connection
    that outlives a request, ``on_session_end`` (to close it when its session ends).
    ``peer`` is the client's IP address, made by :func:`client_address`.
    """

    peer: str
    transport: str
    token: str | None = None
    identity: Identity | None = None
    on_login: list[Callable[[], object]] = field(default_factory=list)
    #: Fires when the login this connection is running has finished; requests that
    #: arrive meanwhile wait for it, so they run as the user the login gave.
    login_done: Deferred[None] | None = None
    #: Where events for this connection go (WebSocket connections only).
    subscriber: Any = None
    on_logout: list[Callable[[], object]] = field(default_factory=list)
    #: Told why, when the session this connection is logged in with ends for any reason
    #: but this connection's own logout (WebSocket connections only).
    on_session_end: Callable[[Ended], object] | None = None
    #: Stops watching that session; set by the login, called by :meth:`logged_out`.
    unwatch: Callable[[], object] | None = None

    def logged_in(self, token: str) -> None:
        """Remember the session this connection is now logged in with."""
        self.token = token
        for callback in self.on_login:
            callback()

    def logged_out(self) -> None:
        """Forget the session (after ``auth_clear``, or a new login attempt)."""
        self.token = None
        self.identity = None
        if self.unwatch is not None:
            unwatch, self.unwatch = self.unwatch, None
            unwatch()
        for callback in self.on_logout:
            callback()


@dataclass(frozen=True)
class Call:
    """What a handler receives: validated arguments and who asked."""

    args: dict[str, Any]
    connection: Connection
    caller: Identity | None
