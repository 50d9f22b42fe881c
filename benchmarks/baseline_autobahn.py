"""Baseline: a bare Autobahn WebSocket server answering every message with a constant reply.

``baseline_autobahn.py REPLY-FILE CERT KEY`` listens like baseline_klein.py and prints
``tcp PORT`` and ``tls PORT``. Same Python and reactor as the daemon, no login, no API.
"""

from __future__ import annotations

import sys
from pathlib import Path

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import endpoints, reactor

from benchmarks.launch import raise_nofile


def main() -> None:
    raise_nofile()
    reply = Path(sys.argv[1]).read_bytes()
    cert, key = sys.argv[2], sys.argv[3]

    class Constant(WebSocketServerProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.sendMessage(reply, isBinary=False)

    factory = WebSocketServerFactory()
    factory.protocol = Constant
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)
    tls = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    for name, description in (("tcp", "tcp:0:interface=127.0.0.1"), ("tls", tls)):
        d = endpoints.serverFromString(reactor, description).listen(factory)
        d.addCallback(lambda port, n=name: print(n, port.getHost().port, flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
