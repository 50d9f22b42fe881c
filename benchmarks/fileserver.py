"""The local HTTP server fetches download from: ``fileserver.py DIRECTORY [SLOW-BPS]``.

Serves the regular files of DIRECTORY on a loopback port chosen by the kernel (printed as
``http PORT``), with Content-Length, for GET and HEAD, one thread per connection. Bodies go
out with sendfile(2), so neither curl nor the daemon is held back by the server. Paths under
``/slow/`` are sent at SLOW-BPS bytes per second instead (for a fetch that keeps running).
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path()
SLOW_BPS = int(sys.argv[2]) if len(sys.argv) > 2 else 65536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _file(self) -> tuple[Path, bool] | None:
        name = self.path.lstrip("/")
        slow = name.startswith("slow/")
        path = ROOT / name.removeprefix("slow/")
        if "/" in name.removeprefix("slow/") or not path.is_file():
            self.send_error(404)
            return None
        return path, slow

    def _head(self, path: Path) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()

    def do_HEAD(self) -> None:
        found = self._file()
        if found is not None:
            self._head(found[0])

    def do_GET(self) -> None:
        found = self._file()
        if found is None:
            return
        path, slow = found
        self._head(path)
        self.wfile.flush()
        with path.open("rb") as f:
            if not slow:
                self.connection.sendfile(f)
                return
            chunk = max(1, SLOW_BPS // 10)
            while data := f.read(chunk):
                self.wfile.write(data)
                self.wfile.flush()
                time.sleep(0.1)

    def log_message(self, format: str, *args: object) -> None:
        return


class Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of connections (the daemon asks for
    # the sizes of many fetches at once) would wait for SYN retransmits, a second each.
    request_queue_size = 1024


def main() -> None:
    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("http", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
