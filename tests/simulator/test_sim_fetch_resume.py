"""``fetch -r``: the simulated fetch(1) continues a partial file as the real one does
(``usr.bin/fetch/fetch.c``, ``lib/libfetch/http.c``): a range request, the answer appended on
206, the whole file written again over the partial one on 200, the partial given up when the
remote ``Last-Modified`` differs from its mtime, and the partial kept when the transfer is cut
short."""

from __future__ import annotations

import email.utils
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sim_support import Sim
from test_sim_iso import PAYLOAD, stats_line

FETCH = "/usr/bin/fetch"
MODIFIED = 1452284133  # Fri, 08 Jan 2016 20:15:33 GMT


@dataclass
class Behaviour:
    """How the server answers: ``ranges`` honours ``Range``; ``cut`` ends the body after that
    many bytes of the whole file (the connection closed); ``modified`` is ``Last-Modified``."""

    ranges: bool = True
    cut: int | None = None
    modified: int = MODIFIED
    asked: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        how = self.server.behaviour
        asked = self.headers.get("Range")
        how.asked.append(asked)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        if how.ranges and match is not None:
            start = int(match.group(1))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.send_header("Last-Modified", email.utils.formatdate(how.modified, usegmt=True))
        self.end_headers()
        end = len(PAYLOAD) if how.cut is None else max(how.cut, start)
        self.wfile.write(PAYLOAD[start:end])
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    behaviour: Behaviour


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.behaviour = Behaviour()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/disc1.iso", httpd.behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    (tmp_path / "root" / "vm").mkdir(parents=True)
    return Sim(tmp_path / "root", capsys, "0.7.9")


def target(sim: Sim) -> Path:
    return sim.root / "vm" / "disc1.iso"


def cut_short(sim: Sim, url: str, how: Behaviour, at: int) -> None:
    """A first attempt the server ends after ``at`` bytes: the partial file stays, with the
    remote mtime."""
    how.cut = at
    status, _, err = sim(FETCH, "-o", "/vm/disc1.iso", url)
    assert status == 1
    assert err.endswith(
        f"fetch: /vm/disc1.iso appears to be truncated: {at}/{len(PAYLOAD)} bytes\n"
    )
    assert target(sim).read_bytes() == PAYLOAD[:at]
    assert target(sim).stat().st_mtime == how.modified
    how.cut = None


def test_resume_appends_the_rest_on_206(sim: Sim, server: tuple[str, Behaviour]) -> None:
    url, how = server
    cut_short(sim, url, how, 100_000)
    status, out, err = sim(FETCH, "-r", "-o", "/vm/disc1.iso", url)
    assert (status, out) == (0, "")
    assert stats_line("/vm/disc1.iso", " 300 kB").fullmatch(err), err
    assert how.asked == [None, "bytes=100000-"]
    assert target(sim).read_bytes() == PAYLOAD
    assert target(sim).stat().st_mtime == MODIFIED
    assert [p.name for p in target(sim).parent.iterdir()] == ["disc1.iso"]


def test_a_resumed_transfer_cut_again_keeps_both_parts(
    sim: Sim, server: tuple[str, Behaviour]
) -> None:
    url, how = server
    cut_short(sim, url, how, 50_000)
    how.cut = 200_000
    status, _, err = sim(FETCH, "-r", "-o", "/vm/disc1.iso", url)
    assert status == 1
    assert err.endswith(f"appears to be truncated: 200000/{len(PAYLOAD)} bytes\n")
    assert target(sim).read_bytes() == PAYLOAD[:200_000]
    how.cut = None
    assert sim(FETCH, "-r", "-q", "-o", "/vm/disc1.iso", url) == (0, "", "")
    assert how.asked[-1] == "bytes=200000-"
    assert target(sim).read_bytes() == PAYLOAD


def test_a_server_without_ranges_rewrites_the_file_from_the_start(
    sim: Sim, server: tuple[str, Behaviour]
) -> None:
    """A 200 to the range request: fetch(1) opens the partial file and writes the whole
    answer over it from byte 0 (``fseeko(of, url->offset = 0)``)."""
    url, how = server
    cut_short(sim, url, how, 100_000)
    how.ranges = False
    status, _, err = sim(FETCH, "-r", "-o", "/vm/disc1.iso", url)
    assert status == 0, err
    assert how.asked[-1] == "bytes=100000-"
    assert target(sim).read_bytes() == PAYLOAD
    assert [p.name for p in target(sim).parent.iterdir()] == ["disc1.iso"]


def test_a_changed_last_modified_fetches_again_into_a_temporary_file(
    sim: Sim, server: tuple[str, Behaviour]
) -> None:
    url, how = server
    cut_short(sim, url, how, 100_000)
    how.modified = MODIFIED + 3600
    status, _, err = sim(FETCH, "-r", "-o", "/vm/disc1.iso", url)
    assert status == 0, err
    # The range request, then the whole file again.
    assert how.asked[-2:] == ["bytes=100000-", None]
    assert target(sim).read_bytes() == PAYLOAD
    assert target(sim).stat().st_mtime == MODIFIED + 3600
    assert [p.name for p in target(sim).parent.iterdir()] == ["disc1.iso"]


def test_a_complete_file_is_left_alone_and_a_longer_one_refused(
    sim: Sim, server: tuple[str, Behaviour]
) -> None:
    url, how = server
    target(sim).write_bytes(PAYLOAD)
    os.utime(target(sim), (MODIFIED, MODIFIED))
    # 416 with the size asked for: "asked for 0 bytes; fake it", then nothing to do.
    assert sim(FETCH, "-r", "-o", "/vm/disc1.iso", url) == (0, "", "")
    assert target(sim).read_bytes() == PAYLOAD
    target(sim).write_bytes(PAYLOAD + b"more")
    os.utime(target(sim), (MODIFIED, MODIFIED))
    status, _, err = sim(FETCH, "-r", "-o", "/vm/disc1.iso", url)
    assert status == 1
    assert err == f"fetch: {url}: Requested Range Not Satisfiable\n"
    how.ranges = False
    status, _, err = sim(FETCH, "-r", "-o", "/vm/disc1.iso", url)
    assert status == 1
    assert err == (
        f"fetch: /vm/disc1.iso: local file ({len(PAYLOAD) + 4} bytes) is longer than remote"
        f" file ({len(PAYLOAD)} bytes)\n"
    )
    assert target(sim).read_bytes() == PAYLOAD + b"more"


def test_without_r_an_existing_file_is_replaced_through_a_temporary_file(
    sim: Sim, server: tuple[str, Behaviour]
) -> None:
    url, how = server
    target(sim).write_bytes(b"old")
    assert sim(FETCH, "-q", "-o", "/vm/disc1.iso", url) == (0, "", "")
    assert how.asked == [None]
    assert target(sim).read_bytes() == PAYLOAD
    # Cut short over an existing file: the temporary file keeps the bytes, the old file stays.
    target(sim).write_bytes(b"old")
    how.cut = 1000
    status, _, _ = sim(FETCH, "-q", "-o", "/vm/disc1.iso", url)
    assert status == 1
    temp, kept = sorted(p.name for p in target(sim).parent.iterdir())
    assert kept == "disc1.iso"
    assert re.fullmatch(r"\.fetch\.[A-Za-z0-9]{6}\.disc1\.iso", temp)
    assert target(sim).read_bytes() == b"old"


def test_a_killed_attempt_sets_no_mtime_so_only_F_continues_it(
    sim: Sim, server: tuple[str, Behaviour]
) -> None:
    """fetch(1) sets the mtime when it ends the transfer itself; a killed one leaves the
    file with the time of its last write, which ``-r`` alone takes for a changed file
    (the whole file again), and ``-F -r`` continues."""
    url, how = server
    target(sim).write_bytes(PAYLOAD[:100_000])  # as a killed fetch leaves it
    assert sim(FETCH, "-r", "-q", "-o", "/vm/disc1.iso", url) == (0, "", "")
    assert how.asked == ["bytes=100000-", None]
    assert target(sim).read_bytes() == PAYLOAD
    target(sim).write_bytes(PAYLOAD[:100_000])
    assert sim(FETCH, "-F", "-r", "-q", "-o", "/vm/disc1.iso", url) == (0, "", "")
    assert how.asked[2:] == ["bytes=100000-"]
    assert target(sim).read_bytes() == PAYLOAD
