"""The Crossbar.io configuration of a fleet's router, as ``sysadmd-admin fleet router-config``
writes it for ``crossbar start``.

One realm, one WebSocket transport (``/ws``, JSON, TLS when given a key and certificate) and
three kinds of principal:

``host``
    Each host, by its cryptosign public key (authid = its host name). Crossbar's static
    permissions have no authid placeholder, so the role is checked by a dynamic authorizer,
    a small router component written beside the configuration: a host may register
    procedures and publish events under ``sysadmd.<its authid>.`` and do nothing else.
``admin``
    May call every host's procedures and subscribe to every host's events.
``operator``
    May call the procedures of the actions sysadmd gives its operator role (``listvms``,
    not ``rmiso``), per URI, and the multiplexed class URIs, where the host itself refuses
    an action the operator may not call (403); and subscribe to the hosts' events. These
    are exact URIs for each host named, so a host added later needs the configuration
    written again (its key must be added anyway).

Both user roles have their identity disclosed to the host (``disclose.caller``), may read
the session list (``fleet hosts``) and hear sessions join and leave. Users log in with a
ticket (a secret made here, for use over TLS) or with a cryptosign key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sysadmd.api import ActionSpec, Role
from sysadmd.fleet._uris import INFO, PREFIX, offered

#: The procedure of the authorizer component that confines each host to its own prefix.
AUTHORIZER: Final = "sysadmd_router.authorize_host"

#: The module of that component, written beside the router's configuration.
AUTHORIZER_MODULE: Final = "sysadmd_fleet_authorizer"

#: The authorizer component (runs inside the router, with Crossbar's own Autobahn).
AUTHORIZER_SOURCE: Final = '''\
"""Confines each sysadmd host of the fleet to its own URI prefix (sysadmd.<authid>.).

Written by sysadmd-admin fleet router-config; loaded by the router worker.
"""

from autobahn.twisted.wamp import ApplicationSession

AUTHORIZER = "sysadmd_router.authorize_host"


def authorize_host(session, uri, action, options=None):
    authid = session.get("authid") or ""
    if session.get("authrole") != "host" or not authid or "." in authid:
        return False
    if action in ("register", "publish") and uri.startswith("sysadmd." + authid + "."):
        return {"allow": True, "disclose": False, "cache": True}
    return False


class HostAuthorizer(ApplicationSession):
    async def onJoin(self, details):
        await self.register(authorize_host, AUTHORIZER)
'''

#: The router's session meta API a user may use: the session list and its changes.
_META_CALLS: Final = ("wamp.session.list", "wamp.session.get", "wamp.session.count")
_META_EVENTS: Final = ("wamp.session.on_join", "wamp.session.on_leave")

_USER_ROLES: Final = ("admin", "operator")


@dataclass(frozen=True)
class User:
    """A person or program allowed to use the fleet: ``role`` is admin or operator; a user
    with ``pubkey`` logs in with cryptosign, one without gets a ticket."""

    authid: str
    role: str
    pubkey: str | None = None


def _allow(uri: str, match: str, **allowed: bool) -> dict[str, Any]:
    permission: dict[str, Any] = {
        "uri": uri,
        "match": match,
        "allow": {
            "call": allowed.get("call", False),
            "register": False,
            "publish": False,
            "subscribe": allowed.get("subscribe", False),
        },
        "disclose": {"caller": True, "publisher": True},
        "cache": True,
    }
    return permission


def _meta() -> list[dict[str, Any]]:
    calls = [_allow(uri, "exact", call=True) for uri in _META_CALLS]
    return calls + [_allow(uri, "exact", subscribe=True) for uri in _META_EVENTS]


def operator_uris(hosts: Iterable[str], specs: Iterable[ActionSpec]) -> list[str]:
    """The URIs an operator may call on ``hosts``: the actions sysadmd gives its operator
    role, each multiplexed class's URI (the host refuses what the role may not call), and
    ``fleet.info``.

    Exact URIs, host by host: Crossbar keeps one wildcard rule per prefix before the first
    empty component, so rules such as ``sysadmd..sysadm.iohyve.listvms`` would replace each
    other.
    """
    suffixes: dict[str, None] = {}
    for spec in specs:
        if not offered(spec) or spec.entry_role is not Role.OPERATOR:
            continue
        whole = f"{spec.namespace}.{spec.name}"
        suffixes[whole] = None
        if spec.action is not None:
            suffixes[f"{whole}.{spec.action}"] = None
    suffixes[INFO] = None
    return [f"{PREFIX}.{host}.{suffix}" for host in hosts for suffix in suffixes]


def router_config(
    *,
    realm: str,
    port: int,
    interface: str,
    hosts: Mapping[str, str],
    users: Iterable[User],
    specs: Iterable[ActionSpec],
    events: Iterable[str],
    tls_key: str | None = None,
    tls_certificate: str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The Crossbar configuration, and the tickets made for the users without a key.

    ``hosts`` maps each host name to its cryptosign public key (hex).
    """
    operator = [_allow(uri, "exact", call=True) for uri in operator_uris(hosts, specs)]
    operator += [
        _allow(f"{PREFIX}.{host}.events.{event}", "exact", subscribe=True)
        for host in hosts
        for event in events
    ]
    roles = [
        {"name": "host", "authorizer": AUTHORIZER},
        {
            "name": "admin",
            "permissions": [_allow(f"{PREFIX}.", "prefix", call=True, subscribe=True), *_meta()],
        },
        {"name": "operator", "permissions": [*operator, *_meta()]},
        {
            "name": "authorizer",
            "permissions": [
                {
                    "uri": AUTHORIZER,
                    "match": "exact",
                    "allow": {
                        "call": False,
                        "register": True,
                        "publish": False,
                        "subscribe": False,
                    },
                    "disclose": {"caller": False, "publisher": False},
                    "cache": True,
                }
            ],
        },
    ]
    cryptosign: dict[str, Any] = {
        name: {"realm": realm, "role": "host", "authorized_keys": [key]}
        for name, key in hosts.items()
    }
    tickets: dict[str, str] = {}
    ticket_principals: dict[str, Any] = {}
    for user in users:
        if user.role not in _USER_ROLES:
            raise ValueError(f"user {user.authid}: the role must be admin or operator")
        if user.pubkey is not None:
            cryptosign[user.authid] = {
                "realm": realm,
                "role": user.role,
                "authorized_keys": [user.pubkey],
            }
        else:
            tickets[user.authid] = secrets.token_urlsafe(24)
            ticket_principals[user.authid] = {
                "role": user.role,
                "ticket": tickets[user.authid],
            }
    auth: dict[str, Any] = {"cryptosign": {"type": "static", "principals": cryptosign}}
    if ticket_principals:
        auth["ticket"] = {"type": "static", "principals": ticket_principals}
    endpoint: dict[str, Any] = {"type": "tcp", "port": port, "interface": interface}
    if tls_key is not None and tls_certificate is not None:
        endpoint["tls"] = {"key": tls_key, "certificate": tls_certificate}
    config = {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "options": {"pythonpath": ["."]},
                "realms": [{"name": realm, "options": {"uri_check": "loose"}, "roles": roles}],
                "components": [
                    {
                        "type": "class",
                        "classname": f"{AUTHORIZER_MODULE}.HostAuthorizer",
                        "realm": realm,
                        "role": "authorizer",
                    }
                ],
                "transports": [
                    {
                        "type": "websocket",
                        "endpoint": endpoint,
                        "serializers": ["json"],
                        "auth": auth,
                        "options": {"auto_ping_interval": 10000, "auto_ping_timeout": 5000},
                    }
                ],
            }
        ],
    }
    return config, tickets
