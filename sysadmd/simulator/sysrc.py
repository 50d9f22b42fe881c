"""FreeBSD's ``sysrc``: read and change rc.conf-style files of the simulated host.

``iohyve-sim [--root DIR] sysrc [-f file] [-inqx] name[=value|+=value|-=value] ...``

vm-bhyve keeps its settings in such files (``/etc/rc.conf``'s ``vm_enable``, ``vm_dir`` and
``vm_list``; each guest's ``<name>.conf``), and changes them with ``sysrc``, as a VM manager's
backend does too. The file is a path of the simulated host, below the simulator root
(``-f /zroot/vm/web/web.conf`` is ``ROOT/zroot/vm/web/web.conf``; default ``/etc/rc.conf``).
What is kept from sysrc(8):

* ``name`` prints ``name: value``; ``-n`` the value alone; an unset name is ``sysrc: unknown
  variable 'name'`` on stderr and status 1, unless ``-i``;
* ``name=value`` writes ``name="value"`` in place of the name's last line (or appends it) and
  prints ``name: old -> new`` (``-q``: nothing); ``name+=value`` adds a word unless present,
  ``name-=value`` removes it;
* ``-x name`` deletes the name's lines (unknown names are errors unless ``-i``);
* options end at the first word that is not one; long options do not exist (``--x`` is an
  illegal option, the usage follows, status 1).

All changes happen under the simulator's state lock.
"""

from __future__ import annotations

import os

from sysadmd.simulator.context import Context
from sysadmd.simulator.getopt import OptionReader
from sysadmd.simulator.vmhost import (
    RC_CONF,
    HostLock,
    host_path,
    read_conf,
    sysrc_delete,
    sysrc_set,
)

USAGE = "usage: sysrc [-cdDeFhinNqvx] [-f file] [--] name[[+|-]=value] ..."


def _options(ctx: Context, args: list[str]) -> tuple[dict[str, str], list[str]] | None:
    options: dict[str, str] = {}
    reader = OptionReader(args, "f:inqx")
    for letter, value, problem in reader:
        if problem is not None:
            ctx.output.err(
                f"sysrc: illegal option -- {letter}"
                if problem == "illegal"
                else f"sysrc: option requires an argument -- {letter}"
            )
            ctx.output.err(USAGE)
            return None
        options[letter] = value
    return options, reader.operands


def _valid_name(name: str) -> bool:
    return (
        bool(name)
        and (name[0].isalpha() or name[0] == "_")
        and name.isascii()
        and all(char.isalnum() or char == "_" for char in name)
    )


def cmd_sysrc(ctx: Context, args: list[str]) -> int:
    """Run ``sysrc <args>`` and return its status."""
    parsed = _options(ctx, args)
    if parsed is None:
        return 1
    options, words = parsed
    if not words:
        ctx.output.err(USAGE)
        return 1
    shown = options.get("f", RC_CONF)
    path = host_path(ctx.root, shown)
    status = 0
    with HostLock(ctx.root):
        for word in words:
            status |= _one(ctx, options, path, shown, word)
    return status


def _one(ctx: Context, options: dict[str, str], path: str, shown: str, word: str) -> int:
    name, equals, value = word.partition("=")
    operator = ""
    if equals and name.endswith(("+", "-")):
        name, operator = name[:-1], name[-1]
    if not _valid_name(name):
        ctx.output.err(f"sysrc: {name}: name contains characters not allowed in shell")
        return 1
    if (equals or "x" in options) and not os.path.isdir(os.path.dirname(path)):
        ctx.output.err(f"sysrc: {shown}: No such file or directory")
        return 1
    conf = read_conf(path)
    if "x" in options or not equals:
        return _read_or_delete(ctx, options, path, conf, name)
    old = conf.get(name, "")
    words = old.split()
    if operator == "+":
        new = old if not value or value in words else " ".join([*words, value])
    elif operator == "-":
        new = " ".join(item for item in words if item != value)
    else:
        new = value
    sysrc_set(path, name, new)
    if "q" not in options:
        ctx.output.out(new if "n" in options else f"{name}: {old} -> {new}")
    return 0


def _read_or_delete(
    ctx: Context, options: dict[str, str], path: str, conf: dict[str, str], name: str
) -> int:
    if name not in conf:
        if "i" in options:
            return 0
        ctx.output.err(f"sysrc: unknown variable '{name}'")
        return 1
    if "x" in options:
        sysrc_delete(path, name)
    else:
        ctx.output.out(conf[name] if "n" in options else f"{name}: {conf[name]}")
    return 0
