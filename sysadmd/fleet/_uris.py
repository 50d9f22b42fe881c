"""The fleet's URIs: each host's procedures and topics, all under ``sysadmd.<host>.``.

Every action the host serves over the router is ``sysadmd.<host>.<namespace>.<name>``; a
class that multiplexes actions (``sysadm/iohyve``: its ``action`` argument says which) is
also registered once per action as ``sysadmd.<host>.<namespace>.<name>.<action>``, so that a
router can grant ``listvms`` and refuse ``rmiso`` by URI. Events go to
``sysadmd.<host>.events.<event>``; ``sysadmd.<host>.fleet.info`` says what the host runs.

Actions the router makes no sense of are not offered: logins and logouts (the router says
who is calling), the event subscriptions (the router's own subscriptions replace them) and
the actions on a caller's own local account (a router user has none here).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sysadmd.api import ActionSpec

#: Every fleet URI starts with this component.
PREFIX: Final = "sysadmd"

#: The errors a host answers: ``sysadmd.error.<code>`` with the message first.
ERROR_PREFIX: Final = "sysadmd.error."

#: The procedure that says what a host runs (its backend, version, and since when it is joined).
INFO: Final = "fleet.info"


@dataclass(frozen=True)
class Procedure:
    """One URI a host registers: the class it calls and, for a per-action URI, the action."""

    uri: str
    namespace: str
    name: str
    action: str | None


def offered(spec: ActionSpec) -> bool:
    """Whether the host offers ``spec`` through the router."""
    return not (spec.login or spec.websocket_only or spec.own_account is not None)


def procedures(host: str, specs: Iterable[ActionSpec]) -> list[Procedure]:
    """The procedures ``host`` registers for the actions ``specs``, class URIs first."""
    classes: dict[tuple[str, str], None] = {}
    actions: list[Procedure] = []
    for spec in specs:
        if not offered(spec):
            continue
        classes[(spec.namespace, spec.name)] = None
        if spec.action is not None:
            uri = f"{PREFIX}.{host}.{spec.namespace}.{spec.name}.{spec.action}"
            actions.append(Procedure(uri, spec.namespace, spec.name, spec.action))
    whole = [
        Procedure(f"{PREFIX}.{host}.{namespace}.{name}", namespace, name, None)
        for namespace, name in classes
    ]
    return whole + actions


def event_topic(host: str, event: str) -> str:
    """Where ``host`` publishes ``event``."""
    return f"{PREFIX}.{host}.events.{event}"


def info_uri(host: str) -> str:
    """The procedure that says what ``host`` runs."""
    return f"{PREFIX}.{host}.{INFO}"


def error_uri(code: int) -> str:
    """The WAMP error of an API error ``code``."""
    return f"{ERROR_PREFIX}{code}"
