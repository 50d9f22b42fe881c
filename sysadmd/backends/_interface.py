"""What the handlers need from a VM manager, in plain data: the backend interface.

A backend knows one VM manager (iohyve today, vm-bhyve next): its command lines, how
to read its output, where it keeps guests and ISOs, and how to tell whether a command
that exits 0 did what was asked. The handlers of the sysadm ``iohyve`` API class speak
only this interface: they never build an argv and never read a tool's text.

Names crossing the interface are already validated by the API (full matches against
the argument types of :mod:`sysadmd.services._iohyve`). Property names are the sysadm
API's (iohyve's: ``ram``, ``cpu``, ``description``...); a backend whose tool calls them
otherwise translates both ways.

Every method that does something returns a Deferred, and every failure is one of the
errors below (:mod:`sysadmd.backends._errors`), never a transport's error: the handlers turn
them into API replies (404, 409, 400, 500).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NotRequired, Protocol, TypedDict

from twisted.internet.defer import Deferred

from sysadmd.backends._runner import RunningProcess

#: How the name of an upload's temporary file begins (then the task's id): a hidden name,
#: which no ISO name can be (they start with a letter or digit) and no ISO list shows.
UPLOAD_TEMPORARY_PREFIX: Final = ".sysadmd-upload-"


class GuestSummary(TypedDict):
    """One guest as a list shows it.

    The four sysadm fields are ``YES``/``NO`` strings (``description`` free text):
    ``vmm`` whether the hypervisor holds a VM for it, ``running`` whether bhyve runs
    it, ``rcboot`` whether it starts with the host. ``state`` is one of ``stopped``,
    ``running``, ``bootloader``, ``suspended``, ``locked``. The others are what a manager may
    add (vm-bhyve's list shows them; iohyve's does not): they are not part of the
    ``listvms`` reply.
    """

    description: str
    rcboot: str
    running: str
    vmm: str
    state: NotRequired[str]
    cpu: NotRequired[str]
    memory: NotRequired[str]
    loader: NotRequired[str]
    datastore: NotRequired[str]


#: The fields of :class:`GuestSummary` that sysadm's ``listvms`` reply carries.
SYSADM_GUEST_FIELDS = ("description", "rcboot", "running", "vmm")


@dataclass(frozen=True)
class GuestSpec:
    """What a new guest is made of: its first disk's size and, where the manager has
    them, a template, virtual CPUs, memory and the datastore (pool) it lives on.

    A backend refuses (:class:`~sysadmd.backends._errors.Unsupported`) a field its tool
    cannot honour rather than ignoring it.
    """

    size: str
    template: str | None = None
    cpu: str | None = None
    memory: str | None = None
    datastore: str | None = None


@dataclass(frozen=True)
class DiskInfo:
    """One disk of a guest: its size as the manager writes it (``20G``), and where
    it is stored when the manager says (a zvol, a file)."""

    size: str
    path: str | None = None


@dataclass(frozen=True)
class IsoInfo:
    """One installation image: its name and the datastore holding it, if the
    manager has several (vm-bhyve's ``iso:`` datastores)."""

    name: str
    datastore: str | None = None


class VMBackend(Protocol):
    """One VM manager, behind one interface.

    Changes of one guest run one at a time; every read sees the changes asked for
    before it. A "not found" or "busy" answer is decided before anything changes.
    """

    #: The manager's name, as messages use it ("iohyve").
    tool: str

    # The manager and the host it runs on

    def version(self) -> Deferred[str]:
        """The manager's version line."""
        ...

    def is_setup(self) -> Deferred[bool]:
        """Whether the host is set up for the manager (it starts at boot)."""
        ...

    def setup(self, pool: str, nic: str) -> Deferred[None]:
        """Set the manager up on ZFS pool ``pool`` and network interface ``nic``, and
        make it start at boot; the boot configuration is left as it was on failure."""
        ...

    # Guests

    def list_vms(self) -> Deferred[dict[str, GuestSummary]]:
        """Every guest, by name."""
        ...

    def guest(self, name: str) -> Deferred[GuestSummary]:
        """Guest ``name``; NotFound if there is none."""
        ...

    def create(self, name: str, spec: GuestSpec) -> Deferred[None]:
        """Create guest ``name``; Conflict if the name is taken."""
        ...

    def install(self, name: str, iso: str) -> Deferred[None]:
        """Boot stopped guest ``name`` from ISO ``iso``; NotFound for either, Conflict
        if the guest runs."""
        ...

    def start(self, name: str) -> Deferred[None]:
        """Start guest ``name``; Conflict if it runs already."""
        ...

    def stop(self, name: str, *, force: bool = False) -> Deferred[None]:
        """Ask guest ``name`` to shut down (ACPI), or with ``force`` end it at once
        (power off); Conflict if it is not running."""
        ...

    def delete(self, name: str) -> Deferred[None]:
        """Delete stopped guest ``name`` with its disks; Conflict if it runs."""
        ...

    def console_device(self, name: str) -> Deferred[Path]:
        """The device to open for guest ``name``'s serial console (the host's end of
        its null-modem pair); NotFound if the guest has no console device."""
        ...

    # Disks

    def disks(self, name: str) -> Deferred[dict[str, DiskInfo]]:
        """Guest ``name``'s disks by disk name (``disk0``...)."""
        ...

    def add_disk(self, name: str, size: str, datastore: str | None = None) -> Deferred[None]:
        """Add a disk of ``size`` to guest ``name``, on ``datastore`` if given."""
        ...

    def resize_disk(self, name: str, disk: str, size: str) -> Deferred[None]:
        """Resize disk ``disk`` of stopped guest ``name``; Conflict if it runs."""
        ...

    def delete_disk(self, name: str, disk: str) -> Deferred[None]:
        """Remove disk ``disk`` from guest ``name``."""
        ...

    # Properties, in the sysadm API's names

    def properties(self, name: str) -> Deferred[dict[str, str]]:
        """Guest ``name``'s properties and their values."""
        ...

    def set_properties(self, name: str, values: Mapping[str, str]) -> Deferred[None]:
        """Set properties of guest ``name``; BackendFailed if any did not take."""
        ...

    # Installation images

    def list_isos(self) -> Deferred[list[IsoInfo]]:
        """Every ISO, in the manager's order."""
        ...

    def iso_files(self) -> Deferred[list[tuple[IsoInfo, int]]]:
        """Every ISO with its file's size in bytes, in the manager's order (one stat per
        ISO, off the reactor thread); an ISO whose file went away meanwhile is left out."""
        ...

    def rename_iso(
        self, source: str, target: str, *, busy: Callable[[str], bool]
    ) -> Deferred[None]:
        """Rename ISO ``source``; NotFound if missing, Conflict if ``target`` exists or
        ``busy(name)`` says a download owns either name."""
        ...

    def remove_iso(self, target: str, *, busy: Callable[[str], bool]) -> Deferred[None]:
        """Remove ISO ``target``; NotFound if missing, Conflict if ``busy``."""
        ...

    # Downloads of ISOs (the fetch queue's seam)

    def check_iso_absent(self, name: str) -> Deferred[None]:
        """Conflict if ISO ``name`` exists (a download must not overwrite it)."""
        ...

    def start_fetch(
        self, url: str, *, timeout: float, on_output: Callable[[str, bytes], None] | None = None
    ) -> RunningProcess:
        """Start downloading ``url`` into the ISO store; the caller follows the process."""
        ...

    def resume_fetch(
        self,
        url: str,
        name: str,
        *,
        timeout: float,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> RunningProcess:
        """Continue the partial download of ISO ``name`` from ``url`` with the host's
        ``fetch -F -r``, in the file a first attempt (:meth:`start_fetch`) writes; the
        caller has checked that the source is unchanged, and follows the process.
        Unsupported when the host has no fetch command."""
        ...

    def gather_partial(self, name: str) -> Deferred[int]:
        """Keep the largest file an interrupted download of ``name`` left (fetch(1)'s
        temporary names included) where :meth:`resume_fetch` continues it; its size, 0 if
        there is none."""
        ...

    def iso_directory(self, name: str) -> Path:
        """The directory a download of ISO ``name`` writes into."""
        ...

    def iso_size(self, name: str) -> int | None:
        """The size of ISO ``name``'s file, or None if it is not there."""
        ...

    def fetched(self, name: str) -> Deferred[bool]:
        """Whether ISO ``name`` is listed (to check a finished download)."""
        ...

    def discard_partial(self, name: str) -> Deferred[None]:
        """Remove what a failed or cancelled download left under ``name``."""
        ...

    # Uploads of ISOs (the body of ``PUT /iso/<name>`` is written in place)

    def prepare_upload(self, name: str) -> Deferred[Path]:
        """Make ISO ``name``'s place in the store (iohyve: its dataset) and return the
        directory an upload of it streams into; the ISO is then the file ``<name>`` in that
        directory. Conflict if the ISO exists. ``discard_partial`` removes the place again."""
        ...

    def upload_places(self) -> Deferred[list[tuple[Path, str | None]]]:
        """Every directory uploads stream into, each with the ISO whose own place it is
        (``None`` for a store shared by all ISOs): where a stopped daemon's upload
        temporaries are looked for at start."""
        ...
