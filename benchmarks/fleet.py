"""Fleet mode: the cost of a call through the Crossbar.io router, and what one router carries.

``python -m benchmarks.fleet [--hosts 20] [--calls 500] [--seconds 10] [--callers 4]
[--depth 8] [--routers 1] [--sweeps 50]`` starts the pinned router (``dev/crossbar``) and
that many simulated hosts on loopback, then measures:

1. latency: ``listvms`` on one host, one call at a time, ``--calls`` times directly over the
   host's own WebSocket (the sysadm client) and as many times through the router (the fleet
   client); p50 and p99 of each;
2. throughput: ``--callers`` router sessions, each keeping ``--depth`` calls outstanding to
   hosts taken in turn, for ``--seconds``; calls per second, and the errors if any
   (``listvms``, or with ``--query`` ``rpc/query``, which no iohyve process answers).

With ``--routers N`` (N >= 2) it then stops them and starts N routers, each with its share
of the same hosts and no link between them (the way past one router: see docs/fleet.md),
and measures the same latency per router and throughput with the sessions dealt out over
the routers; for both set-ups, also ``--sweeps`` times what ``sysadm -H all vm list`` asks:
every router's host list and each host's guests, one session per router, all at once.

It prints one JSON object. Every process runs on this machine, so the numbers are the
router's cost on loopback plus the shared CPU's, not a network's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import task, threads
from twisted.internet.defer import DeferredList, ensureDeferred

from sysadmd.client.client import Client
from sysadmd.client.fleet import FleetClient
from sysadmd.client.tls import CATLS
from sysadmd.fleet import ensure_host_key
from sysadmd.fleet.admin import main as admin

REPO = Path(__file__).resolve().parents[1]
TWISTD = str(Path(sys.executable).with_name("twistd"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(_percentile(ms, 0.5), 3), "p99_ms": round(_percentile(ms, 0.99), 3)}


class Fleet:
    """The router and ``count`` hosts, in a temporary directory."""

    def __init__(self, base: Path, count: int) -> None:
        self._boot(base, [f"host{i:02d}" for i in range(count)])

    @classmethod
    def named(cls, base: Path, names: list[str]) -> Fleet:
        """A router of its own and the hosts ``names`` joined to it (one of several routers,
        each with part of the hosts)."""
        fleet = cls.__new__(cls)
        fleet.processes = []
        base.mkdir(parents=True, exist_ok=True)
        try:
            fleet._boot(base, names)
        except BaseException:
            fleet.stop()
            raise
        return fleet

    def _boot(self, base: Path, names: list[str]) -> None:
        self.base = base
        self.names = names
        self.processes: list[subprocess.Popen[bytes]] = []
        venv = subprocess.run(
            [str(REPO / "dev" / "crossbar")], capture_output=True, text=True, check=True
        ).stdout.strip()
        keys = {}
        for name in self.names:
            key, _ = ensure_host_key(base / name)
            keys[name] = key.public_hex
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            admin(
                [
                    "fleet",
                    "router-config",
                    str(base / "router"),
                    "--port",
                    str(self.port),
                    *(f"--host={n}={k}" for n, k in keys.items()),
                    "--user=bench:admin",
                ]
            )
        self.ticket = out.getvalue().split()[2]
        log = (base / "router.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [f"{venv}/bin/crossbar", "start", "--cbdir", str(base / "router")],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base / "router",
                start_new_session=True,
            )
        )
        _wait(lambda: "NODE_BOOT_COMPLETE" in (base / "router.log").read_text(), "the router")
        for name in self.names:
            conf = base / f"{name}.toml"
            conf.write_text(f'[fleet]\nrouter = "{self.url}"\nhost = "{name}"\n')
            self.processes.append(
                subprocess.Popen(
                    [
                        TWISTD,
                        "--nodaemon",
                        "--pidfile=",
                        f"--logfile={base / name}.log",
                        "sysadmd",
                        "--simulate",
                        f"--state-dir={base / name}",
                        "--listen=ssl:0:interface=127.0.0.1",
                        f"--config={conf}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        for name in self.names:
            log_file = base / f"{name}.log"
            _wait(
                lambda f=log_file: f.exists() and "Fleet: joined" in f.read_text(),
                f"{name} to join",
                120,
            )

    def direct_port(self, name: str) -> int:
        text = (self.base / f"{name}.log").read_text()
        where = text.split("WebSocket wss://", 1)[1].split("/", 1)[0]
        return int(where.rsplit(":", 1)[1])

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


async def measure(reactor: Any, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    first = fleet.names[0]
    state = fleet.base / first
    direct = await Client.connect(
        "localhost", fleet.direct_port(first), tls=CATLS(state / "tls" / "cert.pem")
    )
    await direct.login("admin", (state / "initial-admin-password").read_text().strip())
    routed = FleetClient(fleet.url, "sysadmd", "bench", fleet.ticket, reactor=reactor)
    await routed.connect()
    results: dict[str, Any] = {"hosts": len(fleet.names), "calls": args.calls}
    for label, call in (
        ("direct", lambda: direct.iohyve("listvms")),
        ("router", lambda: routed.call(first, "sysadm", "iohyve", action="listvms")),
    ):
        for _ in range(20):  # warm up: caches, connections
            await call()
        times = []
        for _ in range(args.calls):
            started = time.perf_counter()
            await call()
            times.append(time.perf_counter() - started)
        results[label] = _summary(times)
    await direct.close()

    sessions = [
        FleetClient(fleet.url, "sysadmd", "bench", fleet.ticket, reactor=reactor)
        for _ in range(args.callers)
    ]
    for session in sessions:
        await session.connect()
    hosts = itertools.cycle(fleet.names)
    done = [0]
    errors = [0]
    stop_at = time.perf_counter() + args.seconds

    async def caller(session: FleetClient) -> None:
        while time.perf_counter() < stop_at:
            try:
                if args.query:
                    await session.call(next(hosts), "rpc", "query")
                else:
                    await session.call(next(hosts), "sysadm", "iohyve", action="listvms")
                done[0] += 1
            except Exception:
                errors[0] += 1

    started = time.perf_counter()
    await DeferredList([ensureDeferred(caller(s)) for s in sessions for _ in range(args.depth)])
    elapsed = time.perf_counter() - started
    results["throughput"] = {
        "callers": args.callers,
        "outstanding_per_caller": args.depth,
        "call": "rpc/query" if args.query else "sysadm/iohyve listvms",
        "seconds": round(elapsed, 2),
        "calls_per_second": round(done[0] / elapsed, 1),
        "errors": errors[0],
    }
    for session in [routed, *sessions]:
        await session.close()
    return results


async def _joined(reactor: Any, fleet: Fleet) -> FleetClient:
    session = FleetClient(fleet.url, "sysadmd", "bench", fleet.ticket, reactor=reactor)
    await session.connect()
    return session


async def sweep(reactor: Any, fleets: list[Fleet], rounds: int) -> dict[str, Any]:
    """What ``sysadm -H all vm list`` costs over ``fleets`` (one router each): one session per
    router lists the hosts joined to it (the session meta API) and asks each for its guests,
    all routers at once; p50/p99 of a whole sweep over ``rounds`` sweeps."""
    sessions = [await _joined(reactor, fleet) for fleet in fleets]
    expected = sum(len(fleet.names) for fleet in fleets)
    short = [0]

    async def one(session: FleetClient) -> int:
        hosts = await session.hosts()
        replies = await DeferredList(
            [
                ensureDeferred(session.call(h.host, "sysadm", "iohyve", action="listvms"))
                for h in hosts
            ],
            consumeErrors=True,
        )
        return sum(1 for ok, _ in replies if ok)

    async def whole() -> None:
        answered = await DeferredList([ensureDeferred(one(s)) for s in sessions])
        if sum(count for _, count in answered) != expected:
            short[0] += 1

    for _ in range(3):  # warm up
        await whole()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await whole()
        times.append(time.perf_counter() - started)
    for session in sessions:
        await session.close()
    return {"routers": len(fleets), "hosts": expected, "rounds": rounds, **_summary(times),
            "sweeps_missing_a_host": short[0]}  # fmt: skip


async def measure_routers(
    reactor: Any, fleets: list[Fleet], args: argparse.Namespace
) -> dict[str, Any]:
    """Several routers side by side, each with part of the hosts (no link between them: the
    client joins each router).

    1. latency: ``listvms`` on the first host of each router through that router, one call at
       a time, ``args.calls`` times; p50 and p99 per router;
    2. throughput: ``args.callers`` sessions dealt out over the routers, each keeping
       ``args.depth`` calls outstanding to its router's hosts in turn for ``args.seconds``;
       calls per second in all and per router.
    """
    results: dict[str, Any] = {
        "routers": len(fleets),
        "hosts_per_router": [len(f.names) for f in fleets],
        "calls": args.calls,
    }
    for index, fleet in enumerate(fleets):
        session = await _joined(reactor, fleet)
        host = fleet.names[0]
        for _ in range(20):
            await session.call(host, "sysadm", "iohyve", action="listvms")
        times = []
        for _ in range(args.calls):
            started = time.perf_counter()
            await session.call(host, "sysadm", "iohyve", action="listvms")
            times.append(time.perf_counter() - started)
        results[f"router{index}"] = _summary(times)
        await session.close()

    callers = [(i % len(fleets), await _joined(reactor, fleets[i % len(fleets)]))
               for i in range(args.callers)]  # fmt: skip
    turns = [itertools.cycle(fleet.names) for fleet in fleets]
    done = [0] * len(fleets)
    errors = [0]
    stop_at = time.perf_counter() + args.seconds

    async def caller(index: int, session: FleetClient) -> None:
        while time.perf_counter() < stop_at:
            try:
                if args.query:
                    await session.call(next(turns[index]), "rpc", "query")
                else:
                    await session.call(next(turns[index]), "sysadm", "iohyve", action="listvms")
                done[index] += 1
            except Exception:
                errors[0] += 1

    started = time.perf_counter()
    await DeferredList(
        [ensureDeferred(caller(i, s)) for i, s in callers for _ in range(args.depth)]
    )
    elapsed = time.perf_counter() - started
    results["throughput"] = {
        "callers": args.callers,
        "outstanding_per_caller": args.depth,
        "call": "rpc/query" if args.query else "sysadm/iohyve listvms",
        "seconds": round(elapsed, 2),
        "calls_per_second": round(sum(done) / elapsed, 1),
        "calls_per_second_per_router": [round(d / elapsed, 1) for d in done],
        "errors": errors[0],
    }
    for _, session in callers:
        await session.close()
    return results


def _compare(args: argparse.Namespace, base: Path, fleet: Fleet) -> dict[str, Any]:
    """One router with every host, then ``args.routers`` routers with the hosts dealt out
    over them, measured back to back in one run (``--routers 2``)."""
    results: dict[str, Any] = {}

    async def run(reactor: Any) -> None:
        one = await measure(reactor, fleet, args)
        one["sweep"] = await sweep(reactor, [fleet], args.sweeps)
        results["one_router"] = one
        await threads.deferToThread(fleet.stop)
        fleets: list[Fleet] = []
        try:
            for index in range(args.routers):
                names = fleet.names[index :: args.routers]
                fleets.append(
                    await threads.deferToThread(Fleet.named, base / f"router{index}", names)
                )
            several = await measure_routers(reactor, fleets, args)
            several["sweep"] = await sweep(reactor, fleets, args.sweeps)
            results[f"{args.routers}_routers"] = several
        finally:
            for each in fleets:
                await threads.deferToThread(each.stop)

    with contextlib.suppress(SystemExit):
        task.react(lambda reactor: ensureDeferred(run(reactor)), [])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument(
        "--query",
        action="store_true",
        help="load with rpc/query (answered in the host's process) instead of listvms, "
        "whose simulated iohyve list costs a process per host per second",
    )
    parser.add_argument(
        "--routers",
        type=int,
        default=1,
        help="with 2 or more: after the one-router figures, the same hosts dealt out over "
        "that many routers (no link between them), and the -H all sweep over each set-up",
    )
    parser.add_argument("--sweeps", type=int, default=50, help="-H all sweeps to time")
    args = parser.parse_args(argv)
    if args.routers < 1 or args.routers > args.hosts:
        parser.error("--routers must be between 1 and --hosts")
    base = Path(tempfile.mkdtemp(prefix="sysadmd-fleet-bench-"))
    fleet = Fleet(base, args.hosts)
    if args.routers > 1:
        try:
            compared = _compare(args, base, fleet)
        finally:
            fleet.stop()
            shutil.rmtree(base, ignore_errors=True)
        print(json.dumps(compared, indent=2))
        return
    try:
        results: list[dict[str, Any]] = []

        async def run(reactor: Any) -> None:
            results.append(await measure(reactor, fleet, args))

        task.react(lambda reactor: ensureDeferred(run(reactor)), [])
    except SystemExit:
        pass
    finally:
        fleet.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results[0] if results else {}, indent=2))


if __name__ == "__main__":
    main()
