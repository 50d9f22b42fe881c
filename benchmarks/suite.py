"""The benchmark suite of issue 8: every figure next to a baseline measured in the same run.

``./benchmarks/run [--smoke] [--json FILE] [--keep] [--rest-load auto|wrk|python]``. Everything
runs on loopback: the daemon (``twistd sysadmd --simulate`` through launch.py, with a plain TCP
and a TLS listener), the baseline servers, the local HTTP file server and the load generators
(wrk for REST, or restload.py's Python clients where wrk is not installed; wsload.py's
multiprocessing clients for WebSocket), each in processes of their own. See
benchmarks/RESULTS.md for what each section measures and the figures of a full run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table
from websockets.sync.client import connect as sync_connect

from benchmarks import restload, wsload
from benchmarks.launch import raise_nofile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable
MIB = 1024 * 1024
GUESTS = 8
_LISTENING = re.compile(r"Listening on (\S+): WebSocket (wss?)://([^/]+)/")


@dataclass(frozen=True)
class Mode:
    name: str
    clients: tuple[int, ...]
    duration: int
    spawn_clients: int
    spawn_duration: int
    fetch_size: int
    idle: int
    subscribers: int
    workers: int = 2
    guests: tuple[int, ...] = ()
    #: One event to this many subscribers, each point in turn (the fan-out curve).
    fan_out: tuple[int, ...] = ()
    #: Fetches queued behind a running one (the fetch queue's curve).
    queued: int = 100
    #: Console: keystrokes, the burst in MiB, viewers of the burst, idle viewers.
    keystrokes: int = 300
    burst_mib: float = 10
    viewers: int = 50
    idle_viewers: int = 100
    #: Fleet: simulated hosts, calls one at a time each way, seconds of load.
    hosts: int = 20
    fleet_calls: int = 200
    fleet_seconds: float = 3


FULL = Mode(
    "full",
    (16, 128),  # the targets' client counts; --clients 1 adds the single client
    2,
    200,
    10,
    1024 * MIB,
    10_000,
    1_000,
    guests=(10, 100, 1000),
    fan_out=(1, 100, 1_000, 10_000),
)
SMOKE = Mode(
    "smoke",
    (1,),
    1,
    4,
    2,
    10 * MIB,
    100,
    50,
    guests=(10,),
    fan_out=(1, 50),
    queued=5,
    keystrokes=20,
    burst_mib=0.25,
    viewers=3,
    idle_viewers=5,
    hosts=2,
    fleet_calls=20,
    fleet_seconds=1,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# Processes


def start_server(module: str, *args: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """Start ``python -m benchmarks.<module>``; read the ``name port`` lines it prints."""
    process = subprocess.Popen(
        [PYTHON, "-m", f"benchmarks.{module}", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    ports: dict[str, int] = {}
    expected = 1 if module == "fileserver" else 2
    while len(ports) < expected:
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            raise RuntimeError(f"benchmarks.{module} exited before listening")
        name, port = line.split()
        ports[name] = int(port)
    return process, ports


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()


class Daemon:
    """``twistd sysadmd --simulate`` with a TCP and a TLS listener on loopback."""

    def __init__(
        self,
        work: Path,
        name: str,
        *,
        spawn_log: Path | None = None,
        list_cache: float = 1.0,
        guests: int = GUESTS,
        backend: str = "iohyve",
        console_interval: float = 2.0,
    ) -> None:
        self.state = work / name
        self.log = work / f"{name}.log"
        self.spawn_log = spawn_log
        if backend == "vm-bhyve":
            _seed_vm_bhyve(self.state / "simulator", guests)
        else:
            _seed(self.state / "simulator", guests)
        config = work / f"{name}.toml"
        config.write_text(
            "[limits]\nconnections = 30000\nconnections_per_address = 30000\n"
            "login_timeout = 3600\nidle_timeout = 86400\n"
            "[auth]\nlockout_failures = 1000\n"
            f"[iohyve]\nlist_cache = {list_cache}\n"
            "[fetch]\nqueue_size = 1000\n"
            f"[console]\ninterval = {console_interval}\n"
        )
        env = dict(os.environ)
        if spawn_log is not None:
            env["BENCH_SPAWN_LOG"] = str(spawn_log)
        argv = [
            PYTHON,
            "-m",
            "benchmarks.launch",
            "--nodaemon",
            "--pidfile=",
            f"--logfile={self.log}",
            "sysadmd",
            "--simulate",
            f"--config={config}",
            f"--state-dir={self.state}",
            "--listen=tcp:0:interface=127.0.0.1",
            "--listen=ssl:0:interface=127.0.0.1",
            f"--backend={backend}",
        ]
        # The repository on the path: the daemon works in / once it listens, and its children
        # (the simulator) import sysadmd from there.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
        self.urls = self._wait_for_listeners()
        self.psutil = psutil.Process(self.process.pid)
        self.cafile = str(self.state / "tls" / "cert.pem")
        self.keyfile = str(self.state / "tls" / "key.pem")
        self.password = (self.state / "initial-admin-password").read_text().strip()
        with Control(self.urls["ws"], password=self.password) as control:
            self.token = control.token

    def _wait_for_listeners(self) -> dict[str, str]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.log_text()}")
            found = _LISTENING.findall(self.log_text())
            if len(found) >= 2:
                urls = {}
                for _, scheme, where in found:
                    urls[scheme] = f"{scheme}://{where}/"
                    rest = "https" if scheme == "wss" else "http"
                    urls[rest] = f"{rest}://{where}/sysadm/iohyve"
                return urls
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not listen:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def rss(self) -> int:
        return int(self.psutil.memory_info().rss)

    def stop(self) -> None:
        stop(self.process)


def _seed(root: Path, guests: int = GUESTS) -> None:
    """A host with a few guests, so that listvms answers a realistic list."""
    from sysadmd.simulator.cli import main as simulator  # noqa: PLC0415

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for index in range(guests):
            name = f"guest{index}"
            simulator(["--root", str(root), "create", name, "8G"])
            # Descriptions for the usual few only: every simulator call reads the whole host,
            # so seeding a thousand guests already takes most of a minute.
            if index < GUESTS:
                description = f"description=benchmark guest {index}"
                simulator(["--root", str(root), "set", name, description])


def _seed_vm_bhyve(root: Path, guests: int) -> None:
    """A simulated vm-bhyve host (rc.conf enables it, guests under /vm) with ``guests``."""
    from sysadmd.simulator.cli import main as simulator  # noqa: PLC0415

    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "vm").mkdir(exist_ok=True)
    (root / "etc" / "rc.conf").write_text('vm_enable="YES"\nvm_dir="/vm"\n')
    commands = [["vm", "init"]]
    commands += [["vm", "create", "-s", "8G", f"guest{index}"] for index in range(guests)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for words in commands:
            status = simulator(["--root", str(root), *words])
            if status:
                raise RuntimeError(f"the simulator's {' '.join(words)} exited {status}")


class Control:
    """A synchronous WebSocket client for setting things up and watching events."""

    def __init__(self, url: str, *, password: str | None = None, token: str | None = None) -> None:
        # No keepalive pings: while thousands of connections log in, the daemon may take longer
        # than a ping's timeout to answer, and this connection must outlive that.
        self.ws = sync_connect(
            url, compression=None, max_size=None, open_timeout=60, ping_interval=None
        )
        self.events: list[tuple[float, dict[str, Any]]] = []
        if password is not None:
            self.token = str(
                self.call("rpc", "auth", {"username": "admin", "password": password})[0]
            )
        elif token is not None:
            self.token = token
            self.call("rpc", "auth_token", {"token": token})

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.close()

    def _next(self, timeout: float) -> dict[str, Any]:
        message = json.loads(self.ws.recv(timeout=timeout))
        if _is_event(message):
            self.events.append((time.monotonic(), message))
        return dict(message)

    def call(self, namespace: str, name: str, args: Any, timeout: float = 60) -> Any:
        self.ws.send(json.dumps({"namespace": namespace, "name": name, "id": "c", "args": args}))
        while True:
            message = self._next(timeout)
            if not _is_event(message):
                if message.get("name") != "response":
                    raise RuntimeError(f"{namespace}/{name}: {message}")
                return message["args"]

    def send_many(self, namespace: str, name: str, many: list[Any]) -> None:
        """Send one request per item of ``many`` (ids ``t0``, ``t1``, ...) without waiting."""
        for index, args in enumerate(many):
            request = {"namespace": namespace, "name": name, "id": f"t{index}", "args": args}
            self.ws.send(json.dumps(request))

    def replies(self, count: int, began: float, timeout: float = 60) -> list[tuple[Any, float]]:
        """The replies to the ``count`` requests :meth:`send_many` sent, in their order, each
        with its time since ``began``."""
        replies: dict[int, tuple[Any, float]] = {}
        while len(replies) < count:
            message = self._next(timeout)
            if _is_event(message):
                continue
            if message.get("name") != "response":
                raise RuntimeError(f"request {message.get('id')}: {message}")
            replies[int(str(message["id"])[1:])] = (message["args"], time.monotonic() - began)
        return [replies[i] for i in range(count)]

    def wait_event(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float
    ) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for when, event in self.events[seen:]:
                if matches(event["args"]):
                    return when, event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the expected event did not come")
            self._next(left)


def _is_event(message: dict[str, Any]) -> bool:
    return message.get("namespace") == "events" and message.get("id") == ""


def fetch_state(filename: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda args: args.get("filename") == filename and args.get("state") == state


# 2. Throughput and latency


def rest_generator(choice: str) -> str:
    """The REST load generator to use: ``wrk`` if asked or, for ``auto``, if it is on PATH."""
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    return choice


def rest_load(  # noqa: PLR0917
    generator: str, url: str, clients: int, duration: int, token: str | None, workers: int
) -> dict[str, Any]:
    """``clients`` closed-loop listvms callers over REST for ``duration`` seconds."""
    if generator == "wrk":
        return wrk(url, clients, duration, token)
    return _processes(restload.load_worker, (url, token), clients, duration, workers, "REST")


def wrk(url: str, clients: int, duration: int, token: str | None) -> dict[str, Any]:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not on PATH: install it (Debian: apt-get install wrk)")
    threads = max(1, min(clients, 2))
    argv = [binary, f"-t{threads}", f"-c{clients}", f"-d{duration}s", "--timeout", "10s"]
    argv += ["--latency", "-s", str(HERE / "listvms.lua"), url]
    env = {**os.environ, "WRK_TOKEN": token or ""}
    output = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    errors = sum(raw[k] for k in raw if k.endswith("_errors") or k == "timeouts")
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "requests": raw["requests"],
        "errors": errors,
    }


def ws_load(  # noqa: PLR0917
    url: str, clients: int, duration: int, token: str | None, cafile: str | None, workers: int
) -> dict[str, Any]:
    return _processes(
        wsload.load_worker, (url, token, cafile), clients, duration, workers, "WebSocket"
    )


def _processes(  # noqa: PLR0917
    target: Callable[..., None],
    args: tuple[Any, ...],
    clients: int,
    duration: int,
    workers: int,
    what: str,
) -> dict[str, Any]:
    """Share ``clients`` among worker processes running ``target(*args, n, duration, start,
    results)`` and sum up the latencies they report."""
    context = multiprocessing.get_context("fork")
    processes = max(1, min(clients, workers))
    start = context.Barrier(processes, timeout=600)
    results = context.Queue()
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    children = [
        context.Process(target=target, args=(*args, n, duration, start, results)) for n in shares
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=duration + 600) for _ in children]
    for child in children:
        child.join()
    failed = [o["error"] for o in outcomes if "error" in o]
    if failed:
        raise RuntimeError(f"{what} load failed: {failed}")
    latencies = [x for o in outcomes for x in o["latencies"]]
    elapsed = max(o["elapsed"] for o in outcomes)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "requests": len(latencies),
        "errors": sum(o["errors"] for o in outcomes),
    }


def throughput(
    daemon: Daemon, work: Path, mode: Mode, generator: str
) -> tuple[list[Any], list[Any]]:
    """listvms over REST and WebSocket against the two floors: the transport floor (bare
    servers with a constant reply) and the API floor (bare servers that decode, look the action
    up and encode the reply around the same listvms body)."""
    body = _rest_reply(daemon)
    (work / "rest-reply.json").write_bytes(body)
    with Control(daemon.urls["ws"], token=daemon.token) as control:
        control.ws.send(wsload.LISTVMS)
        (work / "ws-reply.json").write_text(str(control.ws.recv(timeout=30)))
    (work / "listvms-args.json").write_text(json.dumps(json.loads(body)["args"]))
    klein, klein_ports = start_server(
        "baseline_klein", str(work / "rest-reply.json"), daemon.cafile, daemon.keyfile
    )
    autobahn, autobahn_ports = start_server(
        "baseline_autobahn", str(work / "ws-reply.json"), daemon.cafile, daemon.keyfile
    )
    api_klein, api_klein_ports = start_server(
        "baseline_api_klein", str(work / "listvms-args.json"), daemon.cafile, daemon.keyfile
    )
    api_autobahn, api_autobahn_ports = start_server(
        "baseline_api_autobahn", str(work / "listvms-args.json"), daemon.cafile, daemon.keyfile
    )
    rows: list[dict[str, Any]] = []
    try:
        for transport in ("tcp", "tls"):
            secure = transport == "tls"
            cafile = daemon.cafile if secure else None
            http, ws = ("https", "wss") if secure else ("http", "ws")
            targets = {
                ("rest", "baseline"): f"{http}://127.0.0.1:{klein_ports[transport]}/sysadm/iohyve",
                ("rest", "api"): f"{http}://127.0.0.1:{api_klein_ports[transport]}/sysadm/iohyve",
                ("rest", "sysadmd"): daemon.urls[http],
                ("websocket", "baseline"): f"{ws}://127.0.0.1:{autobahn_ports[transport]}/",
                ("websocket", "api"): f"{ws}://127.0.0.1:{api_autobahn_ports[transport]}/",
                ("websocket", "sysadmd"): daemon.urls[ws],
            }
            for clients in mode.clients:
                for (protocol, server), url in targets.items():
                    log(f"{protocol} {server} {transport} {clients} clients")
                    token = daemon.token if server == "sysadmd" else None
                    if protocol == "rest":
                        figures = rest_load(
                            generator, url, clients, mode.duration, token, mode.workers
                        )
                    else:
                        figures = ws_load(url, clients, mode.duration, token, cafile, mode.workers)
                    rows.append(
                        {
                            "protocol": protocol,
                            "transport": transport,
                            "clients": clients,
                            "server": server,
                            **figures,
                        }
                    )
    finally:
        for server in (klein, autobahn, api_klein, api_autobahn):
            stop(server)
    return rows, _ratios(rows)


def _rest_reply(daemon: Daemon) -> bytes:
    request = urllib.request.Request(  # noqa: S310 (a loopback URL of ours)
        daemon.urls["http"],
        data=b'{"action": "listvms"}',
        method="PUT",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {daemon.token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return bytes(response.read())


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """sysadmd against the API floor (the targets), and against the transport floor (for
    information)."""

    def floor(row: dict[str, Any], server: str) -> dict[str, Any]:
        return next(
            r
            for r in rows
            if r["server"] == server
            and all(r[k] == row[k] for k in ("protocol", "transport", "clients"))
        )

    def ratio(value: float, base: float) -> float:
        return value / base if base else float("nan")

    ratios = []
    for row in rows:
        if row["server"] != "sysadmd":
            continue
        api, transport = floor(row, "api"), floor(row, "baseline")
        ratios.append(
            {
                "protocol": row["protocol"],
                "transport": row["transport"],
                "clients": row["clients"],
                "rps_ratio": ratio(row["rps"], api["rps"]),
                "p99_ratio": ratio(row["p99_ms"], api["p99_ms"]),
                "transport_rps_ratio": ratio(row["rps"], transport["rps"]),
                "transport_p99_ratio": ratio(row["p99_ms"], transport["p99_ms"]),
            }
        )
    return ratios


# 3. iohyve processes under many listvms callers


def spawns(daemon: Daemon, mode: Mode, window: float, generator: str) -> dict[str, Any]:
    """Item 3: count the iohyve processes while many clients call listvms over REST."""
    if daemon.spawn_log is None:
        raise RuntimeError("the daemon does not count its iohyve processes")
    began = time.monotonic()
    load = rest_load(
        generator,
        daemon.urls["http"],
        mode.spawn_clients,
        mode.spawn_duration,
        daemon.token,
        mode.workers,
    )
    ended = time.monotonic()
    time.sleep(0.5)  # a process still running at the end writes its line when it ends
    runs = []
    created = []
    for line in daemon.spawn_log.read_text().splitlines():
        start, end, _pid, born, *words = line.split()
        if float(start) < ended and float(end) > began:
            runs.append((float(start), float(end), " ".join(words)))
            created.append(float(born))
    runs.sort()
    # The window is measured by the daemon from when a list was asked for, so the count
    # uses when the daemon created each process (the kernel's record, in clock ticks), not
    # when spawnlog.py's Python had started, which lags by tens of milliseconds more or less
    # with the load. 5 % of slack: two creations closer than 0.95 windows are two runs in
    # one window.
    starts = sorted(created)
    slack = 0.95 * (window or 1.0)
    per_window = max(
        (sum(1 for t in starts[i:] if t - s < slack) for i, s in enumerate(starts)), default=0
    )
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return {
        "clients": mode.spawn_clients,
        "seconds": ended - began,
        "listvms_calls": load["requests"],
        "listvms_rps": load["rps"],
        "errors": load["errors"],
        "iohyve_processes": len(runs),
        "commands": sorted({w for _, _, w in runs}),
        "max_in_flight": _max_in_flight(runs),
        "max_per_window": per_window,
        "window_s": window or 1.0,
        "min_gap_s": min(gaps) if gaps else None,
    }


# Spawning: request-to-exec latency of start against a bare posix_spawn


def _spawn_runs(log: Path, after: float) -> list[tuple[float, float, list[str]]]:
    if not log.exists():
        return []
    runs = []
    for line in log.read_text().splitlines():
        start, end, _pid, _born, *words = line.split()
        if float(start) >= after:
            runs.append((float(start), float(end), words))
    return sorted(runs)


def spawn_latency(daemon: Daemon, work: Path, mode: Mode) -> dict[str, Any]:
    """From sending ``start`` to the started program running, against a bare
    ``os.posix_spawn`` of the same program (spawnlog.py, which the benchmark daemon puts in
    front of every iohyve command and which notes when it runs). Both include that program's
    own start. ``start`` runs iohyve's ``list`` first (the guest's state); the time from that
    command's end to ``start`` running, less the bare spawn, is what the process runner adds
    to an exec (a helper Python start, today)."""
    if daemon.spawn_log is None:
        raise RuntimeError("the daemon does not log its iohyve processes")
    rounds = 3 if mode.name == "smoke" else 10
    through_daemon: list[float] = []
    gaps: list[float] = []
    with Control(daemon.urls["ws"], token=daemon.token) as control:
        for _ in range(rounds):
            sent = time.monotonic()
            control.call("sysadm", "iohyve", {"action": "start", "name": "guest0"})
            runs = _spawn_runs(daemon.spawn_log, sent)
            started = [start for start, _, words in runs if "start" in words]
            if started:
                through_daemon.append(started[0] - sent)
                # start asks iohyve for the guest's state first: the time from that
                # command's end to the start command running is the runner's own part.
                before = [end for _, end, _ in runs if end <= started[0]]
                if before:
                    gaps.append(started[0] - max(before))
            control.call("sysadm", "iohyve", {"action": "stop", "name": "guest0", "force": "true"})
    bare_log = work / "bare-spawns.log"
    program = [PYTHON, str(HERE / "spawnlog.py"), str(bare_log), "/bin/true", "start"]
    bare = []
    for _ in range(rounds):
        sent = time.monotonic()
        pid = os.posix_spawn(program[0], program, {"PATH": "/usr/bin:/bin"}, setsid=True)
        os.waitpid(pid, 0)
        bare.append(_spawn_runs(bare_log, sent)[0][0] - sent)
    daemon_ms = 1000 * percentile(through_daemon, 0.5) if through_daemon else None
    bare_ms = 1000 * percentile(bare, 0.5)
    return {
        "rounds": rounds,
        "start_to_exec_p50_ms": daemon_ms,
        "start_to_exec_p99_ms": 1000 * percentile(through_daemon, 0.99) if through_daemon else None,
        "bare_posix_spawn_p50_ms": bare_ms,
        "bare_posix_spawn_p99_ms": 1000 * percentile(bare, 0.99),
        "previous_end_to_exec_p50_ms": 1000 * percentile(gaps, 0.5) if gaps else None,
        "runner_adds_p50_ms": 1000 * percentile(gaps, 0.5) - bare_ms if gaps else None,
    }


# How cost grows with the work


def _count_guests(listing: Any) -> int | None:
    """The guests in a listvms reply (keyed by name, possibly under one wrapping key)."""
    if isinstance(listing, dict) and len(listing) == 1:
        (inner,) = listing.values()
        if isinstance(inner, dict) and all(isinstance(v, dict) for v in inner.values()):
            return len(inner)
    return len(listing) if isinstance(listing, dict) else None


def cold_lists(work: Path, mode: Mode) -> list[dict[str, Any]]:
    """A cold listvms (a daemon just started, nothing cached: the list runs for this call) for
    each number of guests, with the processes it spawned, per backend."""
    rows: list[dict[str, Any]] = []
    for backend, guests in itertools.product(("iohyve", "vm-bhyve"), mode.guests):
        log(f"cold listvms with {guests} guests ({backend}, simulated)")
        spawn_log = work / f"spawns-{backend}-{guests}.log"
        # No list cache, and the consoles' look at the guests once, at the start: otherwise that
        # look (it lists the guests) leaves a fresh list for listvms to answer from.
        daemon = Daemon(
            work,
            f"{backend}-{guests}",
            spawn_log=spawn_log,
            guests=guests,
            backend=backend,
            list_cache=0,
            console_interval=3600,
        )
        try:
            deadline = time.monotonic() + 60
            while not _spawn_runs(spawn_log, 0) and time.monotonic() < deadline:
                time.sleep(0.05)  # the consoles' first look has ended
            with Control(daemon.urls["ws"], token=daemon.token) as control:
                began = time.monotonic()
                listing = control.call("sysadm", "iohyve", {"action": "listvms"}, timeout=120)
                seconds = time.monotonic() - began
            processes = len(_spawn_runs(spawn_log, began))
        finally:
            daemon.stop()
        rows.append(
            {
                "backend": f"{backend} (simulated)",
                "guests": guests,
                "listed": _count_guests(listing),
                "seconds": seconds,
                "processes": processes,
            }
        )
    return rows


# Console, dashboard, fleet


def console_section(mode: Mode) -> dict[str, Any]:
    """benchmarks/console.py's measures, against a daemon of its own (see that module)."""
    from benchmarks import console  # noqa: PLC0415

    lines = console.lines_for(int(mode.burst_mib * MIB))
    return console.run(mode.keystrokes, lines, mode.viewers, mode.idle_viewers)


def dashboard_section(daemon: Daemon) -> dict[str, Any] | str:
    """First-load bytes and time to the guest list in headless Chromium (benchmarks/
    dashboard.py, which the dashboard's browser tests use too); the reason if it cannot run."""
    from benchmarks import dashboard  # noqa: PLC0415

    reason = dashboard.missing()
    if reason is not None:
        return reason
    url = daemon.urls["https"].removesuffix("/sysadm/iohyve") + "/ui/"
    figures = dashboard.measure(url, "admin", daemon.password, "guest0", loads=2)
    return {
        "first_load_bytes": figures["first_load"]["bytes"],
        "first_load_responses": figures["first_load"]["responses"],
        "guest_list_after_load_s": min(figures["after_load_s"]),
        "guest_list_after_load_s_all": figures["after_load_s"],
        "guest_list_after_log_in_s": min(figures["after_log_in_s"]),
    }


def crossbar_venv() -> Path | None:
    """The pinned router's environment (./dev/crossbar makes it), if it is there: the suite
    never installs it."""
    pinned = re.search(r"CROSSBAR_VERSION=(\S+)", (REPO / "dev" / "crossbar").read_text())
    named = os.environ.get("SYSADMD_CROSSBAR_VENV")
    if named:
        venv = Path(named)
    elif pinned:
        venv = REPO / ".cache" / f"crossbar-venv-{pinned.group(1)}"
    else:
        return None
    return venv if (venv / ".complete").exists() else None


def fleet_section(mode: Mode) -> dict[str, Any] | str:
    """benchmarks/fleet.py (the router and ``mode.hosts`` simulated hosts); the reason if the
    pinned router environment is absent."""
    venv = crossbar_venv()
    if venv is None:
        return (
            "the pinned Crossbar.io router environment is absent (.cache/crossbar-venv-*, or "
            "SYSADMD_CROSSBAR_VENV; ./dev/crossbar makes it)"
        )
    argv = [PYTHON, "-m", "benchmarks.fleet", f"--hosts={mode.hosts}"]
    argv += [f"--calls={mode.fleet_calls}", f"--seconds={mode.fleet_seconds}"]
    env = {**os.environ, "SYSADMD_CROSSBAR_VENV": str(venv)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.fleet failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout)
    figures["router_adds_p50_ms"] = figures["router"]["p50_ms"] - figures["direct"]["p50_ms"]
    return figures


def _max_in_flight(runs: list[tuple[float, float, str]]) -> int:
    edges = sorted([(s, 1) for s, _, _ in runs] + [(e, -1) for _, e, _ in runs])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


# 4. fetchiso against curl


class RssSampler:
    """Samples a process's RSS every 10 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self._process.memory_info().rss))
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as f:
        for offset in range(0, size, MIB):
            f.write(block[: min(MIB, size - offset)])


def _curl(url: str, target: Path) -> float:
    curl = shutil.which("curl")
    if curl is None:
        raise SystemExit("curl is not on PATH")
    began = time.monotonic()
    subprocess.run([curl, "-sSf", "-o", str(target), url], check=True)
    elapsed = time.monotonic() - began
    target.unlink()
    return elapsed


def _daemon_fetch(control: Control, url: str, name: str, timeout: float) -> tuple[float, float]:
    """fetchiso ``url``; return the seconds from the request to the running and finished events."""
    began = time.monotonic()
    control.call("sysadm", "iohyve", {"action": "fetchiso", "url": url})
    running, _ = control.wait_event(fetch_state(name, "running"), timeout)
    finished, event = control.wait_event(fetch_state(name, "finished"), timeout)
    if event["args"].get("result") != "succeeded":
        raise RuntimeError(f"the fetch of {name} did not succeed: {event}")
    return running - began, finished - began


def fetch(work: Path, mode: Mode) -> dict[str, Any]:
    """Item 4: fetchiso of one file from a local HTTP server, against curl on the same disk."""
    files = work / "files"
    files.mkdir()
    size = mode.fetch_size
    _make_file(files / "bench.iso", size)
    _make_file(files / "warm.iso", MIB)
    server, ports = start_server("fileserver", str(files))
    base = f"http://127.0.0.1:{ports['http']}"
    daemon = Daemon(work, "fetch")
    try:
        with Control(daemon.urls["ws"], token=daemon.token) as control:
            control.call("events", "subscribe", ["dispatcher"])
            _daemon_fetch(control, f"{base}/warm.iso", "warm.iso", 120)  # lazy imports
            curl_before = _curl(f"{base}/bench.iso", work / "curl.iso")
            before = daemon.rss()
            with RssSampler(daemon.psutil) as sampler:
                running, finished = _daemon_fetch(control, f"{base}/bench.iso", "bench.iso", 3600)
            after = daemon.rss()
            curl_after = _curl(f"{base}/bench.iso", work / "curl.iso")
    finally:
        daemon.stop()
        stop(server)
    curl_best = min(curl_before, curl_after)
    return {
        "bytes": size,
        "curl_seconds": [curl_before, curl_after],
        "curl_mib_s": size / MIB / curl_best,
        "sysadmd_seconds": finished,
        "sysadmd_seconds_to_running": running,
        "sysadmd_mib_s": size / MIB / finished,
        "throughput_ratio": curl_best / finished,
        "rss_before_mib": before / MIB,
        "rss_peak_mib": max(sampler.peak, after) / MIB,
        "rss_growth_mib": (max(sampler.peak, after) - before) / MIB,
    }


# 5. Idle connections, 6. fan-out


@contextlib.contextmanager
def _workers(
    target: Callable[..., None], count: int, workers: int, *args: Any
) -> Iterator[tuple[Any, Any, int]]:
    """Start worker processes sharing ``count`` connections; yields (queue, stop, processes)."""
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    stop_event = context.Event()
    shares = [count // workers + (i < count % workers) for i in range(workers)]
    children = [
        context.Process(target=target, args=(*args[:3], n, *args[3:], ready, stop_event))
        for n in shares
        if n
    ]
    for child in children:
        child.start()
    try:
        yield ready, stop_event, len(children)
    finally:
        stop_event.set()
        for child in children:
            child.join(timeout=120)
            if child.is_alive():
                child.kill()


def _gather(ready: Any, processes: int, key: str, timeout: float) -> list[Any]:
    replies = [ready.get(timeout=timeout) for _ in range(processes)]
    failed = [r["error"] for r in replies if "error" in r]
    if failed:
        raise RuntimeError(f"a worker failed: {failed}")
    return [r[key] for r in replies]


def idle(daemon: Daemon, mode: Mode) -> dict[str, Any]:
    """Item 5: RSS per idle logged-in WebSocket connection."""
    url = daemon.urls["ws"]
    # Warm up: the first connections load code and fill caches that are not per connection.
    with _workers(wsload.idle_worker, 50, 1, url, daemon.token, None) as (ready, _, n):
        _gather(ready, n, "open", 120)
    time.sleep(1.0)
    before, fds_before = daemon.rss(), daemon.psutil.num_fds()
    began = time.monotonic()
    with _workers(wsload.idle_worker, mode.idle, mode.workers, url, daemon.token, None) as (
        ready,
        _,
        n,
    ):
        opened = sum(_gather(ready, n, "open", 900))
        setup = time.monotonic() - began
        time.sleep(2.0)
        after, fds_after = daemon.rss(), daemon.psutil.num_fds()
    return {
        "connections": opened,
        "seconds_to_open_and_log_in": setup,
        "rss_before_mib": before / MIB,
        "rss_after_mib": after / MIB,
        "daemon_fds": fds_after - fds_before,
        "rss_per_connection_kib": (after - before) / 1024 / max(1, opened),
    }


def fanout(daemon: Daemon, work: Path, mode: Mode) -> list[dict[str, Any]]:
    """Item 6, as a curve: one dispatcher event to each number of subscribed connections in
    ``mode.fan_out``.

    A slow fetch runs (fetch.concurrency is 1); for each point a fetch waits in the queue, the
    subscribers connect, and ``rpc/dispatcher kill`` of the waiting one publishes its
    ``cancelled`` event within that request, with no process in between. The time is measured
    from the moment the kill is sent to the moment the last subscriber has the event: an upper
    bound of the fan-out. A point that cannot be reached (descriptors, connections) says why.
    """
    files = work / "slow"
    files.mkdir()
    _make_file(files / "running.iso", 64 * MIB)
    server, ports = start_server("fileserver", str(files), str(64 * 1024))
    base = f"http://127.0.0.1:{ports['http']}/slow"
    url = daemon.urls["ws"]
    points = []
    try:
        with Control(url, token=daemon.token) as control:
            control.call("events", "subscribe", ["dispatcher"])
            control.call("sysadm", "iohyve", {"action": "fetchiso", "url": f"{base}/running.iso"})
            control.wait_event(fetch_state("running.iso", "running"), 60)
            # The largest first: connections closed by an earlier point leave freed memory
            # that later ones reuse, which would hide their RSS (the largest point's RSS is
            # the idle connections' figure when both sections run, see run()).
            for count in sorted(mode.fan_out, reverse=True):
                log(f"fan-out to {count} subscribers")
                reason = _unreachable(count)
                if reason is None:
                    try:
                        points.append(_fan_point(control, daemon, base, count, mode))
                        continue
                    except (RuntimeError, OSError) as e:
                        reason = f"the subscribers could not all connect: {e}"[:300]
                points.append({"subscribers_asked": count, "not_reached": reason})
            running = [
                e["args"]["process_details"]["process_id"]
                for _, e in control.events
                if e["args"].get("filename") == "running.iso"
            ]
        with Control(url, token=daemon.token) as control:
            control.call("rpc", "dispatcher", {"action": "kill", "job_id": running[:1]})
    finally:
        stop(server)
    return sorted(points, key=lambda point: int(point["subscribers_asked"]))


def _unreachable(count: int) -> str | None:
    """Why ``count`` subscribers cannot be opened here, or None. The subscribers' processes
    share the suite's descriptor limit (raised to the hard limit at start); the daemon raises
    its own the same way (launch.py), and its connection caps are set to 30,000."""
    import resource  # noqa: PLC0415

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + 200  # the daemon's own descriptors: listeners, logs, journal, children
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"RLIMIT_NOFILE's hard limit is {hard}, the daemon needs about {needed}"
    if soft != resource.RLIM_INFINITY and soft < needed:
        return f"RLIMIT_NOFILE is {soft} here (could not be raised), about {needed} needed"
    if count > 30_000:
        return "above the benchmark daemon's limits.connections (30,000)"
    return None


def _fan_point(
    control: Control, daemon: Daemon, base: str, count: int, mode: Mode
) -> dict[str, Any]:
    """One point of the curve (see :func:`fanout`); ``control`` queues the fetch to kill."""
    name = f"waiting-{count}.iso"
    queued = control.call("sysadm", "iohyve", {"action": "fetchiso", "url": f"{base}/{name}"})
    job = queued.get("fetchiso", queued)["queueid"]
    marks = (f'"{name}"', '"cancelled"')
    workers = (wsload.fanout_worker, count, min(mode.workers, count))
    rss_before = daemon.rss()
    began = time.monotonic()
    with _workers(*workers, daemon.urls["ws"], daemon.token, None, marks) as (ready, stop_event, n):
        subscribed = sum(_gather(ready, n, "open", 900))
        setup = time.monotonic() - began
        time.sleep(2.0 if count >= 1000 else 0.5)
        rss_subscribed, fds = daemon.rss(), daemon.psutil.num_fds()
        # A fresh connection for the kill: the long-lived one may have been dropped while
        # thousands of subscribers connected (its pings unanswered in time).
        with Control(daemon.urls["ws"], token=daemon.token) as killer:
            sent = time.monotonic()
            killer.call("rpc", "dispatcher", {"action": "kill", "job_id": job})
            replied = time.monotonic()
        time.sleep(0.5 + count / 5000)
        stop_event.set()
        received = [t for part in _gather(ready, n, "received", 120) for t in part]
    got = [t - sent for t in received if t is not None]
    last = max(got) * 1000 if got else None
    return {
        "subscribers_asked": count,
        "subscribers": subscribed,
        "received": len(got),
        "missing": len(received) - len(got),
        "seconds_to_connect_and_subscribe": setup,
        "kill_reply_ms": (replied - sent) * 1000,
        "kill_sent_monotonic": sent,  # to line up with the daemon's logs (BENCH_GC_LOG)
        "first_ms": min(got) * 1000 if got else None,
        "median_ms": percentile(got, 0.5) * 1000 if got else None,
        "last_ms": last,
        "per_subscriber_us": last * 1000 / subscribed if last is not None and subscribed else None,
        "rss_per_subscriber_kib": (rss_subscribed - rss_before) / 1024 / max(1, subscribed),
        "rss_before_mib": rss_before / MIB,
        "rss_after_mib": rss_subscribed / MIB,
        "daemon_fds": fds,
    }


def fetch_together(daemon: Daemon, base: str, count: int) -> list[tuple[Any, float]]:
    """``count`` fetchiso calls sent at once (8 a connection: the most the daemon lets one
    connection have waiting), each reply with its time since they were sent."""
    calls = [{"action": "fetchiso", "url": f"{base}/together{i}.iso"} for i in range(count)]
    groups = [calls[i : i + 8] for i in range(0, len(calls), 8)]
    clients = [Control(daemon.urls["ws"], token=daemon.token) for _ in groups]
    try:
        began = time.monotonic()
        for client, group in zip(clients, groups, strict=True):
            client.send_many("sysadm", "iohyve", group)
        return [
            pair
            for client, group in zip(clients, groups, strict=True)
            for pair in client.replies(len(group), began)
        ]
    finally:
        for client in clients:
            client.ws.close()


def fetch_queue(daemon: Daemon, work: Path, mode: Mode) -> dict[str, Any]:
    """The fetch queue with ``mode.queued`` tasks waiting behind a running one: the time to
    accept them (one fetchiso after the other, each answered "Task Queued"), the daemon's
    memory per queued task, and ``rpc/dispatcher list`` (reply time and size) with one task
    and with all of them. Then every task is killed, and as many are accepted again with every
    request sent before the first reply is read (concurrent accepts), and killed."""
    files = work / "queue"
    files.mkdir()
    _make_file(files / "queue-running.iso", 64 * MIB)
    server, ports = start_server("fileserver", str(files), str(64 * 1024))
    base = f"http://127.0.0.1:{ports['http']}/slow"

    def listing(control: Control, rounds: int = 20) -> tuple[float, int, int]:
        times, size, jobs = [], 0, 0
        for _ in range(rounds):
            began = time.monotonic()
            reply = control.call("rpc", "dispatcher", {"action": "list"})
            times.append(time.monotonic() - began)
            size = len(json.dumps(reply, separators=(",", ":")))
            jobs = len(reply["jobs"]["no_queue"])
        return percentile(times, 0.5) * 1000, size, jobs

    try:
        with Control(daemon.urls["ws"], token=daemon.token) as control:
            control.call("events", "subscribe", ["dispatcher"])
            control.call(
                "sysadm", "iohyve", {"action": "fetchiso", "url": f"{base}/queue-running.iso"}
            )
            control.wait_event(fetch_state("queue-running.iso", "running"), 60)
            one_ms, one_bytes, one_jobs = listing(control)
            rss_before = daemon.rss()
            accepted, ids = [], []
            began = time.monotonic()
            for index in range(mode.queued):
                sent = time.monotonic()
                url = f"{base}/queued{index}.iso"
                reply = control.call("sysadm", "iohyve", {"action": "fetchiso", "url": url})
                accepted.append(time.monotonic() - sent)
                ids.append(reply.get("fetchiso", reply)["queueid"])
            accept_s = time.monotonic() - began
            rss_after = daemon.rss()
            many_ms, many_bytes, many_jobs = listing(control)
            running = [
                e["args"]["process_details"]["process_id"]
                for _, e in control.events
                if e["args"].get("filename") == "queue-running.iso"
            ]
            began = time.monotonic()
            for first in range(0, len(ids), 64):  # the most one kill takes
                batch = ids[first : first + 64]
                control.call("rpc", "dispatcher", {"action": "kill", "job_id": batch})
            kill_s = time.monotonic() - began
            # The same number again, every request sent before the first reply is read.
            answered = fetch_together(daemon, base, mode.queued)
            together = [seconds for _, seconds in answered]
            together_ids = [reply.get("fetchiso", reply)["queueid"] for reply, _ in answered]
            for first in range(0, len(together_ids), 64):
                batch = together_ids[first : first + 64]
                control.call("rpc", "dispatcher", {"action": "kill", "job_id": batch})
            control.call("rpc", "dispatcher", {"action": "kill", "job_id": running[:1]})
    finally:
        stop(server)
    return {
        "queued": len(ids),
        "seconds_to_accept_all": accept_s,
        "accept_p50_ms": percentile(accepted, 0.5) * 1000,
        "accept_p99_ms": percentile(accepted, 0.99) * 1000,
        "seconds_to_accept_all_together": max(together),
        "together_p50_ms": percentile(together, 0.5) * 1000,
        "list_ms_with_one_task": one_ms,
        "list_bytes_with_one_task": one_bytes,
        "list_jobs_with_one_task": one_jobs,
        "list_ms_with_all": many_ms,
        "list_bytes_with_all": many_bytes,
        "list_jobs_with_all": many_jobs,
        "rss_per_queued_task_kib": (rss_after - rss_before) / 1024 / max(1, len(ids)),
        "kill_all_queued_s": kill_s,
    }


# Targets and output


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, *, at_least: bool) -> None:
        ok = value is not None and (value >= limit if at_least else value <= limit)
        checks.append(
            {"target": name, "value": value, "limit": limit, "at_least": at_least, "pass": ok}
        )

    for ratio in result.get("ratios", []):
        if ratio["clients"] not in (16, 128):
            continue
        what = f"{ratio['protocol']} {ratio['transport']} {ratio['clients']} clients"
        check(f"{what}: rps / API floor", ratio["rps_ratio"], 0.85, at_least=True)
        check(f"{what}: p99 / API floor", ratio["p99_ratio"], 1.5, at_least=False)
    if "spawns" in result:
        spawn = result["spawns"]
        check("iohyve processes in flight at a time", spawn["max_in_flight"], 1, at_least=False)
        check("iohyve processes per refresh window", spawn["max_per_window"], 1, at_least=False)
    if "fetch" in result:
        fetched = result["fetch"]
        check("fetchiso / curl throughput", fetched["throughput_ratio"], 0.9, at_least=True)
        check("fetchiso RSS growth (MiB)", fetched["rss_growth_mib"], 20, at_least=False)
    if "idle" in result:
        per_connection = result["idle"]["rss_per_connection_kib"]
        check("RSS per idle WebSocket (KiB)", per_connection, 20, at_least=False)
    bhyve = {r["guests"]: r for r in result.get("cold_lists", []) if r["backend"].startswith("vm")}
    if 1000 in bhyve:
        check(
            "vm-bhyve: cold list of 1,000 guests (s)", bhyve[1000]["seconds"], 1.0, at_least=False
        )
        growth = bhyve[1000]["processes"] - bhyve[min(bhyve)]["processes"]
        check(
            "vm-bhyve: processes added from the fewest guests to 1,000", growth, 0, at_least=False
        )
    if "fanout" in result:
        fan = result["fanout"]
        last = fan.get("last_ms") if fan.get("missing") == 0 else None
        asked = fan["subscribers_asked"]
        check(f"fan-out to {asked} subscribers (ms)", last, 100, at_least=False)
    _feature_targets(result, check)
    return checks


def _feature_targets(result: dict[str, Any], check: Callable[..., None]) -> None:
    """The console's, the dashboard's and the fleet's targets (issue 20)."""
    if "console" in result:
        console = result["console"]
        p99 = console["keystroke_to_echo_ms"]["p99"]
        check("console: keystroke to echo p99, TLS (ms)", p99, 5, at_least=False)
        viewers = console["throughput"][-1]["viewers"]
        check(
            f"console: burst rate per viewer, {viewers} viewers / 1 viewer",
            console["many_to_one_rate"],
            0.5,
            at_least=True,
        )
        if "idle" in console:
            per_viewer = console["idle"]["rss_per_viewer_kib"]
            check("console: RSS per idle viewer (KiB)", per_viewer, 64, at_least=False)
    if "dashboard" in result:
        board = result["dashboard"]
        check("dashboard: first load (KiB)", board["first_load_bytes"] / 1024, 300, at_least=False)
        check(
            "dashboard: load to the guest list (s)",
            board["guest_list_after_load_s"],
            1.0,
            at_least=False,
        )
    if "fleet" in result:
        fleet = result["fleet"]
        check("fleet: the router adds at p50 (ms)", fleet["router_adds_p50_ms"], 2, at_least=False)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "uname": " ".join(platform.uname()),
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": sys.version.split()[0],
        "wrk": shutil.which("wrk"),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _flat(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``values`` one line a figure: nested dicts and lists of dicts as dotted keys."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flat(value, f"{name}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for index, item in enumerate(value):
                yield from _flat(item, f"{name}[{index}].")
        else:
            yield name, value


def _show_curves(console: Console, result: dict[str, Any]) -> None:
    if "cold_lists" in result:
        curve = Table(title="cold listvms: cost against the number of guests")
        keys = ("backend", "guests", "listed", "seconds", "processes", "skipped")
        for column in keys:
            curve.add_column(column)
        for row in result["cold_lists"]:
            curve.add_row(*(_fmt(row.get(k, "")) for k in keys))
        console.print(curve)
    if "fanout_curve" in result:
        curve = Table(title="one event to N subscribers: kill sent to the last delivery")
        keys = (
            "subscribers_asked",
            "subscribers",
            "missing",
            "first_ms",
            "median_ms",
            "last_ms",
            "per_subscriber_us",
            "rss_per_subscriber_kib",
            "not_reached",
        )
        for column in keys:
            curve.add_column(column)
        for row in result["fanout_curve"]:
            curve.add_row(*(_fmt(row.get(k, "")) for k in keys))
        console.print(curve)
    for section, reason in result.get("skipped", {}).items():
        console.print(f"{section}: skipped: {reason}")


def show(result: dict[str, Any]) -> None:
    console = Console()
    generator = result.get("rest_load", "wrk")
    table = Table(
        title=f"listvms ({result['mode']} mode): requests/s and latency",
        caption=f"REST load generator: {'wrk' if generator == 'wrk' else 'Python (restload.py)'}",
    )
    for column in (
        "protocol",
        "transport",
        "clients",
        "server",
        "rps",
        "p50 ms",
        "p99 ms",
        "errors",
    ):
        table.add_column(column)
    for row in result.get("throughput", []):
        keys = ("protocol", "transport", "clients", "server", "rps", "p50_ms", "p99_ms", "errors")
        table.add_row(*(_fmt(row[k]) for k in keys))
    console.print(table)
    ratios = Table(
        title="sysadmd / floors",
        caption="api: the API floor (the targets); baseline: the transport floor (information)",
    )
    for column in (
        "protocol",
        "transport",
        "clients",
        "rps / api",
        "p99 / api",
        "rps / baseline",
        "p99 / baseline",
    ):
        ratios.add_column(column)
    for row in result.get("ratios", []):
        keys = (
            "protocol",
            "transport",
            "clients",
            "rps_ratio",
            "p99_ratio",
            "transport_rps_ratio",
            "transport_p99_ratio",
        )
        ratios.add_row(*(_fmt(row[k]) for k in keys))
    console.print(ratios)
    for section in (
        "spawns",
        "spawn_latency",
        "fetch",
        "fetch_queue",
        "idle",
        "console",
        "dashboard",
        "fleet",
    ):
        if section not in result:
            continue
        detail = Table(title=section, show_header=False)
        for key, value in _flat(result[section]):
            detail.add_row(key, _fmt(value))
        console.print(detail)
    _show_curves(console, result)
    verdicts = Table(title="targets")
    for column in ("target", "value", "limit", "result"):
        verdicts.add_column(column)
    for t in result["targets"]:
        limit = ("≥ " if t["at_least"] else "≤ ") + _fmt(t["limit"])
        mark = "[green]PASS[/]" if t["pass"] else "[red]FAIL[/]"
        verdicts.add_row(t["target"], _fmt(t["value"]), limit, mark)
    console.print(verdicts)


SECTIONS = (
    "throughput",
    "spawns",
    "spawn_latency",
    "dashboard",
    "curves",
    "fetch",
    "fetch_queue",
    "idle",
    "fanout",
    "console",
    "fleet",
)


def _with_first_daemon(  # noqa: PLR0917
    result: dict[str, Any],
    wanted: set[str],
    mode: Mode,
    work: Path,
    window: float,
    generator: str,
) -> None:
    """The sections that share the first daemon (its iohyve processes counted)."""
    log("starting the daemon")
    daemon = Daemon(work, "daemon", spawn_log=work / "spawns.log", list_cache=window)
    try:
        if "throughput" in wanted:
            result["throughput"], result["ratios"] = throughput(daemon, work, mode, generator)
        if "spawns" in wanted:
            log(f"{mode.spawn_clients} listvms callers for {mode.spawn_duration} s")
            result["spawns"] = spawns(daemon, mode, window, generator)
        if "spawn_latency" in wanted:
            log("start: request to exec, against a bare posix_spawn")
            result["spawn_latency"] = spawn_latency(daemon, work, mode)
        if "dashboard" in wanted:
            log("dashboard: first load and time to the guest list in headless Chromium")
            _section(result, "dashboard", dashboard_section(daemon))
    finally:
        daemon.stop()


def _with_connections_daemon(
    result: dict[str, Any], wanted: set[str], mode: Mode, work: Path
) -> None:
    """The sections that share the daemon of many connections and queued fetches."""
    daemon = Daemon(work, "connections")
    try:
        if "fetch_queue" in wanted:
            log(f"the fetch queue with {mode.queued} tasks waiting")
            result["fetch_queue"] = fetch_queue(daemon, work, mode)
        # Opening 10,000 connections twice would cost most of a minute: when the fan-out curve
        # has a point of mode.idle subscribers, those connections (logged in, subscribed,
        # idle) give the RSS per idle WebSocket.
        shared = "fanout" in wanted and mode.idle in mode.fan_out
        if "idle" in wanted and not shared:
            log(f"{mode.idle} idle WebSockets")
            result["idle"] = idle(daemon, mode)
        if "fanout" in wanted:
            result["fanout_curve"] = fanout(daemon, work, mode)
            at = [p for p in result["fanout_curve"] if p["subscribers_asked"] == mode.subscribers]
            if at:
                result["fanout"] = at[0]
            largest = [p for p in result["fanout_curve"] if p["subscribers_asked"] == mode.idle]
            if "idle" in wanted and shared and "subscribers" in largest[0]:
                point = largest[0]
                result["idle"] = {
                    "connections": point["subscribers"],
                    "subscribed_to": "dispatcher",
                    "seconds_to_open_and_log_in": point["seconds_to_connect_and_subscribe"],
                    "rss_before_mib": point["rss_before_mib"],
                    "rss_after_mib": point["rss_after_mib"],
                    "daemon_fds": point["daemon_fds"],
                    "rss_per_connection_kib": point["rss_per_subscriber_kib"],
                }
    finally:
        daemon.stop()


def run(
    mode: Mode, work: Path, window: float, only: set[str], generator: str = "wrk"
) -> dict[str, Any]:
    wanted = only or set(SECTIONS)
    result: dict[str, Any] = {"mode": mode.name, "mode_settings": asdict(mode)}
    result["list_cache"] = window
    result["rest_load"] = generator
    result["machine"] = machine()
    began = time.monotonic()
    result["skipped"] = {}
    if wanted & {"throughput", "spawns", "spawn_latency", "dashboard"}:
        _with_first_daemon(result, wanted, mode, work, window, generator)
    if "curves" in wanted:
        result["cold_lists"] = cold_lists(work, mode)
    if "fetch" in wanted:
        log(f"fetchiso of {mode.fetch_size // MIB} MiB against curl")
        result["fetch"] = fetch(work, mode)
    if wanted & {"idle", "fanout", "fetch_queue"}:
        _with_connections_daemon(result, wanted, mode, work)
    if "console" in wanted:
        log(
            f"console: {mode.keystrokes} keystrokes, {mode.burst_mib} MiB to {mode.viewers} viewers"
        )
        result["console"] = console_section(mode)
    if "fleet" in wanted:
        log(f"fleet: the router against direct calls, {mode.hosts} simulated hosts")
        _section(result, "fleet", fleet_section(mode))
    result["seconds"] = time.monotonic() - began
    result["targets"] = targets(result)
    return result


def _section(result: dict[str, Any], name: str, figures: dict[str, Any] | str) -> None:
    """Figures go under ``name``; a reason (the section could not run here) under skipped."""
    if isinstance(figures, str):
        log(f"{name}: skipped: {figures}")
        result["skipped"][name] = figures
    else:
        result[name] = figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes: checks it works")
    parser.add_argument("--json", type=Path, default=HERE / "last-run.json", help="results file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument(
        "--list-cache",
        type=float,
        default=1.0,
        help="the daemon's iohyve.list_cache (default 1.0, the shipped default; 0 disables)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        default=[],
        help="run only this section (repeatable); the default runs every one",
    )
    parser.add_argument(
        "--rest-load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="the REST load generator: wrk, or benchmarks/restload.py's Python clients "
        "(lower figures, not comparable with wrk's); auto (the default) prefers wrk",
    )
    parser.add_argument(
        "--clients",
        type=int,
        action="append",
        default=[],
        help="throughput: this many clients instead of the mode's (repeatable), for short runs",
    )
    parser.add_argument(
        "--duration", type=int, help="throughput: seconds per run instead of the mode's"
    )
    options = parser.parse_args(argv)
    if options.rest_load == "wrk" and shutil.which("wrk") is None:
        print(
            "benchmarks: wrk is not on PATH; install it (Debian: apt-get install wrk) "
            "or use --rest-load python",
            file=sys.stderr,
        )
        return 2
    generator = rest_generator(options.rest_load)
    if generator == "wrk":
        log(f"REST load generator: wrk ({shutil.which('wrk')})")
    else:
        log(
            "REST load generator: Python (benchmarks/restload.py)"
            + ("; wrk is not on PATH" if options.rest_load == "auto" else "")
            + ": REST figures are lower than wrk's and not comparable with them"
        )
    raise_nofile()
    mode = SMOKE if options.smoke else FULL
    if options.clients:
        mode = replace(mode, clients=tuple(options.clients))
    if options.duration:
        mode = replace(mode, duration=options.duration)
    work = Path(tempfile.mkdtemp(prefix="sysadmd-bench-"))
    try:
        result = run(mode, work, options.list_cache, set(options.only), generator)
    finally:
        if options.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(result, indent=2) + "\n")
    show(result)
    log(f"figures written to {options.json} ({result['seconds']:.0f} s)")
    return 0
