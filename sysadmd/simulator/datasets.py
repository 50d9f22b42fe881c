"""The simulated ZFS namespace: which datasets exist and what ``zfs list``/``zfs get`` print.

iohyve learns almost everything by piping ``zfs list -H`` or ``zfs get -H`` through ``grep`` and
``cut``, so its quirks (substring matches, names split at ``/``) follow from the exact lines. The
commands build those lines here and run the same pipelines over them.

The datasets of one simulator root, in ``zfs list`` order (byte order of the full names):

* every pool's root dataset ``<pool>`` (mounted at ``/<pool>``);
* ``<pool>/iohyve`` (``/iohyve``), ``<pool>/iohyve/Firmware`` and ``<pool>/iohyve/ISO`` with one
  filesystem per ISO image below it, for the pool named by ``--pool``; they always exist;
* ``<pool>/iohyve`` (``/iohyve/<pool>``) of every other pool ``setup`` prepared;
* ``<pool>/iohyve/<guest>`` (``/iohyve/<guest>``), carrying the ``iohyve:*`` user properties, and
  its zvols ``<pool>/iohyve/<guest>/<diskN>``, which inherit those properties;
* the datasets ``zfs create`` made for other tools (vm-bhyve's ``<pool>/vm``, mounted at
  ``/<pool>/vm``, and zvols below it), kept in the host's state.
"""

from __future__ import annotations

import posixpath

from sysadmd.simulator import zfs
from sysadmd.simulator.context import Context
from sysadmd.simulator.state import Store, byte_key

#: ``zfs list`` prints this for a property a dataset does not have.
UNSET = "-"


class Dataset:
    """One dataset of the simulated pool."""

    __slots__ = ("disk", "guest", "mountpoint", "name", "volsize")

    def __init__(
        self,
        name: str,
        mountpoint: str,
        *,
        guest: str | None = None,
        disk: str | None = None,
        volsize: int | None = None,
    ) -> None:
        #: The full name, ``tank/iohyve/web/disk0``.
        self.name = name
        #: Where it is mounted (``-`` for a zvol).
        self.mountpoint = mountpoint
        #: The guest it belongs to (its own dataset or one of its zvols), if any.
        self.guest = guest
        #: The zvol's last name component (``disk0``), None for a filesystem.
        self.disk = disk
        #: A zvol's size in bytes, None for a filesystem.
        self.volsize = volsize

    @property
    def is_volume(self) -> bool:
        """Whether the dataset is a zvol."""
        return self.disk is not None

    @property
    def pool(self) -> str:
        """The pool the dataset lives in."""
        return self.name.split("/", 1)[0]


def datasets(ctx: Context, store: Store) -> list[Dataset]:
    """Return every simulated dataset in ``zfs list`` order."""
    found = [
        Dataset(ctx.dataset(), "/iohyve"),
        Dataset(ctx.dataset("Firmware"), "/iohyve/Firmware"),
        Dataset(ctx.dataset("ISO"), "/iohyve/ISO"),
    ]
    roots = {ctx.pool, *(pool.name for pool in store.host.pools(ctx.pool))}
    found.extend(Dataset(root, f"/{root}") for root in roots)
    found.extend(
        Dataset(f"{pool}/iohyve", f"/iohyve/{pool}")
        for pool in store.host.iohyve_pools
        if pool != ctx.pool
    )
    found.extend(
        Dataset(ctx.dataset("ISO", iso), f"/iohyve/ISO/{iso}") for iso in ctx.root.iso_names()
    )
    for name, size in store.host.datasets.items():
        if size is None:
            found.append(Dataset(name, f"/{name}"))
        else:
            found.append(Dataset(name, UNSET, disk=name.rsplit("/", 1)[-1], volsize=size))
    for guest, record in store.guests.items():
        found.append(Dataset(ctx.dataset(guest), f"/iohyve/{guest}", guest=guest))
        found.extend(
            Dataset(ctx.dataset(guest, disk), UNSET, guest=guest, disk=disk, volsize=size)
            for disk, size in record.disks.items()
        )
    return sorted(found, key=lambda dataset: byte_key(dataset.name))


def volumes(ctx: Context, store: Store) -> list[Dataset]:
    """Return the zvols, in ``zfs list -t volume`` order."""
    return [dataset for dataset in datasets(ctx, store) if dataset.is_volume]


def find(ctx: Context, store: Store, name: str) -> Dataset | None:
    """Return the dataset called ``name``, if it exists."""
    for dataset in datasets(ctx, store):
        if dataset.name == name:
            return dataset
    return None


def disk_names(disks: dict[str, int]) -> list[str]:
    """Return a guest's zvol names in ``zfs list`` order."""
    return sorted(disks, key=byte_key)


# -- properties -----------------------------------------------------------------------------------


def user_properties(ctx: Context, store: Store, dataset: Dataset) -> list[tuple[str, str, str]]:
    """Return ``(property, value, source)`` for the dataset's user properties.

    A zvol inherits its guest's properties (source ``inherited from <guest dataset>``).
    """
    if dataset.guest is None or dataset.guest not in store.guests:
        return []
    props = store.guests[dataset.guest].props
    if dataset.is_volume:
        source = f"inherited from {ctx.dataset(dataset.guest)}"
        return [(prop, value, source) for prop, value in props.items()]
    return [(prop, value, "local") for prop, value in props.items()]


def property_value(ctx: Context, store: Store, dataset: Dataset, prop: str) -> str:
    """Return what ``zfs get -H -o value <prop>`` prints for the dataset."""
    if prop == "name":
        return dataset.name
    if prop == "volsize":
        return zfs.nicenum(dataset.volsize) if dataset.volsize is not None else UNSET
    if prop == "mountpoint":
        return dataset.mountpoint
    for name, value, _source in user_properties(ctx, store, dataset):
        if name == prop:
            return value
    return UNSET


def _used(dataset: Dataset, everything: list[Dataset]) -> int:
    """Bytes ``zfs list`` reports as USED: a zvol reserves its size, a parent adds its zvols."""
    if dataset.volsize is not None:
        return dataset.volsize + 8192 * 33
    prefix = dataset.name + "/"
    return 98304 + sum(
        _used(other, everything)
        for other in everything
        if other.volsize is not None and other.name.startswith(prefix)
    )


def list_lines(ctx: Context, store: Store) -> list[str]:
    """Return ``zfs list -H``: ``NAME USED AVAIL REFER MOUNTPOINT`` separated by TABs."""
    pools = {pool.name: pool for pool in store.host.pools(ctx.pool)}
    lines = []
    everything = datasets(ctx, store)
    for dataset in everything:
        pool = pools.get(dataset.pool)
        avail = zfs.nicenum(pool.size - pool.alloc) if pool is not None else UNSET
        refer = "56K" if dataset.is_volume else "96K"
        used = zfs.nicenum(_used(dataset, everything))
        lines.append(f"{dataset.name}\t{used}\t{avail}\t{refer}\t{dataset.mountpoint}")
    return lines


def list_columns(ctx: Context, store: Store, columns: list[str]) -> list[str]:
    """Return ``zfs list -H -o <columns>`` for every dataset."""
    return [
        "\t".join(property_value(ctx, store, dataset, column) for column in columns)
        for dataset in datasets(ctx, store)
    ]


def get_all_lines(ctx: Context, store: Store, targets: list[Dataset] | None = None) -> list[str]:
    """Return the user-property lines of ``zfs get -H all [targets]`` (all datasets if None).

    Native properties are left out: none of iohyve's pipelines keeps them.
    """
    lines: list[str] = []
    for dataset in datasets(ctx, store) if targets is None else targets:
        lines.extend(
            f"{dataset.name}\t{prop}\t{value}\t{source}"
            for prop, value, source in user_properties(ctx, store, dataset)
        )
    return lines


# -- arguments ------------------------------------------------------------------------------------


def open_dataset(ctx: Context, store: Store, word: str) -> tuple[Dataset | None, str | None]:
    """Open ``word`` like ``zfs_open`` (``zfs set``, ``inherit``, ``destroy``).

    Return the dataset, or None and the error line zfs prints.
    """
    if zfs.validate_for_open(word) is not None:
        return None, zfs.error("open", word, "invalid dataset name")
    dataset = find(ctx, store, word)
    if dataset is None:
        return None, zfs.error("open", word, zfs.DOES_NOT_EXIST)
    return dataset, None


def resolve_argument(ctx: Context, store: Store, word: str) -> tuple[Dataset | None, str | None]:
    """Resolve an argument of ``zfs get``, which may also be a path inside a mounted dataset.

    Return the dataset, or None and the error line zfs prints (``<path>: No such file or
    directory`` for a path that does not exist).
    """
    if not word.startswith("/"):
        return open_dataset(ctx, store, word)
    path = "/" + posixpath.normpath(word).lstrip("/")
    mounted = {dataset.mountpoint: dataset for dataset in datasets(ctx, store)}
    while path not in mounted:
        parent = posixpath.dirname(path)
        if parent == path or not _exists_below(ctx, store, path):
            return None, f"{word}: No such file or directory"
        path = parent
    return mounted[path], None


def _exists_below(ctx: Context, store: Store, path: str) -> bool:
    """Whether ``path`` (not a mountpoint) exists inside a simulated dataset: an ISO file."""
    parts = path.strip("/").split("/")
    return (
        len(parts) == 4
        and parts[:2] == ["iohyve", "ISO"]
        and zfs.unsafe_component(parts[2]) is None
        and posixpath.isfile(posixpath.join(ctx.root.iso_dataset(parts[2]), parts[3]))
    )


def mounted_directory_exists(ctx: Context, store: Store, path: str) -> bool:
    """Return what ``[ -d <path> ]`` says for a path below ``/iohyve`` on a simulated host.

    ``/iohyve`` and the mountpoints below it exist (``/iohyve/ISO``, guests, ISO datasets), and so
    do ``/`` and the pools' mountpoints; ``.`` and ``..`` are resolved first.
    """
    normal = "/" + posixpath.normpath(path).lstrip("/")
    if normal in ("/", "/iohyve"):
        return True
    return any(dataset.mountpoint == normal for dataset in datasets(ctx, store))
