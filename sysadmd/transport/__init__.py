"""Transports: turn bytes into a request and a reply back into bytes.

Private modules: ``_rest`` (Klein), ``_websocket`` (Autobahn), ``_console`` (the guests'
consoles at ``/console/<guest>``), ``_limits`` (the connection limits they share),
``_upload`` (ISO uploads) and ``_tls`` (the TLS context and the default certificate; the app
uses it as the namespace ``tls``). Other packages use only the names below.

May import: ``sysadmd.catalog`` and every layer below it; never ``sysadmd.ops`` or the app.
"""

from sysadmd.transport import _tls as tls
from sysadmd.transport._console import ConsoleLimits, ConsoleRoot, ConsoleServerFactory
from sysadmd.transport._limits import ConnectionCounter, first_request_channel
from sysadmd.transport._rest import ApiSite, RestApi
from sysadmd.transport._upload import Uploads
from sysadmd.transport._websocket import ApiServerFactory, Limits, OriginCheckedResource

__all__ = [
    "ApiServerFactory",
    "ApiSite",
    "ConnectionCounter",
    "ConsoleLimits",
    "ConsoleRoot",
    "ConsoleServerFactory",
    "Limits",
    "OriginCheckedResource",
    "RestApi",
    "Uploads",
    "first_request_channel",
    "tls",
]
