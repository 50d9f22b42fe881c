"""Runs tests/httpserver.py's file server in a process of its own (the browser tests are
synchronous, so no reactor turns in theirs): ``python tests/web/isoserver.py NAME SIZE``
serves NAME (SIZE bytes) and prints its port; with a third argument ``stall``, it sends half
of NAME and then waits (a fetch that stays running until it is killed)."""

from __future__ import annotations

import sys
from typing import Any, cast

from httpserver import HTTPServer
from twisted.internet import reactor


def main() -> None:
    name, size = sys.argv[1], int(sys.argv[2])
    server = HTTPServer()
    server.files.files[name] = b"\0" * size
    if sys.argv[3:] == ["stall"]:
        server.files.stall.add(name)
    print(server.port, flush=True)
    cast(Any, reactor).run()


if __name__ == "__main__":
    main()
