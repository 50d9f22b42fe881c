"""A lingering close: the answer to a request refused while its body still arrives reaches
the client.

A request refused from its headers alone (an upload to a taken name, past the cap or the
free space; a REST body over its cap) is answered at once, while a client that did not wait
for ``100 Continue`` is still sending the body. Closing the socket then, with that body
unread in the receive buffer, makes the kernel send a reset, and the client (curl, Python's
``http.client``, a browser on a slow link) reports "connection reset" without ever reading
the answer that was sent before it.

So after such an answer the channel half-closes its side and reads on, discarding: over
plain TCP it shuts down the write side (``ITCPTransport.loseWriteConnection``); over TLS it
sends ``close_notify`` (the TLS layer's ``loseConnection``, which goes on reading until the
client's own ``close_notify`` or the end of the TCP connection). The client reads the whole
answer and the end of the stream, and closes. Whatever it sends meanwhile is dropped as it
arrives (nothing is buffered or parsed), and the lingering is bounded: the connection is
aborted :data:`LINGER_SECONDS` after the answer or once more than :data:`LINGER_BYTES` have
arrived, whichever comes first; neither bound restarts with incoming bytes, so a client
trickling bytes cannot hold the connection open. The connection counts against the
connection caps until it is closed, as any other does.
"""

from __future__ import annotations

from typing import Any, Final, cast

from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "LingeringChannel"]

#: Seconds a refused request's connection is kept open, discarding, after the answer.
LINGER_SECONDS: Final = 2.0
#: Bytes discarded at most after a refused request's answer before the connection ends.
LINGER_BYTES: Final = 1024 * 1024


class LingeringChannel(HTTPChannel):
    """An HTTP channel that can end a connection with a lingering close (:meth:`linger`)."""

    linger_seconds: float = LINGER_SECONDS
    linger_bytes: int = LINGER_BYTES
    #: Whether the channel is lingering: the answer is out, incoming bytes are dropped.
    lingering: bool = False
    #: Bytes dropped since the lingering began.
    discarded: int = 0
    _linger_timer: IDelayedCall | None = None

    def linger(self) -> None:
        """End the connection after an answer already written: half-close, discard what
        the client still sends, and abort at the bounds (or close at once if the transport
        cannot half-close)."""
        transport = cast(Any, self.transport)
        if self.lingering or transport is None:
            return
        self.lingering = True
        # The channel's own idle timeout restarts with every byte; the lingering's bounds
        # replace it.
        self.setTimeout(None)
        # As HTTPChannel.loseConnection does: the channel produces nothing more, and the
        # TLS layer sends its close_notify only once no producer is registered.
        transport.unregisterProducer()
        if isinstance(transport, TLSMemoryBIOProtocol):
            transport.loseConnection()
        elif ITCPTransport.providedBy(transport):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()
            return
        # The request may have paused reading (an upload being decided, a request being
        # handled); the discarding must read.
        transport.resumeProducing()
        self._linger_timer = self.callLater(self.linger_seconds, self._stop_lingering)

    def dataReceived(self, data: bytes) -> None:
        if not self.lingering:
            super().dataReceived(data)
            return
        self.discarded += len(data)
        if self.discarded > self.linger_bytes:
            self._stop_lingering()

    # Called by the parser for what was already read when the request was refused: that
    # is dropped too, and the request is not handled.
    def lineReceived(self, line: bytes) -> None:
        if not self.lingering:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:
        if not self.lingering:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        if not self.lingering:
            super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        super().connectionLost(reason)

    def _stop_lingering(self) -> None:
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        transport = self.transport
        if transport is not None:
            cast(ITCPTransport, transport).abortConnection()
