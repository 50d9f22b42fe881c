"""Baseline: a bare Klein route answering every PUT with a constant JSON body.

``baseline_klein.py BODY-FILE CERT KEY`` listens on two loopback ports chosen by the kernel,
plain TCP and TLS (the daemon's own certificate), and prints ``tcp PORT`` and ``tls PORT``.
Same Python, same reactor as the daemon; nothing but Klein and twisted.web in the way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from klein import Klein
from twisted.internet import endpoints, reactor
from twisted.web.server import Site

from benchmarks.launch import raise_nofile


def main() -> None:
    raise_nofile()
    body = Path(sys.argv[1]).read_bytes()
    cert, key = sys.argv[2], sys.argv[3]
    app = Klein()

    @app.route("/sysadm/iohyve", methods=["PUT", "POST"])
    def listvms(request: object) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")  # type: ignore[attr-defined]
        return body

    site = Site(app.resource())
    tls = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    for name, description in (("tcp", "tcp:0:interface=127.0.0.1"), ("tls", tls)):
        d = endpoints.serverFromString(reactor, description).listen(site)
        d.addCallback(lambda port, n=name: print(n, port.getHost().port, flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
