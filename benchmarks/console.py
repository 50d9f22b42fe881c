"""Console benchmark: keystroke-to-echo latency and output throughput to 1 and 50 viewers.

``python -m benchmarks.console [--samples N] [--lines N] [--viewers N]`` starts the daemon in
simulate mode in a temporary directory, starts a simulated guest, and over TLS WebSockets at
``/console/<guest>``:

* types one character at a time as the writer and times each until its echo comes back
  (through the daemon, the pseudo-terminal and the simulated guest, and back): p50 and p99;
* has the guest print ``jot N`` (the numbers 1 to N, one a line) and times the bytes to reach
  one viewer, then every one of ``--viewers`` viewers (all must see the last line).

Prints one JSON object. The figures include the simulated guest (a Python program) echoing
each byte, which a real guest's kernel does faster.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


async def _viewer(port: int, cafile: Path) -> ClientConnection:
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    pair = base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()
    ws = await connect(
        f"wss://127.0.0.1:{port}/console/bench",
        ssl=context,
        additional_headers={"Authorization": f"Basic {pair}"},
        compression=None,
        max_size=None,
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


async def _measure(port: int, cafile: Path, samples: int, lines: int, viewers: int) -> Any:
    writer = await _viewer(port, cafile)
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

    async def throughput(clients: list[ClientConnection]) -> dict[str, float]:
        last = f"\r\n{lines}\r\nroot@bench:~ # ".encode()
        buffers = [bytearray() for _ in clients]
        started = time.perf_counter()
        await writer.send(f"jot {lines}\r".encode())
        await asyncio.gather(*(_until(c, last, b) for c, b in zip(clients, buffers, strict=False)))
        seconds = time.perf_counter() - started
        size = sum(len(f"{n}\r\n") for n in range(1, lines + 1))
        return {
            "viewers": len(clients),
            "bytes": size,
            "seconds": round(seconds, 3),
            "mib_per_s_per_viewer": round(size / seconds / 2**20, 2),
            "mib_per_s_total": round(size * len(clients) / seconds / 2**20, 2),
        }

    one = await throughput([writer])
    others = [await _viewer(port, cafile) for _ in range(viewers - 1)]
    for _other in others:  # drain the history each got
        await asyncio.sleep(0)
    await asyncio.sleep(1.0)
    many = await throughput([writer, *others])
    for ws in [writer, *others]:
        await ws.close()
    latencies.sort()
    return {
        "keystroke_to_echo_ms": {
            "samples": samples,
            "p50": round(statistics.median(latencies), 3),
            "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
        },
        "throughput": [one, many],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--lines", type=int, default=200000)
    parser.add_argument("--viewers", type=int, default=50)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        process, port, cafile = _start(Path(directory), options.viewers)
        try:
            result = asyncio.run(
                _measure(port, cafile, options.samples, options.lines, options.viewers)
            )
        except BaseException:
            sys.stderr.write((Path(directory) / "daemon.log").read_text()[-3000:])
            raise
        finally:
            process.terminate()
            process.wait(timeout=60)
            root = Path(directory) / "state" / "simulator"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sysadmd.simulator",
                    "--root",
                    str(root),
                    "forcekill",
                    "bench",
                ],
                capture_output=True,
                check=False,
            )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
