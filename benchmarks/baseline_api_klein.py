"""API floor over REST: a bare Klein route that does what every JSON API must do, and no more.

``baseline_api_klein.py ARGS-FILE CERT KEY`` listens like baseline_klein.py and prints
``tcp PORT`` and ``tls PORT``. Each request body is decoded with the JSON library sysadmd uses
(the standard library's), its ``action`` is looked up in a dict, and the reply envelope
``{"args": ...}`` is encoded around the listvms body read from ARGS-FILE, as sysadmd's REST
replies are (indented, sorted keys). No sessions, roles, validation, metrics or audit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from klein import Klein
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from benchmarks.launch import raise_nofile


def main() -> None:
    raise_nofile()
    listing = json.loads(Path(sys.argv[1]).read_bytes())
    cert, key = sys.argv[2], sys.argv[3]
    actions: dict[str, Callable[[], Any]] = {"listvms": lambda: listing}
    app = Klein()

    @app.route("/sysadm/iohyve", methods=["PUT", "POST"])
    def call(request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        args = json.loads(request.content.read().decode("utf-8"))
        handler = actions.get(args.get("action")) if isinstance(args, dict) else None
        if handler is None:
            request.setResponseCode(400)
            reply: Any = {"args": {"code": "400", "message": "unknown action"}}
        else:
            reply = {"args": handler()}
        return json.dumps(reply, indent=4, sort_keys=True, ensure_ascii=False).encode() + b"\n"

    site = Site(app.resource())
    tls = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    for name, description in (("tcp", "tcp:0:interface=127.0.0.1"), ("tls", tls)):
        d = endpoints.serverFromString(reactor, description).listen(site)
        d.addCallback(lambda port, n=name: print(n, port.getHost().port, flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
