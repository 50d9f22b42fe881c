"""The host as vm-bhyve sees it: rc.conf, ``$vm_dir``, datastores, guest files, processes.

Every path the ``vm`` dialect prints or stores is a path of the simulated FreeBSD host; on
disk it lives below the simulator root, as in a chroot (``/etc/rc.conf`` is
``ROOT/etc/rc.conf``, ``vm_dir="/zroot/vm"`` is ``ROOT/zroot/vm``). The files are the ones
vm-bhyve keeps:

``ROOT/etc/rc.conf``
    ``vm_enable``, ``vm_dir`` (a path, or ``zfs:pool/dataset`` mounted at ``/pool/dataset``),
    ``vm_list`` (autostart order) and ``hostname`` (what ``hostname`` prints; default
    ``localhost``), in sysrc syntax.
``$vm_dir/.config/system.conf``
    ``datastore_list`` and ``path_<ds>`` (``/dir``, ``iso:/dir``).
``<datastore>/<name>/<name>.conf``
    the guest (a directory is a guest only if this file exists); its disks beside it.
``<name>/console``, ``<name>/run.lock``
    written while the guest runs, removed when it stops; a ``run.lock`` without a process
    is ``Locked (<host>)``. ``<name>/<name>.save`` makes the guest ``Suspended`` (1.7+).

No bhyve runs. The processes vm-bhyve looks for with ``pgrep`` are kept in
``ROOT/processes.json``::

    {"next_pid": 4001,
     "processes": {"4123": {"title": "bhyve: fbsd14", "rss": 532676608, "taps": ["tap0"]}}}

``title`` is the process title as ``ps`` shows it: ``bhyve: <name>`` for a running guest
(what bhyve sets with setproctitle), ``bhyveload ... <name>`` or ``grub-bhyve ... <name>`` for
one in its loader (``iohyve-sim pgrep`` finds them, :mod:`~sysadmd.simulator.pgrep`). A VM
that exists in the kernel is the empty file ``ROOT/dev/vmm/<name>``, as ``/dev/vmm/<name>`` on
the host. Both are read and written
under the simulator's state lock.
"""

from __future__ import annotations

import json
import os

from sysadmd.simulator.state import Root, StateError, byte_key

PROCESS_FILE = "processes.json"
#: The first pid handed out when the table is new.
FIRST_PID = 4001
RC_CONF = "/etc/rc.conf"
DEFAULT_HOSTNAME = "localhost"


class HostError(Exception):
    """A check of vm-bhyve's start-up failed; the message follows ``ERROR: ``."""


def host_path(root: Root, path: str) -> str:
    """Where the simulated host's absolute ``path`` lives below the simulator root.

    ``..`` cannot climb above the host's ``/``, so no path leaves the root.
    """
    return os.path.join(root.path, os.path.normpath("/" + path).lstrip("/"))


# -- sysrc files ----------------------------------------------------------------------------------


def read_conf(path: str) -> dict[str, str]:
    """Read a sysrc-syntax file the way vm-bhyve's ``config::load`` does.

    Only lines starting with a lowercase letter count; everything from ``#`` on is dropped,
    double quotes are removed and trailing blanks stripped. A missing file is empty.
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().split("\n")
    except FileNotFoundError:
        return {}
    conf: dict[str, str] = {}
    for line in lines:
        if not line or not ("a" <= line[0] <= "z"):
            continue
        key, equals, value = line.split("#", 1)[0].partition("=")
        if equals:
            conf[key] = value.replace('"', "").rstrip(" \t")
    return conf


def _conf_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


def _write_lines(path: str, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)


def _is_setting(line: str, key: str) -> bool:
    return line.lstrip(" \t").startswith(key + "=")


def sysrc_set(path: str, key: str, value: str) -> None:
    """``sysrc -f path key=value``: replace the key's last line in place, else append it."""
    lines = _conf_lines(path)
    entry = f'{key}="{value}"'
    for index in range(len(lines) - 1, -1, -1):
        if _is_setting(lines[index], key):
            lines[index] = entry
            break
    else:
        lines.append(entry)
    _write_lines(path, lines)


def sysrc_delete(path: str, key: str) -> None:
    """``sysrc -xf path key``: remove the key's lines."""
    lines = _conf_lines(path)
    kept = [line for line in lines if not _is_setting(line, key)]
    if kept != lines:
        _write_lines(path, kept)


# -- the host -------------------------------------------------------------------------------------


class Datastore:
    """A datastore: its name and its path on the simulated host."""

    __slots__ = ("kind", "name", "path")

    def __init__(self, name: str, path: str, kind: str) -> None:
        self.name = name
        #: The host path (``/zroot/vm``), without a ``iso:`` prefix.
        self.path = path
        #: ``directory``, ``zfs`` or ``iso`` (``img`` stores are kept as ``img``).
        self.kind = kind


class VmHost:
    """The simulated host after vm-bhyve's start-up checks passed."""

    def __init__(self, root: Root, vm_dir: str, rc: dict[str, str], dataset: str = "") -> None:
        self.root = root
        #: ``$vm_dir`` as a host path (the mountpoint in ZFS mode).
        self.vm_dir = vm_dir
        self.rc = rc
        #: The ZFS dataset of ``$vm_dir`` (``zfs:pool/ds``), or "".
        self.dataset = dataset

    def real(self, path: str) -> str:
        """The on-disk path of a host path."""
        return host_path(self.root, path)

    @property
    def hostname(self) -> str:
        """What ``hostname`` prints."""
        return self.rc.get("hostname") or DEFAULT_HOSTNAME

    def system_conf(self) -> dict[str, str]:
        """``$vm_dir/.config/system.conf``."""
        return read_conf(self.real(f"{self.vm_dir}/.config/system.conf"))

    def datastores(self) -> list[Datastore]:
        """``default`` first, then ``datastore_list`` in its order."""
        stores = [Datastore("default", self.vm_dir, "zfs" if self.dataset else "directory")]
        system = self.system_conf()
        for name in system.get("datastore_list", "").split():
            spec = system.get(f"path_{name}", "")
            if name == "default" or not spec:
                continue
            kind, colon, path = spec.partition(":")
            if not colon:
                stores.append(Datastore(name, spec, "directory"))
            elif kind == "zfs":
                stores.append(Datastore(name, "/" + path, "zfs"))
            elif kind in ("iso", "img"):
                stores.append(Datastore(name, path, kind))
        return stores

    def guest_store(self, store: Datastore) -> bool:
        """Whether guests may live in ``store`` (not an iso/img store)."""
        return store.kind in ("directory", "zfs")

    def datastore(self, name: str) -> Datastore | None:
        """The guest datastore called ``name``."""
        for store in self.datastores():
            if store.name == name and self.guest_store(store):
                return store
        return None

    def guests(self) -> list[tuple[Datastore, str]]:
        """Every guest, datastore by datastore, ``ls -1`` order inside each."""
        found: list[tuple[Datastore, str]] = []
        for store in self.datastores():
            if not self.guest_store(store):
                continue
            try:
                entries = os.listdir(self.real(store.path))
            except OSError:
                continue
            for name in sorted(entries, key=byte_key):
                if os.path.exists(self.real(f"{store.path}/{name}/{name}.conf")):
                    found.append((store, name))
        return found

    def find_guest(self, name: str) -> Datastore | None:
        """The datastore holding guest ``name`` (``datastore::get_guest``)."""
        for store, guest in self.guests():
            if guest == name:
                return store
        return None

    def guest_dir(self, store: Datastore, name: str) -> str:
        """The guest's directory as a host path."""
        return f"{store.path}/{name}"

    def conf_path(self, store: Datastore, name: str) -> str:
        """The on-disk path of the guest's ``<name>.conf``."""
        return self.real(f"{store.path}/{name}/{name}.conf")

    def autostart(self, name: str) -> int | None:
        """The guest's 1-based place in rc.conf's ``vm_list``."""
        position = None
        for index, entry in enumerate(self.rc.get("vm_list", "").split(), start=1):
            if entry == name:
                position = index
        return position

    def iso_dirs(self) -> list[tuple[str, str]]:
        """(datastore, host path) of every ISO store: ``default`` then the ``iso:`` ones."""
        dirs = [("default", f"{self.vm_dir}/.iso")]
        dirs += [(s.name, s.path) for s in self.datastores() if s.kind == "iso"]
        return dirs


def load_host(root: Root) -> VmHost:
    """Run vm-bhyve's start-up checks and return the host; :class:`HostError` if one fails.

    Creates ``.config/``, ``.config/null.iso``, ``.templates/``, ``.iso/`` and ``.img/``
    under ``$vm_dir`` as vm-bhyve does on every run.
    """
    rc = read_conf(host_path(root, RC_CONF))
    if rc.get("vm_enable", "").lower() not in ("yes", "true", "on", "1"):
        raise HostError("$vm_enable is not enabled in /etc/rc.conf!")
    vm_dir = rc.get("vm_dir", "")
    dataset = ""
    if vm_dir.startswith("zfs:"):
        dataset = vm_dir[4:]
        vm_dir = "/" + dataset
        if not dataset or not os.path.isdir(host_path(root, vm_dir)):
            raise HostError(f"unable to locate mountpoint for ZFS dataset {dataset}")
    if not vm_dir.startswith("/") or not os.path.isdir(host_path(root, vm_dir)):
        raise HostError("$vm_dir has not been configured or is not a valid directory")
    vm_dir = "/" + vm_dir.strip("/") if vm_dir.strip("/") else "/"
    host = VmHost(root, vm_dir, rc, dataset)
    for sub in (".config", ".templates", ".iso", ".img"):
        os.makedirs(host.real(f"{vm_dir}/{sub}"), exist_ok=True)
    null_iso = host.real(f"{vm_dir}/.config/null.iso")
    if not os.path.exists(null_iso):
        open(null_iso, "ab").close()
    return host


class HostLock:
    """Hold the simulator's state lock (``ROOT/.lock``, the one iohyve's commands take) while
    a ``vm`` command reads and changes the host, so concurrent commands do not lose changes."""

    def __init__(self, root: Root) -> None:
        self._root = root
        self._fd = -1

    def __enter__(self) -> None:
        import fcntl  # noqa: PLC0415

        os.makedirs(self._root.path, exist_ok=True)
        self._fd = os.open(self._root.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._fd)
            raise

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)  # closing the descriptor releases the flock


# -- processes ------------------------------------------------------------------------------------


class Process:
    """One simulated process: its title, resident size and the tap devices it holds."""

    __slots__ = ("rss", "taps", "title")

    def __init__(self, title: str, rss: int = 0, taps: list[str] | None = None) -> None:
        self.title = title
        self.rss = rss
        self.taps = taps if taps is not None else []


class Processes:
    """The process table (``ROOT/processes.json``) and ``/dev/vmm`` of the simulated host."""

    def __init__(self, root: Root) -> None:
        self.path = os.path.join(root.path, PROCESS_FILE)
        self.next_pid = FIRST_PID
        self.table: dict[int, Process] = {}
        self._vmm_dir = host_path(root, "/dev/vmm")
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {self.path}: {exc}") from exc
        try:
            self.next_pid = int(data.get("next_pid", FIRST_PID))
            for pid, entry in data.get("processes", {}).items():
                self.table[int(pid)] = Process(
                    str(entry["title"]), int(entry.get("rss", 0)), list(entry.get("taps", []))
                )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StateError(f"cannot read {self.path}: not a process table") from exc

    def save(self) -> None:
        """Write the table back (atomically)."""
        data = {
            "next_pid": self.next_pid,
            "processes": {
                str(pid): {"title": p.title, "rss": p.rss, "taps": p.taps}
                for pid, p in sorted(self.table.items())
            },
        }
        temp = f"{self.path}.{os.getpid()}.tmp"
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(temp, self.path)

    @property
    def vmm(self) -> list[str]:
        """The VMs under ``/dev/vmm``, in byte order."""
        try:
            return sorted(os.listdir(self._vmm_dir), key=byte_key)
        except FileNotFoundError:
            return []

    def create_vmm(self, name: str) -> None:
        """``/dev/vmm/<name>`` appears (the loader or bhyve created the VM)."""
        os.makedirs(self._vmm_dir, exist_ok=True)
        open(os.path.join(self._vmm_dir, name), "ab").close()

    def destroy_vmm(self, name: str) -> None:
        """``bhyvectl --destroy``: ``/dev/vmm/<name>`` goes away."""
        path = os.path.join(self._vmm_dir, name)
        if os.path.lexists(path):
            os.unlink(path)

    def running(self, name: str) -> int | None:
        """``pgrep -fx "bhyve: <name>"``."""
        for pid, process in sorted(self.table.items()):
            if process.title == f"bhyve: {name}":
                return pid
        return None

    def in_loader(self, name: str) -> int | None:
        """The loader (bhyveload, grub-bhyve) whose title's last word is ``name``."""
        for pid, process in sorted(self.table.items()):
            words = process.title.split()
            if words and words[0] in ("bhyveload", "grub-bhyve") and words[-1] == name:
                return pid
        return None

    def spawn(self, title: str, rss: int, taps: list[str]) -> int:
        """Start a process and return its pid."""
        pid = self.next_pid
        while pid in self.table:
            pid += 1
        self.next_pid = pid + 1
        self.table[pid] = Process(title, rss, taps)
        return pid

    def free_taps(self, count: int) -> list[str]:
        """The ``count`` lowest tap devices no process holds."""
        used = {tap for process in self.table.values() for tap in process.taps}
        taps: list[str] = []
        number = 0
        while len(taps) < count:
            if f"tap{number}" not in used:
                taps.append(f"tap{number}")
            number += 1
        return taps
