"""Pure parsers for vm-bhyve: the ``vm`` command's text output and the guest files.

Text in, plain data out; anything these functions cannot read with certainty is a
:class:`ParseError` naming what is wrong, never a guess. vm-bhyve has no
machine-readable output: ``vm list`` is a ``column -t`` table (cut here at the
header's offsets, since STATE and AUTO cells hold spaces), ``vm info`` an indented
report, ``vm iso`` a ``printf "%-20s%s"`` table, and a guest's ``<name>.conf`` the
sysrc syntax that vm-bhyve reads with its own, narrower rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from sysadmd.backends._interface import IsoInfo


class ParseError(ValueError):
    """vm-bhyve printed (or a guest file holds) something these parsers cannot read."""


#: The three ``vm`` dialects: tagged 1.6.x, tagged 1.7.x, and master (1.8-devel).
Dialect = Literal["1.6", "1.7", "dev"]
DIALECTS: Final[tuple[Dialect, ...]] = ("1.6", "1.7", "dev")

#: A guest's run state as ``vm list`` tells it.
GuestState = Literal["stopped", "running", "bootloader", "suspended", "locked"]


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


# ``vm version``

_VERSION = re.compile(r"vm-bhyve: Bhyve virtual machine management v(\S+)(?: \(rev\. \d+\))?")


def parse_version(text: str) -> Dialect:
    """The dialect of ``vm version``'s line (``v1.6-devel (rev. 106001)``, ``v1.7.5``,
    ``v1.8-devel``)."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise ParseError(f"vm version printed no version line: {text.strip()[:80]!r}")
    number = match.group(1)
    if re.fullmatch(r"1\.6(?:\.\d+|-devel)", number):
        return "1.6"
    if re.fullmatch(r"1\.7\.\d+", number):
        return "1.7"
    if re.fullmatch(r"1\.8-devel", number):
        return "dev"
    raise ParseError(f"vm-bhyve version {number!r} is not one of 1.6.x, 1.7.x or 1.8-devel")


# A guest's ``<name>.conf``

_CONF_KEY = re.compile(r"[a-z][a-z0-9_]*")


def parse_conf(text: str) -> dict[str, str]:
    """Parse a guest's ``<name>.conf`` the way vm-bhyve reads it, into ``{key: value}``.

    vm-bhyve reads only lines that start with a lowercase letter, drops everything
    from ``#`` on (even inside quotes), removes double quotes and strips trailing
    spaces. Blank lines and lines starting with ``#`` are skipped. Refused, because
    vm-bhyve would ignore or misread them while sysrc reads them otherwise: a setting
    line not starting with a lowercase letter, a line without ``key=``, a key that is
    not a shell variable name, unbalanced double quotes (a ``#`` inside quotes cuts
    them), single quotes (kept literally by vm-bhyve), and a key given twice.
    """
    conf: dict[str, str] = {}
    for number, raw in enumerate(_lines(text), start=1):
        stripped = raw.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        if not raw[0].islower() or not raw[0].isascii():
            raise ParseError(
                f"conf line {number}: vm-bhyve reads only lines that start with a "
                f"lowercase letter, and would ignore {raw[:60]!r}"
            )
        line = raw.split("#", 1)[0].rstrip(" \t")
        key, equals, value = line.partition("=")
        if not equals:
            raise ParseError(f"conf line {number}: {raw[:60]!r} is not key=value")
        if _CONF_KEY.fullmatch(key) is None:
            raise ParseError(f"conf line {number}: {key[:60]!r} is not a valid setting name")
        if value.count('"') % 2:
            raise ParseError(
                f"conf line {number}: the double quotes of {key} do not pair up "
                "(vm-bhyve drops everything from '#', even inside quotes)"
            )
        if "'" in value:
            raise ParseError(
                f"conf line {number}: the value of {key} holds a single quote, "
                "which vm-bhyve keeps literally and sysrc does not"
            )
        if key in conf:
            raise ParseError(f"conf line {number}: {key} is set twice")
        conf[key] = value.replace('"', "").rstrip(" \t")
    return conf


def conf_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored in a guest conf so that vm-bhyve reads it back
    unchanged, or None when it can."""
    if any(char in value for char in "#\"'\n\r\\$`"):
        return "it holds one of # \" ' \\ $ ` or a line break"
    if value != value.rstrip(" \t"):
        return "it ends in white space"
    if not value.isprintable():
        return "it holds a control character"
    return None


def render_conf(conf: Mapping[str, str]) -> str:
    """Write ``conf`` in sysrc's ``key="value"`` form; :func:`parse_conf` reads it back.

    A key that is not a setting name or a value vm-bhyve would misread raises
    :class:`ParseError`.
    """
    lines = []
    for key, value in conf.items():
        if _CONF_KEY.fullmatch(key) is None:
            raise ParseError(f"{key[:60]!r} is not a valid setting name")
        problem = conf_value_problem(value)
        if problem is not None:
            raise ParseError(f"the value of {key} cannot be stored: {problem}")
        lines.append(f'{key}="{value}"\n')
    return "".join(lines)


# ``vm list``

_LIST_COLUMNS: Final = ("NAME", "DATASTORE", "LOADER", "CPU", "MEMORY", "VNC", "AUTO", "STATE")

# What each cell of a ``vm list`` row may hold. A row whose empty CPU or MEMORY cell
# ``column -t`` dropped is shifted left, and its cells then fail these patterns.
_CELL: Final[Mapping[str, re.Pattern[str]]] = {
    "NAME": re.compile(r"[A-Za-z0-9][.A-Za-z0-9_-]{0,229}[A-Za-z0-9]"),
    "DATASTORE": re.compile(r"[A-Za-z0-9_.-]+"),
    "LOADER": re.compile(r"[a-z][a-z0-9-]*"),
    "CPU": re.compile(r"[0-9]+"),
    "MEMORY": re.compile(r"[0-9]+[A-Za-z]?"),
    "VNC": re.compile(r"-|\S+:[0-9]+"),
    "AUTO": re.compile(r"No|Yes \[([0-9]+)\]"),
    "STATE": re.compile(r"Stopped|Suspended|(Running|Bootloader) \(([0-9]+)\)|Locked \((\S+)\)"),
    "TAGS": re.compile(r"-|[^\s,]+(?:,[^\s,]+)*"),
}


@dataclass(frozen=True)
class ListedGuest:
    """One row of ``vm list``.

    ``cpu`` and ``memory`` are the conf's values as printed (``2``, ``512M``);
    ``vnc`` is ``host:port`` while the guest runs with graphics, else None;
    ``autostart_order`` is the guest's 1-based place in rc.conf's ``vm_list``;
    ``pid`` is set for ``running`` and ``bootloader``, ``lock_host`` for ``locked``;
    ``tags`` is empty before master.
    """

    name: str
    datastore: str
    loader: str
    cpu: str
    memory: str
    vnc: str | None
    autostart: bool
    autostart_order: int | None
    state: GuestState
    pid: int | None = None
    lock_host: str | None = None
    tags: tuple[str, ...] = ()


def _header_offsets(header: str, columns: tuple[str, ...]) -> list[int]:
    if tuple(header.split()) != columns:
        raise ParseError(
            f"vm list printed the header {header.strip()[:120]!r}, expected the columns "
            + " ".join(columns)
        )
    offsets: list[int] = []
    position = 0
    for word in columns:
        position = header.index(word, position)
        offsets.append(position)
        position += len(word)
    if offsets[0] != 0:
        raise ParseError("vm list's header does not start at the first column")
    return offsets


def _cut_row(line: str, offsets: list[int], columns: tuple[str, ...]) -> dict[str, re.Match[str]]:
    cells: dict[str, re.Match[str]] = {}
    for i, (start, column) in enumerate(zip(offsets, columns, strict=True)):
        end = offsets[i + 1] if i + 1 < len(offsets) else len(line)
        if start > 0 and line[start - 1 : start] not in (" ", ""):
            raise ParseError(
                f"vm list row {line[:60]!r}: {column} does not line up with its header"
            )
        cell = line[start:end].rstrip(" ")
        if not cell or cell.startswith(" "):
            raise ParseError(
                f"vm list row {line[:60]!r}: the {column} cell is empty or misaligned "
                "(column -t drops empty cells, shifting the row)"
            )
        match = _CELL[column].fullmatch(cell)
        if match is None:
            raise ParseError(f"vm list row {line[:60]!r}: {cell!r} is not a valid {column}")
        cells[column] = match
    return cells


def parse_list(text: str, version: Dialect) -> dict[str, ListedGuest]:
    """Parse ``vm list`` (without ``-v``) of the given dialect into ``{name: guest}``.

    The header must be the dialect's (TAGS only on master); each row is cut at the
    header's offsets and every cell checked, so a row shifted by an empty cell is an
    error instead of a misreading. ``Suspended`` does not exist in 1.6. No output, or
    only the header, is ``{}``.
    """
    if version not in DIALECTS:
        raise ParseError(f"{version!r} is not a vm-bhyve dialect ({', '.join(DIALECTS)})")
    columns = _LIST_COLUMNS + (("TAGS",) if version == "dev" else ())
    lines = [line.rstrip(" ") for line in _lines(text) if line.strip()]
    if not lines:
        return {}
    offsets = _header_offsets(lines[0], columns)
    guests: dict[str, ListedGuest] = {}
    for line in lines[1:]:
        matches = _cut_row(line, offsets, columns)
        cells = {column: match.group(0) for column, match in matches.items()}
        name = cells["NAME"]
        if name in guests:
            raise ParseError(f"vm list printed the guest {name!r} twice")
        auto, state = matches["AUTO"], matches["STATE"]
        if cells["STATE"] == "Suspended" and version == "1.6":
            raise ParseError(f"vm list 1.6 has no Suspended state, yet printed it for {name!r}")
        word = cells["STATE"].split(" ", 1)[0].lower()
        guests[name] = ListedGuest(
            name=name,
            datastore=cells["DATASTORE"],
            loader=cells["LOADER"],
            cpu=cells["CPU"],
            memory=cells["MEMORY"],
            vnc=None if cells["VNC"] == "-" else cells["VNC"],
            autostart=auto.group(1) is not None,
            autostart_order=None if auto.group(1) is None else int(auto.group(1)),
            state=_STATES[word],
            pid=None if state.group(2) is None else int(state.group(2)),
            lock_host=state.group(3),
            tags=() if cells.get("TAGS", "-") == "-" else tuple(cells["TAGS"].split(",")),
        )
    return guests


_STATES: Final[Mapping[str, GuestState]] = {
    "stopped": "stopped",
    "running": "running",
    "bootloader": "bootloader",
    "suspended": "suspended",
    "locked": "locked",
}


# ``vm info``


@dataclass(frozen=True)
class GuestInfo:
    """One ``Virtual Machine:`` block of ``vm info``.

    ``fields`` holds the top-level ``key: value`` lines as printed (``-`` for unset);
    ``state`` and ``pid`` are read from ``state`` (``running (4123)``); the
    ``console-ports`` section becomes ``console_ports``, each ``network-interface``
    and ``virtual-disk`` entry (started by its ``number:``) one dict; other sections
    (ZFS ``snapshots``) keep their lines, leading indentation removed.
    """

    name: str
    state: GuestState
    pid: int | None
    fields: dict[str, str]
    console_ports: dict[str, str] = field(default_factory=dict)
    network_interfaces: list[dict[str, str]] = field(default_factory=list)
    disks: list[dict[str, str]] = field(default_factory=list)
    sections: dict[str, list[str]] = field(default_factory=dict)


_INFO_RULE = re.compile(r"-{3,}")
_INFO_TITLE = re.compile(r"Virtual Machine: (\S+)")
_INFO_FIELD = re.compile(r"  ([a-z][a-z0-9-]*): (.*)")
_INFO_SECTION = re.compile(r"  ([a-z][a-z0-9-]*)")
_INFO_ITEM = re.compile(r"    ([a-z0-9][a-z0-9-]*): (.*)")
_INFO_STATE = re.compile(r"(stopped|suspended)|(running|bootloader) \(([0-9]+)\)")
_LISTED_SECTIONS: Final = {"network-interface": "network_interfaces", "virtual-disk": "disks"}


class _InfoBlock:
    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: dict[str, str] = {}
        self.console_ports: dict[str, str] = {}
        self.lists: dict[str, list[dict[str, str]]] = {key: [] for key in _LISTED_SECTIONS}
        self.sections: dict[str, list[str]] = {}
        self.section: str | None = None
        self.seen: set[str] = set()

    def add(self, line: str) -> None:
        where = f"vm info of {self.name!r}: line {line[:60]!r}"
        if self.section is None or not line.startswith("    "):
            self._add_top(line, where)
        elif self.section in self.sections:
            self.sections[self.section].append(line.strip(" "))
        else:
            self._add_item(self.section, line, where)

    def _add_top(self, line: str, where: str) -> None:
        self.section = None
        top = _INFO_FIELD.fullmatch(line)
        if top is not None:
            if top.group(1) in self.fields:
                raise ParseError(f"{where} repeats {top.group(1)}")
            self.fields[top.group(1)] = top.group(2)
            return
        section = _INFO_SECTION.fullmatch(line)
        if section is None:
            raise ParseError(f"{where} is neither a field nor a section")
        name = section.group(1)
        # vm-bhyve titles every disk and every interface with its section's name.
        if name in self.seen and name not in _LISTED_SECTIONS:
            raise ParseError(f"{where} repeats the section")
        self.seen.add(name)
        if name not in _LISTED_SECTIONS and name != "console-ports":
            self.sections[name] = []
        self.section = name

    def _add_item(self, section: str, line: str, where: str) -> None:
        item = _INFO_ITEM.fullmatch(line)
        if item is None:
            raise ParseError(f"{where} is not a 'key: value' line of {section}")
        key, value = item.groups()
        if section == "console-ports":
            if key in self.console_ports:
                raise ParseError(f"{where} repeats the port {key}")
            self.console_ports[key] = value
            return
        entries = self.lists[section]
        if key == "number":
            entries.append({})
        elif not entries:
            raise ParseError(f"{where} comes before the entry's number")
        if key in entries[-1]:
            raise ParseError(f"{where} repeats {key}")
        entries[-1][key] = value

    def finish(self) -> GuestInfo:
        if "state" not in self.fields:
            raise ParseError(f"vm info of {self.name!r} printed no state")
        state = _INFO_STATE.fullmatch(self.fields["state"])
        if state is None:
            raise ParseError(
                f"vm info of {self.name!r}: {self.fields['state']!r} is not a guest state"
            )
        word = state.group(1) or state.group(2)
        return GuestInfo(
            name=self.name,
            state=_STATES[word],
            pid=None if state.group(3) is None else int(state.group(3)),
            fields=self.fields,
            console_ports=self.console_ports,
            network_interfaces=self.lists["network-interface"],
            disks=self.lists["virtual-disk"],
            sections=self.sections,
        )


def parse_info(text: str) -> dict[str, GuestInfo]:
    """Parse ``vm info [name …]`` into ``{name: info}``, one entry per block.

    A block is a rule of dashes, ``Virtual Machine: <name>``, a rule, then two-space
    indented ``key: value`` fields and sections whose lines are indented by four.
    """
    lines = _lines(text)
    blocks: dict[str, GuestInfo] = {}
    current: _InfoBlock | None = None
    i = 0
    while i < len(lines):
        line = lines[i].rstrip(" ")
        if _INFO_RULE.fullmatch(line):
            title = _INFO_TITLE.fullmatch(lines[i + 1].rstrip(" ")) if i + 1 < len(lines) else None
            if title is None or i + 2 >= len(lines) or not _INFO_RULE.fullmatch(lines[i + 2]):
                raise ParseError("vm info printed a rule without a 'Virtual Machine:' title")
            if current is not None:
                blocks[current.name] = current.finish()
            if title.group(1) in blocks:
                raise ParseError(f"vm info printed {title.group(1)!r} twice")
            current = _InfoBlock(title.group(1))
            i += 3
            continue
        if line:
            if current is None:
                raise ParseError(f"vm info printed {line[:60]!r} before any guest's title")
            current.add(line)
        i += 1
    if current is not None:
        blocks[current.name] = current.finish()
    if not blocks:
        raise ParseError("vm info printed no guest")
    return blocks


# The guest's ``console`` file

_PORT = re.compile(r"com[1-4]")
_NMDM = re.compile(r"/dev/nmdm-[A-Za-z0-9][.A-Za-z0-9_-]*\.[0-9]+B")


def console_device(console_file_text: str, port: str = "com1") -> str:
    """The device (``/dev/nmdm-<name>.1B``) of ``port`` in a running guest's
    ``console`` file: the end a client opens; bhyve holds the ``A`` end.

    A missing port, a port given twice and tmux mode (``com1=tmux/<name>``, no
    device) are errors.
    """
    if _PORT.fullmatch(port) is None:
        raise ParseError(f"{port!r} is not a serial port (com1 to com4)")
    found: str | None = None
    for line in _lines(console_file_text):
        key, equals, value = line.partition("=")
        if not equals or key != port:
            continue
        if found is not None:
            raise ParseError(f"the console file names {port} twice")
        found = value
    if found is None:
        raise ParseError(f"the console file has no {port} line")
    if found.startswith("tmux/"):
        raise ParseError(f"{port} is a tmux session ({found!r}), not a device")
    if _NMDM.fullmatch(found) is None:
        raise ParseError(f"{port} names {found[:80]!r}, not an nmdm device")
    return found


# ``vm iso``

_ISO_HEADER = "DATASTORE           FILENAME"
_ISO_WIDTH = 20


def parse_iso_list(text: str) -> list[IsoInfo]:
    """Parse ``vm iso`` (or ``vm img``) into ISO names with their datastores, in order.

    Rows are ``printf "%-20s%s"``: the datastore padded to 20 characters, then the
    file name. A datastore name of 20 characters or more runs into the file name and
    cannot be cut, so it is an error.
    """
    lines = [line for line in _lines(text) if line.strip()]
    if not lines:
        return []
    if lines[0].rstrip(" ") != _ISO_HEADER:
        raise ParseError(f"vm iso printed the header {lines[0][:60]!r}, not DATASTORE FILENAME")
    isos: list[IsoInfo] = []
    for line in lines[1:]:
        datastore = line[:_ISO_WIDTH].rstrip(" ")
        name = line[_ISO_WIDTH:]
        if (
            len(line) <= _ISO_WIDTH
            or line[_ISO_WIDTH - 1] != " "
            or not _CELL["DATASTORE"].fullmatch(datastore)
            or not name
            or name[0] == " "
            or any(char.isspace() for char in name)
        ):
            raise ParseError(f"vm iso printed {line[:80]!r}, not a datastore and a file name")
        isos.append(IsoInfo(name=name, datastore=datastore))
    return isos


# iohyve property names and vm-bhyve conf keys

#: iohyve properties (sysadm's ``getprops``/``setprop`` names) stored under one key of
#: vm-bhyve's guest conf.
IOHYVE_TO_VMBHYVE: Final[Mapping[str, str]] = {
    "ram": "memory",
    "cpu": "cpu",
    "loader": "loader",
    "bargs": "bhyve_options",
    "utc": "utctime",
    "tap": "network0_switch",
    "mac_tap0": "network0_mac",
    "vnc": "graphics",
    "vnc_ip": "graphics_listen",
    "vnc_port": "graphics_port",
    "vnc_wait": "graphics_wait",
    "vnc_tablet": "xhci_mouse",
}

#: The same table read the other way: vm-bhyve conf key to iohyve property.
VMBHYVE_TO_IOHYVE: Final[Mapping[str, str]] = {key: prop for prop, key in IOHYVE_TO_VMBHYVE.items()}

#: iohyve properties with no key of their own in the guest conf, and why.
NO_VMBHYVE_KEY: Final[Mapping[str, str]] = {
    "boot": "autostart is membership of rc.conf's vm_list, not a guest setting",
    "con": "the console device is derived from the guest's name (read-only)",
    "size": "disk sizes are not stored; they are the disk file's or zvol's",
    "persist": "vm-bhyve's on_restart/on_fault do not mean the same",
    "vnc_w": "vm-bhyve keeps width and height together in graphics_res",
    "vnc_h": "vm-bhyve keeps width and height together in graphics_res",
    "fw": "custom firmware is loader=uefi-custom with uefi_vars",
    "os": "vm-bhyve has no guest OS setting",
    "autogrub": "vm-bhyve's grub settings are grub_* keys of another form",
    "install": "vm-bhyve has no install flag; vm install attaches the ISO",
    "template": "templates only apply when the guest is created",
    "bhyve_path": "vm-bhyve has no per-guest bhyve path",
    "description": "vm-bhyve has no description setting",
}

# Values that are spelt differently: iohyve's on the left.
_LOADER_VALUES: Final = {"grub-bhyve": "grub"}


def unmapped_properties(names: Iterable[str]) -> list[str]:
    """The iohyve property names in ``names`` that have no vm-bhyve conf key, in order."""
    return [name for name in names if name not in IOHYVE_TO_VMBHYVE]


def to_vmbhyve(prop: str, value: str) -> tuple[str, str]:
    """The conf key and value for setting iohyve property ``prop`` to ``value``.

    iohyve's ``grub-bhyve`` loader is vm-bhyve's ``grub``, and iohyve's ``bargs``
    spell spaces as ``_``. A property without a key raises :class:`ParseError`.
    """
    if prop not in IOHYVE_TO_VMBHYVE:
        reason = NO_VMBHYVE_KEY.get(prop, "it is not an iohyve property")
        raise ParseError(f"iohyve property {prop!r} has no vm-bhyve equivalent: {reason}")
    if prop == "loader":
        value = _LOADER_VALUES.get(value, value)
    elif prop == "bargs":
        value = value.replace("_", " ")
    return IOHYVE_TO_VMBHYVE[prop], value


def from_vmbhyve(conf: Mapping[str, str]) -> dict[str, str]:
    """The iohyve properties a guest conf holds, values spelt as iohyve spells them."""
    props: dict[str, str] = {}
    loaders = {vm: io for io, vm in _LOADER_VALUES.items()}
    for key, value in conf.items():
        prop = VMBHYVE_TO_IOHYVE.get(key)
        if prop == "loader":
            props[prop] = loaders.get(value, value)
        elif prop == "bargs":
            props[prop] = value.replace(" ", "_")
        elif prop is not None:
            props[prop] = value
    return props
