"""Command line of the host simulator: ``iohyve-sim [options] [tool] <arguments...>``.

Options (they come before the iohyve words; ``--`` ends them early):

``--root DIR``
    The state directory (default: ``$IOHYVE_SIM_ROOT``; one of them is required).
``--profile 0.7.3|0.7.9``
    The iohyve release to imitate (default: ``$IOHYVE_SIM_PROFILE``, else 0.7.9).
``--pool NAME``
    The pool named in zfs messages (default: ``tank``).
``--vm-version 1.6|1.7|dev``
    The vm-bhyve dialect of the ``vm`` tool (default: ``$IOHYVE_SIM_VM_VERSION``, else 1.7).

Everything from the first word that is not an option on is run by the simulated tool that word
names (:mod:`~sysadmd.simulator.dialects`): ``iohyve``, ``vm``, ``zpool``, ``ifconfig``,
``sysctl``, ``sysrc``, ``pgrep``, ``zfs``, ``xz`` or ``/usr/bin/fetch`` (FreeBSD's fetch, by its
path: the word ``fetch`` is iohyve's)
(``iohyve-sim --root /tmp/s zpool list -H``, ``iohyve-sim --root /tmp/s iohyve list``). Words
that name no tool go to iohyve, so ``iohyve-sim --root /tmp/s list`` behaves like ``iohyve
list``. The exit status is the tool's.
Problems of the simulator itself (bad options, unreadable state) print one line starting with
``iohyve-sim:`` on stderr and exit with status 2.

The options are read by :func:`parse_options` rather than by :mod:`argparse`, which the
daemon's other tools (``sysadmd-admin``, ``python -m sysadmd.catalog.openapi``) use: like
``env(1)``,
the simulator passes everything after its options on verbatim as another program's command
line, and argparse's ``REMAINDER`` cannot say that (it refuses a first word such as ``-h``
or a value that starts with ``-``, and keeps a ``--`` that ends the options).

The simulator never checks for root credentials: the real tool refuses most commands to other
users, but the simulator is meant to run unprivileged on development machines.
"""

from __future__ import annotations

import os
import signal
import sys

from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.dialects import run
from sysadmd.simulator.output import Output
from sysadmd.simulator.profiles import DEFAULT_PROFILE, PROFILES
from sysadmd.simulator.state import Root, StateError
from sysadmd.simulator.vmbhyve import DEFAULT_VERSION, VERSIONS

ROOT_ENV = "IOHYVE_SIM_ROOT"
PROFILE_ENV = "IOHYVE_SIM_PROFILE"
VM_VERSION_ENV = "IOHYVE_SIM_VM_VERSION"
DEFAULT_POOL = "tank"
USAGE = (
    "usage: iohyve-sim [--root DIR] [--profile 0.7.3|0.7.9] [--pool NAME] [iohyve] <iohyve "
    "arguments...>\n"
    "       iohyve-sim [--root DIR] [--vm-version 1.6|1.7|dev] vm <vm arguments...>\n"
    "       iohyve-sim [--root DIR] [--pool NAME] zpool list [-Hp] [-o property[,...]] [pool ...]\n"
    "       iohyve-sim [--root DIR] ifconfig [-l | -a | <interface>]\n"
    "       iohyve-sim [--root DIR] sysctl [-n] <name> ...\n"
    "       iohyve-sim [--root DIR] sysrc [-f file] [-inqx] name[[+|-]=value] ...\n"
    "       iohyve-sim [--root DIR] pgrep [-flx] pattern ...\n"
    "       iohyve-sim [--root DIR] [--pool NAME] zfs create|get|set|destroy ...\n"
    "       iohyve-sim [--root DIR] /usr/bin/fetch [-q] -o path URL\n"
    "       iohyve-sim [--root DIR] xz -d [-fkq] file ..."
)


class UsageError(Exception):
    """A problem with the simulator's own options; the message is printed after ``iohyve-sim:``."""


def parse_options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``args`` into the simulator's options and iohyve's words.

    Return ``({"root": ..., "profile": ..., "pool": ..., "vm-version": ...}, words)`` with only
    the options that were given; raise :class:`UsageError` for an unknown option or a missing value.
    """
    options: dict[str, str] = {}
    index = 0
    while index < len(args):
        current = args[index]
        if current == "--":
            index += 1
            break
        if not current.startswith("--"):
            break
        key, equals, value = current[2:].partition("=")
        if key == "help":
            options["help"] = ""
            index += 1
            continue
        if key not in ("root", "profile", "pool", "vm-version"):
            raise UsageError(f"unknown option '{current}'")
        if not equals:
            index += 1
            if index >= len(args):
                raise UsageError(f"option '--{key}' needs a value")
            value = args[index]
        options[key] = value
        index += 1
    return options, args[index:]


def _context(options: dict[str, str]) -> Context:
    root = options.get("root") or os.environ.get(ROOT_ENV, "")
    if not root:
        raise UsageError(f"no state directory: give --root DIR or set {ROOT_ENV}")
    profile_name = options.get("profile") or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    profile = PROFILES.get(profile_name)
    if profile is None:
        known = " or ".join(sorted(PROFILES))
        raise UsageError(f"unknown profile '{profile_name}' (use {known})")
    pool = options.get("pool", DEFAULT_POOL)
    if not pool or "/" in pool or "@" in pool or pool != pool.strip():
        raise UsageError(f"invalid pool name '{pool}'")
    vm_version = options.get("vm-version") or os.environ.get(VM_VERSION_ENV) or DEFAULT_VERSION
    if vm_version not in VERSIONS:
        raise UsageError(f"unknown vm-bhyve version '{vm_version}' (use 1.6, 1.7 or dev)")
    return Context(profile, Root(root), pool, Output(), vm_version)


def execute(args: list[str]) -> tuple[int, int | None]:
    """Run the simulator with ``args``; return the exit status and the signal that ended it."""
    output = Output()
    try:
        options, words = parse_options(args)
        if "help" in options:
            output.out(USAGE)
            return 0, None
        ctx = _context(options)
    except UsageError as exc:
        output.err(f"iohyve-sim: {exc}")
        return SIMULATOR_ERROR, None
    try:
        status = run(ctx, words)
    except BrokenPipeError:
        # The shell script would be killed by SIGPIPE writing to a closed pipe.
        return 128 + signal.SIGPIPE, signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT, signal.SIGINT
    except (StateError, OSError) as exc:
        output.err(f"iohyve-sim: {exc}")
        return SIMULATOR_ERROR, None
    return status, ctx.terminated


def main(argv: list[str] | None = None) -> int:
    """Entry point: run with ``argv`` (default ``sys.argv[1:]``) and return the exit status.

    Called without arguments, as the console script and ``python -m`` do, it exits the process
    instead of returning. When a signal ended the command (SIGTERM or SIGINT during a download,
    SIGINT elsewhere, SIGPIPE for a closed output pipe) the process then dies of that signal, as
    the real shell script would; called with a list it returns 128 + the signal number instead.
    """
    if argv is not None:
        return execute(argv)[0]
    status, terminated = execute(sys.argv[1:])
    if terminated is not None:
        # Output is flushed line by line, so nothing is lost by dying here.
        signal.signal(terminated, signal.SIG_DFL)
        os.kill(os.getpid(), terminated)
    sys.exit(status)
