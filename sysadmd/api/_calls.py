"""Who is calling: the connection a request came on, the credentials it presents, and the
call a handler receives."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol

from twisted.internet.defer import Deferred

from sysadmd.api._roles import Role
from sysadmd.config import Network


class Ended(enum.Enum):
    """Why a session ended (defined here, beside the connection that is told, so that this
    layer needs nothing from ``sysadmd.auth``; ``sysadmd.auth._sessions`` re-exports it)."""

    #: Unused for ``idle`` seconds, or older than ``absolute`` seconds.
    EXPIRED = "expired"
    #: Its account was removed, or its password or role changed.
    REVOKED = "revoked"
    #: ``rpc/auth_clear`` with its token (on some connection, or over REST).
    LOGGED_OUT = "logged out"
    #: The table was full and it was the least recently used.
    EVICTED = "evicted"


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


def address_in(host: str, networks: Iterable[Network]) -> bool:
    """Whether ``host`` (an IP address as text) lies in one of ``networks``.

    An IPv4-mapped IPv6 address counts as its IPv4 address and an IPv6 zone
    (``%em0``) is ignored; anything that is not an IP address lies in none. The
    health guard's allowed addresses and the connection reserve both decide with this.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


# How a request says who is calling: each transport makes one of these from what it saw.


@dataclass(frozen=True, slots=True)
class ConnectionSession:
    """Whoever the connection is logged in as now, if anyone: the session its last login
    gave (a WebSocket after ``rpc/auth``), or nobody (a REST request without credentials)."""


@dataclass(frozen=True, slots=True)
class Bearer:
    """A session token presented with the request (``Authorization: Bearer``)."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Basic:
    """A user name and password presented with the request (``Authorization: Basic``),
    checked on every request without starting a session."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Vouched:
    """A user whom the transport itself has authenticated and vouches for, with the role
    it may use: a transport whose peer proves who the caller is (a router that discloses
    its callers' identities) rather than presenting a password or token."""

    user: str
    role: Role


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Credentials the transport saw but could not read; refused with 401 and ``message``."""

    message: str


#: What a request carries to say who is calling.
Authentication = ConnectionSession | Bearer | Basic | Vouched | Unreadable

#: The credentials of a request that presents none of its own.
CONNECTION_SESSION: Final = ConnectionSession()


class Connection:
    """One connection as every request on it sees it: where it comes from, who it is
    logged in as, and what its transport must hear.

    ``peer`` is the client's IP address, made by :func:`client_address`; ``transport``
    names the transport (``rest``, ``websocket``). ``token`` is the session the
    connection is logged in with (a WebSocket login, a REST Bearer token); ``identity`` is
    the caller settled for the whole connection (a REST request's Basic login or Bearer
    session, or an identity its transport vouches for). ``subscriber`` is where events for
    this connection go; a :attr:`lasting` connection has one, and only a lasting one may
    call an action declared ``websocket_only`` (the event subscriptions).

    A REST request is a connection of its own that lasts one request, and needs nothing
    more. A transport whose connections carry many requests subclasses this class, sets
    :attr:`lasting`, and overrides the hooks :meth:`on_login`, :meth:`on_logout` and
    :meth:`on_session_end`; the corridor calls them, and nothing else of the transport.
    """

    #: Whether the connection outlives one request; if so it watches the session it logs
    #: in with, and hears through :meth:`on_session_end` when that session ends.
    lasting: ClassVar[bool] = False

    def __init__(
        self,
        peer: str,
        transport: str,
        *,
        token: str | None = None,
        identity: Identity | None = None,
        subscriber: Any = None,
    ) -> None:
        self.peer = peer
        self.transport = transport
        self.token = token
        self.identity = identity
        self.subscriber = subscriber
        #: Fires when the login this connection is running has finished; requests that
        #: arrive meanwhile wait for it, so they run as the user the login gave.
        self.login_done: Deferred[None] | None = None
        #: Stops watching the session; set by a login of a lasting connection.
        self._unwatch: Callable[[], object] | None = None

    # What the transport hears (no-ops here: a connection of one request needs none).

    def on_login(self) -> None:
        """The connection has logged in (a transport may lift its pre-login limits)."""

    def on_logout(self) -> None:
        """The connection has logged out (a transport drops its event subscriptions)."""

    def on_session_end(self, why: Ended) -> None:
        """The session of a :attr:`lasting` connection ended for ``why``, for any reason
        but this connection's own logout (a transport closes the connection)."""

    # What the corridor does.

    def logged_in(self, token: str, unwatch: Callable[[], object] | None = None) -> None:
        """Remember the session this connection is now logged in with; ``unwatch`` stops
        watching it (for a :attr:`lasting` connection)."""
        self.token = token
        self._unwatch = unwatch
        self.on_login()

    def logged_out(self) -> None:
        """Forget the session (after ``auth_clear``, or a new login attempt)."""
        self.token = None
        self.identity = None
        self.closed()
        self.on_logout()

    def closed(self) -> None:
        """Stop watching the session: the transport's connection is gone."""
        if self._unwatch is not None:
            unwatch, self._unwatch = self._unwatch, None
            unwatch()


@dataclass(frozen=True)
class Call:
    """What a handler receives: validated arguments and who asked."""

    args: dict[str, Any]
    connection: Connection
    caller: Identity | None
