"""FreeBSD's fetch(1) as a tool of its own: ``iohyve-sim [--root DIR] /usr/bin/fetch [-q] [-r]
[-F] -o PATH URL`` (named by its path: the word ``fetch`` is iohyve's own command, ``iohyve
fetch``).

The download is :func:`sysadmd.simulator.fetch.download`, the one vm-bhyve's ``fetch`` uses:
``file://``, ``http://``, ``https://`` and ``ftp://`` URLs, streamed into the target (into a
temporary ``.fetch.XXXXXX.<name>`` beside it when a file is already there, renamed into place
when complete), the statistics line on stderr (none with ``-q``), ``fetch: <URL>: <reason>`` and
status 1 when it fails. A transfer cut short keeps what it wrote, as fetch(1) does; other
failures remove it. ``-r`` continues a partial file with a range request, ``-F`` without
comparing its mtime with the remote ``Last-Modified`` (see
:func:`~sysadmd.simulator.fetch.download` for what fetch(1) does with each answer). ``PATH`` is a
path of the simulated host (below the root); a directory receives the URL's last component, as
fetch(1) does. A SIGTERM ends the command with that signal, as it ends fetch.

fetch's other options exist on the real tool but are not simulated: they print a line starting
``iohyve-sim:`` and exit 2.
"""

from __future__ import annotations

import os

from sysadmd.simulator import fetch
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.getopt import OptionReader
from sysadmd.simulator.output import Output
from sysadmd.simulator.vmhost import host_path

#: The word that selects the tool: where FreeBSD installs it.
FETCH_PATH = "/usr/bin/fetch"
USAGE = (
    "usage: fetch [-146AadFlMmnPpqRrsUv] [-B bytes] [-i file] [-N file] [-o file] [-S bytes]",
    "       [-T seconds] [-w seconds] [-h host -f file [-c dir] | URL ...]",
)
#: fetch(1)'s option letters; a colon follows those that take a value.
_OPTSTRING = "146AaB:bc:dFf:Hh:i:lMmN:nPpo:qRrS:sT:tUvw:"


class _Quiet(Output):
    """Output for ``-q``: fetch's statistics are left out, its errors are not."""

    def __init__(self, output: Output) -> None:
        super().__init__()
        self._output = output

    def out(self, line: str) -> None:
        self._output.out(line)

    def err(self, line: str) -> None:
        if line.startswith("fetch: "):
            self._output.err(line)

    def err_partial(self, text: str) -> None:
        return


def cmd_fetch(ctx: Context, args: list[str]) -> int:  # noqa: PLR0911 - fetch's checks, each its own answer
    """Run ``fetch <args>`` and return its status."""
    options: dict[str, str] = {}
    reader = OptionReader(args, _OPTSTRING)
    for letter, value, problem in reader:
        if problem is not None:
            ctx.output.err(
                f"fetch: illegal option -- {letter}"
                if problem == "illegal"
                else f"fetch: option requires an argument -- {letter}"
            )
            return _usage(ctx)
        options[letter] = value
    urls = reader.operands
    unsimulated = sorted(set(options) - {"F", "o", "q", "r"})
    if unsimulated:
        ctx.output.err(
            f"iohyve-sim: fetch option '-{unsimulated[0]}' not provided by the simulator"
        )
        return SIMULATOR_ERROR
    if not urls:
        return _usage(ctx)
    if "o" not in options or options["o"] == "-" or len(urls) > 1:
        ctx.output.err("iohyve-sim: fetch writes one URL to a file given with -o here")
        return SIMULATOR_ERROR
    url = urls[0]
    shown = options["o"]
    if not shown.startswith("/"):
        ctx.output.err("iohyve-sim: fetch -o takes an absolute path here")
        return SIMULATOR_ERROR
    if os.path.isdir(host_path(ctx.root, shown)):
        shown = os.path.join(shown, fetch.output_file_name(url))
    output = _Quiet(ctx.output) if "q" in options else ctx.output
    status, signum = fetch.download(
        url,
        host_path(ctx.root, shown),
        shown,
        output,
        resume="r" in options,
        check_mtime="F" not in options,
    )
    if signum is not None:
        ctx.terminated = signum
        return 128 + signum
    return status


def _usage(ctx: Context) -> int:
    for line in USAGE:
        ctx.output.err(line)
    return 1
