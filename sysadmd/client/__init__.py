"""A client library for sysadmd's sysadm API, and the ``sysadm`` command-line client.

Asynchronous, on Twisted::

    from sysadmd.client import Client, PinnedTLS

    client = await Client.connect("vmhost", 12150, tls=PinnedTLS())
    await client.login("admin", password)
    print(await client.list_vms())
    task = await client.fetch_iso("https://example.org/FreeBSD.iso")
    await task                      # raises TaskFailed unless the download succeeded
    await client.close()

Blocking, for plain Python: :class:`BlockingClient` has the same methods. See docs/client.md.
"""

from sysadmd.client.blocking import BlockingClient, BlockingTask
from sysadmd.client.client import (
    DEFAULT_PORT,
    Client,
    EventCallback,
    Login,
    Subscription,
    Task,
    TaskProgress,
)
from sysadmd.client.errors import (
    ApiError,
    ClientError,
    ConnectionFailed,
    FingerprintMismatch,
    SessionExpired,
    TaskFailed,
    TLSVerificationFailed,
    UnknownHost,
)
from sysadmd.client.tls import CATLS, KnownHosts, PinnedTLS, TLSMode, normalize_fingerprint

__all__ = [
    "CATLS",
    "DEFAULT_PORT",
    "ApiError",
    "BlockingClient",
    "BlockingTask",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "EventCallback",
    "FingerprintMismatch",
    "KnownHosts",
    "Login",
    "PinnedTLS",
    "SessionExpired",
    "Subscription",
    "TLSMode",
    "TLSVerificationFailed",
    "Task",
    "TaskFailed",
    "TaskProgress",
    "UnknownHost",
    "normalize_fingerprint",
]
