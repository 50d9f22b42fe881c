"""iohyve's command dispatcher.

iohyve's ``__parse_cmd`` loops over its arguments. A known word runs its function with the
remaining words (the word itself is ``$1``, so the function's arguments start at ``$2``) and the
script exits with the status of the last command that function ran. Unknown words:

* 0.7.3-0.7.5 have no default branch, so the loop shifts and tries the next word
  (``iohyve foo list`` runs ``list``, ``iohyve foo`` prints nothing and exits 0);
* 0.7.6+ print ``'foo' is not a valid command!`` and ``Try 'iohyve help' for more info.`` and
  exit 1.

Words the real tool knows but the simulator does not reproduce fail with exit status 2 and a
message naming the simulator, so nobody mistakes them for a silent success.

This is the iohyve dialect of the host simulator; :mod:`~sysadmd.simulator.dialects`
chooses it, or another tool, by the first word.
"""

from __future__ import annotations

from collections.abc import Callable

from sysadmd.simulator import disks, guests, hostsetup, info, iso, lifecycle
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.profiles import Profile

#: A simulated command: it gets the context and the words after its own and returns the status.
Command = Callable[[Context, list[str]], int]


def cmd_version(ctx: Context, args: list[str]) -> int:
    """``iohyve version``: print the release line."""
    ctx.output.out(ctx.profile.version_line)
    return 0


def cmd_help(ctx: Context, args: list[str]) -> int:
    """``iohyve help`` / ``-h`` / no arguments: print the command list."""
    for line in ctx.profile.help_lines:
        ctx.output.out(line)
    return 0


def command_table(profile: Profile) -> dict[str, Command]:
    """Return the words ``profile`` knows and the functions that simulate them."""
    table: dict[str, Command] = {
        "version": cmd_version,
        "setup": hostsetup.cmd_setup,
        "list": guests.cmd_list,
        "info": info.cmd_info,
        "isolist": iso.cmd_isolist,
        "renameiso": iso.cmd_renameiso,
        "rmiso": iso.cmd_rmiso,
        "create": guests.cmd_create,
        "install": lifecycle.cmd_install,
        "start": guests.cmd_start,
        "stop": guests.cmd_stop,
        "forcekill": lifecycle.cmd_forcekill,
        "delete": lifecycle.cmd_delete,
        "set": guests.cmd_set,
        "get": lifecycle.cmd_get,
        "getall": guests.cmd_getall,
        "add": disks.cmd_add,
        "remove": disks.cmd_remove,
        "resize": disks.cmd_resize,
        "disks": disks.cmd_disks,
        "help": cmd_help,
        "-h": cmd_help,
    }
    for word in profile.fetch_words:
        table[word] = iso.cmd_fetch
    return table


def run_iohyve(ctx: Context, words: list[str]) -> int:
    """Run iohyve with the argument words ``words``; return its exit status."""
    if not words:
        return cmd_help(ctx, [])
    table = command_table(ctx.profile)
    for index, word in enumerate(words):
        command = table.get(word)
        if command is not None:
            return command(ctx, words[index + 1 :])
        if word in ctx.profile.not_simulated:
            ctx.output.err(f"iohyve-sim: {word}: iohyve command not provided by the simulator")
            return SIMULATOR_ERROR
        if ctx.profile.strict_dispatch:
            ctx.output.out(f"'{word}' is not a valid command!")
            ctx.output.out("Try 'iohyve help' for more info.")
            return 1
    return 0
