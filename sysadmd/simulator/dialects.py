"""The tools the host simulator speaks, each in its own dialect, chosen by the first word.

A dialect is one program the simulator imitates on the shared state (guests, zvols,
ISOs, pools, interfaces): ``iohyve``, and the FreeBSD tools a VM manager's host also
runs (``zpool``, ``ifconfig``, ``sysctl``, ``sysrc``, ``pgrep``, ``zfs``, ``fetch``, ``xz``),
and vm-bhyve (``vm``).
``iohyve-sim <tool> <words...>`` runs ``<tool> <words...>``; words that do not start with a
tool's name go to the default dialect, iohyve, so ``iohyve-sim list`` is ``iohyve list`` as
it always was. FreeBSD's fetch is named by its path, ``/usr/bin/fetch``: the word ``fetch``
stays iohyve's own command.

The other VM manager, vm-bhyve's ``vm``, is one more :class:`Dialect` in :data:`DIALECTS`
with its own modules (:mod:`~sysadmd.simulator.vmbhyve`, :mod:`~sysadmd.simulator.vmhost`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sysadmd.simulator import fetchcmd, hosttools, pgrep, sysrc, vmbhyve, xzcmd, zfscmd
from sysadmd.simulator.commands import Command, run_iohyve
from sysadmd.simulator.context import Context


@dataclass(frozen=True)
class Dialect:
    """One simulated program: the word that selects it and what runs its words."""

    name: str
    run: Command
    summary: str


#: Every dialect by the word that selects it.
DIALECTS: dict[str, Dialect] = {
    dialect.name: dialect
    for dialect in (
        Dialect("iohyve", run_iohyve, "the iohyve VM manager (0.7.3 or 0.7.9, see --profile)"),
        Dialect("vm", vmbhyve.run_vm, "vm-bhyve's vm (1.6.x, 1.7.x or dev, see --vm-version)"),
        Dialect("zpool", hosttools.cmd_zpool, "FreeBSD's zpool list"),
        Dialect("ifconfig", hosttools.cmd_ifconfig, "FreeBSD's ifconfig"),
        Dialect("sysctl", hosttools.cmd_sysctl, "FreeBSD's sysctl, for network devices"),
        Dialect("pgrep", pgrep.cmd_pgrep, "FreeBSD's pgrep, over the running guests"),
        Dialect("sysrc", sysrc.cmd_sysrc, "FreeBSD's sysrc, on rc.conf and vm-bhyve's files"),
        Dialect("zfs", zfscmd.cmd_zfs, "FreeBSD's zfs create, get, set volsize and destroy"),
        Dialect(
            fetchcmd.FETCH_PATH,
            fetchcmd.cmd_fetch,
            "FreeBSD's fetch -o PATH URL, named by its path (the word fetch is iohyve's)",
        ),
        Dialect("xz", xzcmd.cmd_xz, "xz -d, decompressing files in place"),
    )
}
#: The dialect of words that name no dialect.
DEFAULT_DIALECT = "iohyve"


def run(ctx: Context, words: list[str]) -> int:
    """Run ``words`` in the dialect the first one names, else in the default dialect."""
    if words and words[0] in DIALECTS:
        return DIALECTS[words[0]].run(ctx, words[1:])
    return DIALECTS[DEFAULT_DIALECT].run(ctx, words)
