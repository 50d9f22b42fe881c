"""API floor over WebSocket: a bare Autobahn server that decodes, looks up and encodes.

``baseline_api_autobahn.py ARGS-FILE CERT KEY`` listens like baseline_autobahn.py and prints
``tcp PORT`` and ``tls PORT``. Each message is decoded with the JSON library sysadmd uses (the
standard library's), its ``args.action`` is looked up in a dict, and the sysadm reply envelope
(``namespace``, ``name``, ``id``, ``args``) is encoded around the listvms body read from
ARGS-FILE, compact with sorted keys as sysadmd's replies are. No login, sessions, roles,
validation, metrics or audit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import endpoints, reactor

from benchmarks.launch import raise_nofile

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def main() -> None:
    raise_nofile()
    listing = json.loads(Path(sys.argv[1]).read_bytes())
    cert, key = sys.argv[2], sys.argv[3]
    actions: dict[str, Callable[[], Any]] = {"listvms": lambda: listing}

    class Api(WebSocketServerProtocol):  # type: ignore[misc]
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            message = json.loads(payload.decode("utf-8"))
            args = message.get("args") if isinstance(message, dict) else None
            handler = actions.get(args.get("action")) if isinstance(args, dict) else None
            reply = {
                "namespace": message.get("namespace", "") if handler else "error",
                "name": "response" if handler else "error",
                "id": message.get("id", ""),
                "args": handler() if handler else {"code": "400", "message": "unknown action"},
            }
            self.sendMessage(_ENCODER.encode(reply).encode(), isBinary=False)

    factory = WebSocketServerFactory()
    factory.protocol = Api
    factory.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)
    tls = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    for name, description in (("tcp", "tcp:0:interface=127.0.0.1"), ("tls", tls)):
        d = endpoints.serverFromString(reactor, description).listen(factory)
        d.addCallback(lambda port, n=name: print(n, port.getHost().port, flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
