"""The simulator's persistent state: a directory tree shaped like iohyve's ZFS layout.

Layout under the root directory::

    ROOT/.lock                      every invocation holds an exclusive flock on it while it
                                    reads or changes state
    ROOT/guests.json                guests: their iohyve properties (in the order they were first
                                    set), their VMM/running status and their zvols; the host's
                                    pools, kernel modules and network interfaces
    ROOT/iohyve/ISO/<iso>/          an ISO "dataset" exists iff this directory exists
    ROOT/iohyve/ISO/<iso>/<iso>     the ISO file, as at /iohyve/ISO/<iso>/<iso> on a real host
    ROOT/iohyve/ISO/<iso>/.fetch.XXXXXX.<file>
                                    a download in progress (it grows while data arrives); the
                                    downloading process holds an flock on it, which makes the
                                    dataset "busy"
    ROOT/iohyve/Firmware/           created for fidelity, not used

The state file is replaced atomically (temporary file, fsync, ``os.replace``), so a reader never
sees a half-written file even without the lock.

Format of ``guests.json`` (``format`` 1; every key below ``guests`` but ``props`` is optional, so
files written by older simulators still load)::

    {"format": 1,
     "guests": {"<dataset name>": {"props": {"iohyve:name": "...", ...},
                                   "vmm": false, "running": false,
                                   "disks": {"disk0": 8589934592, "disk1": 21474836480}}},
     "host": {"zpools": [{"name": "tank", "size": ..., "alloc": ..., "frag": 3,
                          "dedup": "1.00x", "health": "ONLINE"}],
              "iohyve_pools": ["tank"], "modules": ["vmm", "nmdm"],
              "interfaces": ["tap0", "bridge0"], "bridge_members": ["em0", "tap0"],
              "bridge_description": "iohyve-bridge", "tap_up_on_open": true}}

``disks`` maps each zvol below the guest to its ``volsize`` in bytes. A guest without the key has
only ``disk0``, of the size its ``iohyve:size`` property names (none if that is not a valid
size). ``host.zpools`` absent means the default: one pool named after ``--pool``.
"""

from __future__ import annotations

import fcntl
import json
import os
from types import TracebackType

from sysadmd.simulator import zfs

STATE_FILE = "guests.json"
LOCK_FILE = ".lock"
_FORMAT = 1
#: Prefix of in-progress download files, as fetch(1) names its temporary files.
FETCH_TEMP_PREFIX = ".fetch."


class StateError(Exception):
    """The state file cannot be read; the message is printed as is."""


class Guest:
    """One guest: its ``iohyve:*`` user properties, its zvols and whether its VM exists and runs."""

    __slots__ = ("disks", "props", "running", "vmm")

    def __init__(
        self,
        props: dict[str, str] | None = None,
        *,
        vmm: bool = False,
        running: bool = False,
        disks: dict[str, int] | None = None,
    ) -> None:
        #: Full user property names (``iohyve:ram``) to values, in the order first set.
        self.props: dict[str, str] = props if props is not None else {}
        #: Whether ``/dev/vmm/ioh-<name>`` would exist.
        self.vmm = vmm
        #: Whether a ``bhyve: ioh-<name>`` process would run.
        self.running = running
        #: The zvols ``<guest>/<disk>`` and their ``volsize`` in bytes.
        self.disks: dict[str, int] = disks if disks is not None else {}

    def to_json(self) -> dict[str, object]:
        """Return the JSON-ready form of the guest."""
        return {
            "props": dict(self.props),
            "vmm": self.vmm,
            "running": self.running,
            "disks": dict(self.disks),
        }

    @classmethod
    def from_json(cls, data: object) -> Guest:
        """Build a guest from :meth:`to_json` output; raise :class:`StateError` if malformed."""
        if not isinstance(data, dict):
            raise StateError("guest entry is not an object")
        props = data.get("props", {})
        if not isinstance(props, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in props.items()
        ):
            raise StateError("guest properties are not strings")
        disks = data.get("disks")
        if disks is None:
            disks = _legacy_disks(props)
        elif not isinstance(disks, dict) or not all(
            isinstance(key, str) and isinstance(value, int) and not isinstance(value, bool)
            for key, value in disks.items()
        ):
            raise StateError("guest disks are not sizes in bytes")
        return cls(
            dict(props),
            vmm=bool(data.get("vmm", False)),
            running=bool(data.get("running", False)),
            disks=dict(disks),
        )


def _legacy_disks(props: dict[str, str]) -> dict[str, int]:
    """Return the zvols of a guest stored without ``disks``: ``disk0`` of its ``iohyve:size``."""
    try:
        size = zfs.parse_size(props.get("iohyve:size", ""))
    except zfs.SizeError:
        return {}
    return {"disk0": size} if zfs.volume_size_problem(size) is None else {}


class Zpool:
    """One simulated ZFS pool as ``zpool list`` shows it."""

    __slots__ = ("alloc", "dedup", "frag", "health", "name", "size")

    def __init__(
        self,
        name: str,
        *,
        size: int = 106837311488,  # 99.5G
        alloc: int = 1954210119,  # 1.82G
        frag: int = 3,
        dedup: str = "1.00x",
        health: str = "ONLINE",
    ) -> None:
        #: The pool's name.
        self.name = name
        #: Its size in bytes.
        self.size = size
        #: Bytes allocated before any ISO image is counted.
        self.alloc = alloc
        #: Fragmentation in percent.
        self.frag = frag
        #: The deduplication ratio as printed (``1.00x``).
        self.dedup = dedup
        #: ``ONLINE``, ``DEGRADED``, ``FAULTED``...
        self.health = health

    def to_json(self) -> dict[str, object]:
        """Return the JSON-ready form of the pool."""
        return {
            "name": self.name,
            "size": self.size,
            "alloc": self.alloc,
            "frag": self.frag,
            "dedup": self.dedup,
            "health": self.health,
        }

    @classmethod
    def from_json(cls, data: object) -> Zpool:
        """Build a pool from :meth:`to_json` output; raise :class:`StateError` if malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise StateError("pool entry is not an object with a name")
        numbers = {key: data.get(key) for key in ("size", "alloc", "frag") if key in data}
        texts = {key: data.get(key) for key in ("dedup", "health") if key in data}
        if not all(isinstance(value, int) for value in numbers.values()) or not all(
            isinstance(value, str) for value in texts.values()
        ):
            raise StateError(f"pool {data['name']}: malformed values")
        pool = cls(data["name"])
        for key, value in (*numbers.items(), *texts.items()):
            setattr(pool, key, value)
        return pool


class Host:
    """What the simulated host knows besides guests: pools, kernel modules, interfaces."""

    __slots__ = (
        "bridge_description",
        "bridge_members",
        "datasets",
        "interfaces",
        "iohyve_pools",
        "modules",
        "tap_up_on_open",
        "zpools",
    )

    def __init__(self) -> None:
        #: The pools ``zpool list`` shows; None for the default (one pool named after --pool).
        self.zpools: list[Zpool] | None = None
        #: Pools on which ``setup`` created ``<pool>/iohyve``, in that order.
        self.iohyve_pools: list[str] = []
        #: Loaded kernel modules among vmm, nmdm, if_bridge and if_tap.
        self.modules: list[str] = []
        #: Interfaces created at run time (``tap0``, ``bridge0``), in creation order.
        self.interfaces: list[str] = []
        #: Members of ``bridge0``, in the order they were added.
        self.bridge_members: list[str] = []
        #: ``bridge0``'s description (0.7.4+ set ``iohyve-bridge``), or None.
        self.bridge_description: str | None = None
        #: The sysctl ``net.link.tap.up_on_open``.
        self.tap_up_on_open = False
        #: Datasets ``zfs create`` made outside iohyve's own (vm-bhyve's ``<pool>/vm``, its
        #: zvols): full name to a zvol's size in bytes, or None for a filesystem.
        self.datasets: dict[str, int | None] = {}

    def pools(self, default: str) -> list[Zpool]:
        """Return the simulated pools; ``default`` names the single pool of a fresh host."""
        return self.zpools if self.zpools is not None else [Zpool(default)]

    def to_json(self) -> dict[str, object]:
        """Return the JSON-ready form of the host."""
        data: dict[str, object] = {
            "iohyve_pools": list(self.iohyve_pools),
            "modules": list(self.modules),
            "interfaces": list(self.interfaces),
            "bridge_members": list(self.bridge_members),
            "bridge_description": self.bridge_description,
            "tap_up_on_open": self.tap_up_on_open,
        }
        if self.datasets:
            data["datasets"] = dict(self.datasets)
        if self.zpools is not None:
            data["zpools"] = [pool.to_json() for pool in self.zpools]
        return data

    @classmethod
    def from_json(cls, data: object) -> Host:
        """Build the host from :meth:`to_json` output; raise :class:`StateError` if malformed."""
        host = cls()
        if data is None:
            return host
        if not isinstance(data, dict):
            raise StateError("host entry is not an object")
        for key in ("iohyve_pools", "modules", "interfaces", "bridge_members"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise StateError(f"host {key} is not a list of names")
            setattr(host, key, list(value))
        description = data.get("bridge_description")
        if description is not None and not isinstance(description, str):
            raise StateError("host bridge_description is not a string")
        host.bridge_description = description
        host.tap_up_on_open = bool(data.get("tap_up_on_open", False))
        zpools = data.get("zpools")
        if zpools is not None:
            if not isinstance(zpools, list):
                raise StateError("host zpools is not a list")
            host.zpools = [Zpool.from_json(pool) for pool in zpools]
        made = data.get("datasets", {})
        if not isinstance(made, dict) or not all(
            isinstance(name, str) and (size is None or isinstance(size, int))
            for name, size in made.items()
        ):
            raise StateError("host datasets is not an object of names and sizes")
        host.datasets = dict(made)
        return host


class Store:
    """The state read from the state file; set :attr:`dirty` to have it written back."""

    __slots__ = ("dirty", "guests", "host")

    def __init__(self, guests: dict[str, Guest] | None = None, host: Host | None = None) -> None:
        #: Guests by dataset name (the last component of ``<pool>/iohyve/<name>``).
        self.guests: dict[str, Guest] = guests if guests is not None else {}
        #: Pools, kernel modules and network interfaces.
        self.host = host if host is not None else Host()
        #: Whether the guests changed and must be saved.
        self.dirty = False

    def sorted_names(self) -> list[str]:
        """Return the guest dataset names in ``zfs list`` (byte) order."""
        return sorted(self.guests, key=byte_key)


def byte_key(name: str) -> bytes:
    """Sort key giving the byte order ``zfs list`` and ``sort`` in the C locale use."""
    return os.fsencode(name)


class Root:
    """Paths of one simulator root directory."""

    __slots__ = ("firmware_dir", "iso_dir", "lock_path", "path", "state_path")

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = os.path.join(self.path, LOCK_FILE)
        self.state_path = os.path.join(self.path, STATE_FILE)
        self.iso_dir = os.path.join(self.path, "iohyve", "ISO")
        self.firmware_dir = os.path.join(self.path, "iohyve", "Firmware")

    def ensure_layout(self) -> None:
        """Create the root and the ``iohyve/ISO`` and ``iohyve/Firmware`` directories."""
        os.makedirs(self.iso_dir, exist_ok=True)
        os.makedirs(self.firmware_dir, exist_ok=True)

    def iso_dataset(self, name: str) -> str:
        """Return the directory standing for ``<pool>/iohyve/ISO/<name>``."""
        return os.path.join(self.iso_dir, name)

    def iso_names(self) -> list[str]:
        """Return the names of the ISO datasets (directories) in byte order."""
        try:
            entries = os.listdir(self.iso_dir)
        except FileNotFoundError:
            return []
        names = [name for name in entries if os.path.isdir(os.path.join(self.iso_dir, name))]
        return sorted(names, key=byte_key)

    def locked(self) -> Locked:
        """Return a context manager holding the root's lock and yielding its :class:`Store`."""
        return Locked(self)

    def load(self) -> Store:
        """Read the state file (an empty store if it does not exist yet)."""
        try:
            with open(self.state_path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return Store()
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {self.state_path}: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("guests"), dict):
            raise StateError(f"cannot read {self.state_path}: not a simulator state file")
        guests: dict[str, Guest] = {}
        for name, entry in data["guests"].items():
            try:
                guests[name] = Guest.from_json(entry)
            except StateError as exc:
                raise StateError(f"cannot read {self.state_path}: {name}: {exc}") from exc
        try:
            host = Host.from_json(data.get("host"))
        except StateError as exc:
            raise StateError(f"cannot read {self.state_path}: {exc}") from exc
        return Store(guests, host)

    def save(self, store: Store) -> None:
        """Write the state file atomically."""
        data = {
            "format": _FORMAT,
            "guests": {name: guest.to_json() for name, guest in store.guests.items()},
            "host": store.host.to_json(),
        }
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        temp = f"{self.state_path}.{os.getpid()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.state_path)
        except BaseException:
            if os.path.lexists(temp):
                os.unlink(temp)
            raise


class Locked:
    """Hold the exclusive lock on ``ROOT/.lock`` and the state read under it.

    On a normal exit a dirty store is saved before the lock is released.
    """

    __slots__ = ("_fd", "_root", "store")

    def __init__(self, root: Root) -> None:
        self._root = root
        self._fd = -1
        self.store = Store()

    def __enter__(self) -> Store:
        self._root.ensure_layout()
        self._fd = os.open(self._root.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.store = self._root.load()
        except BaseException:
            os.close(self._fd)
            raise
        return self.store

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self.store.dirty:
                self._root.save(self.store)
                self.store.dirty = False
        finally:
            os.close(self._fd)  # closing the descriptor releases the flock


def dataset_busy(directory: str) -> bool:
    """Return whether a live download holds a file in ``directory`` (an ISO dataset)."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    for entry in entries:
        if not entry.startswith(FETCH_TEMP_PREFIX):
            continue
        try:
            fd = os.open(os.path.join(directory, entry), os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return False
