"""FreeBSD tools the daemon needs besides iohyve: ``zpool list``, ``ifconfig`` and ``sysctl``.

They are selected by the first word after the simulator's options (``iohyve-sim --root R zpool
list ...``, ``iohyve-sim --root R ifconfig -l``) and read the same state as the simulated iohyve,
so a bridge made by ``setup net=em0`` shows up in ``ifconfig``.

``zpool list [-Hp] [-o property[,...]] [pool ...]``
    One line per pool. The default columns are FreeBSD 10's ``NAME SIZE ALLOC FREE EXPANDSZ
    FRAG CAP DEDUP HEALTH ALTROOT``; ``-o`` picks others among ``name``, ``size``,
    ``allocated``/``alloc``, ``free``, ``expandsize``/``expandsz``, ``fragmentation``/``frag``,
    ``capacity``/``cap``, ``dedupratio``/``dedup``, ``health`` and ``altroot``. Without ``-H``
    a header line comes first and columns are separated by two spaces, numbers right-aligned in
    at least five characters, text left-aligned, the last text column unpadded; with ``-H``
    there is no header and fields are separated by one TAB. Sizes are ``zfs_nicenum`` values
    (``99.5G``, ``1.82G``), ``FRAG``/``CAP`` end in ``%``, ``-p`` prints exact numbers instead.
    Pools come in name order. The simulated host has one pool, named after ``--pool``
    (``tank``): 99.5G, 1.82G allocated plus the ISO images on disk, 3% fragmented, dedup
    ``1.00x``, ``ONLINE`` (other pools can be listed in the state file). For example
    ``zpool list -H -o name,size,alloc,free,frag,dedup,health`` prints
    ``tank<TAB>99.5G<TAB>1.82G<TAB>97.7G<TAB>3%<TAB>1.00x<TAB>ONLINE``. An unknown pool:
    ``cannot open '<pool>': no such pool`` on stderr, status 1.

``ifconfig -l``
    The interface names on one line, separated by single spaces: ``em0 em1 lo0``, then the
    interfaces ``setup`` created in creation order (0.7.3: ``tap0 bridge0``; 0.7.9: ``bridge0``).

``ifconfig [-a]`` / ``ifconfig <if>``
    FreeBSD 10 style blocks: ``<if>: flags=<hex><FLAG,...> metric 0 mtu <n>``, then TAB-indented
    lines (``options=``, ``ether``, ``inet ... `` with its trailing blank, ``nd6 options=``,
    ``media:``, ``status: active`` or ``status: no carrier``, ``groups:``, bridge members). ``em0``
    is up with carrier (``status: active``, inet 192.168.1.10/24), ``em1`` is up without one
    (``status: no carrier``), ``lo0`` has no status line; a bridge member gains ``PROMISC``.
    An interface with a description (``em1``: ``storage network``, as ``ifconfig_em1_descr``
    in rc.conf would set it; the bridge ``setup`` made with ``descr iohyve-bridge``) has a
    ``\tdescription: <text>`` line right after the flags line, as FreeBSD prints it; the
    others have none. An unknown interface: ``ifconfig: interface <if> does not exist`` on
    stderr, status 1.

``sysctl [-n] <name> ...``
    Reads the device nodes' ``%desc`` and ``%driver`` of the physical interfaces
    (``dev.em.0.%desc``: ``Intel(R) PRO/1000 Legacy Network Connection 1.1.0``); ``name: value``
    per line, only the value with ``-n``. Any other name: ``sysctl: unknown oid '<name>'`` on
    stderr, status 1 (after printing the names that exist). Setting values and other options
    are not simulated.

zpool, ifconfig and sysctl parse their options as the FreeBSD tools do, with ``getopt(3)``,
which knows no GNU-style long options: ``zpool list --help`` prints ``invalid option '-'``
and the usage (status 2), ``ifconfig --help`` prints ``ifconfig: illegal option -- -`` and
the start of its usage (status 1), ``sysctl --all`` ``sysctl: illegal option -- -`` and its
usage (status 1). Options FreeBSD's tools take but the simulator does not reproduce fail
with the simulator's own message and status 2.
"""

from __future__ import annotations

import os
import string

from sysadmd.simulator import zfs
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.state import Host, Store, Zpool, byte_key

#: The interfaces every simulated host has, in index order.
PHYSICAL = ("em0", "em1", "lo0")

#: The descriptions of the simulated host's physical interfaces (``ifconfig <if> descr ...``).
DESCRIPTIONS = {"em1": "storage network"}

#: What ``sysctl dev.<driver>.<unit>.%desc`` says of the physical interfaces' drivers.
DRIVER_DESCRIPTIONS = {"em": "Intel(R) PRO/1000 Legacy Network Connection 1.1.0"}

_ZPOOL_LIST_USAGE = (
    "usage:",
    "\tlist [-Hpv] [-o property[,...]] [-T d|u] [pool] ... [interval [count]]",
)
#: ``zpool list`` columns: property name -> (header, right-aligned number).
_ZPOOL_COLUMNS = {
    "name": ("NAME", False),
    "size": ("SIZE", True),
    "allocated": ("ALLOC", True),
    "free": ("FREE", True),
    "expandsize": ("EXPANDSZ", True),
    "fragmentation": ("FRAG", True),
    "capacity": ("CAP", True),
    "dedupratio": ("DEDUP", True),
    "health": ("HEALTH", False),
    "altroot": ("ALTROOT", False),
}
_ZPOOL_ALIASES = {
    "alloc": "allocated",
    "expandsz": "expandsize",
    "frag": "fragmentation",
    "cap": "capacity",
    "dedup": "dedupratio",
}
_ZPOOL_DEFAULT = list(_ZPOOL_COLUMNS)


# -- zpool ----------------------------------------------------------------------------------------


def pool_allocated(ctx: Context, pool: Zpool) -> int:
    """Return the pool's allocated bytes: its base allocation plus the simulated ISO images."""
    if pool.name != ctx.pool:
        return pool.alloc
    total = pool.alloc
    for iso in ctx.root.iso_names():
        directory = ctx.root.iso_dataset(iso)
        try:
            with os.scandir(directory) as entries:
                total += sum(entry.stat().st_size for entry in entries if entry.is_file())
        except OSError:
            continue
    return min(total, pool.size)


def _pool_value(ctx: Context, pool: Zpool, prop: str, exact: bool) -> str:
    alloc = pool_allocated(ctx, pool)

    def size(number: int) -> str:
        return str(number) if exact else zfs.nicenum(number)

    percent = "" if exact else "%"
    values = {
        "name": pool.name,
        "size": size(pool.size),
        "allocated": size(alloc),
        "free": size(pool.size - alloc),
        "expandsize": "-",
        "fragmentation": f"{pool.frag}{percent}",
        "capacity": f"{alloc * 100 // pool.size if pool.size else 0}{percent}",
        "dedupratio": pool.dedup,
        "health": pool.health,
        "altroot": "-",
    }
    return values[prop]


def _zpool_usage(ctx: Context, problem: str) -> int:
    ctx.output.err(problem)
    for line in _ZPOOL_LIST_USAGE:
        ctx.output.err(line)
    return 2


def _zpool_columns(value: str) -> list[str] | str:
    """Parse ``-o``'s list; return the properties or the name of the first unknown one."""
    columns = []
    for item in value.split(","):
        prop = _ZPOOL_ALIASES.get(item, item)
        if prop not in _ZPOOL_COLUMNS:
            return item
        columns.append(prop)
    return columns


def _zpool_options(ctx: Context, args: list[str]) -> tuple[set[str], list[str], list[str]] | int:
    """Parse ``zpool list``'s options; return (flags, columns, pools) or the usage status."""
    flags: set[str] = set()
    columns = list(_ZPOOL_DEFAULT)
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "-":
        word = args[index]
        index += 1
        if word == "--":
            break
        for position, letter in enumerate(word[1:], start=2):
            if letter in "Hpv":
                flags.add(letter)
                continue
            if letter not in "oT":
                return _zpool_usage(ctx, f"invalid option '{letter}'")
            value = word[position:]
            if not value:
                if index >= len(args):
                    return _zpool_usage(ctx, f"missing argument for '{letter}' option")
                value = args[index]
                index += 1
            if letter == "o":
                parsed = _zpool_columns(value)
                if isinstance(parsed, str):
                    return _zpool_usage(ctx, f"bad property list: invalid property '{parsed}'")
                columns = parsed
            break
    return flags, columns, args[index:]


def cmd_zpool(ctx: Context, args: list[str]) -> int:
    """``zpool list [-Hp] [-o props] [pool ...]``; other subcommands are not simulated."""
    if not args or args[0] != "list":
        word = args[0] if args else ""
        ctx.output.err(f"iohyve-sim: zpool {word}: subcommand not provided by the simulator")
        return SIMULATOR_ERROR
    parsed = _zpool_options(ctx, args[1:])
    if isinstance(parsed, int):
        return parsed
    flags, columns, names = parsed
    with ctx.root.locked() as store:
        pools = sorted(store.host.pools(ctx.pool), key=lambda pool: byte_key(pool.name))
    status = 0
    if names:
        known = {pool.name: pool for pool in pools}
        chosen = []
        for name in names:
            if name in known:
                chosen.append(known[name])
            else:
                ctx.output.err(f"cannot open '{name}': no such pool")
                status = 1
        pools = chosen
    elif not pools:
        ctx.output.out("no pools available")
        return 0
    rows = [[_pool_value(ctx, pool, prop, "p" in flags) for prop in columns] for pool in pools]
    if "H" in flags:
        lines = ["\t".join(row) for row in rows]
    else:
        lines = _zpool_table(rows, columns) if rows or not names else []
    for line in lines:
        ctx.output.out(line)
    return status


def _zpool_table(rows: list[list[str]], columns: list[str]) -> list[str]:
    """Return the header and the rows aligned as ``zpool list`` without ``-H`` prints them."""
    widths = []
    for index, prop in enumerate(columns):
        header, number = _ZPOOL_COLUMNS[prop]
        # Numbers have a fixed width of at least five characters; text grows with its values.
        width = max(len(header), 5) if number else len(header)
        if not number:
            width = max([width, *(len(row[index]) for row in rows)])
        widths.append(width)
    header_row = [_ZPOOL_COLUMNS[prop][0] for prop in columns]
    return [_zpool_line(row, columns, widths) for row in [header_row, *rows]]


def _zpool_line(fields: list[str], columns: list[str], widths: list[int]) -> str:
    parts = []
    for index, (field, prop) in enumerate(zip(fields, columns, strict=True)):
        number = _ZPOOL_COLUMNS[prop][1]
        if number:
            parts.append(field.rjust(widths[index]))
        elif index == len(fields) - 1:
            parts.append(field)
        else:
            parts.append(field.ljust(widths[index]))
    return "  ".join(parts)


# -- interfaces -----------------------------------------------------------------------------------


def interface_names(host: Host) -> list[str]:
    """Return ``ifconfig -l``'s names in index order."""
    return [*PHYSICAL, *host.interfaces]


def _mac(name: str) -> str:
    suffix = {"em0": "0a", "em1": "0b"}.get(name)
    if suffix is not None:
        return f"08:00:27:5c:1f:{suffix}"
    number = int("".join(char for char in name if char.isdigit()) or "0")
    if name.startswith("bridge"):
        return f"02:6f:d0:5c:1f:{number:02x}"
    return f"00:bd:5c:1f:{number:02x}:00"


def _flags(value: int) -> str:
    names = (
        (0x1, "UP"),
        (0x2, "BROADCAST"),
        (0x8, "LOOPBACK"),
        (0x40, "RUNNING"),
        (0x100, "PROMISC"),
        (0x800, "SIMPLEX"),
        (0x8000, "MULTICAST"),
    )
    listed = ",".join(name for bit, name in names if value & bit)
    return f"flags={value:x}<{listed}>"


def _block(host: Host, name: str) -> list[str]:
    """Return ``ifconfig <name>``'s lines for an existing interface."""
    member = 0x100 if name in host.bridge_members else 0
    index = interface_names(host).index(name) + 1
    if name == "lo0":
        return [
            f"lo0: {_flags(0x8049)} metric 0 mtu 16384",
            "\toptions=600003<RXCSUM,TXCSUM,RXCSUM_IPV6,TXCSUM_IPV6>",
            "\tinet6 ::1 prefixlen 128 ",
            f"\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x{index:x} ",
            "\tinet 127.0.0.1 netmask 0xff000000 ",
            "\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>",
            "\tgroups: lo ",
        ]
    if name.startswith("em"):
        lines = [f"{name}: {_flags(0x8843 | member)} metric 0 mtu 1500"]
        if name in DESCRIPTIONS:
            lines.append(f"\tdescription: {DESCRIPTIONS[name]}")
        lines += [
            "\toptions=9b<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,VLAN_HWCSUM>",
            f"\tether {_mac(name)}",
        ]
        if name == "em0":
            lines.append("\tinet 192.168.1.10 netmask 0xffffff00 broadcast 192.168.1.255 ")
        lines.append("\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>")
        if name == "em0":
            lines += ["\tmedia: Ethernet autoselect (1000baseT <full-duplex>)", "\tstatus: active"]
        else:
            lines += ["\tmedia: Ethernet autoselect", "\tstatus: no carrier"]
        return lines
    if name.startswith("tap"):
        return [
            f"{name}: {_flags(0x8802 | member)} metric 0 mtu 1500",
            "\toptions=80000<LINKSTATE>",
            f"\tether {_mac(name)}",
            "\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>",
            "\tmedia: Ethernet autoselect",
            "\tstatus: no carrier",
            "\tgroups: tap ",
        ]
    lines = [f"{name}: {_flags(0x8843)} metric 0 mtu 1500"]
    if host.bridge_description is not None:
        lines.append(f"\tdescription: {host.bridge_description}")
    lines += [
        f"\tether {_mac(name)}",
        "\tnd6 options=1<PERFORMNUD>",
        "\tgroups: bridge ",
        f"\tid {_mac(name)} priority 32768 hellotime 2 fwddelay 15",
        "\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200",
        "\troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0",
    ]
    for member_name in reversed(host.bridge_members):
        port = interface_names(host).index(member_name) + 1
        cost = 20000 if member_name.startswith("em") else 2000000
        lines.append(f"\tmember: {member_name} flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>")
        lines.append(f"\t        ifmaxaddr 0 port {port} priority 128 path cost {cost}")
    return lines


#: The start of FreeBSD ifconfig's usage message.
_IFCONFIG_USAGE = (
    "usage: ifconfig [-j jail] [-f type:format] interface address_family",
    "                [address [dest_address]] [parameters]",
)
#: The option letters the simulator lets through to its own checks; anything else (above all
#: the ``-`` of a GNU-style ``--long-option``) is what ifconfig's getopt refuses.
_IFCONFIG_LETTERS = string.ascii_letters + string.digits


def cmd_ifconfig(ctx: Context, args: list[str]) -> int:
    """``ifconfig -l``, ``ifconfig [-a]`` and ``ifconfig <if>``; nothing can be changed."""
    refused = zfs.unknown_option(args, _IFCONFIG_LETTERS)
    if refused is not None:
        ctx.output.err(f"ifconfig: illegal option -- {refused}")
        for line in _IFCONFIG_USAGE:
            ctx.output.err(line)
        return 1
    with ctx.root.locked() as store:
        host = store.host
    names = interface_names(host)
    if args == ["-l"]:
        ctx.output.out(" ".join(names))
        return 0
    if args in ([], ["-a"]):
        for name in names:
            for line in _block(host, name):
                ctx.output.out(line)
        return 0
    if len(args) == 1 and not args[0].startswith("-"):
        if args[0] not in names:
            ctx.output.err(f"ifconfig: interface {args[0]} does not exist")
            return 1
        for line in _block(host, args[0]):
            ctx.output.out(line)
        return 0
    ctx.output.err(f"iohyve-sim: ifconfig {' '.join(args)}: not provided by the simulator")
    return SIMULATOR_ERROR


# -- sysctl ---------------------------------------------------------------------------------------


def _sysctl_values() -> dict[str, str]:
    """The OIDs the simulated ``sysctl`` knows: the physical interfaces' device nodes."""
    values: dict[str, str] = {}
    for name in PHYSICAL:
        driver = name.rstrip("0123456789")
        if driver in DRIVER_DESCRIPTIONS:
            unit = name[len(driver) :]
            values[f"dev.{driver}.{unit}.%desc"] = DRIVER_DESCRIPTIONS[driver]
            values[f"dev.{driver}.{unit}.%driver"] = driver
    return values


#: The option letters FreeBSD's sysctl takes (its getopt string); the simulator reads only
#: ``-n`` and refuses the others itself.
_SYSCTL_LETTERS = "AabB:deFf:hiJlNnoqTtWwXx"
_SYSCTL_USAGE = "usage: sysctl [-bdeFhiJlNnoqTtWx] [ -B <bufsize> ] [-f filename] name[=value] ..."


def cmd_sysctl(ctx: Context, args: list[str]) -> int:
    """``sysctl [-n] <name> ...``: read the simulated device nodes; nothing can be set."""
    refused = zfs.unknown_option(args, _SYSCTL_LETTERS)
    if refused is not None:
        ctx.output.err(f"sysctl: illegal option -- {refused}")
        ctx.output.err(_SYSCTL_USAGE)
        return 1
    value_only = bool(args) and args[0] == "-n"
    names = args[1:] if value_only else args
    if not names or any(name.startswith("-") or "=" in name for name in names):
        ctx.output.err(f"iohyve-sim: sysctl {' '.join(args)}: not provided by the simulator")
        return SIMULATOR_ERROR
    values = _sysctl_values()
    status = 0
    for name in names:
        if name not in values:
            ctx.output.err(f"sysctl: unknown oid '{name}'")
            status = 1
            continue
        ctx.output.out(values[name] if value_only else f"{name}: {values[name]}")
    return status


# -- what setup changes ---------------------------------------------------------------------------


def create_interface(ctx: Context, store: Store, name: str) -> int:
    """Run ``ifconfig <name> create`` for a tap or bridge; load its driver as FreeBSD does."""
    host = store.host
    if name in interface_names(host):
        ctx.output.err("ifconfig: SIOCIFCREATE2: File exists")
        return 1
    module = "if_tap" if name.startswith("tap") else "if_bridge"
    if module not in host.modules:
        host.modules.append(module)
    host.interfaces.append(name)
    store.dirty = True
    return 0


def add_bridge_member(ctx: Context, store: Store, member: str) -> int:
    """Run ``ifconfig bridge0 addm <member>``; return ifconfig's status."""
    host = store.host
    if member in host.bridge_members:
        reason = "File exists"
    elif member not in interface_names(host):
        reason = "No such file or directory"
    elif member == "lo0" or member.startswith("bridge"):
        reason = "Invalid argument"
    else:
        host.bridge_members.append(member)
        store.dirty = True
        return 0
    ctx.output.err(f"ifconfig: BRDGADD {member}: {reason}")
    return 1
