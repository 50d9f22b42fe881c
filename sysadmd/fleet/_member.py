"""The daemon as one host of a fleet: a WAMP session joined to a router (Crossbar.io).

The router is one more transport on the corridor: a call to ``sysadmd.<host>.<namespace>.
<name>[.<action>]`` becomes an :class:`~sysadmd.api.ApiRequest` for :meth:`Api.dispatch`, so
the same validation, roles, limits and audit apply as on the host's own listeners. The caller
is who the router says (caller disclosure, ``caller_authid`` and ``caller_authrole``): the
router role ``admin`` or ``operator`` is that sysadmd role, any other role is refused, and so
is a call whose caller the router did not disclose, or that names a caller in
``forward_for`` (which the router passes on from the caller unchecked). Audit lines name
``<authid>@router``.
The transport's own limits are the WebSocket's: messages up to ``limits.message_size``, and
at most ``limits.in_flight`` calls waiting per caller session (429 beyond).

The host's ``dispatcher`` and ``guests`` events are published on
``sysadmd.<host>.events.<event>`` with the args of the WebSocket's event envelope.

:class:`FleetMember` keeps the host joined: it connects (a Twisted ``ClientService``),
authenticates with WAMP-cryptosign and the host key, and connects again with a growing delay
(1 s up to 30 s) whenever the connection is lost or refused, logging each join and loss;
:meth:`FleetMember.problem` says for ``/readyz`` whether it is joined.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.message import Error, Invocation
from autobahn.wamp.serializer import JsonSerializer
from autobahn.wamp.types import CallDetails, Challenge, ComponentConfig, RegisterOptions
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.logger import Logger

from sysadmd.api import (
    ActionSpec,
    Api,
    ApiRequest,
    Connection,
    EventHub,
    Refusal,
    Registry,
    Role,
    Vouched,
)
from sysadmd.fleet._hostkey import HostKey
from sysadmd.fleet._uris import Procedure, error_uri, event_topic, info_uri, procedures

log = Logger()

#: The router roles a caller may have, and the sysadmd role each one is.
ROUTER_ROLES: Final = {"admin": Role.ADMIN, "operator": Role.OPERATOR}

#: The events a host publishes.
FLEET_EVENTS: Final = ("dispatcher", "guests")

#: The delays between attempts to join: from 1 s, growing by half each time, up to 30 s.
RETRY_INITIAL: Final = 1.0
RETRY_MAX: Final = 30.0

#: Seconds between WebSocket pings to the router, and how long a pong may take: a router
#: that went away without closing the connection is noticed within their sum.
PING_INTERVAL: Final = 10
PING_TIMEOUT: Final = 5


def _refuse(code: int, message: str) -> ApplicationError:
    return ApplicationError(error_uri(code), message)


class _Publisher:
    """Takes the hub's encoded events and publishes them on the router."""

    def __init__(self, session: ApplicationSession, host: str) -> None:
        self._session = session
        self._host = host

    def deliver(self, data: bytes) -> None:
        event = json.loads(data)
        self._session.publish(event_topic(self._host, event["name"]), event["args"])


def refuse_forwarded(msg: Any) -> Error | None:
    """The error answering an invocation that names the caller it passes on (``forward_for``),
    or None for any other message.

    Crossbar discloses the first entry of a call's ``forward_for`` option as the caller, and
    takes that option from any session unchecked (it is meant for its router-to-router links):
    an operator could name an admin. Autobahn does not hand ``forward_for`` to the procedure,
    so the refusal is made here, before the invocation reaches it.
    """
    if not isinstance(msg, Invocation) or not msg.forward_for:
        return None
    return Error(
        Invocation.MESSAGE_TYPE,
        msg.request,
        error_uri(403),
        args=[
            "a forwarded call (forward_for) is refused: the router does not vouch for the "
            "caller it names"
        ],
    )


class _HostSession(ApplicationSession):  # type: ignore[misc]
    """One session with the router; the :class:`FleetMember` does the work."""

    def __init__(self, config: ComponentConfig, member: FleetMember) -> None:
        super().__init__(config)
        self._member = member

    def onConnect(self) -> None:
        member = self._member
        self.join(
            self.config.realm,
            authmethods=["cryptosign"],
            authid=member.host,
            authextra={"pubkey": member.key.public_hex},
        )

    def onChallenge(self, challenge: Challenge) -> str:
        if challenge.method != "cryptosign":
            raise ApplicationError(
                "wamp.error.cannot_authenticate", f"unexpected method {challenge.method}"
            )
        signed: str = self._member.key.sign_challenge(challenge.extra["challenge"])
        return signed

    async def onJoin(self, details: Any) -> None:
        await self._member.joined(self)

    def onMessage(self, msg: Any) -> None:
        refusal = refuse_forwarded(msg)
        if refusal is not None:
            self._transport.send(refusal)
            return
        super().onMessage(msg)

    def onUserError(self, fail: Any, msg: str) -> None:
        # An ApplicationError is an answer (sysadmd.error.<code>) the caller receives, not a
        # fault of this host; anything else is logged as Autobahn would.
        if isinstance(getattr(fail, "value", None), ApplicationError):
            return
        super().onUserError(fail, msg)

    def onLeave(self, details: Any) -> None:
        self._member.left(self, details.reason, details.message)
        self.disconnect()

    def onDisconnect(self) -> None:
        self._member.left(self, None, None)


class FleetMember(Service):
    """Keeps this host joined to the router, serving its actions and publishing its events."""

    def __init__(
        self,
        api: Api,
        hub: EventHub,
        *,
        router: str,
        realm: str,
        host: str,
        key: HostKey,
        tls: IOpenSSLClientConnectionCreator | None,
        info: Mapping[str, str],
        reactor: Any,
        in_flight: int = 8,
        message_size: int = 65536,
    ) -> None:
        self._api = api
        self._hub = hub
        self.router = router
        self.realm = realm
        self.host = host
        self.key = key
        self._tls = tls
        self._info = dict(info)
        self._reactor = reactor
        self._in_flight = in_flight
        self._message_size = message_size
        #: Calls running now, by the caller's router session.
        self._running: dict[int, int] = {}
        self._procedures = procedures(host, _specs(api.registry))
        parts = urlsplit(router)
        self._router_host = parts.hostname or ""
        self._router_port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._secure = parts.scheme == "wss"
        self._service: ClientService | None = None
        self._session: _HostSession | None = None
        self._publisher: _Publisher | None = None
        #: When the host last joined (UTC), None while it is not joined.
        self.joined_since: datetime | None = None
        #: Told when the host joins (True) or leaves (False); for tests and metrics.
        self.on_change: Callable[[bool], object] | None = None

    # The service

    def _endpoint(self) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, self._router_host, self._router_port, timeout=10
        )
        if self._secure:
            if self._tls is None:
                raise ValueError("a wss:// router needs TLS settings")
            endpoint = wrapClientTLS(self._tls, endpoint)
        return endpoint

    def startService(self) -> None:
        super().startService()
        config = ComponentConfig(realm=self.realm)
        factory = WampWebSocketClientFactory(
            lambda: _HostSession(config, self),
            url=self.router,
            serializers=[JsonSerializer()],
        )
        factory.setProtocolOptions(
            autoPingInterval=PING_INTERVAL,
            autoPingTimeout=PING_TIMEOUT,
            openHandshakeTimeout=10,
            maxMessagePayloadSize=self._message_size,
            maxFramePayloadSize=self._message_size,
        )
        self._service = ClientService(
            self._endpoint(),
            factory,
            retryPolicy=backoffPolicy(initialDelay=RETRY_INITIAL, maxDelay=RETRY_MAX, factor=1.5),
            clock=self._reactor,
        )
        self._service.startService()
        log.info(
            "Fleet: joining realm {realm} on {router} as host {host}",
            realm=self.realm,
            router=self.router,
            host=self.host,
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        service, self._service = self._service, None
        session = self._session
        if session is not None and session.is_attached():
            session.leave("wamp.close.system_shutdown", "the host is stopping")
        if service is None:
            return None
        stopped: Deferred[None] = service.stopService()
        return stopped

    # What /readyz says

    @property
    def is_joined(self) -> bool:
        """Whether the host is joined to the router now."""
        return self.joined_since is not None

    def problem(self) -> str | None:
        """None while joined; otherwise what is wrong, for ``/readyz``."""
        if self.is_joined:
            return None
        return f"not joined to realm {self.realm} on {self.router} (retrying)"

    # The session's events

    async def joined(self, session: _HostSession) -> None:
        """Register every procedure and start publishing events; leave if that fails."""
        registrations = [
            session.register(
                self._handler(procedure),
                procedure.uri,
                options=RegisterOptions(details=True),
            )
            for procedure in self._procedures
        ]
        registrations.append(
            session.register(
                self._whoami, info_uri(self.host), options=RegisterOptions(details=True)
            )
        )
        results = await DeferredList(registrations, consumeErrors=True)
        failed = [str(result.value) for ok, result in results if not ok]
        if failed:
            log.error(
                "Fleet: the router refused this host's procedures ({reason}); leaving",
                reason=failed[0],
            )
            session.leave("wamp.close.normal", "could not register")
            return
        self._session = session
        self._publisher = _Publisher(session, self.host)
        self._hub.subscribe(self._publisher, FLEET_EVENTS)
        self.joined_since = datetime.now(UTC)
        log.info(
            "Fleet: joined realm {realm} on {router} as host {host} ({count} procedures)",
            realm=self.realm,
            router=self.router,
            host=self.host,
            count=len(registrations),
        )
        if self.on_change is not None:
            self.on_change(True)

    def left(self, session: _HostSession, reason: str | None, message: str | None) -> None:
        """The session ended (left, or its connection was lost)."""
        if session is not self._session:
            if reason is not None and reason != "wamp.close.normal":
                log.warn(
                    "Fleet: the router refused this host: {reason} {message}",
                    reason=reason,
                    message=message or "",
                )
            return
        self._session = None
        if self._publisher is not None:
            self._hub.drop(self._publisher)
            self._publisher = None
        self.joined_since = None
        if not self.running:
            log.info("Fleet: left realm {realm} on {router}", realm=self.realm, router=self.router)
            if self.on_change is not None:
                self.on_change(False)
            return
        log.warn(
            "Fleet: left realm {realm} on {router} ({reason}); joining again",
            realm=self.realm,
            router=self.router,
            reason=reason or "connection lost",
        )
        if self.on_change is not None:
            self.on_change(False)

    # Calls

    def _whoami(self, *args: Any, details: CallDetails, **kwargs: Any) -> dict[str, str]:
        _caller(details)
        since = self.joined_since
        return {
            **self._info,
            "host": self.host,
            "joined": since.isoformat(timespec="seconds") if since else "",
        }

    def _handler(self, procedure: Procedure) -> Callable[..., Deferred[Any]]:
        def handle(*args: Any, details: CallDetails, **kwargs: Any) -> Deferred[Any]:
            return ensureDeferred(self._call(procedure, args, kwargs, details))

        return handle

    async def _call(
        self,
        procedure: Procedure,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        details: CallDetails,
    ) -> Any:
        user, role = _caller(details)
        if kwargs or len(args) > 1:
            raise _refuse(400, "pass the request's args object as the one positional argument")
        request_args: Any = args[0] if args else {}
        if not isinstance(request_args, dict):
            raise _refuse(400, "the one positional argument must be the request's args object")
        if procedure.action is not None:
            given = request_args.get("action", procedure.action)
            if given != procedure.action:
                raise _refuse(
                    400,
                    f"{procedure.uri} runs {procedure.action}; an 'action' of {given!r} "
                    "belongs to another procedure",
                )
            request_args = {**request_args, "action": procedure.action}
        # limits.in_flight, per caller session as per WebSocket: one router session carries
        # every caller, so each caller's own calls are counted.
        caller = int(details.caller or 0)
        running = self._running.get(caller, 0)
        if running >= self._in_flight:
            raise _refuse(
                429, f"too many calls waiting for replies (at most {self._in_flight}); wait"
            )
        self._running[caller] = running + 1
        try:
            connection = Connection(self._router_host, "fleet")
            reply = await self._api.dispatch(
                ApiRequest(
                    procedure.namespace,
                    procedure.name,
                    request_args,
                    connection,
                    Vouched(user, role),
                )
            )
        finally:
            left = self._running.pop(caller) - 1
            if left:
                self._running[caller] = left
        if isinstance(reply, Refusal):
            raise _refuse(reply.error.code, reply.error.message)
        return reply.result


def _caller(details: CallDetails) -> tuple[str, Role]:
    """The user ``<authid>@router`` and the sysadmd role the router's disclosure gives."""
    authid = details.caller_authid
    authrole = details.caller_authrole
    if details.caller is None or authid is None or authrole is None:
        raise _refuse(
            401,
            'the router did not disclose the caller; its role needs "disclose": {"caller": true}',
        )
    role = ROUTER_ROLES.get(authrole)
    if role is None:
        raise _refuse(403, f"the router role {authrole!r} is neither admin nor operator")
    return f"{authid}@router", role


def _specs(registry: Registry) -> list[ActionSpec]:
    return list(registry.specs())
