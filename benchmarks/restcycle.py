"""The REST request cycle in one process, without sockets: CPU time, collector runs, garbage.

``python -m benchmarks.restcycle [REPO]`` feeds 5,000 keep-alive ``PUT /test/probe`` calls
(the tests' probe API, an echo) into one HTTP channel of the daemon's Site over an in-memory
transport, five times, and prints the CPU time per request (process time, so that other
processes on the machine move it little), how many times the cyclic collector ran, and how
many objects per request were left in reference cycles. REST load over loopback is too noisy
on a shared machine to show a change of this size; this is not. REPO (default: this
checkout) lets the same figures be taken of another checkout of sysadmd.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

REQUESTS = 5000
REPEATS = 5


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    sys.path[:0] = [str(root), str(root / "tests")]
    from probe import probe_api  # noqa: PLC0415 (from REPO)
    from twisted.internet.address import IPv4Address  # noqa: PLC0415
    from twisted.internet.task import Clock  # noqa: PLC0415
    from twisted.internet.testing import StringTransport  # noqa: PLC0415

    from sysadmd.app import build_site  # noqa: PLC0415 (from REPO)

    body = b'{"action": "echo", "word": "hi"}'
    request = (
        b"PUT /test/probe HTTP/1.1\r\nHost: sysadmd.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    api, _ = probe_api()
    channel = build_site(api, Clock()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    if channel is None:
        raise SystemExit("the Site built no channel")
    transport = StringTransport()
    channel.makeConnection(transport)

    def call() -> None:
        transport.clear()
        channel.dataReceived(request)

    for _ in range(200):
        call()
    if not transport.value().startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the call failed: {transport.value()[:100]!r}")
    runs: list[tuple[float, int, float]] = []
    for _ in range(REPEATS):
        collections = [0]

        def count(phase: str, _info: Any, seen: list[int] = collections) -> None:
            if phase == "start":
                seen[0] += 1

        gc.callbacks.append(count)
        began = time.process_time()
        for _ in range(REQUESTS):
            call()
        cpu = time.process_time() - began
        gc.callbacks.remove(count)
        gc.disable()
        gc.collect()
        for _ in range(1000):
            call()
        garbage = gc.collect() / 1000
        gc.enable()
        runs.append((cpu / REQUESTS * 1e6, collections[0], garbage))
    runs.sort()
    print(
        f"{root}: CPU per request {runs[0][0]:.1f}-{runs[-1][0]:.1f} us (best-worst of "
        f"{REPEATS}), collector runs per {REQUESTS} requests {runs[0][1]}, "
        f"objects left in cycles per request {runs[0][2]:.1f}"
    )


if __name__ == "__main__":
    main()
