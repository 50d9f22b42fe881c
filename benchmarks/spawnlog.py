"""Counts iohyve processes from outside the daemon: ``spawnlog.py LOG COMMAND...``.

The benchmark daemon's iohyve command is prefixed with this script (see launch.py). It runs
COMMAND as a child with the same standard streams, passes SIGTERM and SIGINT on, and appends one
line ``<start> <end> <pid> <created> <words>`` (CLOCK_MONOTONIC seconds, shared by every process
of the machine) to LOG when the child has ended, in a single append so lines never interleave.

``start`` is when this script began to run, after Python's start-up (fine-grained: the
request-to-exec latency uses it); ``created`` is when the daemon created the process, from
the kernel's record of it (``/proc/self/stat``, in clock ticks: coarse, but it does not move
with how long Python took to start on a busy machine; the refresh-window count uses it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def created() -> float:
    """When this process was created, in CLOCK_MONOTONIC seconds."""
    with open("/proc/self/stat", "rb") as stat:
        # The fields after the command name (which may hold spaces) in parentheses.
        fields = stat.read().rsplit(b")", 1)[1].split()
    since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    return time.monotonic() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


def main() -> int:
    log, command = sys.argv[1], sys.argv[2:]
    started = time.monotonic()
    born = created()
    child = subprocess.Popen(command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: child.send_signal(number))
    status = child.wait()
    ended = time.monotonic()
    words = [w for w in command if not w.startswith("/")]
    line = f"{started:.6f} {ended:.6f} {os.getpid()} {born:.3f} {' '.join(words[-4:])}\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if status < 0:
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
