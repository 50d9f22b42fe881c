"""The ISO commands, with real downloads from ``file://`` URLs and a local HTTP server."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sim_support import Sim, run_process, start_process

PAYLOAD = bytes(range(256)) * 1200  # 307200 bytes, "300 kB" in fetch's units


class _Handler(BaseHTTPRequestHandler):
    """Serves ``/<name>`` from the server's ``files``; special paths misbehave on purpose."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        if path == "unsized.iso":
            # HTTP/1.0 style: no Content-Length, the end of the data is the end of the connection.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
            return
        if path == "short.iso":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.close_connection = True
            return
        data = self.server.files.get(path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", "Fri, 08 Jan 2016 20:15:33 GMT")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    files: dict[str, bytes]


@pytest.fixture
def http() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP server; yields its base URL and the dict of files it serves."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.files = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.files
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    return Sim(tmp_path / "root", capsys, "0.7.9")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A file to fetch through a ``file://`` URL."""
    path = tmp_path / "FreeBSD-10.2-RELEASE-amd64-bootonly.iso"
    path.write_bytes(PAYLOAD)
    return path


def stats_line(shown: str, size: str) -> re.Pattern[str]:
    """Match fetch's non-tty statistics line for ``shown`` (the rate varies)."""
    name = re.escape(shown[:63].ljust(46))
    return re.compile(rf"{name} {{8}}{re.escape(size)} (?:\?\? Bps| *\d+ [ kMGTP]Bps)\n")


def partials(directory: Path) -> list[Path]:
    """Return the in-progress download files in an ISO dataset."""
    return sorted(entry for entry in directory.iterdir() if entry.name.startswith(".fetch."))


def leftovers(directory: Path) -> list[str]:
    return [entry.name for entry in partials(directory)]


# -- isolist ------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
def test_isolist_empty(sim: Sim, profile: str) -> None:
    assert sim("isolist", profile=profile) == (0, "Listing ISO's...\n", "")


def test_isolist_lists_datasets_in_byte_order(sim: Sim) -> None:
    for name in ("b.iso", "B.iso", "a.iso", "_.iso"):
        sim.iso(name).mkdir(parents=True)
    (sim.iso("b.iso") / "b.iso").write_bytes(b"x")
    (sim.root / "iohyve" / "ISO" / "plain-file").write_bytes(b"not a dataset")
    assert sim.ok("isolist") == "Listing ISO's...\nB.iso\n_.iso\na.iso\nb.iso\n"


def test_isolist_shows_the_guest_named_iso_quirk(sim: Sim) -> None:
    sim.iso("x.iso").mkdir(parents=True)
    sim.ok("create", "ISOlab", "1G")
    assert sim.ok("isolist") == "Listing ISO's...\nx.iso\n\ndisk0\n"


# -- fetch --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "word"), [("0.7.3", "fetch"), ("0.7.9", "fetchiso"), ("0.7.9", "fetch")]
)
def test_fetch_file_url(sim: Sim, source: Path, profile: str, word: str) -> None:
    url = source.as_uri()
    name = source.name
    status, out, err = sim(word, url, profile=profile)
    assert (status, out) == (0, f"Fetching {url}...\n")
    assert stats_line(f"/iohyve/ISO/{name}/{name}", " 300 kB").fullmatch(err), err
    assert err.startswith("/iohyve/ISO/FreeBSD-10.2-RELEASE-amd64-bootonly.iso/FreeBSD-10.    ")
    assert (sim.iso(name) / name).read_bytes() == PAYLOAD
    assert leftovers(sim.iso(name)) == []
    assert sim.ok("isolist") == f"Listing ISO's...\n{name}\n"
    assert os.stat(sim.iso(name) / name).st_mtime == source.stat().st_mtime


def test_fetch_http_url(sim: Sim, http: tuple[str, dict[str, bytes]]) -> None:
    base, files = http
    files["debian-8.2.0-amd64-netinst.iso"] = PAYLOAD
    url = f"{base}/debian-8.2.0-amd64-netinst.iso"
    status, out, err = sim("fetchiso", url)
    assert (status, out) == (0, f"Fetching {url}...\n")
    shown = "/iohyve/ISO/debian-8.2.0-amd64-netinst.iso/debian-8.2.0-amd64-netinst.iso"
    assert stats_line(shown, " 300 kB").fullmatch(err), err
    target = sim.iso("debian-8.2.0-amd64-netinst.iso") / "debian-8.2.0-amd64-netinst.iso"
    assert target.read_bytes() == PAYLOAD
    assert target.stat().st_mtime == 1452284133  # Last-Modified


def test_fetch_404_keeps_an_empty_dataset(sim: Sim, http: tuple[str, dict[str, bytes]]) -> None:
    url = f"{http[0]}/missing.iso"
    assert sim("fetch", url) == (1, f"Fetching {url}...\n", f"fetch: {url}: Not Found\n")
    assert list(sim.iso("missing.iso").iterdir()) == []
    assert sim.ok("isolist") == "Listing ISO's...\nmissing.iso\n"
    # Fetching again reports the existing dataset and still downloads.
    http[1]["missing.iso"] = b"now here"
    status, out, err = sim("fetch", url, profile="0.7.3")
    assert (status, out) == (0, f"Fetching {url}...\n")
    assert err.startswith("cannot create 'tank/iohyve/ISO/missing.iso': dataset already exists\n")
    assert (sim.iso("missing.iso") / "missing.iso").read_bytes() == b"now here"


def test_fetch_of_unknown_size_warns(sim: Sim, http: tuple[str, dict[str, bytes]]) -> None:
    url = f"{http[0]}/unsized.iso"
    status, _, err = sim("fetch", url)
    assert status == 0
    warning = f"fetch: {url}: size of remote file is not known\n"
    assert err.startswith(warning)
    assert stats_line("/iohyve/ISO/unsized.iso/unsized.iso", "  -1  B").fullmatch(
        err[len(warning) :]
    )
    assert (sim.iso("unsized.iso") / "unsized.iso").read_bytes() == PAYLOAD


def test_fetch_of_a_truncated_transfer_fails(sim: Sim, http: tuple[str, dict[str, bytes]]) -> None:
    url = f"{http[0]}/short.iso"
    status, _, err = sim("fetch", url)
    assert status == 1
    shown = "/iohyve/ISO/short.iso/short.iso"
    first, second = err.splitlines(keepends=True)
    assert stats_line(shown, " 300 kB").fullmatch(first)
    assert second == f"fetch: {shown} appears to be truncated: 1000/307200 bytes\n"
    # fetch(1) keeps what it wrote, under the ISO's name.
    assert [p.name for p in sim.iso("short.iso").iterdir()] == ["short.iso"]
    assert (sim.iso("short.iso") / "short.iso").read_bytes() == PAYLOAD[:1000]


def test_fetch_errors_of_file_urls(sim: Sim, tmp_path: Path) -> None:
    url = (tmp_path / "absent.iso").as_uri()
    assert sim("fetch", url) == (
        1,
        f"Fetching {url}...\n",
        f"fetch: {url}: No such file or directory\n",
    )
    assert sim("fetch", "gopher://h/x.iso") == (
        1,
        "Fetching gopher://h/x.iso...\n",
        "fetch: gopher://h/x.iso: Invalid URL scheme\n",
    )


def test_fetch_uses_the_pool_in_zfs_messages(tmp_path: Path, source: Path) -> None:
    url = source.as_uri()
    assert run_process(tmp_path, "--pool", "zroot", "fetch", url).returncode == 0
    result = run_process(tmp_path, "--pool", "zroot", "fetch", url)
    assert result.stderr.startswith(
        f"cannot create 'zroot/iohyve/ISO/{source.name}': dataset already exists\n".encode()
    )


def test_fetch_of_a_name_zfs_refuses_writes_a_plain_file(
    sim: Sim, http: tuple[str, dict[str, bytes]]
) -> None:
    http[1]["a"] = b"plain"
    url = f"{http[0]}/a?b=1"
    status, out, err = sim("fetch", url)
    assert (status, out) == (0, f"Fetching {url}...\n")
    assert err.startswith("cannot create 'tank/iohyve/ISO/a?b=1': invalid character '?' in name\n")
    assert (sim.root / "iohyve" / "ISO" / "a?b=1").read_bytes() == b"plain"
    assert sim.ok("isolist") == "Listing ISO's...\n"


@pytest.mark.parametrize(("url", "name"), [("http://h/..", ".."), ("http://h/x/.", ".")])
def test_fetch_never_leaves_the_root(sim: Sim, url: str, name: str) -> None:
    status, out, err = sim("fetch", url)
    assert (status, out) == (1, f"Fetching {url}...\n")
    assert err.startswith(f"cannot create 'tank/iohyve/ISO/{name}': ")
    assert not sim.root.exists()


def test_fetch_without_url(sim: Sim) -> None:
    assert sim("fetchiso") == (1, "missing argument\nusage:\n\tfetchiso <URL>\n", "")
    status, out, err = sim("fetch", profile="0.7.3")
    assert (status, out) == (1, "Fetching ...\n")
    assert err.splitlines()[2] == "cannot create 'tank/iohyve/ISO/': trailing slash in name"
    assert err.splitlines()[3].startswith("usage: fetch ")


def test_fetchiso_is_unknown_to_0_7_3(sim: Sim, source: Path) -> None:
    assert sim("fetchiso", source.as_uri(), profile="0.7.3") == (0, "", "")
    assert sim.ok("isolist") == "Listing ISO's...\n"


# -- renameiso and rmiso ------------------------------------------------------------------------


def make_iso(sim: Sim, name: str, data: bytes = b"iso") -> None:
    sim.iso(name).mkdir(parents=True)
    (sim.iso(name) / name).write_bytes(data)


@pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
def test_renameiso(sim: Sim, profile: str) -> None:
    make_iso(sim, "old.iso")
    assert sim("renameiso", "old.iso", "new.iso", profile=profile) == (
        0,
        "Renaming ISO old.iso to new.iso...\n",
        "",
    )
    assert (sim.iso("new.iso") / "new.iso").read_bytes() == b"iso"
    assert not sim.iso("old.iso").exists()


def test_renameiso_to_an_existing_target_renames_the_file_only(sim: Sim) -> None:
    make_iso(sim, "a.iso", b"A")
    make_iso(sim, "b.iso", b"B")
    assert sim("renameiso", "a.iso", "b.iso") == (
        1,
        "Renaming ISO a.iso to b.iso...\n",
        "cannot rename to 'tank/iohyve/ISO/b.iso': dataset already exists\n",
    )
    assert sorted(os.listdir(sim.iso("a.iso"))) == ["b.iso"]
    assert (sim.iso("a.iso") / "b.iso").read_bytes() == b"A"
    assert (sim.iso("b.iso") / "b.iso").read_bytes() == b"B"


def test_renameiso_of_a_missing_iso(sim: Sim) -> None:
    assert sim("renameiso", "nope.iso", "x.iso") == (
        1,
        "Renaming ISO nope.iso to x.iso...\n",
        "mv: rename /iohyve/ISO/nope.iso/nope.iso to /iohyve/ISO/nope.iso/x.iso: "
        "No such file or directory\n"
        "cannot open 'tank/iohyve/ISO/nope.iso': dataset does not exist\n",
    )


def test_renameiso_of_an_empty_dataset(sim: Sim) -> None:
    sim.iso("empty.iso").mkdir(parents=True)
    assert sim("renameiso", "empty.iso", "full.iso") == (
        0,
        "Renaming ISO empty.iso to full.iso...\n",
        "mv: rename /iohyve/ISO/empty.iso/empty.iso to /iohyve/ISO/empty.iso/full.iso: "
        "No such file or directory\n",
    )
    assert sim.ok("isolist") == "Listing ISO's...\nfull.iso\n"


def test_renameiso_never_leaves_the_root(sim: Sim) -> None:
    make_iso(sim, "a.iso")
    assert sim("renameiso", "a.iso", "../../x") == (
        1,
        "Renaming ISO a.iso to ../../x...\n",
        "cannot rename to 'tank/iohyve/ISO/../../x': invalid character '/' in name\n",
    )
    assert sorted(os.listdir(sim.iso("a.iso"))) == ["a.iso"]


def test_renameiso_usage_and_invalid_target(sim: Sim) -> None:
    assert sim("renameiso", "a.iso") == (
        1,
        "missing argument\nusage:\n\trenameiso <ISO> <newname>\n",
        "",
    )
    make_iso(sim, "a.iso")
    assert sim("renameiso", "a.iso", "b@c") == (
        1,
        "Renaming ISO a.iso to b@c...\n",
        "cannot rename to 'tank/iohyve/ISO/b@c': snapshot delimiter '@' in filesystem name\n",
    )
    assert sim("renameiso", "b@c", "a.iso") == (
        1,
        "Renaming ISO b@c to a.iso...\n",
        "mv: rename /iohyve/ISO/b@c/b@c to /iohyve/ISO/b@c/a.iso: No such file or directory\n"
        "cannot open 'tank/iohyve/ISO/b@c': dataset does not exist\n",
    )


@pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
def test_rmiso(sim: Sim, profile: str) -> None:
    make_iso(sim, "a.iso")
    assert sim("rmiso", "a.iso", profile=profile) == (0, "Deleting a.iso...\n", "")
    assert not sim.iso("a.iso").exists()
    assert sim("rmiso", "a.iso", profile=profile) == (
        1,
        "Deleting a.iso...\n",
        "cannot open 'tank/iohyve/ISO/a.iso': dataset does not exist\n",
    )


def test_rmiso_without_a_name(sim: Sim) -> None:
    assert sim("rmiso") == (1, "missing argument\nusage:\n\trmiso <name>\n", "")
    assert sim("rmiso", profile="0.7.3") == (
        1,
        "Deleting ...\n",
        "cannot open 'tank/iohyve/ISO/': invalid dataset name\n",
    )
    assert sim("rmiso", "..") == (
        1,
        "Deleting .....\n",
        "cannot open 'tank/iohyve/ISO/..': parent reference, '..' is found in name\n",
    )


# -- a download in progress ---------------------------------------------------------------------


def wait_for(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_running_fetch_grows_its_file_blocks_nothing_and_dies_cleanly_on_sigterm(
    tmp_path: Path, source: Path
) -> None:
    root = tmp_path / "root"
    dataset = root / "iohyve" / "ISO" / source.name
    # 300 kB at 100 kB/s: three seconds, far more than the test needs.
    process = start_process(root, "fetch", source.as_uri(), IOHYVE_SIM_FETCH_BPS="100000")
    try:
        wait_for(lambda: dataset.is_dir() and leftovers(dataset))
        partial = dataset / leftovers(dataset)[0]
        wait_for(lambda: partial.stat().st_size > 0)
        first = partial.stat().st_size
        wait_for(lambda: partial.stat().st_size > first)
        assert partial.stat().st_size < len(PAYLOAD)

        # The state lock is free during the transfer.
        listed = run_process(root, "isolist")
        assert listed.stdout == f"Listing ISO's...\n{source.name}\n".encode()
        assert run_process(root, "create", "g", "1G").returncode == 0
        # The dataset is in use.
        busy = run_process(root, "rmiso", source.name)
        assert (busy.returncode, busy.stderr) == (
            1,
            f"cannot destroy 'tank/iohyve/ISO/{source.name}': dataset is busy\n".encode(),
        )
        moved = run_process(root, "renameiso", source.name, "other.iso")
        assert moved.returncode == 1
        assert moved.stderr.endswith(
            f"cannot rename 'tank/iohyve/ISO/{source.name}': dataset is busy\n".encode()
        )

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    # Killed, fetch(1) leaves its bytes in place (a later fetch -r continues them).
    [kept] = dataset.iterdir()
    assert kept.name == source.name
    assert 0 < kept.stat().st_size < len(PAYLOAD)
    assert kept.read_bytes() == PAYLOAD[: kept.stat().st_size]
    assert run_process(root, "rmiso", source.name).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_in_process_return_128_plus_the_signal_and_leave_what_fetch_leaves(
    sim: Sim, source: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    monkeypatch.setenv("IOHYVE_SIM_FETCH_BPS", "100000")
    dataset = sim.iso(source.name)
    handler = signal.getsignal(signum)

    def interrupt_when_data_arrives() -> None:
        # The temporary file exists only while the signal guard is installed.
        wait_for(lambda: dataset.is_dir() and any(f.stat().st_size for f in partials(dataset)))
        os.kill(os.getpid(), signum)

    killer = threading.Thread(target=interrupt_when_data_arrives)
    killer.start()
    try:
        status, out, err = sim("fetch", source.as_uri())
    finally:
        killer.join()
    assert status == 128 + signum
    assert out == f"Fetching {source.as_uri()}...\n"
    name_field = f"/iohyve/ISO/{source.name}/{source.name}"[:63].ljust(46)
    if signum == signal.SIGTERM:
        # fetch is killed: the file name started the line, no statistics end it.
        assert err == name_field
    else:
        # fetch stops reading, prints its statistics and complains.
        assert stats_line(name_field, " 300 kB").match(err)
        assert err.endswith("Bps\nfetch: transfer interrupted\n")
    if signum == signal.SIGTERM:
        assert [p.name for p in dataset.iterdir()] == [source.name]
    else:
        assert list(dataset.iterdir()) == []
    assert signal.getsignal(signum) is handler
