"""The benchmark suite runs: ``benchmarks/run --smoke`` completes and writes every section.

Smoke figures mean nothing (one client, one second, tiny sizes), so nothing here checks a
value or a PASS/FAIL; the full suite is run by hand (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("machine", "throughput", "ratios", "spawns", "fetch", "idle", "fanout", "targets")


def test_the_benchmark_suite_runs_in_smoke_mode(tmp_path: Path) -> None:
    assert shutil.which("wrk") is not None, (
        "wrk is not on PATH: the benchmark suite drives REST with it (apt-get install wrk)"
    )
    output = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(output.read_text())
    assert result["mode"] == "smoke"
    assert all(section in result for section in SECTIONS), sorted(result)
    rows = {(r["protocol"], r["transport"], r["server"]) for r in result["throughput"]}
    assert rows == {
        (protocol, transport, server)
        for protocol in ("rest", "websocket")
        for transport in ("tcp", "tls")
        for server in ("baseline", "sysadmd")
    }
    assert len(result["ratios"]) == 4
    assert result["spawns"]["iohyve_processes"] >= 1
    assert result["fetch"]["bytes"] > 0
    assert result["idle"]["connections"] > 0
    assert result["fanout"]["subscribers"] > 0
    assert {t["target"] for t in result["targets"]} >= {
        "iohyve processes in flight at a time",
        "fetchiso / curl throughput",
    }
