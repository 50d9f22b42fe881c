"""Runs ``twistd`` in this process, for the benchmark daemon: ``launch.py TWISTD-ARGS...``.

Before handing over to twistd it raises RLIMIT_NOFILE to its hard limit (10,000 WebSockets
need more than the usual 1024 descriptors) and, if ``BENCH_SPAWN_LOG`` is set, puts
spawnlog.py in front of the iohyve command so that every iohyve process is counted from
outside. With ``BENCH_GC_LOG`` set, every run of the cyclic garbage collector is appended to
that file (``<monotonic start> <seconds> <generation> <collected>``), to see where a pause
comes from. Nothing else of the daemon changes.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def raise_nofile() -> int:
    """Raise the soft descriptor limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _count_spawns(log: str) -> None:
    from sysadmd import app  # noqa: PLC0415 (after the environment is set)

    original = app.iohyve_command
    wrapper = str(Path(__file__).resolve().with_name("spawnlog.py"))

    def counted(config: object) -> tuple[list[str], dict[str, str]]:
        command, env = original(config)  # type: ignore[arg-type]
        return [sys.executable, wrapper, log, *command], env

    app.iohyve_command = counted  # type: ignore[assignment]


def _log_collections(path: str) -> None:
    started = [0.0]
    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the life of the process)

    def noted(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.monotonic()
        else:
            took = time.monotonic() - started[0]
            out.write(f"{started[0]:.6f} {took:.6f} {info['generation']} {info['collected']}\n")

    gc.callbacks.append(noted)


def main() -> None:
    raise_nofile()
    gc_log = os.environ.pop("BENCH_GC_LOG", "")
    if gc_log:
        _log_collections(gc_log)
    log = os.environ.pop("BENCH_SPAWN_LOG", "")
    if log:
        _count_spawns(log)
    from twisted.scripts.twistd import run  # noqa: PLC0415

    sys.argv = ["twistd", *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
