"""ISO upload memory: ``python -m benchmarks.upload [--size BYTES]``.

Starts the simulated daemon (as the suite does), uploads a sparse file of ``--size`` bytes
(1 GiB by default) with ``PUT /iso/<name>`` over its plain TCP listener, read and sent in
1 MiB chunks from a generator, and prints the daemon's RSS before the upload, its peak while
the body arrives and is stored (sampled every 10 ms), the growth, and the time taken: in
all, and from the body's last byte sent to the reply (the time the daemon takes to make the
received file the ISO: a flush to disk and a rename, no second copy). The target is a growth
under 20 MiB: the body goes to disk as it arrives.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.suite import MIB, Daemon, RssSampler

#: The growth the upload must stay under.
TARGET = 20 * MIB


def _chunks(path: Path, sent: list[float]) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(MIB):
            yield chunk
    sent.append(time.monotonic())


def upload(
    daemon: Daemon, source: Path, name: str, sent: list[float] | None = None
) -> tuple[int, dict[str, object]]:
    """``PUT /iso/<name>`` with the file's bytes; the status and the reply's ``args``.
    ``sent`` gets the time the last byte of the body was handed to the connection."""
    where = urlsplit(daemon.urls["http"])
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port)
    connection.request(
        "PUT",
        f"/iso/{name}",
        body=_chunks(source, sent if sent is not None else []),
        headers={
            # The session of the suite's login: a Basic login would hash the password on
            # this request, and its memory would count as the upload's.
            "Authorization": f"Bearer {daemon.token}",
            "Content-Length": str(source.stat().st_size),
            "Content-Type": "application/octet-stream",
        },
    )
    response = connection.getresponse()
    reply = json.loads(response.read())
    connection.close()
    return response.status, reply["args"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024 * MIB, help="bytes to upload")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sysadmd-upload-bench-") as directory:
        work = Path(directory)
        source = work / "sparse.iso"
        with source.open("wb") as f:
            f.truncate(options.size)
        daemon = Daemon(work, "daemon")
        try:
            time.sleep(1.0)
            before = daemon.rss()
            began = time.monotonic()
            sent: list[float] = []
            with RssSampler(daemon.psutil) as sampler:
                status, reply = upload(daemon, source, "bench.iso", sent)
            ended = time.monotonic()
            elapsed = ended - began
        finally:
            daemon.stop()
    growth = max(sampler.peak - before, 0)
    print(f"status {status}: {reply if status != 201 else reply['size']}")
    rate = options.size / elapsed / MIB
    print(f"uploaded {options.size} bytes in {elapsed:.1f} s ({rate:.0f} MiB/s)")
    if sent:
        print(f"stored {ended - sent[0]:.2f} s after the body's last byte was sent")
    print(f"daemon RSS before {before / MIB:.1f} MiB, peak {sampler.peak / MIB:.1f} MiB")
    print(
        f"RSS growth {growth / MIB:.1f} MiB (target < {TARGET // MIB} MiB): "
        f"{'PASS' if status == 201 and growth < TARGET else 'FAIL'}"
    )
    return 0 if status == 201 and growth < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
