"""The benchmark suite runs: ``benchmarks/run --smoke`` completes and writes every section.

Smoke figures mean nothing (one client, one second, tiny sizes), so nothing here checks a
value or a PASS/FAIL (only that the load generators got answers and every subscriber its
event); the full suite is run by hand (see benchmarks/RESULTS.md). The dashboard and fleet
sections run where Chromium with the built page, and the pinned router, are there, and are
skipped with the reason elsewhere. The run hides wrk from PATH: the suite must work with its
Python REST load generator on a machine without wrk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "machine",
    "throughput",
    "ratios",
    "spawns",
    "spawn_latency",
    "cold_lists",
    "skipped",
    "fetch",
    "idle",
    "fanout",
    "fanout_curve",
    "fetch_queue",
    "console",
    "targets",
)
#: Sections that need what a machine may lack (Chromium and the built page, the pinned
#: router): each is measured, or skipped with the reason.
OPTIONAL = ("dashboard", "fleet")


def _path_without(program: str, shadow: Path) -> str:
    """PATH with ``program`` hidden: a directory holding it is replaced by a directory of
    links to everything else in it."""
    entries = []
    for index, directory in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not directory or not (Path(directory) / program).exists():
            entries.append(directory)
            continue
        stand_in = shadow / str(index)
        stand_in.mkdir(parents=True)
        for entry in Path(directory).iterdir():
            if entry.name != program:
                (stand_in / entry.name).symlink_to(entry)
        entries.append(str(stand_in))
    return os.pathsep.join(entries)


@pytest.mark.timeout(300)
def test_the_benchmark_suite_runs_in_smoke_mode_without_wrk(tmp_path: Path) -> None:
    """A machine without wrk runs the suite with the Python REST load generator."""
    path = _path_without("wrk", tmp_path / "bin")
    assert shutil.which("wrk", path=path) is None
    output = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(output)],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REST load generator: Python" in done.stderr, done.stderr
    result = json.loads(output.read_text())
    assert result["mode"] == "smoke"
    assert result["rest_load"] == "python"
    assert all(section in result for section in SECTIONS), sorted(result)
    rows = {(r["protocol"], r["transport"], r["server"]) for r in result["throughput"]}
    assert rows == {
        (protocol, transport, server)
        for protocol in ("rest", "websocket")
        for transport in ("tcp", "tls")
        for server in ("baseline", "api", "sysadmd")
    }
    for row in result["throughput"]:
        if row["protocol"] == "rest":
            assert row["requests"] > 0, row
            assert row["errors"] == 0, row
    assert len(result["ratios"]) == 4
    assert result["spawns"]["iohyve_processes"] >= 1
    assert {(r["backend"], r["listed"]) for r in result["cold_lists"]} == {
        ("iohyve (simulated)", 10),
        ("vm-bhyve (simulated)", 10),
    }
    assert result["spawn_latency"]["start_to_exec_p50_ms"] is not None
    assert result["fetch"]["bytes"] > 0
    assert result["idle"]["connections"] > 0
    assert result["fanout"]["subscribers"] > 0
    assert [p["subscribers_asked"] for p in result["fanout_curve"]] == [1, 50]
    assert all(p["missing"] == 0 for p in result["fanout_curve"]), result["fanout_curve"]
    queue = result["fetch_queue"]
    assert queue["queued"] == queue["list_jobs_with_all"] - 1 > 0, queue
    console = result["console"]
    assert console["keystroke_to_echo_ms"]["samples"] > 0
    assert console["direct_pty_ms"]["samples"] > 0
    assert [t["viewers"] for t in console["throughput"]] == [1, 3]
    assert console["idle"]["viewers"] > 0
    for section in OPTIONAL:
        assert (section in result) != bool(result["skipped"].get(section)), (section, result)
    if "dashboard" in result:
        assert result["dashboard"]["first_load_bytes"] > 0
    if "fleet" in result:
        assert result["fleet"]["throughput"]["errors"] == 0
    assert {t["target"] for t in result["targets"]} >= {
        "iohyve processes in flight at a time",
        "fetchiso / curl throughput",
        "console: keystroke to echo p99, TLS (ms)",
        "console: RSS per idle viewer (KiB)",
    }


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (.ci/run has it)")
@pytest.mark.timeout(300)
def test_the_rest_figures_come_from_wrk_when_it_is_installed(tmp_path: Path) -> None:
    output = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only=throughput", f"--json={output}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REST load generator: wrk" in done.stderr, done.stderr
    result = json.loads(output.read_text())
    assert result["rest_load"] == "wrk"
    assert all(row["requests"] > 0 for row in result["throughput"]), result["throughput"]
