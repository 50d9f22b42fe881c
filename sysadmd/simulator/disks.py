"""The disk commands: ``add``, ``remove``, ``resize`` and ``disks``.

A guest's disks are the zvols ``<pool>/iohyve/<guest>/diskN``; ``disk0`` comes from ``create``,
the others from ``add``, which also points a ``iohyve:pcidev:<n>`` property at the new zvol.
The commands find disks and properties by ``grep`` over ``zfs list``/``zfs get`` lines, so they
share iohyve's substring quirks:

* ``add`` numbers the new disk after the highest ``diskN`` of every guest whose name contains
  ``<name>`` (0.7.6+: of every dataset below ``iohyve/<name>...``), and the new pcidev property
  after the highest such property; it creates the property even when the zvol cannot be created.
  A third argument is the pool even when it is empty (``${4-...}``), which makes every zfs call
  but the last fail: the property then points at ``/dev/zvol//iohyve/<name>/diskN``.
* ``remove`` looks for a pcidev property mentioning the disk: ``disk0`` has none, so it cannot be
  removed (``Not a valid PCIDEV property``). Without ``-f`` (and always in 0.7.3) it asks on
  ``/dev/tty`` and, without a terminal, removes nothing. The property goes before the zvol: a
  running guest keeps its zvol busy and loses only the property.
* ``resize`` refuses a running guest; 0.7.4+ also set ``iohyve:size``.
* ``disks <name>`` prints the title, ``diskN Size`` and every ``zfs list -o name,volsize`` line
  matching ``iohyve.*<name>.*disk`` cut to ``diskN<TAB>size``, all through ``column -t`` (so the
  title is split into columns): guest ``debian`` also lists ``debian.old``'s disks.
"""

from __future__ import annotations

from sysadmd.simulator import datasets, shell, zfs, zfsops
from sysadmd.simulator.column import column_t
from sysadmd.simulator.context import Context, arg
from sysadmd.simulator.guests import (
    NO_TTY,
    dir_test_0_7_3,
    pool_of,
    running_guest,
    volume_names,
    zfs_set,
)
from sysadmd.simulator.state import Guest, Store


def _next_number(ctx: Context, last: str, *, arithmetic: bool) -> str:
    """Return ``expr $last + 1`` (0.7.3) or ``$((last + 1))`` (0.7.9) for the highest number."""
    if not last:
        if arithmetic:
            return "1"
        ctx.output.err("expr: syntax error")
        return ""
    if last.isascii() and last.isdigit():
        return str(int(last) + 1)
    ctx.output.err("expr: non-numeric argument")
    return ""


# -- add ------------------------------------------------------------------------------------------


def _next_disk(ctx: Context, store: Store, name: str) -> str:
    """Return the number of the disk ``add`` creates for ``name``."""
    lines = datasets.list_lines(ctx, store)
    if ctx.profile.lookup_anchored:
        selected = shell.grep_joined([f"iohyve/{name}", "disk"], lines)
    else:
        selected = [line for line in shell.grep(name, lines) if "disk" in line]
    disks = [shell.cut_field(shell.cut_field(line, "/", 4), "\t", 1) for line in selected]
    last = shell.last_version(disks, len("disk"))
    return _next_number(ctx, last, arithmetic=ctx.profile.lookup_anchored)


def _next_pcidev(ctx: Context, store: Store, name: str) -> str:
    """Return the number of the ``iohyve:pcidev:<n>`` property ``add`` sets for ``name``."""
    lines = shell.grep_joined([f"iohyve/{name}", "pcidev"], datasets.get_all_lines(ctx, store))
    numbers = [shell.cut_field(shell.cut_field(line, "\t", 2), ":", 3) for line in lines]
    last = shell.last_version(numbers, 0)
    if not last:
        return "1"
    return _next_number(ctx, last, arithmetic=ctx.profile.lookup_anchored)


def _create_quietly(ctx: Context, store: Store, words: list[str]) -> None:
    """Run ``zfs create <words> 2> /dev/null``: a guest dataset without properties, if possible.

    Such a dataset counts as a guest for 0.7.3 (any child of ``<pool>/iohyve``), not for 0.7.6+
    (no ``iohyve:name``). Only datasets of the simulated pool can be created.
    """
    if len(words) != 1 or not words[0].startswith(ctx.dataset() + "/"):
        return
    guest = words[0][len(ctx.dataset()) + 1 :]
    if (
        "/" not in guest
        and zfs.name_error("create", words[0], guest, changing=True) is None
        and datasets.find(ctx, store, words[0]) is None
    ):
        store.guests[guest] = Guest()
        store.dirty = True


def cmd_add(ctx: Context, args: list[str]) -> int:
    """``iohyve add <name> <size> [pool]``: a new zvol ``disk<last+1>`` and its pcidev property."""
    name, size = arg(args, 0), arg(args, 1)
    profile = ctx.profile
    if profile.argument_checks and not size:
        return ctx.usage("add")
    with ctx.root.locked() as store:
        pattern = f"iohyve/{name}" if profile.lookup_anchored else name
        matches = shell.grep(pattern, volume_names(ctx, store))
        pool = pool_of(matches[0]) if matches else ""
        # "${4-$pool}": a given pool counts even when it is empty.
        new_pool = args[2] if len(args) > 2 else pool
        disk = "disk" + _next_disk(ctx, store, name)
        ctx.output.out(f"Creating new zvol for {name}...")
        _create_quietly(ctx, store, shell.words(f"{new_pool}/iohyve/{name}"))
        zfsops.create_volume(ctx, store, size, shell.words(f"{new_pool}/iohyve/{name}/{disk}"))
        pcidev = _next_pcidev(ctx, store, name)
        value = f"ahci-hd,/dev/zvol/{new_pool}/iohyve/{name}/{disk}"
        target = shell.words(f"{pool}/iohyve/{name}")
        return zfs_set(ctx, store, [*shell.words(f"iohyve:pcidev:{pcidev}={value}"), *target])


# -- remove ---------------------------------------------------------------------------------------


def cmd_remove(ctx: Context, args: list[str]) -> int:
    """``iohyve remove [-f] <name> <diskN>``: drop the disk's pcidev property and its zvol."""
    profile = ctx.profile
    forced = profile.force_flags and arg(args, 0) == "-f"
    name, disk = (arg(args, 1), arg(args, 2)) if forced else (arg(args, 0), arg(args, 1))
    if profile.argument_checks and not disk:
        return ctx.usage("remove")
    if forced:
        ctx.output.out(f"Removing {disk} from {name}")
    with ctx.root.locked() as store:
        names = [dataset.name for dataset in datasets.datasets(ctx, store)]
        if profile.lookup_anchored:
            selected = shell.grep_joined([name, disk], names)
        else:
            selected = shell.grep(disk, shell.grep(name, names))
        pools = "\n".join(shell.cut_field(line, "/", 1) for line in selected)
        target = shell.words(f"{pools}/iohyve/{name}")
        lines, _status = zfsops.get_all(ctx, store, target)
        if profile.lookup_anchored:
            matching = shell.grep_joined(["pcidev", disk], lines)
        else:
            matching = shell.grep(disk, [line for line in lines if "pcidev" in line])
        props = [shell.cut_field(line, "\t", 2) for line in matching]
        if not props:
            ctx.output.out("Not a valid PCIDEV property")
            return 0
        if not forced:
            ctx.output.err(NO_TTY)
            ctx.output.out("Not removed...")
            return 0
        zfsops.inherit_recursive(ctx, store, [*props, *target])
        return zfsops.destroy(ctx, store, shell.words(f"{pools}/iohyve/{name}/{disk}"))


# -- resize ---------------------------------------------------------------------------------------


def cmd_resize(ctx: Context, args: list[str]) -> int:
    """``iohyve resize <name> <diskN> <size>``: set the zvol's ``volsize`` (guest stopped)."""
    name, disk, size = arg(args, 0), arg(args, 1), arg(args, 2)
    profile = ctx.profile
    if profile.argument_checks and not size:
        return ctx.usage("resize")
    with ctx.root.locked() as store:
        names = [dataset.name for dataset in datasets.datasets(ctx, store)]
        if profile.lookup_anchored:
            selected = shell.grep_joined([f"iohyve/{name}", disk], names)
        else:
            selected = shell.grep(disk, shell.grep(name, names))
        pools = [shell.cut_field(line, "/", 1) for line in selected]
        ctx.output.out(f"Resizing {disk} to {size}")
        if not dir_test_0_7_3(ctx, store, name, pools):
            ctx.output.out("Not a valid guest name")
            return 0
        if running_guest(ctx, store, name) is not None:
            ctx.output.out("Please stop the guest first")
            return 0
        joined = "\n".join(pools)
        status = zfsops.set_volsize(ctx, store, size, shell.words(f"{joined}/iohyve/{name}/{disk}"))
        if profile.resize_updates_size:
            argv = [*shell.words(f"iohyve:size={size}"), *shell.words(f"{joined}/iohyve/{name}")]
            status = zfs_set(ctx, store, argv)
        return status


# -- disks ----------------------------------------------------------------------------------------


def cmd_disks(ctx: Context, args: list[str]) -> int:
    """``iohyve disks <name>``: the guest's zvols and their sizes through ``column -t``."""
    name = arg(args, 0)
    if ctx.profile.argument_checks and not name:
        return ctx.usage("disks")
    if not name:
        ctx.output.out("You must enter a guest name.")
        return 0
    with ctx.root.locked() as store:
        iohyve = [line for line in datasets.list_lines(ctx, store) if "iohyve" in line]
        pool = shell.cut_field(iohyve[0], "/", 1) if iohyve else ""
        if not (
            datasets.mounted_directory_exists(ctx, store, f"/iohyve/{pool}/{name}")
            or datasets.mounted_directory_exists(ctx, store, f"/iohyve/{name}")
        ):
            ctx.output.out("Not a valid guest name")
            return 0
        listed = datasets.list_columns(ctx, store, ["name", "volsize"])
        rows = [
            shell.cut_field(line, "/", 4)
            for line in shell.grep_joined(["iohyve", name, "disk"], listed)
        ]
    for line in column_t([f"Listing disks for {name}...", "diskN\tSize", *rows]):
        ctx.output.out(line)
    return 0
