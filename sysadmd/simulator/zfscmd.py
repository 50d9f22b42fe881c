"""FreeBSD's ``zfs`` as a tool of its own, on the simulator's one model of datasets.

``iohyve-sim [--root DIR] [--pool NAME] zfs <subcommand> ...`` runs the subcommands a VM
manager's backend runs beside its own tool (vm-bhyve's backend: ``setup``, zvol disks):

* ``zfs create [-s] [-V size] <dataset>``: a filesystem (mounted at ``/<dataset>``, the
  directory ``ROOT/<dataset>``) or a volume; its parent must exist and be a filesystem.
  A filesystem ``<pool>/iohyve/ISO/<iso>`` is an ISO's dataset, mounted at
  ``/iohyve/ISO/<iso>`` (the directory ``ROOT/iohyve/ISO/<iso>``), as ``iohyve fetch``
  creates it;
* ``zfs get [-Hp] [-o field[,...]] <property[,...]> [dataset|path ...]`` with the properties
  ``name``, ``mountpoint``, ``volsize`` and user properties, the fields ``name``,
  ``property``, ``value`` and ``source``;
* ``zfs set volsize=<size> <volume ...>``;
* ``zfs destroy <dataset>`` of a dataset made here (a filesystem takes its files with it)
  or of an iohyve guest's zvol.

The datasets are those of :mod:`~sysadmd.simulator.datasets` (iohyve's and the ones made
here, kept in the state file), so ``zfs`` and ``iohyve`` see one namespace. Messages and
statuses are zfs's: ``cannot <verb> '<dataset>': <reason>`` and 1 for a failed operation,
the usage and 2 for bad words. Options zfs takes that are not simulated print a line
starting ``iohyve-sim:`` and exit 2, as other subcommands do.
"""

from __future__ import annotations

import os

from sysadmd.simulator import datasets, zfs, zfsops
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.getopt import OptionReader
from sysadmd.simulator.state import Store

_CREATE_USAGE = (
    "\tcreate [-pu] [-o property=value] ... <filesystem>",
    "\tcreate [-ps] [-b blocksize] [-o property=value] ... -V <size> <volume>",
)
_GET_USAGE = (
    '\tget [-rHp] [-d max] [-o "all" | field[,...]]',
    "\t    [-t type[,...]] [-s source[,...]]",
    '\t    <"all" | property[,...]> [filesystem|volume|snapshot] ...',
)
_SET_USAGE = ("\tset <property=value> <filesystem|volume|snapshot> ...",)
_COMMANDS = (
    "usage: zfs command args ...",
    "where 'command' is one of the following:",
    "",
    *_CREATE_USAGE,
    "\tdestroy [-fnpRrv] <filesystem|volume>",
    "",
    *_GET_USAGE,
    *_SET_USAGE,
)
_FIELDS = ("name", "property", "value", "source")
#: Native properties the simulator keeps.
_NATIVE = ("name", "mountpoint", "volsize")


def cmd_zfs(ctx: Context, args: list[str]) -> int:
    """Run ``zfs <args>`` and return its status."""
    if not args:
        for line in _COMMANDS:
            ctx.output.err(line)
        return 2
    command, rest = args[0], args[1:]
    handlers = {"create": _create, "get": _get, "set": _set, "destroy": _destroy}
    if command in handlers:
        return handlers[command](ctx, rest)
    known = ("list", "rename", "snapshot", "rollback", "clone", "inherit", "mount", "unmount")
    if command in known:
        ctx.output.err(f"iohyve-sim: zfs {command}: subcommand not provided by the simulator")
        return SIMULATOR_ERROR
    ctx.output.err(f"unrecognized command '{command}'")
    for line in _COMMANDS:
        ctx.output.err(line)
    return 2


def _destroy(ctx: Context, args: list[str]) -> int:
    with ctx.root.locked() as store:
        return zfsops.destroy(ctx, store, args)


def _options(
    ctx: Context, args: list[str], optstring: str, simulated: str, usage: tuple[str, ...]
) -> tuple[dict[str, str], list[str]] | int:
    """Read ``args`` as getopt(3) with ``optstring`` does: the options (letter to value, ""
    for a flag) and the operands, or the status after zfs's complaint. Letters zfs takes
    but ``simulated`` lacks are refused with the simulator's message."""
    options: dict[str, str] = {}
    reader = OptionReader(args, optstring)
    for letter, value, problem in reader:
        if problem is not None:
            ctx.output.err(
                f"invalid option '{letter}'"
                if problem == "illegal"
                else f"missing argument for '{letter}' option"
            )
            return _usage(ctx, usage)
        if letter not in simulated:
            ctx.output.err(f"iohyve-sim: zfs option '-{letter}' not provided by the simulator")
            return SIMULATOR_ERROR
        options[letter] = value
    return options, reader.operands


def _usage(ctx: Context, lines: tuple[str, ...]) -> int:
    ctx.output.err("usage:")
    for line in lines:
        ctx.output.err(line)
    ctx.output.err("")
    ctx.output.err("For the property list, run: zfs set|get")
    ctx.output.err("")
    ctx.output.err("For the delegated permission list, run: zfs allow|unallow")
    return 2


# -- create ---------------------------------------------------------------------------------------


def _create(ctx: Context, args: list[str]) -> int:  # noqa: PLR0911 - zfs's checks in order
    parsed = _options(ctx, args, ":PV:b:no:psuv", "Vs", _CREATE_USAGE)
    if isinstance(parsed, int):
        return parsed
    options, operands = parsed
    if "s" in options and "V" not in options:
        ctx.output.err("'-s' and '-b' can only be used when creating a volume")
        return _usage(ctx, _CREATE_USAGE)
    size = 0
    if "V" in options:
        number, unreadable, _ = zfsops.volume_size(options["V"])
        if unreadable is not None:
            ctx.output.err(unreadable)
            return 1
        size = number
    if not operands:
        ctx.output.err(
            "missing filesystem argument" if "V" not in options else "missing volume name"
        )
        return _usage(ctx, _CREATE_USAGE)
    if len(operands) > 1:
        ctx.output.err("too many arguments")
        return _usage(ctx, _CREATE_USAGE)
    name = operands[0]
    with ctx.root.locked() as store:
        problem = _create_problem(ctx, store, name, size if "V" in options else None)
        if problem is not None:
            ctx.output.err(zfs.error("create", name, problem))
            return 1
        if "V" in options:
            store.host.datasets[name] = size
        elif name.rpartition("/")[0] == ctx.dataset("ISO"):
            # An ISO's dataset (as iohyve fetch creates it): an ISO directory of the root.
            os.mkdir(ctx.root.iso_dataset(name.rpartition("/")[2]))
        else:
            os.makedirs(zfsops.mounted_path(ctx, name), exist_ok=True)
            store.host.datasets[name] = None
        store.dirty = True
    return 0


def _create_problem(  # noqa: PLR0911 - libzfs's checks in order
    ctx: Context, store: Store, name: str, size: int | None
) -> str | None:
    """Why ``zfs create`` refuses ``name`` (a volume of ``size`` bytes, or a filesystem)."""
    parent, _slash, last = name.rpartition("/")
    problem = zfs.name_error("create", name, last, changing=True)
    if problem is not None:
        return problem.split(": ", 1)[1]
    if not parent:
        return "missing dataset name"
    if datasets.find(ctx, store, name) is not None:
        return zfs.ALREADY_EXISTS
    pool = name.split("/", 1)[0]
    if pool not in {known.name for known in store.host.pools(ctx.pool)} | {ctx.pool}:
        return f"no such pool '{pool}'"
    owner = datasets.find(ctx, store, parent)
    if owner is None:
        return "parent does not exist"
    if owner.is_volume:
        return "parent is not a filesystem"
    if size is not None:
        return zfs.volume_size_problem(size)
    return None


# -- get ------------------------------------------------------------------------------------------


def _get(ctx: Context, args: list[str]) -> int:  # noqa: PLR0912 - zfs get's checks in order
    parsed = _options(ctx, args, ":d:o:s:rt:Hp", "Hpo", _GET_USAGE)
    if isinstance(parsed, int):
        return parsed
    options, operands = parsed
    fields = options.get("o", ",".join(_FIELDS)).split(",")
    for field in fields:
        if field not in _FIELDS:
            ctx.output.err(f"invalid field '{field}'")
            return _usage(ctx, _GET_USAGE)
    if not operands:
        ctx.output.err("missing property argument")
        return _usage(ctx, _GET_USAGE)
    properties = operands[0].split(",")
    for prop in properties:
        if prop in _NATIVE or zfs.valid_user_property(prop):
            continue
        if prop.isascii() and prop.isalpha() and prop.islower():
            ctx.output.err(f"iohyve-sim: zfs get: property '{prop}' not provided by the simulator")
            return SIMULATOR_ERROR
        ctx.output.err(f"bad property list: invalid property '{prop}'")
        ctx.output.err("usage:")
        for line in _GET_USAGE:
            ctx.output.err(line)
        return 2
    rows: list[list[str]] = []
    status = 0
    with ctx.root.locked() as store:
        if operands[1:]:
            found: list[datasets.Dataset] = []
            for word in operands[1:]:
                dataset, problem = datasets.resolve_argument(ctx, store, word)
                if dataset is None:
                    ctx.output.err(problem or "")
                    status = 1
                else:
                    found.append(dataset)
            targets = zfsops.unique_sorted(found)
        else:
            targets = datasets.datasets(ctx, store)
        for dataset in targets:
            for prop in properties:
                value, source = _value(ctx, store, dataset, prop, exact="p" in options)
                columns = {"name": dataset.name, "property": prop, "value": value}
                columns["source"] = source
                rows.append([columns[field] for field in fields])
    for line in _table(rows, fields, scripted="H" in options):
        ctx.output.out(line)
    return status


def _value(  # noqa: PLR0911 - one answer per property
    ctx: Context, store: Store, dataset: datasets.Dataset, prop: str, *, exact: bool
) -> tuple[str, str]:
    """The value and source ``zfs get`` shows for ``prop`` of ``dataset``."""
    if prop == "volsize":
        if dataset.volsize is None:
            return datasets.UNSET, datasets.UNSET
        shown = str(dataset.volsize) if exact else zfs.nicenum(dataset.volsize)
        return shown, "local"
    if prop == "mountpoint":
        if dataset.is_volume:
            return datasets.UNSET, datasets.UNSET
        return dataset.mountpoint, "default"
    if prop == "name":
        return dataset.name, datasets.UNSET
    for name, value, source in datasets.user_properties(ctx, store, dataset):
        if name == prop:
            return value, source
    return datasets.UNSET, datasets.UNSET


def _table(rows: list[list[str]], fields: list[str], *, scripted: bool) -> list[str]:
    """``-H``: fields separated by a TAB; otherwise a header and columns padded to their
    widths with two spaces between (the last one not padded)."""
    if scripted:
        return ["\t".join(row) for row in rows]
    header = [field.upper() for field in fields]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(fields))]
    return [
        "  ".join(
            cell if i == len(fields) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        )
        for row in [header, *rows]
    ]


# -- set ------------------------------------------------------------------------------------------


def _set(ctx: Context, args: list[str]) -> int:
    if not args:
        ctx.output.err("missing property=value argument")
        return _usage(ctx, _SET_USAGE)
    if len(args) < 2:
        ctx.output.err("missing dataset name")
        return _usage(ctx, _SET_USAGE)
    prop, equals, value = args[0].partition("=")
    if not equals or not value:
        return zfsops.set_usage(ctx)
    if prop != "volsize":
        ctx.output.err(f"iohyve-sim: zfs set: property '{prop}' not provided by the simulator")
        return SIMULATOR_ERROR
    with ctx.root.locked() as store:
        return zfsops.set_volsize(ctx, store, value, args[1:])
