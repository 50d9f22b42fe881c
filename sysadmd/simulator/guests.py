"""The guest commands: ``list``, ``create``, ``start``, ``stop``, ``set`` and ``getall``.

A guest is the dataset ``<pool>/iohyve/<name>`` (with the zvols ``<name>/disk0``, ``disk1``...)
carrying ``iohyve:*`` user properties. How a command finds it differs between the dialects:

* 0.7.3 greps ``zfs list -H -t volume`` for the name as a substring (a basic regular expression,
  so ``web`` also matches ``web2``), then mostly addresses ``<pool>/iohyve/<name>`` directly;
* 0.7.6+ compare the ``iohyve:name`` property exactly.

No bhyve runs: ``start`` and ``stop`` only flip the VMM and running flags the real commands would
eventually produce.
"""

from __future__ import annotations

import os
import sys
import time

from sysadmd.simulator import datasets, guestconsole, shell, zfs, zfsops
from sysadmd.simulator.column import column_t
from sysadmd.simulator.context import SIMULATOR_ERROR, Context, arg
from sysadmd.simulator.state import Guest, Store

#: Environment variable fixing "now" for ``create``'s description (seconds since the epoch).
NOW_ENV = "IOHYVE_SIM_NOW"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Width of the longest native property name in ``zfs get`` output (``usedbyrefreservation``).
_NATIVE_PROPERTY_WIDTH = 20
#: Datasets ``setup`` creates directly below ``<pool>/iohyve``; no guest can take these names.
_RESERVED = ("ISO", "Firmware")
#: What sh prints when ``read ... </dev/tty`` runs without a controlling terminal. The simulator
#: never has one: it imitates iohyve run by a daemon.
NO_TTY = "/usr/local/sbin/iohyve: cannot open /dev/tty: Device not configured"


def date_text(now: float) -> str:
    """Return ``date``'s default output for ``now``: ``%a %b %e %H:%M:%S %Z %Y`` in the C locale.

    The zone is taken from ``TZ``; without it (or with it empty) the time is UTC.
    """
    if os.environ.get("TZ"):
        time.tzset()
        moment = time.localtime(now)
        zone = moment.tm_zone
    else:
        moment = time.gmtime(now)
        zone = "UTC"
    return (
        f"{_DAYS[moment.tm_wday]} {_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d} "
        f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d} {zone} {moment.tm_year}"
    )


def _now() -> float | None:
    value = os.environ.get(NOW_ENV)
    if value is None or not value.strip():
        return time.time()
    try:
        return float(value)
    except ValueError:
        return None


# -- finding guests -------------------------------------------------------------------------------


def volume_names(ctx: Context, store: Store) -> list[str]:
    """Return ``zfs list -H -o name -t volume`` for the simulated pool, in byte order."""
    return [volume.name for volume in datasets.volumes(ctx, store)]


def volume_matches(ctx: Context, store: Store, name: str) -> list[str]:
    """Return 0.7.3's ``zfs list -H -t volume | grep <name> | grep disk0``."""
    return [line for line in shell.grep(name, volume_names(ctx, store)) if "disk0" in line]


def pool_of(dataset: str) -> str:
    """Return the pool part (first component) of a dataset name."""
    return dataset.split("/", 1)[0]


def guest_of(dataset: str) -> str:
    """Return the guest part (third component) of ``<pool>/iohyve/<guest>/...``."""
    parts = dataset.split("/")
    return parts[2] if len(parts) > 2 else ""


def dir_test_0_7_3(ctx: Context, store: Store, name: str, pools: list[str]) -> bool:
    """Return 0.7.3's ``[ -d /iohyve/$pool/$name ] || [ -d /iohyve/$name ]``.

    ``$pool`` holds one line per ``grep`` match; with several, test(1) complains about the second
    word on stderr and the ``||`` branch decides.
    """
    if len(pools) > 1:
        words = shell.words(f"/iohyve/{chr(10).join(pools)}/{name}")
        ctx.output.err(f"[: {words[1]}: unexpected operator")
    elif datasets.mounted_directory_exists(ctx, store, f"/iohyve/{''.join(pools)}/{name}"):
        return True
    return datasets.mounted_directory_exists(ctx, store, f"/iohyve/{name}")


def vm_name(ctx: Context, guest: str, record: Guest) -> str:
    """Return the name iohyve gives the guest's VM (``ioh-<name>``, ``bhyve: ioh-<name>``).

    0.7.6+ use the ``iohyve:name`` property, 0.7.3 the dataset name.
    """
    if ctx.profile.identify_by_name_property:
        return record.props.get("iohyve:name", guest)
    return guest


def running_guest(ctx: Context, store: Store, name: str) -> str | None:
    """Return the guest ``pgrep -fx "bhyve: ioh-<name>"`` finds running, if any."""
    for guest in store.sorted_names():
        record = store.guests[guest]
        if record.running and vm_name(ctx, guest, record) == name:
            return guest
    return None


def by_name_property(store: Store, name: str) -> str | None:
    """Return the dataset whose ``iohyve:name`` matches ``name`` exactly (0.7.6+), if any."""
    if not name:
        return None
    pattern = shell.grep_pattern(name)
    for guest in store.sorted_names():
        value = store.guests[guest].props.get("iohyve:name")
        if value is not None and pattern.fullmatch(value):
            return guest
    return None


def highest_plus_one(ctx: Context, values: list[str], prefix: str) -> str:
    """Return create's next tap/nmdm number: ``sort -V | cut -c<len+1>- | tail -n1`` plus one."""
    if not values:
        return "0"
    last = shell.version_sorted(values)[-1][len(prefix) :]
    if not last:
        return "0"
    if last.isdigit():
        return str(int(last) + 1)
    ctx.output.err("expr: non-numeric argument")
    return ""


# -- zfs set --------------------------------------------------------------------------------------


def open_dataset(ctx: Context, store: Store, path: str) -> tuple[str | None, str | None]:
    """Open ``path`` like ``zfs_open``: return (guest name or None, error line or None).

    The guest name is given only for a guest's own dataset, the one holding its properties.
    """
    dataset, problem = datasets.open_dataset(ctx, store, path)
    if dataset is None or dataset.is_volume:
        return None, problem
    return dataset.guest, None


def zfs_set(ctx: Context, store: Store, argv: list[str]) -> int:
    """Run ``zfs set <argv...>`` (property=value first, then datasets) on the simulated pool."""
    prop, equals, value = argv[0].partition("=") if argv else ("", "", "")
    if not equals or not value:
        # zfs refuses an empty value as a missing one.
        return zfsops.set_usage(ctx)
    status = 0
    targets: list[tuple[str, str | None]] = []
    for path in argv[1:]:
        guest, problem = open_dataset(ctx, store, path)
        if problem is not None:
            ctx.output.err(problem)
            status = 1
        else:
            targets.append((path, guest))
    for path, guest in sorted(targets, key=lambda target: os.fsencode(target[0])):
        if not zfs.valid_user_property(prop):
            ctx.output.err(f"cannot set property for '{path}': invalid property '{prop}'")
            status = 1
        elif guest is not None:
            store.guests[guest].props[prop] = value
            store.dirty = True
    return status


# -- list -----------------------------------------------------------------------------------------


def cmd_list(ctx: Context, args: list[str]) -> int:
    """``iohyve list``: ``Guest VMM? Running rcboot? Description`` through ``column -ts^``."""
    if ctx.profile.list_pager_flag and arg(args, 0) == "-l" and not os.environ.get("PAGER"):
        # 0.7.9 pipes into "$PAGER" but sets a variable of another name when it is unset, so
        # the table goes into an empty command.
        return 0
    lines = ["Guest^VMM?^Running^rcboot?^Description"]
    with ctx.root.locked() as store:
        for guest in store.sorted_names():
            record = store.guests[guest]
            if ctx.profile.identify_by_name_property:
                shown = record.props.get("iohyve:name")
                if shown is None:
                    continue
            else:
                listed = f"{ctx.dataset(guest)}\t/iohyve/{guest}"
                if any(word in listed for word in ("disk", "ISO", "Firmware")):
                    continue
                shown = guest
            vmm = "YES" if record.vmm else "NO"
            running = "YES" if record.running else "NO"
            rcboot = "YES" if record.props.get("iohyve:boot") == "1" else "NO"
            description = record.props.get("iohyve:description", "-")
            lines.append(f"{shown}^{vmm}^{running}^{rcboot}^{description}")
    for line in column_t(lines, "^"):
        ctx.output.out(line)
    return 0


# -- create ---------------------------------------------------------------------------------------


def _create_props(ctx: Context, values: dict[str, str], description: str) -> list[tuple[str, str]]:
    """Return the properties ``create`` sets, in order; ``values`` fills the templates."""
    props = [(prop, template.format(**values)) for prop, template in ctx.profile.create_defaults]
    props.append(("iohyve:description", description))
    props.append(("iohyve:bargs", "-A_-H_-P"))
    props.extend(ctx.profile.create_trailing_props)
    return props


def _create_problems(
    ctx: Context, store: Store, name: str, size: str
) -> tuple[str | None, str | None, int]:
    """Return zfs's errors for creating the guest dataset and its ``disk0`` zvol, and the size."""
    if len(shell.words(name)) > 1:
        # The unquoted name splits into several words: zfs create gets too many arguments.
        return "too many arguments", "too many arguments", 0
    path, volume = ctx.dataset(name), ctx.dataset(name, "disk0")
    exists = name in store.guests or name in _RESERVED
    fs_problem = zfs.name_error("create", path, name, changing=True)
    if fs_problem is None and exists:
        fs_problem = zfs.error("create", path, zfs.ALREADY_EXISTS)
    vol_problem = zfs.name_error("create", volume, name, changing=True)
    if vol_problem is None and exists:
        vol_problem = zfs.error("create", volume, zfs.ALREADY_EXISTS)
    number, unreadable, size_problem = zfsops.volume_size(size)
    if vol_problem is None and unreadable is not None:
        vol_problem = unreadable
    elif vol_problem is None and size_problem is not None:
        vol_problem = zfs.error("create", volume, size_problem)
    return fs_problem, vol_problem, number


def _create_by_set(ctx: Context, store: Store, name: str, props: list[tuple[str, str]]) -> int:
    """0.7.3: one ``zfs set`` per property on ``<pool>/iohyve/<name>``; the last one's status.

    An existing guest is not refused: its properties are overwritten with fresh defaults.
    """
    path = ctx.dataset(name)
    status = 0
    for prop, value in props:
        if prop == "iohyve:description":
            argv = [f"{prop}={value}", path]  # the only quoted assignment
        else:
            argv = [*shell.words(f"{prop}={value}"), *shell.words(path)]
        status = zfs_set(ctx, store, argv)
    return status


def cmd_create(ctx: Context, args: list[str]) -> int:
    """``iohyve create <name> <size>``: the guest dataset, its ``disk0`` zvol and properties.

    ``zfs create -V`` checks the size as libzfs does: a size it cannot read (``10X``), a zero size
    or one that is not a multiple of the 8K block size leave the guest without ``disk0``.
    """
    name, size = arg(args, 0), arg(args, 1)
    profile = ctx.profile
    if profile.argument_checks and not size:
        return ctx.usage("create")
    now = _now()
    if now is None:
        ctx.output.err(f"iohyve-sim: {NOW_ENV} is not a number of seconds")
        return SIMULATOR_ERROR
    with ctx.root.locked() as store:
        if profile.identify_by_name_property:
            if by_name_property(store, name) is not None:
                ctx.output.out("Error: Guest with this name already exists")
                return 1
            guests = [g for g in store.sorted_names() if "iohyve:name" in store.guests[g].props]
        else:
            guests = store.sorted_names()
        values = {
            "name": name,
            "size": size,
            "tap": highest_plus_one(
                ctx, [store.guests[g].props.get("iohyve:tap", "-") for g in guests], "tap"
            ),
            "con": highest_plus_one(
                ctx, [store.guests[g].props.get("iohyve:con", "-") for g in guests], "nmdm"
            ),
        }
        ctx.output.out(f"Creating {name}...")
        props = _create_props(ctx, values, date_text(now))
        fs_problem, vol_problem, volsize = _create_problems(ctx, store, name, size)
        disks = {"disk0": volsize} if vol_problem is None else {}
        if name in _RESERVED or profile.identify_by_name_property:
            # 0.7.6+: one "zfs create -o prop=value ..." for the dataset, then the zvol. The
            # simulator also keeps 0.7.3 guests out of the ISO and Firmware datasets this way.
            if fs_problem is not None:
                ctx.output.err(fs_problem)
            elif name not in _RESERVED:
                store.guests[name] = Guest(dict(props), disks=disks)
                store.dirty = True
            if vol_problem is not None and name not in _RESERVED:
                ctx.output.err(vol_problem)
            return 0 if fs_problem is None and vol_problem is None else 1
        for problem in (fs_problem, vol_problem):
            if problem is not None:
                ctx.output.err(problem)
        if fs_problem is None:
            store.guests[name] = Guest(disks=disks)
            store.dirty = True
        return _create_by_set(ctx, store, name, props)


# -- start and stop -------------------------------------------------------------------------------


def console_started(ctx: Context, guest: str, record: Guest, name: str, iso: str | None) -> None:
    """Start the console program of ``guest`` (started as ``name``; by ``install`` if ``iso``)."""
    con = record.props.get("iohyve:con", "-")
    if con == "-":
        return
    device, pidfile = guestconsole.iohyve_console(ctx.root.path, guest, con)
    poweroff = [sys.executable, "-m", "sysadmd.simulator", "--root", ctx.root.path]
    poweroff += ["--profile", ctx.profile.name, "--pool", ctx.pool, "stop", name]
    guestconsole.start_console(guest, device, pidfile, iso=iso, poweroff=poweroff)


def console_stopped(ctx: Context, guest: str, record: Guest) -> None:
    """End the console program of ``guest``: its VM is gone."""
    con = record.props.get("iohyve:con", "-")
    device, pidfile = guestconsole.iohyve_console(ctx.root.path, guest, con)
    guestconsole.stop_console(pidfile, device)


def _start_target_0_7_3(ctx: Context, store: Store, name: str) -> tuple[str | None, str]:
    """Find the guest 0.7.3's ``start`` acts on; return it (None if invalid) and the dataset
    ``__boot`` marks with ``install=no`` (the first volume the substring grep matched)."""
    matches = volume_matches(ctx, store, name)
    if len(matches) > 1:
        # "[ -d /iohyve/$pool/$name ]" with one pool per matching line splits into several
        # words; test(1) complains about the second one and the "||" branch decides.
        pools = "\n".join(pool_of(match) for match in matches)
        ctx.output.err(f"[: {shell.words(f'/iohyve/{pools}/{name}')[1]}: unexpected operator")
    if name not in store.guests:
        return None, ""
    return name, guest_of(matches[0]) if matches else name


def cmd_start(ctx: Context, args: list[str]) -> int:
    """``iohyve start <name>``: mark the guest's VM as created and running."""
    name = arg(args, 0)
    profile = ctx.profile
    if profile.argument_checks and not name:
        return ctx.usage("start")
    with ctx.root.locked() as store:
        if profile.identify_by_name_property:
            guest = by_name_property(store, name)
            if guest is None:
                ctx.output.out(f"guest {name} doesn't exist")
                return 1
            if store.guests[guest].props.get("iohyve:template") == "YES":
                ctx.output.out(f"{name} is a template. Cannot start")
                return 1
            target = guest
        elif not name:
            # "[ -d /iohyve// ]" is true: the script goes on with an empty name.
            ctx.output.out("Starting ... (Takes 15 seconds for FreeBSD guests)")
            return 0
        else:
            guest, target = _start_target_0_7_3(ctx, store, name)
            if guest is None:
                ctx.output.out("Not a valid guest name")
                return 0
        record = store.guests[guest]
        started: str | None = None
        if record.running:
            ctx.output.out("Guest is already running.")
        else:
            ctx.output.out(f"Starting {name}... (Takes 15 seconds for FreeBSD guests)")
            store.guests[target].props["iohyve:install"] = "no"
            record.vmm = True
            record.running = True
            store.dirty = True
            started = guest
    if started is not None:
        console_started(ctx, started, record, name, None)
    return 0


def cmd_stop(ctx: Context, args: list[str]) -> int:
    """``iohyve stop <name>``: send the ACPI shutdown; here the VM is gone at once."""
    name = arg(args, 0)
    profile = ctx.profile
    if profile.argument_checks and not name:
        return ctx.usage("stop")
    ctx.output.out(f"Stopping {name}...")
    with ctx.root.locked() as store:
        if profile.identify_by_name_property:
            guest = by_name_property(store, name)
        else:
            guest = name if name in store.guests else None
        record = store.guests[guest] if guest is not None else None
        if record is None or not record.running:
            if profile.identify_by_name_property:
                # 0.7.6+ end with this echo and no "exit 1", so the status is 0: the script
                # exits with the status of its last command (reference section 1).
                ctx.output.out(f"{name} not running")
                return 0
            # 0.7.3 runs "kill $pid" with an empty pid.
            ctx.output.err("kill: usage: kill [-s signal_name] pid ...")
            return 2
        record.running = False
        record.vmm = False
        store.dirty = True
    console_stopped(ctx, guest or name, record)
    return 0


# -- set ------------------------------------------------------------------------------------------


def cmd_set(ctx: Context, args: list[str]) -> int:
    """``iohyve set <name> p=v [p=v ...]``: one ``zfs set`` per pair, with iohyve's mangling."""
    name = arg(args, 0)
    pairs = args[1:]
    profile = ctx.profile
    if profile.argument_checks and not (name and pairs):
        return ctx.usage("set")
    if not args:
        # 0.7.3's "shift 2" fails when only the command word is left.
        ctx.output.err("shift: can't shift that many")
        return 2
    with ctx.root.locked() as store:
        if profile.identify_by_name_property:
            guest = by_name_property(store, name)
            if guest is None:
                ctx.output.out(f"Guest {name} doesn't exist!")
                return 1
            target = ctx.dataset(guest)
        else:
            matches = shell.grep(name, volume_names(ctx, store))
            pool = pool_of(matches[0]) if matches else ""
            target = f"{pool}/iohyve/{name}"
        status = 0
        for pair in pairs:
            text = shell.echo_unquoted(pair)
            prop = shell.cut_field(text, "=", 1)
            if profile.set_keeps_all_after_first_equals:
                value = shell.cut_fields_from(text, "=", 2)
            else:
                value = shell.cut_field(text, "=", 2)
            ctx.output.out(f"Setting {name} {prop}={value}...")
            if prop == "bargs":
                quoted = shell.cut_field(shell.echo_unquoted(value), '"', 2).replace(" ", "_")
                argv = [*shell.words(f"iohyve:{prop}={quoted}"), *shell.words(target)]
            elif prop == "description":
                quoted = shell.cut_field(shell.echo_unquoted(value), '"', 2)
                argv = [f"iohyve:{prop}={quoted}", *shell.words(target)]
            else:
                argv = [*shell.words(f"iohyve:{prop}={value}"), *shell.words(target)]
            status = zfs_set(ctx, store, argv)
        return status


# -- getall ---------------------------------------------------------------------------------------


def _getall_0_7_3(ctx: Context, store: Store, name: str) -> list[str]:
    """Return 0.7.3's ``zfs get -H all <dataset> | grep iohyve: | cut -w -f2-3 | cut -c8-``.

    The dataset is ``<pool>/iohyve/<name>`` with the pool taken from the first volume whose
    name contains ``name``; zfs's complaints go to stderr.
    """
    matches = volume_matches(ctx, store, name)
    if not matches:
        # An empty pool makes the argument the path /iohyve/<name>, which zfs get accepts
        # when it is a mounted dataset (/iohyve itself, /iohyve/ISO, /iohyve/Firmware).
        if name not in ("", *_RESERVED):
            ctx.output.err(f"/iohyve/{name}: No such file or directory")
        return []
    path = f"{pool_of(matches[0])}/iohyve/{name}"
    guest, problem = open_dataset(ctx, store, path)
    if problem is not None:
        ctx.output.err(problem)
    if guest is None:
        return []
    lines = []
    for prop, value in store.guests[guest].props.items():
        line = f"{path}\t{prop}\t{value}\tlocal"
        if "iohyve:" in line:
            lines.append(shell.cut_whitespace_fields(line, 2, 3)[len("iohyve:") :])
    return lines


def cmd_getall(ctx: Context, args: list[str]) -> int:
    """``iohyve getall <name>``: the guest's ``iohyve:`` properties."""
    name = arg(args, 0)
    profile = ctx.profile
    if profile.argument_checks and not name:
        return ctx.usage("getall")
    with ctx.root.locked() as store:
        if not profile.getall_sorted_format:
            ctx.output.out(f"Getting {name} props...")
            # The pipeline ends in column -t, whose status is 0.
            for line in column_t(_getall_0_7_3(ctx, store, name)):
                ctx.output.out(line)
            return 0
        guest = by_name_property(store, name) if profile.identify_by_name_property else name
        if guest is None or guest not in store.guests:
            ctx.output.out(f"guest {name} doesn't exist")
            return 1
        ctx.output.out(f"Getting {name} iohyve properties...")
        for line in _getall_sorted(store.guests[guest]):
            ctx.output.out(line)
    return 0


def _getall_sorted(record: Guest) -> list[str]:
    """Return 0.7.4+'s ``zfs get -o property,value all | grep iohyve: | sort | sed s/iohyve://``."""
    width = max([_NATIVE_PROPERTY_WIDTH, *(len(prop) for prop in record.props)]) + 2
    lines = [
        f"{prop.ljust(width)}{value}"
        for prop, value in record.props.items()
        if "iohyve:" in f"{prop}  {value}"
    ]
    lines.sort(key=os.fsencode)
    return [line.replace("iohyve:", "", 1) for line in lines]
