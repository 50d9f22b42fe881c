"""A client of the fleet: one session with the WAMP router (Crossbar.io) that reaches every
host joined to it.

:meth:`FleetClient.connect` logs in to the router with a ticket (over TLS, as for any
secret) or an Ed25519 key (WAMP-cryptosign) and joins the realm. :meth:`FleetClient.call`
calls ``sysadmd.<host>.<namespace>.<name>[.<action>]`` with the request's args and returns
the reply's args; a host's error ``sysadmd.error.<code>`` becomes
:class:`~sysadmd.client.errors.ApiError` with that code, and the router's own refusals
(``wamp.error.not_authorized``, ``wamp.error.no_such_procedure`` when the host is not
joined) become errors that say so. :meth:`FleetClient.hosts` lists the hosts joined now,
from the router's session list, each with what its ``fleet.info`` says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import Challenge, ComponentConfig, SessionDetails, SubscribeOptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from twisted.internet import reactor as _installed_reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint

from sysadmd.client.client import Client
from sysadmd.client.errors import ApiError, ClientError, ConnectionFailed

__all__ = [
    "FleetClient",
    "FleetHost",
    "HostNotJoined",
    "HostThroughRouter",
    "RouterRefused",
    "read_key",
]

_ERROR: Final = re.compile(r"sysadmd\.error\.([0-9]{3})")

#: The router role of the hosts (``sysadmd-admin fleet router-config``).
HOST_ROLE: Final = "host"


class RouterRefused(ClientError):
    """The router refused the call: the router role may not call that URI."""


class HostNotJoined(ClientError):
    """No host serves that procedure: the host is not joined to the router now."""


@dataclass(frozen=True)
class FleetHost:
    """A host joined to the router, as its ``fleet.info`` describes it."""

    host: str
    backend: str
    version: str
    joined: str
    #: The host's own dashboard (``[fleet] url``), "" when it publishes none.
    url: str = ""


class _UserSession(ApplicationSession):  # type: ignore[misc]
    def __init__(self, config: ComponentConfig, client: FleetClient) -> None:
        super().__init__(config)
        self._client = client

    def onConnect(self) -> None:
        client = self._client
        key = client._key
        if key is None:
            self.join(self.config.realm, authmethods=["ticket"], authid=client.user)
            return
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        self.join(
            self.config.realm,
            authmethods=["cryptosign"],
            authid=client.user,
            authextra={"pubkey": public},
        )

    def onChallenge(self, challenge: Challenge) -> str:
        client = self._client
        key = client._key
        if challenge.method == "ticket" and key is None:
            return client._ticket
        if challenge.method == "cryptosign" and key is not None:
            given = str(challenge.extra.get("challenge", ""))
            if not re.fullmatch(r"[0-9a-fA-F]{64}", given):
                raise ApplicationError("wamp.error.cannot_authenticate", "bad challenge")
            raw = bytes.fromhex(given)
            return (key.sign(raw) + raw).hex()
        raise ApplicationError(
            "wamp.error.cannot_authenticate", f"unexpected method {challenge.method}"
        )

    def onJoin(self, details: SessionDetails) -> None:
        self._client._joined(self)

    def onLeave(self, details: Any) -> None:
        self._client._left(details.reason, details.message)
        self.disconnect()

    def onDisconnect(self) -> None:
        self._client._left("connection lost", None)


def _uri(host: str, namespace: str, name: str, action: str | None) -> str:
    for part in (host, namespace, name, action or "x"):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", part):
            raise ClientError(f"{part!r} cannot be part of a fleet URI")
    whole = f"sysadmd.{host}.{namespace}.{name}"
    return f"{whole}.{action}" if action else whole


def read_key(path: Path) -> Ed25519PrivateKey:
    """A user's Ed25519 key for the router: a file of 64 hex digits (the private seed, as
    a host keeps its own), readable by its owner only."""
    try:
        text = path.read_text(encoding="ascii").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise ClientError(f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise ClientError(f"{path}: is not an Ed25519 seed (64 hex digits)")
    if mode & 0o077:
        raise ClientError(f"{path}: others may read it; make it mode 0600")
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))


class FleetClient:
    """One session with the router, as ``user`` with ``ticket``, or with ``key``
    (WAMP-cryptosign) for a user the router lists with a public key."""

    def __init__(
        self,
        router: str,
        realm: str,
        user: str,
        ticket: str = "",
        *,
        key: Ed25519PrivateKey | None = None,
        tls: IOpenSSLClientConnectionCreator | None = None,
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            reactor = _installed_reactor
        self.router = router
        self.realm = realm
        self.user = user
        self._ticket = ticket
        self._key = key
        self._tls = tls
        self._reactor = reactor
        self._session: _UserSession | None = None
        self._waiting: Deferred[None] | None = None

    def _endpoint(self) -> IStreamClientEndpoint:
        parts = urlsplit(self.router)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ClientError(f"{self.router!r} is not a ws:// or wss:// router URL")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, parts.hostname, port, timeout=10
        )
        if secure:
            if self._tls is None:
                raise ClientError("a wss:// router needs TLS settings")
            endpoint = wrapClientTLS(self._tls, endpoint)
        return endpoint

    async def connect(self) -> None:
        """Log in to the router and join the realm; :class:`ConnectionFailed` if not."""
        config = ComponentConfig(realm=self.realm)
        factory = WampWebSocketClientFactory(
            lambda: _UserSession(config, self), url=self.router, serializers=[JsonSerializer()]
        )
        self._waiting = Deferred()
        try:
            await self._endpoint().connect(factory)
        except Exception as e:
            raise ConnectionFailed(f"cannot reach the router {self.router}: {e}") from None
        await self._waiting

    def _joined(self, session: _UserSession) -> None:
        self._session = session
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.callback(None)

    def _left(self, reason: str, message: str | None) -> None:
        self._session = None
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.errback(
                ConnectionFailed(f"the router refused the login: {reason} {message or ''}".strip())
            )

    def _live(self) -> _UserSession:
        if self._session is None:
            raise ConnectionFailed(f"not joined to the router {self.router}")
        return self._session

    async def close(self) -> None:
        """Leave the realm and close the connection."""
        session = self._session
        if session is not None and session.is_attached():
            await session.leave()

    async def call(
        self,
        host: str,
        namespace: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        action: str | None = None,
    ) -> Any:
        """Call an action on ``host``; its reply's args. ``action`` picks the per-action URI
        of a multiplexed class (``sysadm/iohyve``)."""
        uri = _uri(host, namespace, name, action)
        try:
            return await self._live().call(uri, dict(args or {}))
        except ApplicationError as e:
            raise _error(e, host, uri) from None

    async def hosts(self) -> list[FleetHost]:
        """Every host joined to the router now, by name."""
        session = self._live()
        try:
            ids = await session.call("wamp.session.list", [HOST_ROLE])
            details = await DeferredList(
                [session.call("wamp.session.get", i) for i in ids], consumeErrors=True
            )
        except ApplicationError as e:
            raise _error(e, "", "wamp.session.list") from None
        names = sorted({d["authid"] for ok, d in details if ok and d})
        infos = await DeferredList(
            [session.call(f"sysadmd.{n}.fleet.info") for n in names], consumeErrors=True
        )
        found = []
        for name, (ok, info) in zip(names, infos, strict=True):
            if ok and isinstance(info, dict):
                found.append(
                    FleetHost(
                        name,
                        str(info.get("backend", "")),
                        str(info.get("version", "")),
                        str(info.get("joined", "")),
                        str(info.get("url", "")),
                    )
                )
            else:  # left between the session list and its info
                continue
        return found

    async def subscribe(
        self, host: str, event: str, callback: Callable[[str, Any], object]
    ) -> None:
        """Call ``callback(host, args)`` for each ``event`` of ``host`` (``*`` for every host)."""
        session = self._live()
        if host == "*":
            topic = f"sysadmd..events.{event}"
            options: Any = _wildcard_options()
        else:
            topic, options = f"sysadmd.{host}.events.{event}", None

        def deliver(args: Any, details: Any = None) -> None:
            origin = host
            if details is not None and getattr(details, "topic", None):
                origin = details.topic.split(".")[1]
            callback(origin, args)

        try:
            await session.subscribe(deliver, topic, options=options)
        except ApplicationError as e:
            raise _error(e, host, topic) from None


def _wildcard_options() -> Any:
    return SubscribeOptions(match="wildcard", details=True)


def _error(e: ApplicationError, host: str, uri: str) -> ClientError:
    message = e.args[0] if e.args and isinstance(e.args[0], str) else e.error_message()
    matched = _ERROR.fullmatch(e.error)
    if matched:
        return ApiError(int(matched.group(1)), message)
    if e.error == "wamp.error.not_authorized":
        return RouterRefused(f"the router refused {uri}: {message}")
    if e.error == "wamp.error.no_such_procedure":
        return HostNotJoined(f"host {host} is not joined to the router (no {uri})")
    return ClientError(f"{uri}: {e.error} {message}")


class HostThroughRouter(Client):
    """A :class:`~sysadmd.client.client.Client` whose calls reach one host through the
    router: every method built on :meth:`call` works as on a direct connection (``vm``,
    ``iso``, ``tasks`` commands). A call with an ``action`` goes to that action's own URI,
    which the router grants or refuses by role. Logins and event subscriptions belong to
    the router session (:class:`FleetClient`), not to this object.
    """

    def __init__(self, fleet: FleetClient, host: str, *, timeout: float) -> None:
        # No WebSocket of its own: the router session carries every call.
        self._fleet = fleet
        self.host = host
        self.address = f"{host} via {fleet.router}"
        self.fingerprint = None
        self.timeout = timeout
        self._close_error = None

    async def call(
        self, namespace: str, name: str, args: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``namespace/name`` on the host with ``args``; its reply's args."""
        given = dict(args or {})
        action = given.get("action")
        return await self._fleet.call(
            self.host,
            namespace,
            name,
            given,
            action=action if isinstance(action, str) else None,
        )

    async def close(self) -> None:
        """Nothing to close: the router session outlives this host's calls."""
