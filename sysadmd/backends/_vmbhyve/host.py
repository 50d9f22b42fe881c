"""What a vm-bhyve host keeps on disk, read without the ``vm`` command.

Pure, blocking file reads (the adapter runs them in a thread): rc.conf's ``vm_*``
settings, ``system.conf``'s datastores and switches, the guests' own directories
(``<store>/<name>/<name>.conf``, ``console``, ``run.lock``, ``<name>.save``) and the
ISO stores. Nothing here spawns a process; a datastore given as ``zfs:pool/ds`` is
resolved to its mountpoint by the caller, which passes it in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sysadmd.backends._vmbhyve import parse

#: vm-bhyve's guest name rule (``util::check_name``), as a full match.
GUEST_NAME: Final = re.compile(r"[A-Za-z0-9][.A-Za-z0-9_-]{0,229}[A-Za-z0-9]")
#: A ``disk<N>_`` key of a guest conf.
_DISK_KEY: Final = re.compile(r"disk([0-9]+)_(name|type|dev|opts|size)")
_RC_LINE: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_UNITS: Final = "KMGT"


def read_settings(path: Path) -> dict[str, str]:
    """The ``key=value`` settings of an rc.conf-style file (the last one of a key wins,
    as when the shell sources it); a missing file has none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    settings: dict[str, str] = {}
    for line in text.splitlines():
        match = _RC_LINE.fullmatch(line)
        if match is None:
            continue
        value = match.group(2).strip()
        if value[:1] in "\"'":
            quote = value[0]
            end = value.find(quote, 1)
            value = value[1:end] if end > 0 else value[1:]
        else:
            value = value.split("#", 1)[0].strip()
        settings[match.group(1)] = value
    return settings


def enabled(value: str | None) -> bool:
    """Whether an rc.conf switch is on (``YES``, ``yes``, ``true``, ``on``, ``1``)."""
    return value is not None and value.lower() in ("yes", "true", "on", "1")


@dataclass(frozen=True)
class Store:
    """One guest datastore: its name, its directory, and its ZFS dataset if it has one."""

    name: str
    path: Path
    dataset: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where a host keeps its guests and ISOs, as rc.conf and ``system.conf`` say."""

    vm_dir: Path
    stores: tuple[Store, ...]
    iso_dirs: tuple[tuple[str, Path], ...]
    autostart: tuple[str, ...]
    system: Mapping[str, str] = field(default_factory=dict)


def location(value: str) -> tuple[str | None, str]:
    """A ``vm_dir`` or ``path_<ds>`` value as ``(dataset, path)``: ``zfs:pool/ds`` is a
    dataset whose mountpoint is still to be found (path ``""``), anything else a path."""
    if value.startswith("zfs:"):
        return value[4:], ""
    return None, value


@dataclass
class GuestFiles:
    """One guest as its directory shows it."""

    name: str
    store: Store
    directory: Path
    conf: dict[str, str]
    saved: bool
    lock_host: str | None
    vmm: bool


def read_guests(layout: Layout, vmm_dir: Path) -> dict[str, GuestFiles]:
    """Every guest of every datastore, the ``default`` one first, names sorted inside each.

    A directory is a guest only when it holds ``<name>.conf``; a conf vm-bhyve would
    misread raises :class:`~sysadmd.backends._vmbhyve.parse.ParseError` naming the file.
    """
    guests: dict[str, GuestFiles] = {}
    for store in layout.stores:
        try:
            names = sorted(entry.name for entry in os.scandir(store.path) if entry.is_dir())
        except OSError:
            continue
        for name in names:
            if name.startswith(".") or name in guests or GUEST_NAME.fullmatch(name) is None:
                continue
            guest = read_guest(store, name, vmm_dir)
            if guest is not None:
                guests[name] = guest
    return guests


def read_guest(store: Store, name: str, vmm_dir: Path) -> GuestFiles | None:
    """Guest ``name`` of ``store``, or None if it has no conf there."""
    directory = store.path / name
    conf_path = directory / f"{name}.conf"
    try:
        text = conf_path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        conf = parse.parse_conf(text)
    except parse.ParseError as e:
        raise parse.ParseError(f"{conf_path}: {e}") from None
    lock_host: str | None = None
    try:
        lock_host = (directory / "run.lock").read_text(errors="replace").strip() or "unknown"
    except OSError:
        lock_host = None
    return GuestFiles(
        name=name,
        store=store,
        directory=directory,
        conf=conf,
        saved=(directory / f"{name}.save").exists(),
        lock_host=lock_host,
        vmm=(vmm_dir / name).exists(),
    )


def disk_numbers(conf: Mapping[str, str]) -> list[int]:
    """The disks a guest has: ``disk0`` up to the first index without a ``disk<N>_name``
    (vm-bhyve stops there)."""
    numbers: list[int] = []
    while f"disk{len(numbers)}_name" in conf:
        numbers.append(len(numbers))
    return numbers


def disk_keys(conf: Mapping[str, str], number: int) -> list[str]:
    """Every ``disk<number>_*`` key the conf holds."""
    return [
        key
        for key in conf
        if (match := _DISK_KEY.fullmatch(key)) is not None and int(match.group(1)) == number
    ]


def size_bytes(size: str) -> int:
    """A size the API accepts (``20G``, ``512M``, ``1048576``) in bytes (binary units)."""
    unit = size[-1:].upper()
    if unit in _UNITS:
        return int(size[:-1]) * int(1024 ** (_UNITS.index(unit) + 1))
    return int(size)


def size_text(count: int) -> str:
    """``count`` bytes as vm-bhyve and iohyve write sizes: the largest unit that divides
    it exactly (``21474836480``: ``20G``), else plain bytes."""
    for power in range(len(_UNITS), 0, -1):
        unit = 1024**power
        if count and count % unit == 0:
            return f"{count // unit}{_UNITS[power - 1]}"
    return str(count)


def iso_files(layout: Layout) -> list[tuple[str, str]]:
    """``(datastore, file)`` for every regular file directly in an ISO store, as
    ``vm iso`` lists them (here sorted by name within each store), hidden files left out
    (an upload's temporary file is one; no ISO name starts with a dot)."""
    found: list[tuple[str, str]] = []
    for store, directory in layout.iso_dirs:
        try:
            entries = sorted(
                entry.name
                for entry in os.scandir(directory)
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".")
            )
        except OSError:
            continue
        found.extend((store, name) for name in entries)
    return found


def attached_isos(guests: Mapping[str, GuestFiles], running: set[str]) -> dict[str, str]:
    """ISO file names in use, each with the guest using it: attached in a conf (a
    ``disk<N>_name`` with ``ahci-cd`` emulation or a path ending in the file), or the ISO
    a running guest was installed from (its log's last ``[bhyve iso device: …]`` line
    since it last booted)."""
    used: dict[str, str] = {}
    for name, guest in guests.items():
        for key, value in guest.conf.items():
            match = _DISK_KEY.fullmatch(key)
            if match is None or match.group(2) != "name":
                continue
            emulation = guest.conf.get(f"disk{match.group(1)}_type", "")
            if emulation == "ahci-cd" or value.endswith(".iso"):
                used.setdefault(Path(value).name, name)
        if name in running:
            iso = _installing_from(guest.directory / "vm-bhyve.log")
            if iso is not None:
                used.setdefault(Path(iso).name, name)
    return used


_ISO_DEVICE: Final = re.compile(r".*\[bhyve iso device: -s [0-9:]+,ahci-cd,([^,\]]+).*")


def _installing_from(log: Path) -> str | None:
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 65536))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    iso: str | None = None
    for line in lines:
        if line.endswith(": booting"):
            iso = None
        match = _ISO_DEVICE.fullmatch(line)
        if match is not None:
            iso = match.group(1)
    return iso
