"""The ``vm`` dialect: vm-bhyve's command line, as 1.6.x, 1.7.x or the development line print it.

``iohyve-sim [--root DIR] [--vm-version 1.6|1.7|dev] vm <command> ...`` runs ``vm <command>``
on the host :mod:`~sysadmd.simulator.vmhost` describes (rc.conf, ``$vm_dir`` and the guests'
files below the simulator root). Simulated: ``version``, ``usage``, ``help`` (dev), ``init``,
``list [-r]``, ``info [name ...]``, ``create [-d ds] [-t tpl] [-s size] [-c cpu] [-m mem] name``,
``install [-fi] name iso``, ``start [-fi] name ...``, ``stop name ...``, ``poweroff [-f] name``,
``destroy [-f] name``, ``iso [-46] [-d ds] [url]``, ``add [-d disk|network] [-t file] [-s
size|switch] name``, ``rename old new``, ``switch list``, ``switch create name``, ``switch
add name iface`` and ``datastore list``. The other commands of the real tool print a
simulator error (exit 2).

What is kept from vm-bhyve: errors ``/usr/local/sbin/vm: ERROR: <msg>`` on stderr with
status 1, warnings ``... WARNING: <msg>``, the start-up checks in their order, command
names matched by unique case-insensitive prefix, options read as sh's ``getopts`` reads them
(``--force`` is the letters ``-``, ``f``, ``o`` ...; FreeBSD's tools know no long options),
a missing argument printing the usage (status 1) or, on the development line, the
command's help (status 0), ``vm stop`` always returning 0, ``vm start`` the number of guests
that failed, and ``vm iso URL`` the decompression's status. Prompts read stdin; at its end
(or without one) the answer is yes, as vm-bhyve's ``util::confirm`` loop does. The usage and
help texts name the same commands as the real ones, in shorter words.

No bhyve runs: ``start`` and ``install`` write ``run.lock``, ``console`` and the guest log and
add a ``bhyve: <name>`` process and ``/dev/vmm/<name>``; ``stop`` and ``poweroff`` take them
away again (the guest obeys the ACPI shutdown at once). ``vm_delay`` from rc.conf (default 2)
is slept between guests as the real tool does. The simulated bhyve has no snapshot support,
so a saved state (``<name>.save``, shown as ``Suspended`` from 1.7) is never resumed. ZFS
volumes (``zvol`` disks) are not made by ``vm`` here (``zfs create -V`` makes them, see
:mod:`~sysadmd.simulator.zfscmd`); snapshots, cloud-init and ``list -v`` are not simulated.
"""

from __future__ import annotations

import os
import sys
import time

from sysadmd.simulator import fetch
from sysadmd.simulator.column import column_t
from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.getopt import OptionReader
from sysadmd.simulator.output import Output
from sysadmd.simulator.vmhost import (
    Datastore,
    HostError,
    HostLock,
    Processes,
    VmHost,
    host_path,
    load_host,
    read_conf,
    sysrc_delete,
    sysrc_set,
)

# Importing typing costs milliseconds at every start (see output.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: The dialects and the version each prints.
VERSIONS = {"1.6": "1.6-devel (rev. 106001)", "1.7": "1.7.5", "dev": "1.8-devel"}
DEFAULT_VERSION = "1.7"
PROGRAM = "/usr/local/sbin/vm"

_COMMANDS_BASE = [
    "init",
    "switch",
    "datastore",
    "image",
    "get",
    "set",
    "list",
    "create",
    "destroy",
    "rename",
    "install",
    "start",
    "stop",
    "restart",
    "add",
    "reset",
    "poweroff",
    "startall",
    "stopall",
    "console",
    "iso",
    "img",
    "configure",
    "passthru",
    "_run",
    "info",
    "clone",
    "snapshot",
    "rollback",
    "migrate",
    "version",
    "usage",
]
_COMMANDS_17 = ("edit", "suspend", "suspendall", "discard")
_COMMANDS_DEV = ("help", "tags")

#: A short synopsis per command, for the usage and the development line's help.
_SYNOPSIS = {
    "version": "version",
    "init": "init",
    "switch": "switch list | switch create <name> | switch add <name> <interface>",
    "list": "list [-r]",
    "info": "info [name] [...]",
    "create": "create [-d datastore] [-t template] [-s size] [-m memory] [-c vCPUs] <name>",
    "install": "install [-fi] <name> <iso>",
    "start": "start [-fi] <name> [...]",
    "stop": "stop <name> [...]",
    "poweroff": "poweroff [-f] <name>",
    "destroy": "destroy [-f] <name>",
    "rename": "rename <name> <new-name>",
    "datastore": "datastore list",
    "add": "add [-d device] [-t type] [-s size|switch] <name>",
    "iso": "iso [-46] [-d datastore] [url]",
}

#: How a guest's name must look (``util::check_name`` on FreeBSD 13 and later).
_NAME_MAX_MIDDLE = 229


class Exit(Exception):
    """End the command with ``status`` (``exit`` inside vm-bhyve's functions)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Vm:
    """One ``vm`` invocation: its dialect, output and (after the checks) host."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.version = ctx.vm_version
        self._host: VmHost | None = None

    # -- output ----------------------------------------------------------------------------

    def out(self, line: str) -> None:
        self.ctx.output.out(line)

    def err(self, message: str) -> Exit:
        """Print ``util::err``'s line; the caller raises the result."""
        self.ctx.output.err(f"{PROGRAM}: ERROR: {message}")
        return Exit(1)

    def warn(self, message: str) -> None:
        self.ctx.output.err(f"{PROGRAM}: WARNING: {message}")

    def version_line(self) -> str:
        return f"vm-bhyve: Bhyve virtual machine management v{VERSIONS[self.version]}"

    def usage(self) -> Exit:
        """The full usage (``util::usage``), status 1."""
        self.out(self.version_line())
        self.out("Usage: vm ...")
        for command in self.commands():
            if command in _SYNOPSIS:
                self.out("    " + _SYNOPSIS[command])
        return Exit(1)

    def missing(self, command: str) -> Exit:
        """A missing argument: the usage (1.6, 1.7) or the command's help (dev, status 0)."""
        if self.version != "dev":
            return self.usage()
        self.out("Usage:")
        self.out("    vm " + _SYNOPSIS.get(command, command))
        return Exit(0)

    # -- helpers ---------------------------------------------------------------------------

    def commands(self) -> list[str]:
        names = list(_COMMANDS_BASE)
        if self.version != "1.6":
            names += _COMMANDS_17
        if self.version == "dev":
            names += _COMMANDS_DEV
        return names

    def find(self, word: str, choices: list[str]) -> str | None:
        """``cmd::find``: an exact name, or a unique case-insensitive prefix."""
        if not word:
            raise self.err("no command specified")
        found: str | None = None
        for choice in choices:
            if word == choice:
                return choice
            if choice.lower().startswith(word.lower()):
                if found is not None:
                    raise self.err(f"ambiguous command '{word}'")
                found = choice
        return found

    @property
    def host(self) -> VmHost:
        """The host, once the start-up checks passed."""
        if self._host is None:
            raise HostError("the host was used before vm-bhyve's start-up checks")
        return self._host

    def getopts(
        self, args: list[str], spec: str, *, strict: bool = True
    ) -> tuple[dict[str, str], list[str]]:
        """Read options as sh's ``getopts spec`` does; return them and the operands.

        An unknown letter or a missing value prints sh's message; with ``strict`` (the
        commands with a ``*) util::usage`` branch) it ends in the usage, else it is skipped.
        """
        options: dict[str, str] = {}
        reader = OptionReader(args, spec)
        for letter, value, problem in reader:
            if problem is not None:
                self.ctx.output.err(
                    f"Illegal option -{letter}"
                    if problem == "illegal"
                    else f"No arg for -{letter} option"
                )
                if strict:
                    raise self.usage()
                continue
            options[letter] = value
        return options, reader.operands

    def confirm(self, question: str) -> bool:
        """``util::confirm``: y/n lines from stdin; at its end the answer is yes."""
        stdin = sys.stdin
        try:
            if stdin is None:
                return True
            if stdin.isatty():
                self.ctx.output.err_partial(f"{question} (y/n)? ")
            while True:
                line = stdin.readline()
                if not line:
                    return True
                # read strips blanks; the answer is y* or n*, in lower case only.
                answer = line.strip(" \t\n")
                if answer.startswith("y"):
                    return True
                if answer.startswith("n"):
                    return False
        except (OSError, ValueError):
            return True

    def check_name(self, name: str) -> bool:
        if not 2 <= len(name) <= _NAME_MAX_MIDDLE + 2 or not name.isascii():
            return False
        allowed = "abcdefghijklmnopqrstuvwxyz0123456789"
        lower = name.lower()
        return (
            lower[0] in allowed
            and lower[-1] in allowed
            and all(char in allowed + "._-" for char in lower)
        )

    def log(self, store: Datastore, name: str, message: str) -> None:
        """``util::log guest``: append ``<date>: <message>`` to the guest's log."""
        now = time.time()
        if self.version == "1.6":
            stamp = time.strftime("%b %d %H:%M:%S", time.localtime(now))
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))
            stamp = stamp[:-2] + ":" + stamp[-2:]
        path = self.host.real(f"{self.host.guest_dir(store, name)}/vm-bhyve.log")
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp}: {message}\n")

    def confirm_stopped(
        self, store: Datastore, name: str, processes: Processes, *, skip: bool
    ) -> int:
        """``vm::confirm_stopped``: 0, or 2 (locked) / 1 (vmm exists) after a warning."""
        lock = self.host.real(f"{self.host.guest_dir(store, name)}/run.lock")
        if os.path.exists(lock):
            owner = _first_line(lock)
            if owner != self.host.hostname or not skip:
                self.warn(f"{name} appears to be running on {owner} (locked)")
                return 2
        if name in processes.vmm:
            self.warn(f"{name} appears to be running locally (vmm exists)")
            return 1
        return 0


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.readline().rstrip("\n")
    except OSError:
        return ""


def _human(size: int) -> str:
    """``info::__bytes_human``: divide by 1024 with ``bc``'s three truncated decimals, then
    ``%.3f`` and B/K/M/G/T."""
    thousandths = size * 1000
    unit = 0
    while thousandths // 1000 >= 1024 and unit < 4:
        thousandths //= 1024
        unit += 1
    return f"{thousandths // 1000}.{thousandths % 1000:03d}{'BKMGT'[unit]}"


_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int | None:
    """A size as ``truncate -s`` reads it (``20G``, ``512m``, ``1048576``), or None."""
    number = text.rstrip("bBkKmMgGtTpP")
    suffix = text[len(number) :].lower().rstrip("b") if text[len(number) :] != "" else ""
    if (
        not (number.isascii() and number.isdigit())
        or suffix not in _SUFFIXES
        or len(text) - len(number) > 2
    ):
        return None
    size = int(number) * _SUFFIXES[suffix]
    return size if size < 1 << 63 else None


# -- commands -------------------------------------------------------------------------------------


def _yes(value: str) -> bool:
    """rc.subr's ``checkyesno``."""
    return value.lower() in ("yes", "true", "on", "1")


def _vnc(vm: Vm, directory: str, conf: dict[str, str], pid: int | None) -> str:
    """The VNC cell: the console file's ``vnc=`` value of a running guest with graphics."""
    host = vm.host
    ours = _first_line(host.real(f"{directory}/run.lock")) == host.hostname
    if (pid is None and not ours) or not _yes(conf.get("graphics", "")):
        return "-"
    for line in _read_lines(host.real(f"{directory}/console")):
        if line.startswith("vnc"):
            return line.split("=", 2)[1] if "=" in line else "-"
    return "-"


def _list_row(vm: Vm, store: Datastore, name: str, processes: Processes) -> tuple[str, list[str]]:
    """One guest's state and cells of ``vm list``."""
    host = vm.host
    directory = host.guest_dir(store, name)
    conf = read_conf(host.conf_path(store, name))
    state, pid = _guest_state(vm, directory, name, processes)
    lock = host.real(f"{directory}/run.lock")
    if state == "Stopped" and os.path.exists(lock):
        state = f"Locked ({_first_line(lock)})"
    position = host.autostart(name)
    cells = [
        name,
        store.name,
        conf.get("loader") or "none",
        conf.get("cpu", ""),
        conf.get("memory", ""),
        _vnc(vm, directory, conf, pid),
        "No" if position is None else f"Yes [{position}]",
        state,
    ]
    if vm.version == "dev":
        cells.append(conf.get("tags") or "-")
    return state, cells


def _list(vm: Vm, args: list[str]) -> int:
    options, _ = vm.getopts(args, "rv")
    if "v" in options:
        vm.ctx.output.err("iohyve-sim: vm list -v is not simulated")
        raise Exit(SIMULATOR_ERROR)
    processes = Processes(vm.host.root)
    columns = ["NAME", "DATASTORE", "LOADER", "CPU", "MEMORY", "VNC", "AUTO", "STATE"]
    if vm.version == "dev":
        columns.append("TAGS")
    rows = ["^".join(columns)]
    for store, name in vm.host.guests():
        state, cells = _list_row(vm, store, name, processes)
        if "r" in options and state in ("Stopped", "Suspended"):
            continue
        rows.append("^".join(cells))
    for line in column_t(rows, "^"):
        vm.out(line)
    return 0


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _disks(conf: dict[str, str]) -> list[int]:
    numbers: list[int] = []
    while conf.get(f"disk{len(numbers)}_name"):
        numbers.append(len(numbers))
    return numbers


def _guest_state(vm: Vm, directory: str, name: str, processes: Processes) -> tuple[str, int | None]:
    """``vm::running_check``: the state as ``vm list`` words it (without Locked), and the pid."""
    pid = processes.running(name)
    if pid is not None:
        return f"Running ({pid})", pid
    pid = processes.in_loader(name)
    if pid is not None:
        return f"Bootloader ({pid})", pid
    saved = os.path.exists(vm.host.real(f"{directory}/{name}.save"))
    return ("Suspended" if saved and vm.version != "1.6" else "Stopped"), None


def _info_networks(
    vm: Vm, name: str, conf: dict[str, str], taps: list[str], *, running: bool
) -> None:
    number = 0
    while conf.get(f"network{number}_type"):
        vm.out("")
        vm.out("  network-interface")
        vm.out(f"    number: {number}")
        for key, title in _NETWORK_FIELDS:
            vm.out(f"    {title}: {conf.get(f'network{number}_{key}') or '-'}")
        if running:
            switch = conf.get(f"network{number}_switch", "")
            tap = taps[number] if number < len(taps) else ""
            vm.out(f"    active-device: {tap or '-'}")
            if tap:
                # The simulated guest holds a tap for every interface while it runs.
                vm.out(f"    desc: vmnet/{name}/{number}/{switch}")
                vm.out("    mtu: 1500")
                vm.out(f"    bridge: {'vm-' + switch if switch else '-'}")
                vm.out("    bytes-in: 0 (0.000B)")
                vm.out("    bytes-out: 0 (0.000B)")
        number += 1


_NETWORK_FIELDS = (
    ("type", "emulation"),
    ("switch", "virtual-switch"),
    ("mac", "fixed-mac-address"),
    ("device", "fixed-device"),
)


def _info_disks(vm: Vm, conf: dict[str, str], directory: str) -> None:
    number = 0
    while conf.get(f"disk{number}_name") and conf.get(f"disk{number}_type"):
        disk = conf[f"disk{number}_name"]
        device = conf.get(f"disk{number}_dev") or "file"
        path = disk if device == "custom" else f"{directory}/{disk}"
        vm.out("")
        vm.out("  virtual-disk")
        vm.out(f"    number: {number}")
        vm.out(f"    device-type: {device}")
        vm.out(f"    emulation: {conf[f'disk{number}_type']}")
        vm.out(f"    options: {conf.get(f'disk{number}_opts') or '-'}")
        vm.out(f"    system-path: {path}")
        if device == "file":
            try:
                stat = os.stat(vm.host.real(path))
            except OSError:
                stat = None
            if stat is not None:
                # du(1) counts 1 KiB blocks, rounded up; vm-bhyve multiplies by 1024.
                used = -(-stat.st_blocks * 512 // 1024) * 1024
                vm.out(f"    bytes-size: {stat.st_size} ({_human(stat.st_size)})")
                vm.out(f"    bytes-used: {used} ({_human(used)})")
        number += 1


def _info_guest(vm: Vm, store: Datastore, name: str, processes: Processes) -> None:
    """``info::guest_show``: one guest's block, ended by an empty line."""
    host = vm.host
    directory = host.guest_dir(store, name)
    conf = read_conf(host.conf_path(store, name))
    state, pid = _guest_state(vm, directory, name, processes)
    vm.out("-" * 24)
    vm.out(f"Virtual Machine: {name}")
    vm.out("-" * 24)
    vm.out(f"  state: {state.lower()}")
    vm.out(f"  datastore: {store.name}")
    vm.out(f"  loader: {conf.get('loader') or 'none'}")
    vm.out(f"  uuid: {conf.get('uuid') or 'auto'}")
    vm.out(f"  cpu: {conf.get('cpu') or '-'}")
    if conf.get("cpu_sockets"):
        topology = f"sockets={conf['cpu_sockets']}"
        for key in ("cores", "threads"):
            if conf.get(f"cpu_{key}"):
                topology += f", {key}={conf[f'cpu_{key}']}"
        vm.out(f"  cpu-topology: {topology}")
    vm.out(f"  memory: {conf.get('memory') or '-'}")
    running = name in processes.vmm
    process = processes.table.get(pid) if pid is not None else None
    if running:
        if process is not None and process.rss:
            vm.out(f"  memory-resident: {process.rss} ({_human(process.rss)})")
        console = host.real(f"{directory}/console")
        if os.path.exists(console):
            vm.out("")
            vm.out("  console-ports")
            for line in _read_lines(console):
                vm.out(f"    {line.split('=', 1)[0]}: {line.rsplit('=', 1)[-1]}")
    taps = process.taps if process is not None else []
    _info_networks(vm, name, conf, taps, running=running)
    _info_disks(vm, conf, directory)
    vm.out("")


def _info(vm: Vm, args: list[str]) -> int:
    processes = Processes(vm.host.root)
    if not args:
        targets = vm.host.guests()
    else:
        targets = []
        for name in args:
            store = vm.host.find_guest(name)
            if store is None:
                raise vm.err(f"unable to locate virtual machine '{name}'")
            targets.append((store, name))
    for store, name in targets:
        _info_guest(vm, store, name, processes)
    return 0


def _mac(seed: bytes) -> str:
    return "58:9c:fc:" + ":".join(f"{byte:02x}" for byte in seed[:3])


def _create(vm: Vm, args: list[str]) -> int:  # noqa: PLR0912 - vm-bhyve's checks in order
    options, rest = vm.getopts(args, "d:t:s:i:c:m:Ck:n:u:")
    name = rest[0] if rest else ""
    if not name:
        raise vm.missing("create")
    host = vm.host
    if not vm.check_name(name):
        raise vm.err(f"invalid virtual machine name - '{name}'")
    existing = host.find_guest(name)
    if existing is not None:
        raise vm.err(f"virtual machine already exists in {existing.path}/{name}")
    store = host.datastore(options.get("d", "default"))
    if store is None:
        raise vm.err(f"unable to load datastore - '{options.get('d', 'default')}'")
    if any(letter in options for letter in "iCknu"):
        vm.ctx.output.err("iohyve-sim: vm create: cloud images and cloud-init are not simulated")
        raise Exit(SIMULATOR_ERROR)
    template = options.get("t", "default")
    template_path = f"{host.vm_dir}/.templates/{template}.conf"
    if not os.path.isfile(host.real(template_path)):
        raise vm.err(f"unable to find template {template_path}")
    with open(host.real(template_path), "rb") as handle:
        template_bytes = handle.read()
    tpl = read_conf(host.real(template_path))
    if not tpl.get("disk0_name"):
        raise vm.err("template is missing disk0_name specification")
    for number in _disks(tpl):
        if (tpl.get(f"disk{number}_dev") or "file") in ("zvol", "sparse-zvol"):
            vm.ctx.output.err("iohyve-sim: vm create: ZFS volumes are not simulated")
            raise Exit(SIMULATOR_ERROR)
    directory = host.real(host.guest_dir(store, name))
    os.makedirs(directory, exist_ok=True)
    conf = host.conf_path(store, name)
    with open(conf, "wb") as handle:
        handle.write(template_bytes)
    import uuid  # noqa: PLC0415

    sysrc_set(conf, "uuid", str(uuid.uuid4()))
    sysrc_set(conf, "network0_mac", _mac(os.urandom(3)))
    if options.get("c"):
        sysrc_set(conf, "cpu", options["c"])
    if options.get("m"):
        sysrc_set(conf, "memory", options["m"])
    for number in _disks(tpl):
        size_text = tpl.get(f"disk{number}_size") or "20G"
        if number == 0 and options.get("s"):
            size_text = options["s"]
        device = tpl.get(f"disk{number}_dev") or "file"
        if device not in ("custom", "iscsi"):
            disk = host.real(f"{host.guest_dir(store, name)}/{tpl[f'disk{number}_name']}")
            _make_disk(vm, disk, size_text)
            os.chmod(disk, 0o600)
        sysrc_delete(conf, f"disk{number}_size")
    return 0


def _make_disk(vm: Vm, disk: str, size_text: str) -> None:
    """``truncate -s <size> <disk>``, or vm-bhyve's error when it fails."""
    size = parse_size(size_text)
    if size is None:
        vm.ctx.output.err(f"truncate: invalid size '{size_text}'")
        raise vm.err("failed to create sparse file for disk image")
    try:
        with open(disk, "ab") as handle:
            handle.truncate(size)
    except OSError as exc:
        vm.ctx.output.err(f"truncate: {disk.rsplit('/', 1)[-1]}: {exc.strerror}")
        raise vm.err("failed to create sparse file for disk image") from exc


def _start_one(vm: Vm, name: str, iso: str | None, processes: Processes) -> int:
    host = vm.host
    vm.out(f"Starting {name}")
    store = host.find_guest(name)
    if store is None:
        vm.out(f"  ! {name} does not seem to be a valid virtual machine")
        return 1
    directory = host.guest_dir(store, name)
    vm.out(f"  * found guest in {directory}")
    quiet = _Quiet(vm)
    if vm.confirm_stopped(store, name, processes, skip=True) != 0:
        quiet.restore()
        vm.out("  ! guest appears to be running already")
        return 1
    quiet.restore()
    conf = read_conf(host.conf_path(store, name))
    if not conf.get("cpu") or not conf.get("memory"):
        vm.out("  ! incomplete virtual machine configuration")
        return 1
    vm.out("  * booting...")
    _boot(vm, store, name, conf, iso, processes)
    return 0


class _Quiet:
    """Drop a command's stderr (``>/dev/null 2>&1``) until :meth:`restore`."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.saved = vm.ctx.output
        import io  # noqa: PLC0415

        vm.ctx.output = Output(io.StringIO(), io.StringIO())

    def restore(self) -> None:
        self.vm.ctx.output = self.saved


def _boot(  # noqa: PLR0917 - the guest, its conf, the ISO and the process table
    vm: Vm, store: Datastore, name: str, conf: dict[str, str], iso: str | None, processes: Processes
) -> None:
    """What ``vm _run`` leaves behind once bhyve runs: lock, console file, log, process."""
    host = vm.host
    directory = host.guest_dir(store, name)
    with open(host.real(f"{directory}/run.lock"), "w", encoding="utf-8") as handle:
        handle.write(host.hostname + "\n")
    system = host.system_conf()
    lines = []
    ports = (conf.get("comports") or "com1").split()
    for port in ports:
        if system.get("console") == "tmux":
            if port == ports[0]:
                lines.append(f"{port}=tmux/{name.replace('.', '~')}")
        elif port[:3] == "com" and port[3:].isdigit():
            lines.append(f"{port}=/dev/nmdm-{name}.{port[3:]}B")
    if _yes(conf.get("graphics", "")):
        listen = conf.get("graphics_listen") or "0.0.0.0"  # noqa: S104 - vm-bhyve's default
        lines.append(f"vnc={listen}:{conf.get('graphics_port') or '5900'}")
    with open(host.real(f"{directory}/console"), "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    if iso is not None:
        device = f"-s 3:0,ahci-cd,{iso},ro" + (",bootindex=1" if vm.version != "1.6" else "")
        vm.log(store, name, f" [bhyve iso device: {device}]")
    vm.log(store, name, "booting")
    vm.log(store, name, "starting bhyve (run 1)")
    networks = 0
    while conf.get(f"network{networks}_type"):
        networks += 1
    size = parse_size(conf.get("memory", "")) or 0
    processes.spawn(f"bhyve: {name}", size // 4, processes.free_taps(networks))
    processes.create_vmm(name)
    processes.save()


def _halt(vm: Vm, name: str, processes: Processes, status: int) -> None:
    """The guest's bhyve exited with ``status`` and ``vm _run`` cleans up."""
    for pid in [pid for pid, p in processes.table.items() if p.title.split()[-1:] == [name]]:
        del processes.table[pid]
    processes.destroy_vmm(name)
    processes.save()
    store = vm.host.find_guest(name)
    if store is None:
        return
    directory = vm.host.guest_dir(store, name)
    for leaf in ("console", "run.lock"):
        path = vm.host.real(f"{directory}/{leaf}")
        if os.path.exists(path):
            os.unlink(path)
    vm.log(store, name, f"bhyve exited with status {status}")
    vm.log(store, name, "stopped")


def _install(vm: Vm, args: list[str]) -> int:
    _, rest = vm.getopts(args, "fitv", strict=False)
    if len(rest) < 2 or not rest[0] or not rest[1]:
        raise vm.missing("install")
    iso = _iso_find(vm, rest[1])
    if iso is None:
        raise vm.err(f"unable to locate iso file - '{rest[1]}'")
    return _start_one(vm, rest[0], iso, Processes(vm.host.root))


def _start(vm: Vm, args: list[str]) -> int:
    """``vm start``: the lock is held for each guest, not while waiting between them."""
    _, rest = vm.getopts(args, "fitv", strict=False)
    if not rest or not rest[0]:
        raise vm.missing("start")
    delay = vm.host.rc.get("vm_delay") or "2"
    failed = 0
    for index, name in enumerate(rest):
        if not name:
            break
        if index:
            vm.out(f"Waiting {delay} second(s)")
            time.sleep(float(delay) if delay.isascii() and delay.isdigit() else 0)
        with HostLock(vm.host.root):
            failed += _start_one(vm, name, None, Processes(vm.host.root))
    return failed % 256


def _iso_find(vm: Vm, iso: str) -> str | None:
    """``datastore::iso_find``: the ISO's host path (an absolute path, then the ISO stores;
    the simulated host has no current directory to look in)."""
    host = vm.host
    if iso.startswith("/") and os.access(host.real(iso), os.R_OK):
        return iso
    for _, directory in host.iso_dirs():
        if iso and os.path.isfile(host.real(f"{directory}/{iso}")):
            return f"{directory}/{iso}"
    return None


def _stop(vm: Vm, args: list[str]) -> int:
    if not args or not args[0]:
        raise vm.missing("stop")
    processes = Processes(vm.host.root)
    for name in args:
        if not name:
            break
        if name not in processes.vmm:
            vm.warn(f"{name} doesn't appear to be a running virtual machine")
            continue
        if processes.running(name) is not None:
            vm.out(f"Sending ACPI shutdown to {name}")
            _halt(vm, name, processes, 1)
            _discard_state(vm, name)
        elif processes.in_loader(name) is not None:
            if vm.confirm(f"Guest {name} is in bootloader stage, do you wish to force exit"):
                vm.out(f"Killing {name}")
                _halt(vm, name, processes, 1)
        else:
            vm.warn(f"unable to locate process id for {name}")
    return 0


def _discard_state(vm: Vm, name: str) -> None:
    if vm.version == "1.6":
        return
    store = vm.host.find_guest(name)
    if store is not None:
        saved = vm.host.real(f"{vm.host.guest_dir(store, name)}/{name}.save")
        if os.path.exists(saved):
            os.unlink(saved)


def _poweroff(vm: Vm, args: list[str]) -> int:
    options, rest = vm.getopts(args, "fitv", strict=False)
    name = rest[0] if rest else ""
    if not name:
        raise vm.missing("poweroff")
    processes = Processes(vm.host.root)
    if name not in processes.vmm:
        raise vm.err(f"{name} doesn't appear to be a running virtual machine")
    if "f" not in options and not vm.confirm(
        "Are you sure you want to forcefully poweroff this virtual machine"
    ):
        return 0
    _halt(vm, name, processes, 1)
    _discard_state(vm, name)
    return 0


def _destroy(vm: Vm, args: list[str]) -> int:
    options, rest = vm.getopts(args, "fitv", strict=False)
    name = rest[0] if rest else ""
    if not name:
        raise vm.missing("destroy")
    if "@" in name:
        vm.ctx.output.err("iohyve-sim: vm destroy: ZFS snapshots are not simulated")
        return SIMULATOR_ERROR
    store = vm.host.find_guest(name)
    if store is None:
        raise vm.err(f"{name} doesn't appear to be a valid virtual machine")
    if vm.confirm_stopped(store, name, Processes(vm.host.root), skip=False) != 0:
        return 1
    if "f" not in options and not vm.confirm(
        "Are you sure you want to completely remove this virtual machine"
    ):
        return 0
    import shutil  # noqa: PLC0415

    shutil.rmtree(vm.host.real(vm.host.guest_dir(store, name)))
    return 0


def _rename(vm: Vm, args: list[str]) -> int:
    old = args[0] if args else ""
    new = args[1] if len(args) > 1 else ""
    if not old or not new:
        raise vm.missing("rename")
    host = vm.host
    if not vm.check_name(new):
        # vm-bhyve names an unset variable here, so the name shows empty.
        raise vm.err("invalid virtual machine name - ''")
    clash = host.find_guest(new)
    if clash is not None:
        raise vm.err(f"directory {clash.path}/{new} already exists")
    store = host.find_guest(old)
    if store is None:
        raise vm.err(f"{old} doesn't appear to be a valid virtual machine")
    if vm.confirm_stopped(store, old, Processes(host.root), skip=False) != 0:
        return 1
    old_dir = host.real(host.guest_dir(store, old))
    new_dir = host.real(host.guest_dir(store, new))
    try:
        os.rename(old_dir, new_dir)
    except OSError as exc:
        raise vm.err("failed to rename guest directory") from exc
    os.rename(os.path.join(new_dir, f"{old}.conf"), os.path.join(new_dir, f"{new}.conf"))
    return 0


def _add(vm: Vm, args: list[str]) -> int:
    options, rest = vm.getopts(args, "d:t:s:")
    name = rest[0] if rest else ""
    if not name:
        raise vm.missing("add")
    host = vm.host
    store = host.find_guest(name)
    if store is None:
        # vm-bhyve runs the message as a command: sh reports it missing and goes on.
        vm.ctx.output.err(
            f"{PROGRAM}: {name} does not appear to be a valid virtual machine: not found"
        )
    device = options.get("d", "")
    if device not in ("disk", "network"):
        raise vm.err("device must be one of the following: disk network")
    value = options.get("s", "")
    conf_path = host.conf_path(store, name) if store is not None else ""
    conf = read_conf(conf_path) if conf_path else {}
    if device == "network":
        if not value:
            raise vm.missing("add")
        number = 0
        emulation = "virtio-net"
        while conf.get(f"network{number}_type"):
            emulation = conf[f"network{number}_type"]
            number += 1
        if store is None:
            raise vm.err("unable to locate guest configuration")
        sysrc_set(conf_path, f"network{number}_type", emulation)
        sysrc_set(conf_path, f"network{number}_switch", value)
        return 0
    kind = options.get("t") or "file"
    if not value:
        raise vm.missing("add")
    numbers = _disks(conf)
    emulation = conf.get(f"disk{numbers[-1]}_type", "") if numbers else ""
    if not emulation or store is None:
        raise vm.err("failed to get emulation type of the existing guest disks")
    number = len(numbers)
    if kind in ("zvol", "sparse-zvol"):
        vm.ctx.output.err("iohyve-sim: vm add: ZFS volumes are not simulated")
        return SIMULATOR_ERROR
    if kind != "file":
        raise vm.err("device type must be one of the following: zvol sparse-zvol file")
    _make_disk(vm, host.real(f"{host.guest_dir(store, name)}/disk{number}.img"), value)
    sysrc_set(conf_path, f"disk{number}_name", f"disk{number}.img")
    sysrc_set(conf_path, f"disk{number}_type", emulation)
    sysrc_set(conf_path, f"disk{number}_dev", kind)
    return 0


def _iso(vm: Vm, args: list[str]) -> int:
    options, rest = vm.getopts(args, "46d:u")
    host = vm.host
    url = rest[0] if rest else ""
    if not url:
        vm.out(f"{'DATASTORE':<20}FILENAME")
        for datastore, directory in host.iso_dirs():
            try:
                entries = sorted(os.listdir(host.real(directory)), key=os.fsencode)
            except OSError:
                continue
            for entry in entries:
                # ls -1 shows no dot files (a download in progress is one).
                words = entry.split()
                if words and not entry.startswith("."):
                    vm.out(f"{datastore:<20}{words[0]}")
        return 0
    wanted = options.get("d", "default")
    found = dict(host.iso_dirs()).get(wanted)
    if found is None:
        raise vm.err(f"unable to locate path for datastore '{wanted}'")
    target = f"{found}/{fetch.output_file_name(url)}"
    _download(vm, url, host.real(target), target)
    return _decompress(vm, host.real(target))


def _download(vm: Vm, url: str, destination: str, shown: str) -> int:
    """``fetch -o <dir> <url>`` (:func:`~sysadmd.simulator.fetch.download`); a signal ends
    the command with that signal (:attr:`Context.terminated`), as the killed script would."""
    status, signum = fetch.download(url, destination, shown, vm.ctx.output)
    if signum is not None:
        vm.ctx.terminated = signum
        raise Exit(128 + signum)
    return status


def _decompress(vm: Vm, path: str) -> int:
    """``core::decompress``: ``.xz`` with xz -d, ``.tar.gz`` unpacked beside it and deleted,
    ``.gz`` with gunzip; other names as they are."""
    import gzip  # noqa: PLC0415
    import lzma  # noqa: PLC0415

    opener: Callable[[str], lzma.LZMAFile | gzip.GzipFile]
    if path.endswith(".xz"):
        opener = lzma.LZMAFile
    elif path.endswith(".tar.gz"):
        return _untar(vm, path)
    elif path.endswith(".gz"):
        opener = gzip.GzipFile
    else:
        return 0
    target = path[:-3]
    if not os.path.exists(path):
        vm.ctx.output.err(f"{os.path.basename(path)}: No such file or directory")
        return 1
    try:
        with opener(path) as source, open(target, "wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
    except (OSError, EOFError) as exc:
        vm.ctx.output.err(f"{os.path.basename(path)}: {exc}")
        if os.path.exists(target):
            os.unlink(target)
        return 1
    os.unlink(path)
    return 0


def _untar(vm: Vm, path: str) -> int:
    """``tar Szxf <file> -C <dir>`` then ``rm -f <file>``: the status is rm's, always 0."""
    import tarfile  # noqa: PLC0415

    try:
        with tarfile.open(path, "r:gz") as archive:
            # Members may not leave the directory, as bsdtar refuses ".." and absolute paths.
            for member in archive.getmembers():
                name = os.path.normpath(member.name)
                if name.startswith(("/", "..")) or not (member.isfile() or member.isdir()):
                    raise tarfile.TarError(f"{member.name}: refusing to extract")
            if hasattr(tarfile, "data_filter"):
                archive.extractall(os.path.dirname(path), filter="data")
            else:  # Python before 3.11.4: the members were checked above
                archive.extractall(os.path.dirname(path))  # noqa: S202
    except (OSError, EOFError, tarfile.TarError) as exc:
        vm.ctx.output.err(f"tar: {exc}")
    if os.path.exists(path):
        os.unlink(path)
    return 0


def _switch(vm: Vm, args: list[str]) -> int:  # noqa: PLR0912 - one branch per subcommand
    host = vm.host
    word = (
        vm.find(
            args[0],
            [
                "create",
                "list",
                "destroy",
                "add",
                "remove",
                "vlan",
                "nat",
                "address",
                "private",
                "info",
            ],
        )
        if args
        else None
    )
    if args == [] or word is None:
        if not args:
            raise vm.err("no command specified")
        raise vm.usage()
    system_path = host.real(f"{host.vm_dir}/.config/system.conf")
    system = read_conf(system_path)
    switches = system.get("switch_list", "").split()
    rest = args[1:]
    if word == "list":
        rows = ["NAME^TYPE^IFACE^ADDRESS^PRIVATE^MTU^VLAN^PORTS"]
        for name in switches:
            ports = system.get(f"ports_{name}") or "-"
            rows.append(
                f"{name}^{system.get(f'type_{name}') or 'standard'}^vm-{name}^"
                f"{system.get(f'addr_{name}') or '-'}^{system.get(f'private_{name}') or 'no'}^"
                f"{system.get(f'mtu_{name}') or '-'}^{system.get(f'vlan_{name}') or '-'}^{ports}"
            )
        for line in column_t(rows, "^"):
            vm.out(line)
        return 0
    if word == "create":
        options, operands = vm.getopts(rest, "t:i:n:m:a:b:p")
        name = operands[0] if operands else ""
        if not name:
            raise vm.missing("switch")
        if not vm.check_name(name):
            raise vm.err(f"invalid switch name - '{name}'")
        if name in switches:
            raise vm.err(f"switch {name} already exists")
        if options.get("t", "standard") != "standard":
            vm.ctx.output.err("iohyve-sim: vm switch create: only standard switches are simulated")
            return SIMULATOR_ERROR
        sysrc_set(system_path, "switch_list", " ".join([*switches, name]))
        sysrc_set(system_path, f"type_{name}", "standard")
        if options.get("i"):
            sysrc_set(system_path, f"ports_{name}", options["i"])
        return 0
    if word == "add":
        if len(rest) < 2 or not rest[0] or not rest[1]:
            raise vm.missing("switch")
        name, interface = rest[0], rest[1]
        if name not in switches or not system.get(f"type_{name}"):
            raise vm.err("unable to configure switch of unknown type")
        members = system.get(f"ports_{name}", "").split()
        sysrc_set(system_path, f"ports_{name}", " ".join([*members, interface]))
        return 0
    vm.ctx.output.err(f"iohyve-sim: vm switch {word} is not simulated")
    return SIMULATOR_ERROR


_DEFAULT_TEMPLATE = (
    'loader="bhyveload"\ncpu=1\nmemory=256M\nnetwork0_type="virtio-net"\n'
    'network0_switch="public"\ndisk0_type="virtio-blk"\ndisk0_name="disk0.img"\n'
)


def _datastore(vm: Vm, args: list[str]) -> int:
    """``vm datastore list`` (``printf "%-15s %-11s %-25s %s"``)."""
    word = vm.find(args[0], ["list", "add", "remove", "iso", "img"]) if args else ""
    if word is None:
        raise vm.usage()
    if word != "list":
        vm.ctx.output.err(f"iohyve-sim: vm datastore {word} is not simulated")
        return SIMULATOR_ERROR
    vm.out(f"{'NAME':<15} {'TYPE':<11} {'PATH':<25} ZFS DATASET")
    for store in vm.host.datastores():
        if store.name == "default":
            dataset = vm.host.dataset or "-"
        else:
            dataset = store.path[1:] if store.kind == "zfs" else "-"
        vm.out(f"{store.name:<15} {store.kind:<11} {store.path:<25} {dataset}")
    return 0


def _init(vm: Vm, args: list[str]) -> int:
    """``vm init``: the directories exist already; add the example ``default`` template."""
    template = vm.host.real(f"{vm.host.vm_dir}/.templates/default.conf")
    if not os.path.exists(template):
        with open(template, "w", encoding="utf-8") as handle:
            handle.write(_DEFAULT_TEMPLATE)
    return 0


_HANDLERS = {
    "list": _list,
    "info": _info,
    "create": _create,
    "install": _install,
    "start": _start,
    "stop": _stop,
    "poweroff": _poweroff,
    "destroy": _destroy,
    "rename": _rename,
    "add": _add,
    "iso": _iso,
    "switch": _switch,
    "datastore": _datastore,
    "init": _init,
}


def run_vm(ctx: Context, args: list[str]) -> int:
    """Run ``vm <args>`` and return its exit status."""
    vm = Vm(ctx)
    try:
        return _run(vm, args)
    except Exit as done:
        return done.status
    except HostError as exc:
        ctx.output.err(f"{PROGRAM}: ERROR: {exc}")
        return 1


def _run(vm: Vm, args: list[str]) -> int:
    word = args[0] if args else ""
    command = vm.find(word, vm.commands())
    if command == "version":
        vm.out(vm.version_line())
        return 0
    if command == "usage":
        raise vm.usage()
    if command == "help":
        topic = vm.find(args[1], vm.commands()) if len(args) > 1 and args[1] else None
        if topic is None or topic in ("usage", "version", "init", "help"):
            raise vm.usage()
        raise vm.missing(topic)
    vm._host = load_host(vm.ctx.root)
    if command is None:
        raise vm.usage()
    handler = _HANDLERS.get(command)
    if handler is None:
        vm.ctx.output.err(f"iohyve-sim: vm {command} is not simulated")
        return SIMULATOR_ERROR
    if command in _OWN_LOCKING:
        return handler(vm, args[1:])
    with HostLock(vm.ctx.root):
        return handler(vm, args[1:])


#: Commands that take the lock themselves: start waits between guests, iso downloads (into a
#: temporary file renamed when complete) and only reads otherwise.
_OWN_LOCKING = ("start", "iso")


__all__ = ["DEFAULT_VERSION", "VERSIONS", "host_path", "run_vm"]
