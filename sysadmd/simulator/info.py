"""``iohyve info``: a table of the guests and their disks.

0.7.3 (``info [-d]``) prints ``zfs list -H -o name,volsize,iohyve:ram,iohyve:cpu,iohyve:os,
iohyve:loader[,iohyve:description]`` minus every line containing ``ISO`` or ``Firmware`` (in any
field, descriptions included), with the ``<pool>/iohyve/`` prefix and the first line cut off,
under ``Name Size RAM CPU OS Loader [Description]``, through ``column -t`` with its default
separators: the words of a description fill one column each. Each guest has its own row (Size
``-``) followed by one row per zvol (``guest/diskN``, the zvol's volsize, the inherited
properties). Any flag but ``-d``: ``Invalid flag...``.

0.7.6+ (``info [-vsdl]``, only the first argument counts, as letters anywhere in it) prints,
through ``column -ts^``, ``Guest Size CPU RAM Pool`` (+ ``OS Loader Tap Con`` for ``v``,
``VMM? Running rcboot?`` for ``s``, ``Description`` for ``d``), a row per guest with a local
``iohyve:name`` and one row per zvol: ``guest/diskN``, the *inherited* ``iohyve:size`` (not the
volsize), ``-`` fillers and the inherited description. ``l`` pipes into ``$PAGER``; with PAGER
unset 0.7.9 prints nothing (as ``list -l``).
"""

from __future__ import annotations

import os

from sysadmd.simulator import datasets, shell
from sysadmd.simulator.column import column_t
from sysadmd.simulator.context import Context, arg
from sysadmd.simulator.state import Store

_COLUMNS_0_7_3 = ["name", "volsize", "iohyve:ram", "iohyve:cpu", "iohyve:os", "iohyve:loader"]


def _table_0_7_3(ctx: Context, store: Store, description: bool) -> list[str]:
    columns = [*_COLUMNS_0_7_3, *(["iohyve:description"] if description else [])]
    header = "Name\tSize\tRAM\tCPU\tOS\tLoader" + ("\tDescription" if description else "")
    lines = [
        line
        for line in datasets.list_columns(ctx, store, columns)
        if "iohyve" in line and "ISO" not in line and "Firmware" not in line
    ]
    rows = [shell.cut_fields_from(line, "/", 3) for line in lines][1:]
    return column_t([header, *rows])


def _table_0_7_9(ctx: Context, store: Store, flags: str) -> list[str]:
    verbose, status, description = ("v" in flags), ("s" in flags), ("d" in flags)
    header = "Guest^Size^CPU^RAM^Pool"
    header += "^OS^Loader^Tap^Con" if verbose else ""
    header += "^VMM?^Running^rcboot?" if status else ""
    header += "^Description" if description else ""
    lines = [header]
    everything = datasets.datasets(ctx, store)
    for dataset in everything:
        record = store.guests.get(dataset.guest or "")
        if record is None or dataset.is_volume or "iohyve:name" not in record.props:
            continue

        def value(prop: str, props: dict[str, str] = record.props) -> str:
            return props.get(f"iohyve:{prop}", datasets.UNSET)

        name = record.props["iohyve:name"]
        row = f"{name}^-^{value('cpu')}^{value('ram')}^{dataset.pool}"
        if verbose:
            row += f"^{value('os')}^{value('loader')}^{value('tap')}^{value('con')}"
        if status:
            rcboot = "YES" if value("boot") == "1" else "NO"
            row += f"^{'YES' if record.vmm else 'NO'}^{'YES' if record.running else 'NO'}^{rcboot}"
        if description:
            row += f"^{value('description')}"
        lines.append(row)
        for disk in datasets.disk_names(record.disks):
            row = f"^{name}/{disk}^{value('size')}^-^-^{dataset.pool}"
            row += "^-^-^-^-" if verbose else ""
            row += "^-^-^-" if status else ""
            row += f"^{value('description')}" if description else ""
            lines.append(row)
    return column_t(lines, "^")


def cmd_info(ctx: Context, args: list[str]) -> int:
    """``iohyve info``: the 0.7.3 ``zfs list`` table or the 0.7.6+ flag-driven table."""
    flags = arg(args, 0)
    if ctx.profile.info_flag_table:
        if "l" in flags and ctx.profile.list_pager_flag and not os.environ.get("PAGER"):
            return 0
        with ctx.root.locked() as store:
            table = _table_0_7_9(ctx, store, flags)
    elif flags in ("", "-d"):
        with ctx.root.locked() as store:
            table = _table_0_7_3(ctx, store, description=flags == "-d")
    else:
        table = ["Invalid flag..."]
    for line in table:
        ctx.output.out(line)
    return 0
