"""FreeBSD's ``pgrep`` over the simulated host's processes (the running guests).

``iohyve-sim [--root DIR] pgrep [-flx] pattern``

vm-bhyve finds its guests with ``pgrep -fx "bhyve: <name>"`` and ``pgrep -fl
"grub-bhyve|bhyveload"``, and a backend does the same. The processes are the ones the ``vm``
dialect started (:mod:`~sysadmd.simulator.vmhost`); their titles are what ``ps`` shows, e.g.
``bhyve: web``. As pgrep(1):

* the pattern is an extended regular expression, matched against the process name (the
  title's first word, without a trailing ``:``) or with ``-f`` against the whole title;
  ``-x`` requires the whole name or title to match;
* each match prints its pid, with ``-l`` followed by a space and the name (with ``-f`` the
  title); pids in ascending order;
* status 0 when something matched, 1 when nothing did, 2 for a bad pattern or usage.
"""

from __future__ import annotations

import re

from sysadmd.simulator.context import Context
from sysadmd.simulator.getopt import OptionReader
from sysadmd.simulator.vmhost import HostLock, Processes

USAGE = "usage: pgrep [-LSfilnoqvx] [-d delim] [-F pidfile] [-G gid] pattern ..."
_BAD_USAGE = 2


def _matches(regex: re.Pattern[str], subject: str, *, whole: bool) -> bool:
    return (regex.fullmatch(subject) if whole else regex.search(subject)) is not None


def cmd_pgrep(ctx: Context, args: list[str]) -> int:
    """Run ``pgrep <args>`` and return its status."""
    flags = ""
    reader = OptionReader(args, "flx")
    for letter, _value, problem in reader:
        if problem is not None:
            ctx.output.err(f"pgrep: illegal option -- {letter}")
            ctx.output.err(USAGE)
            return _BAD_USAGE
        flags += letter
    patterns = reader.operands
    if not patterns:
        ctx.output.err(USAGE)
        return _BAD_USAGE
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            ctx.output.err(f"pgrep: Cannot compile regular expression `{pattern}' ({exc})")
            return _BAD_USAGE
    with HostLock(ctx.root):
        table = Processes(ctx.root).table
    found = 0
    for pid, process in sorted(table.items()):
        subject = process.title if "f" in flags else process.title.split(" ", 1)[0].rstrip(":")
        if any(_matches(regex, subject, whole="x" in flags) for regex in compiled):
            found += 1
            ctx.output.out(f"{pid} {subject}" if "l" in flags else str(pid))
    return 0 if found else 1
