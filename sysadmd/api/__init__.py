"""The vocabulary of a call and the one corridor every call goes through.

Private modules: ``_errors`` (errors and their codes), ``_roles``, ``_calls`` (the calling
connection, its credentials and identity), ``_validate`` (argument checks), ``_registry`` (each
action declared once), ``_envelope`` (the WebSocket and REST JSON codec), ``_dispatch`` (the
transport-neutral core that runs a call) and ``_hub`` (events to subscribers). Other packages
use only the names below (``envelope`` is the codec's namespace: its functions are used as
``envelope.parse_request`` and so on); the modules of this package import each other directly.

May import: ``sysadmd.config`` and ``sysadmd.shared`` (the contracts are in ``.importlinter``).
"""

from sysadmd.api import _envelope as envelope
from sysadmd.api._calls import (
    CONNECTION_SESSION,
    Authentication,
    Basic,
    Bearer,
    Call,
    Connection,
    ConnectionSession,
    Ended,
    Identity,
    Unreadable,
    Vouched,
    address_in,
    client_address,
)
from sysadmd.api._dispatch import Api, ApiRequest, Refusal, Reply, Unresolved
from sysadmd.api._errors import CODES, ApiError, bad_request, conflict, not_found
from sysadmd.api._hub import EventHub, Outbound, attach, close_too_slow
from sysadmd.api._registry import (
    ENVELOPE_KEYS,
    KEY,
    NAME,
    NAMES,
    TEXT,
    URL,
    ActionSpec,
    Arg,
    ArgType,
    Extra,
    NamePattern,
    Registry,
    action,
    declared_actions,
)
from sysadmd.api._roles import Role
from sysadmd.api._validate import NAME_PATTERN, iso_name_from_url, schema_pattern

__all__ = [
    "CODES",
    "CONNECTION_SESSION",
    "ENVELOPE_KEYS",
    "KEY",
    "NAME",
    "NAMES",
    "NAME_PATTERN",
    "TEXT",
    "URL",
    "ActionSpec",
    "Api",
    "ApiError",
    "ApiRequest",
    "Arg",
    "ArgType",
    "Authentication",
    "Basic",
    "Bearer",
    "Call",
    "Connection",
    "ConnectionSession",
    "Ended",
    "EventHub",
    "Extra",
    "Identity",
    "NamePattern",
    "Outbound",
    "Refusal",
    "Registry",
    "Reply",
    "Role",
    "Unreadable",
    "Unresolved",
    "Vouched",
    "action",
    "address_in",
    "attach",
    "bad_request",
    "client_address",
    "close_too_slow",
    "conflict",
    "declared_actions",
    "envelope",
    "iso_name_from_url",
    "not_found",
    "schema_pattern",
]
