"""Fleet mode: the daemon joins a WAMP router (Crossbar.io) as one host of many.

Private modules: ``_uris`` (the host's procedure and topic URIs), ``_hostkey`` (the host's
Ed25519 key for WAMP-cryptosign), ``_tls`` (how the router's certificate is verified),
``_member`` (the joined session, one more transport on the corridor ``Api.dispatch``) and
``_router`` (the Crossbar configuration ``sysadmd-admin fleet router-config`` writes).
:mod:`sysadmd.fleet.admin` is ``sysadmd-admin`` with its ``fleet`` commands.

May import: ``sysadmd.transport`` and every layer below it (the contracts are in
``.importlinter``).
"""

from sysadmd.fleet._hostkey import HostKeyError, ensure_host_key
from sysadmd.fleet._member import FleetMember
from sysadmd.fleet._tls import FleetTLSError, router_tls

__all__ = [
    "FleetMember",
    "FleetTLSError",
    "HostKeyError",
    "ensure_host_key",
    "router_tls",
]
