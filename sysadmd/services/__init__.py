"""The sysadm API classes: one private module per class.

``_rpc`` (logins, queries, settings), ``_dispatcher`` (queued work), ``_events``
(subscriptions and the guests poller), ``_host`` (``sysadm/zfs`` and ``sysadm/network``) and
``_iohyve`` (``sysadm/iohyve``). Other packages use only the names below.

May import: ``sysadmd.auth``, ``sysadmd.console`` and every layer below them. One service never
imports another: what two of them need (the host's pools, for ``_iohyve``'s setup) comes from
the layer below (:class:`sysadmd.backends.HostTools`).
"""

from sysadmd.services._console import ConsoleActions
from sysadmd.services._dispatcher import DispatcherActions
from sysadmd.services._events import EVENT_NAMES, EventActions, GuestWatcher
from sysadmd.services._host import HostActions
from sysadmd.services._iohyve import UPLOAD_CLASS, UPLOAD_TRANSPORT, IohyveActions
from sysadmd.services._rpc import QueryActions, Rpc

__all__ = [
    "EVENT_NAMES",
    "UPLOAD_CLASS",
    "UPLOAD_TRANSPORT",
    "ConsoleActions",
    "DispatcherActions",
    "EventActions",
    "GuestWatcher",
    "HostActions",
    "IohyveActions",
    "QueryActions",
    "Rpc",
]
