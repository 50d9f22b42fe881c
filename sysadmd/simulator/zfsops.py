"""The ``zfs`` subcommands the disk and guest commands run, on the simulated namespace.

Each function takes the argument words the shell script would hand to ``zfs`` (after unquoted
expansion, so one iohyve variable can become several words), prints zfs's diagnostics on stderr
and returns zfs's exit status. ``zfs set`` of user properties is
:func:`sysadmd.simulator.guests.zfs_set`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sysadmd.simulator import datasets, zfs
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.state import Store, byte_key

#: The trailer of every zfs usage message.
_USAGE_TRAILER = (
    "",
    "For the property list, run: zfs set|get",
    "",
    "For the delegated permission list, run: zfs allow|unallow",
)


def _usage(ctx: Context, problem: str, lines: tuple[str, ...], *, trailer: bool = True) -> int:
    ctx.output.err(problem)
    ctx.output.err("usage:")
    for line in lines:
        ctx.output.err(line)
    for line in _USAGE_TRAILER if trailer else ():
        ctx.output.err(line)
    return 2


def refuse_options(
    ctx: Context, argv: list[str], optstring: str, lines: tuple[str, ...]
) -> int | None:
    """Check the words that reach zfs's ``getopt`` after the options iohyve itself gives.

    A letter zfs does not take (above all the ``-`` of a GNU-style ``--long-option``) prints
    ``invalid option 'X'`` and the usage ``lines``, status 2, as zfs does; an option zfs takes
    but the simulator does not reproduce fails with the simulator's message, status 2. Return
    None when ``argv`` starts with an operand.
    """
    letter = zfs.unknown_option(argv, optstring)
    if letter is not None:
        return _usage(ctx, f"invalid option '{letter}'", lines)
    if argv and argv[0].startswith("-") and argv[0] != "-":
        ctx.output.err(f"iohyve-sim: zfs option '{argv[0]}' not provided by the simulator")
        return SIMULATOR_ERROR
    return None


def set_usage(ctx: Context) -> int:
    """Print ``zfs set``'s usage for a missing value (``prop=``) and return its status, 2."""
    return _usage(
        ctx,
        "missing value in property=value argument",
        ("\tset <property=value> <filesystem|volume|snapshot> ...",),
    )


_GET_USAGE = (
    '\tget [-rHp] [-d max] [-o "all" | field[,...]]',
    "\t    [-t type[,...]] [-s source[,...]]",
    '\t    <"all" | property[,...]> [filesystem|volume|snapshot] ...',
)
_INHERIT_USAGE = ("\tinherit [-rS] <property> <filesystem|volume|snapshot> ...",)
_DESTROY_USAGE = (
    "\tdestroy [-fnpRrv] <filesystem|volume>",
    "\tdestroy [-dnpRrv] <filesystem|volume>@<snap>[%<snap>][,...]",
    "\tdestroy <filesystem|volume>#<bookmark>",
)


def volume_size(size: str) -> tuple[int, str | None, str | None]:
    """Parse the ``<size>`` of ``zfs create -V <size>``.

    Return the bytes, the line zfs prints when it cannot read the size (before looking at the
    volume's name) and the reason it refuses a size it can read (after ``cannot create
    '<volume>': ``, once the name is known to be good).
    """
    if not size:
        # "-V $size" with an empty, unquoted $size makes "-o" the volume size.
        return 0, "bad volume size '-o': bad numeric value '-o'", None
    try:
        number = zfs.parse_size(size)
    except zfs.SizeError as exc:
        return 0, f"bad volume size '{size}': {exc}", None
    return number, None, zfs.volume_size_problem(number)


def _valid_property(name: str) -> bool:
    return name in ("name", "volsize", "mountpoint") or zfs.valid_user_property(name)


def get_values(ctx: Context, store: Store, argv: list[str]) -> int:
    """Run ``zfs get -H -o value <argv...>``: a property, then datasets or paths.

    An invalid property name prints zfs's complaint and the start of its usage (the table of
    properties that follows on a real host is left out).
    """
    refused = refuse_options(ctx, argv, ":d:o:s:rt:Hp", _GET_USAGE)
    if refused is not None:
        return refused
    prop = argv[0] if argv else ""
    if not _valid_property(prop):
        return _usage(
            ctx,
            f"bad property list: invalid property '{prop}'",
            _GET_USAGE,
            trailer=False,
        )
    found, status = _lookup_all(ctx, store, argv[1:], datasets.resolve_argument)
    for dataset in unique_sorted(found):
        ctx.output.out(datasets.property_value(ctx, store, dataset, prop))
    return status


def get_all(ctx: Context, store: Store, words: list[str]) -> tuple[list[str], int]:
    """Run ``zfs get -H all <words...>``; return its user-property lines and its status."""
    found, status = _lookup_all(ctx, store, words, datasets.resolve_argument)
    return datasets.get_all_lines(ctx, store, unique_sorted(found)), status


def inherit_recursive(ctx: Context, store: Store, argv: list[str]) -> int:
    """Run ``zfs inherit -r <property> <datasets...>``: the property goes from the datasets and
    everything below them (so a pool's root clears it on every guest)."""
    refused = refuse_options(ctx, argv, "rS", _INHERIT_USAGE)
    if refused is not None:
        return refused
    if len(argv) < 2:
        missing = "missing property argument" if not argv else "missing dataset argument"
        return _usage(ctx, missing, _INHERIT_USAGE)
    prop, words = argv[0], argv[1:]
    targets, status = _lookup_all(ctx, store, words, datasets.open_dataset)
    for dataset in targets:
        prefix = dataset.name + "/"
        for guest, record in store.guests.items():
            guest_dataset = ctx.dataset(guest)
            below = guest_dataset == dataset.name or guest_dataset.startswith(prefix)
            if below and record.props.pop(prop, None) is not None:
                store.dirty = True
    return status


def destroy(ctx: Context, store: Store, argv: list[str]) -> int:  # noqa: PLR0911 - zfs's checks
    """Run ``zfs destroy <dataset>`` (without ``-r``) on a guest's zvol."""
    refused = refuse_options(ctx, argv, "vpndfrR", _DESTROY_USAGE)
    if refused is not None:
        return refused
    if len(argv) != 1:
        return _usage(
            ctx, "too many arguments" if argv else "missing dataset argument", _DESTROY_USAGE
        )
    dataset, problem = datasets.open_dataset(ctx, store, argv[0])
    if dataset is None:
        ctx.output.err(problem or "")
        return 1
    made = dataset.name in store.host.datasets
    if not made and (not dataset.is_volume or dataset.guest is None or dataset.disk is None):
        children = [
            other.name
            for other in datasets.datasets(ctx, store)
            if other.name.startswith(dataset.name + "/")
        ]
        if children:
            ctx.output.err(f"cannot destroy '{dataset.name}': filesystem has children")
            ctx.output.err("use '-r' to destroy the following datasets:")
            for child in children:
                ctx.output.err(child)
        else:
            # Only guests' zvols are destroyed this way; refuse the rest like a busy dataset.
            ctx.output.err(zfs.error("destroy", dataset.name, zfs.BUSY))
        return 1
    if made:
        return _destroy_made(ctx, store, dataset)
    if dataset.guest is None or dataset.disk is None:
        return 1
    record = store.guests[dataset.guest]
    if record.running:
        # bhyve holds its zvols open.
        ctx.output.err(zfs.error("destroy", dataset.name, zfs.BUSY))
        return 1
    del record.disks[dataset.disk]
    store.dirty = True
    return 0


def _destroy_made(ctx: Context, store: Store, dataset: datasets.Dataset) -> int:
    """Destroy a dataset ``zfs create`` made: refused while it has children; a filesystem
    takes its files with it, as its mountpoint goes."""
    children = [
        other.name
        for other in datasets.datasets(ctx, store)
        if other.name.startswith(dataset.name + "/")
    ]
    if children:
        kind = "volume" if dataset.is_volume else "filesystem"
        ctx.output.err(f"cannot destroy '{dataset.name}': {kind} has children")
        ctx.output.err("use '-r' to destroy the following datasets:")
        for child in children:
            ctx.output.err(child)
        return 1
    if not dataset.is_volume:
        import shutil  # noqa: PLC0415

        shutil.rmtree(mounted_path(ctx, dataset.name), ignore_errors=True)
    del store.host.datasets[dataset.name]
    store.dirty = True
    return 0


def mounted_path(ctx: Context, name: str) -> str:
    """Where the filesystem ``name`` (mounted at ``/<name>``) lives below the root."""
    return os.path.join(ctx.root.path, *name.split("/"))


def destroy_guest(ctx: Context, store: Store, name: str) -> int:
    """Run ``zfs destroy -rR <pool>/iohyve/<guest>``: the guest and its zvols."""
    dataset, problem = datasets.open_dataset(ctx, store, name)
    if dataset is None or dataset.guest is None or dataset.is_volume:
        ctx.output.err(problem or zfs.error("destroy", name, zfs.BUSY))
        return 1
    record = store.guests[dataset.guest]
    if record.running and record.disks:
        # Children go first; bhyve holds the first zvol open and zfs stops there.
        disk = datasets.disk_names(record.disks)[0]
        ctx.output.err(zfs.error("destroy", ctx.dataset(dataset.guest, disk), zfs.BUSY))
        return 1
    del store.guests[dataset.guest]
    store.dirty = True
    return 0


def set_volsize(ctx: Context, store: Store, size: str, words: list[str]) -> int:
    """Run ``zfs set volsize=<size> <words...>``."""
    if not size:
        return set_usage(ctx)
    targets, status = _lookup_all(ctx, store, words, datasets.open_dataset)
    for dataset in sorted(targets, key=lambda target: byte_key(target.name)):
        prefix = f"cannot set property for '{dataset.name}': "
        made = dataset.name in store.host.datasets
        if not dataset.is_volume or (not made and (dataset.guest is None or dataset.disk is None)):
            ctx.output.err(prefix + "'volsize' does not apply to datasets of this type")
            status = 1
            continue
        try:
            number = zfs.parse_size(size)
        except zfs.SizeError as exc:
            ctx.output.err(prefix + str(exc))
            status = 1
            continue
        problem = zfs.volume_size_problem(number)
        if problem is not None:
            ctx.output.err(prefix + problem.replace("volume size", "'volsize'", 1))
            status = 1
            continue
        if made:
            store.host.datasets[dataset.name] = number
        elif dataset.guest is not None and dataset.disk is not None:
            store.guests[dataset.guest].disks[dataset.disk] = number
        store.dirty = True
    return status


def create_volume(
    ctx: Context, store: Store, size: str, words: list[str]
) -> tuple[datasets.Dataset | None, int]:
    """Run ``zfs create -V <size> -o volmode=dev <words...>`` below an existing guest dataset.

    Return the new zvol (or None) and the status.
    """
    number, unreadable, size_problem = volume_size(size)
    if unreadable is not None:
        ctx.output.err(unreadable)
        return None, 1
    if len(words) != 1:
        ctx.output.err("too many arguments" if words else "missing volume name")
        return None, 2
    path = words[0]
    parent, _slash, disk = path.rpartition("/")
    problem = zfs.name_error("create", path, disk, changing=True)
    owner = datasets.find(ctx, store, parent) if problem is None else None
    if problem is None and datasets.find(ctx, store, path) is not None:
        problem = zfs.error("create", path, zfs.ALREADY_EXISTS)
    if problem is None and (owner is None or owner.guest is None or owner.is_volume):
        pools = {pool.name for pool in store.host.pools(ctx.pool)} | {ctx.pool}
        pool = path.split("/", 1)[0]
        reason = f"no such pool '{pool}'" if pool not in pools else "parent does not exist"
        problem = zfs.error("create", path, reason)
    if problem is None and size_problem is not None:
        problem = zfs.error("create", path, size_problem)
    if problem is not None or owner is None or owner.guest is None:
        ctx.output.err(problem or "")
        return None, 1
    store.guests[owner.guest].disks[disk] = number
    store.dirty = True
    return datasets.find(ctx, store, path), 0


Lookup = Callable[[Context, Store, str], "tuple[datasets.Dataset | None, str | None]"]


def _lookup_all(
    ctx: Context, store: Store, words: list[str], lookup: Lookup
) -> tuple[list[datasets.Dataset], int]:
    """The datasets ``words`` name, in order; zfs's error for each one that fails, status 1."""
    found: list[datasets.Dataset] = []
    status = 0
    for word in words:
        dataset, problem = lookup(ctx, store, word)
        if dataset is None:
            ctx.output.err(problem or "")
            status = 1
        else:
            found.append(dataset)
    return found, status


def unique_sorted(found: list[datasets.Dataset]) -> list[datasets.Dataset]:
    """Each dataset once, in zfs's byte order of names."""
    unique = {dataset.name: dataset for dataset in found}
    return [unique[name] for name in sorted(unique, key=byte_key)]
