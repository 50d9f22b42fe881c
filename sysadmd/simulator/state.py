"""The simulator's persistent state: a directory tree shaped like iohyve's ZFS layout.

Layout under the root directory::

    ROOT/.lock                      every invocation holds an exclusive flock on it while it
                                    reads or changes state
    ROOT/guests.json                guests: their iohyve properties (in the order they were first
                                    set) and their VMM/running status
    ROOT/iohyve/ISO/<iso>/          an ISO "dataset" exists iff this directory exists
    ROOT/iohyve/ISO/<iso>/<iso>     the ISO file, as at /iohyve/ISO/<iso>/<iso> on a real host
    ROOT/iohyve/ISO/<iso>/.fetch.XXXXXX.<file>
                                    a download in progress (it grows while data arrives); the
                                    downloading process holds an flock on it, which makes the
                                    dataset "busy"
    ROOT/iohyve/Firmware/           created for fidelity, not used

The state file is replaced atomically (temporary file, fsync, ``os.replace``), so a reader never
sees a half-written file even without the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from types import TracebackType

STATE_FILE = "guests.json"
LOCK_FILE = ".lock"
_FORMAT = 1
#: Prefix of in-progress download files, as fetch(1) names its temporary files.
FETCH_TEMP_PREFIX = ".fetch."


class StateError(Exception):
    """The state file cannot be read; the message is printed as is."""


class Guest:
    """One guest: its ``iohyve:*`` user properties and whether its VM exists and runs."""

    __slots__ = ("props", "running", "vmm")

    def __init__(
        self, props: dict[str, str] | None = None, *, vmm: bool = False, running: bool = False
    ) -> None:
        #: Full user property names (``iohyve:ram``) to values, in the order first set.
        self.props: dict[str, str] = props if props is not None else {}
        #: Whether ``/dev/vmm/ioh-<name>`` would exist.
        self.vmm = vmm
        #: Whether a ``bhyve: ioh-<name>`` process would run.
        self.running = running

    def to_json(self) -> dict[str, object]:
        """Return the JSON-ready form of the guest."""
        return {"props": dict(self.props), "vmm": self.vmm, "running": self.running}

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
        return cls(
            dict(props), vmm=bool(data.get("vmm", False)), running=bool(data.get("running", False))
        )


class Store:
    """The guests read from the state file; set :attr:`dirty` to have them written back."""

    __slots__ = ("dirty", "guests")

    def __init__(self, guests: dict[str, Guest] | None = None) -> None:
        #: Guests by dataset name (the last component of ``<pool>/iohyve/<name>``).
        self.guests: dict[str, Guest] = guests if guests is not None else {}
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
        return Store(guests)

    def save(self, store: Store) -> None:
        """Write the state file atomically."""
        data = {
            "format": _FORMAT,
            "guests": {name: guest.to_json() for name, guest in store.guests.items()},
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
