"""Console benchmark: keystroke-to-echo latency, output throughput to 1 and 50 viewers, and
the memory of an idle viewer.

``python -m benchmarks.console [--samples N] [--lines N | --mib M] [--viewers N] [--idle N]``
starts the daemon in simulate mode in a temporary directory, starts a simulated guest, and over
TLS WebSockets at ``/console/<guest>``:

* types one character at a time as the writer and times each until its echo comes back
  (through the daemon, the pseudo-terminal and the simulated guest, and back): p50 and p99;
* has the guest print ``jot N`` (the numbers 1 to N, one a line; ``--mib`` picks N for that
  many MiB) and times the bytes to reach one viewer, then every one of ``--viewers`` viewers
  (all must see the last line);
* opens ``--idle`` more viewers and reads the daemon's RSS before and after: RSS per viewer;
* lets the device go (``consolerelease``), opens it itself and types the same keystrokes
  straight into the pseudo-terminal: the direct round trip, the same guest without the
  daemon, TLS and WebSocket.

Prints one JSON object (:func:`run` returns it, for the suite). The figures include the
simulated guest (a Python program) echoing each byte, which a real guest's kernel does faster.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import select
import ssl
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import tty
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect

USER = ("bench", "bench password for the console")
_LISTENING = re.compile(r"WebSocket wss://([^/]+)/")


def simulator_command(root: Path) -> list[str]:
    return [sys.executable, "-m", "sysadmd.simulator", "--root", str(root)]


def _start(base: Path, viewers: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    state = base / "state"
    python = sys.executable
    root = state / "simulator"
    simulator = simulator_command(root)
    subprocess.run([*simulator, "create", "bench", "1G"], check=True, capture_output=True)
    subprocess.run(
        [
            python,
            "-m",
            "sysadmd.auth.admin",
            "--state-dir",
            str(state),
            "user",
            "add",
            USER[0],
            "--role",
            "admin",
        ],
        input=USER[1] + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    config = base / "sysadmd.toml"
    config.write_text(
        "[console]\ninterval = 0.5\n"
        f"viewers_per_guest = {viewers + 2}\nviewers_per_user = {viewers + 2}\n"
        "viewer_buffer = 67108864\n"
        f"[limits]\nconnections_per_address = {viewers + 8}\n"
    )
    log = base / "daemon.log"
    twistd = str(Path(python).with_name("twistd"))
    process = subprocess.Popen(
        [
            twistd,
            "-n",
            "--pidfile=",
            f"--logfile={log}",
            "sysadmd",
            "--simulate",
            f"--state-dir={state}",
            f"--config={config}",
            "--listen=ssl:0:interface=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text() if log.exists() else "")
        if match:
            subprocess.run([*simulator, "start", "bench"], check=True, capture_output=True)
            return process, int(match.group(1).rsplit(":", 1)[1]), state / "tls" / "cert.pem"
        time.sleep(0.05)
    process.terminate()
    raise RuntimeError("the daemon did not start")


def _rest(port: int, cafile: Path, path: str, body: dict[str, Any], authorization: str) -> Any:
    """One REST call to the daemon; its reply's ``args``."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json", "Authorization": authorization},
    )
    with urllib.request.urlopen(request, timeout=60, context=context) as response:  # noqa: S310
        return json.loads(response.read())["args"]


def log_in(port: int, cafile: Path) -> str:
    """A session token for the bench user: viewers log in with it (Bearer), so that opening
    many of them costs no password hash each."""
    pair = base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()
    args = {"username": USER[0], "password": USER[1]}
    return str(_rest(port, cafile, "/rpc/auth", args, f"Basic {pair}")[0])


async def _viewer(port: int, cafile: Path, token: str) -> ClientConnection:
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    ws = await connect(
        f"wss://127.0.0.1:{port}/console/bench",
        ssl=context,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        max_size=None,
        # Unread messages (the status every viewer gets when another one comes or goes) must
        # not stop the reading: the close handshake would wait behind them.
        max_queue=None,
        ping_interval=None,
    )
    status = json.loads(await ws.recv())
    if status.get("type") != "status":
        raise RuntimeError(f"the console did not open: {status}")
    return ws


async def _until(ws: ClientConnection, wanted: bytes, seen: bytearray) -> None:
    while wanted not in seen:
        frame = await ws.recv()
        if isinstance(frame, bytes):
            seen += frame
            del seen[: max(0, len(seen) - 4 * len(wanted) - 65536)]


def _jot_size(lines: int) -> int:
    return sum(len(f"{n}\r\n") for n in range(1, lines + 1))


def lines_for(size: int) -> int:
    """The fewest lines ``jot`` prints to send at least ``size`` bytes."""
    lines, total = 0, 0
    while total < size:
        lines += 1
        total += len(f"{lines}\r\n")
    return lines


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "samples": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
    }


async def _measure(  # noqa: PLR0917
    port: int,
    cafile: Path,
    token: str,
    samples: int,
    lines: int,
    viewers: int,
    idle: int = 0,
    daemon: psutil.Process | None = None,
    guest: psutil.Process | None = None,
) -> Any:
    writer = await _viewer(port, cafile, token)
    seen = bytearray()
    # Wait for the guest to boot and log in (the guest may still be starting).
    for _ in range(100):
        await writer.send(b"\r")
        try:
            await asyncio.wait_for(_until(writer, b"login: ", seen), 0.5)
            break
        except TimeoutError:
            continue
    await writer.send(b"root\r")
    await _until(writer, b"root@bench:~ # ", seen)
    latencies = []
    for i in range(samples):
        key = bytes([ord("a") + i % 26])
        seen.clear()
        started = time.perf_counter()
        await writer.send(key)
        await _until(writer, key, seen)
        latencies.append((time.perf_counter() - started) * 1000)
    await writer.send(b"\x03")  # clear the typed line
    await _until(writer, b"root@bench:~ # ", seen)

    last = f"\r\n{lines}\r\nroot@bench:~ # ".encode()

    async def throughput(clients: list[ClientConnection]) -> dict[str, float]:
        buffers = [bytearray() for _ in clients]
        finished: list[float] = []

        async def reader(client: ClientConnection, seen: bytearray) -> None:
            await _until(client, last, seen)
            finished.append(time.perf_counter())

        cpu = _cpu(daemon), time.process_time(), _cpu(guest)
        started = time.perf_counter()
        await writer.send(f"jot {lines}\r".encode())
        await asyncio.gather(*(reader(c, b) for c, b in zip(clients, buffers, strict=False)))
        seconds = time.perf_counter() - started
        size = _jot_size(lines)
        return {
            "viewers": len(clients),
            "bytes": size,
            "seconds": round(seconds, 3),
            # When the first viewer had the whole burst (the last one's is "seconds").
            "first_viewer_s": round(min(finished) - started, 3),
            "mib_per_s_per_viewer": round(size / seconds / 2**20, 2),
            "mib_per_s_total": round(size * len(clients) / seconds / 2**20, 2),
            # Where the time went: the daemon's CPU, the viewers' (this process's) and the
            # simulated guest's (printing the burst), all on the same cores.
            "daemon_cpu_s": round(_cpu(daemon) - cpu[0], 3),
            "viewers_cpu_s": round(time.process_time() - cpu[1], 3),
            "guest_cpu_s": round(_cpu(guest) - cpu[2], 3),
        }

    one = await throughput([writer])
    others = [await _viewer(port, cafile, token) for _ in range(viewers - 1)]
    # Each new viewer's history ends with the last burst's last line, which is also how the next
    # burst ends: read the history first, or the viewer would count as done before it starts.
    for other in others:
        await asyncio.wait_for(_until(other, last, bytearray()), 30)
    await asyncio.sleep(1.0)
    many = await throughput([writer, *others])
    for ws in others:
        await ws.close()
    result: dict[str, Any] = {
        "keystroke_to_echo_ms": _percentiles(latencies),
        "throughput": [one, many],
        "many_to_one_rate": round(many["mib_per_s_per_viewer"] / one["mib_per_s_per_viewer"], 3),
    }
    if idle and daemon is not None:
        result["idle"] = await _idle(port, cafile, token, idle, daemon)
    await writer.close()
    return result


def _guest(base: Path) -> psutil.Process | None:
    """The simulated guest's console program (it prints the burst), if its pid is known."""
    try:
        pid = int((base / "state" / "simulator" / "console" / "bench.pid").read_text())
        return psutil.Process(pid)
    except (OSError, ValueError, psutil.Error):
        return None


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return float("nan")
    times = process.cpu_times()
    return float(times.user + times.system)


async def _idle(
    port: int, cafile: Path, token: str, count: int, daemon: psutil.Process
) -> dict[str, Any]:
    """RSS per idle viewer: ``count`` viewers attached and left alone."""
    warm = [await _viewer(port, cafile, token) for _ in range(5)]  # code and caches used once
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1.0)
    before = daemon.memory_info().rss
    viewers = [await _viewer(port, cafile, token) for _ in range(count)]
    await asyncio.sleep(2.0)
    after = daemon.memory_info().rss
    for ws in viewers:
        await ws.close()
    return {
        "viewers": count,
        "rss_before_mib": round(before / 2**20, 2),
        "rss_after_mib": round(after / 2**20, 2),
        "rss_per_viewer_kib": round((after - before) / 1024 / count, 2),
    }


def _release(port: int, cafile: Path, token: str, seconds: int) -> None:
    """``consolerelease`` of the guest: the daemon closes its device for ``seconds``."""
    args = {"action": "consolerelease", "name": "bench", "seconds": seconds}
    _rest(port, cafile, "/sysadm/console", args, f"Bearer {token}")


def direct_round_trip(device: Path, samples: int) -> dict[str, float]:
    """The same keystrokes typed straight into the guest's pseudo-terminal (the daemon has let
    it go): the round trip without the daemon."""
    fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd, termios.TCSANOW)

        def until(wanted: bytes, timeout: float = 10.0) -> None:
            seen = b""
            deadline = time.monotonic() + timeout
            while wanted not in seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no echo of {wanted!r} from {device}")
                if select.select([fd], [], [], left)[0]:
                    try:
                        seen = (seen + os.read(fd, 65536))[-4096:]
                    except BlockingIOError:
                        continue

        os.write(fd, b"\x03")
        until(b"root@bench:~ # ")
        latencies = []
        for i in range(samples):
            key = bytes([ord("a") + i % 26])
            started = time.perf_counter()
            os.write(fd, key)
            until(key)
            latencies.append((time.perf_counter() - started) * 1000)
        os.write(fd, b"\x03")
    finally:
        os.close(fd)
    return _percentiles(latencies)


def run(samples: int, lines: int, viewers: int, idle: int = 0) -> dict[str, Any]:
    """Every measure of this module against a daemon of its own; returns the figures."""
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        process, port, cafile = _start(base, viewers + idle + 5)
        try:
            daemon = psutil.Process(process.pid)
            token = log_in(port, cafile)
            result = asyncio.run(
                _measure(port, cafile, token, samples, lines, viewers, idle, daemon, _guest(base))
            )
            _release(port, cafile, token, 600)
            devices = sorted((base / "state" / "simulator" / "dev").glob("*B"))
            result["direct_pty_ms"] = direct_round_trip(devices[0], samples)
        except BaseException:
            sys.stderr.write((base / "daemon.log").read_text()[-3000:])
            raise
        finally:
            process.terminate()
            process.wait(timeout=60)
            root = base / "state" / "simulator"
            subprocess.run(
                [*simulator_command(root), "forcekill", "bench"], capture_output=True, check=False
            )
    return dict(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--lines", type=int, default=200000)
    parser.add_argument("--mib", type=float, help="the burst in MiB (instead of --lines)")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--idle", type=int, default=0, help="idle viewers for RSS per viewer")
    options = parser.parse_args(argv)
    lines = lines_for(int(options.mib * 2**20)) if options.mib else options.lines
    result = run(options.samples, lines, options.viewers, options.idle)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
