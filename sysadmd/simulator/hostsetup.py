"""``iohyve setup pool=P [kmod=0|1] [net=IF]``: prepare a pool, the kernel modules and a bridge.

The simulator keeps guests and ISO images on the pool named by ``--pool`` whatever ``setup``
does; ``setup`` records which pools it prepared (``<pool>/iohyve``, and ``ISO``/``Firmware`` on
the first), the loaded kernel modules and the interfaces it created, which ``zpool list`` and
``ifconfig`` show. A fresh simulator root counts as a host where iohyve was never set up: the
first ``setup pool=tank`` succeeds, a second one finds ``tank/iohyve`` (the other commands never
look: for them the ``--pool`` pool is always prepared).

0.7.3 handles its ``key=value`` words in the order given:

* ``pool=P``: ``Setting up iohyve pool...``, then ``zfs create P/iohyve`` (an existing one is an
  error on stderr, carrying on regardless); if ``/iohyve/ISO`` exists (a pool was set up before)
  ``Secondary pool set up...`` and the mountpoint ``/iohyve/P``, else ``ISO`` and ``Firmware``;
* ``kmod=1``/``kmod=0``: ``Loading kernel modules...``/``Unloading kernel modules...`` and
  ``kldload``/``kldunload vmm nmdm`` (their complaints on stderr); another value prints
  ``Improper syntax``, ``kmod=1 to load modules``, ``kmod=0 to unload modules``;
* ``net=IF``: ``Seting up bridge0 on IF...`` (sic), ``ifconfig tap0 create``, ``sysctl
  net.link.tap.up_on_open=1`` (which prints ``net.link.tap.up_on_open: 0 -> 1``), ``ifconfig
  bridge0 create``, ``addm IF addm tap0``, ``up``; if ``bridge0`` exists, ``bridge0 is already
  enabled on this machine...``.

0.7.9 (no arguments: the usage, status 1) collects the words, then does pool, kmod and net in
that order: a pool ``zpool`` does not know prints ``There are errors with the pool or pool
name.`` and ends the command with status 1; an existing ``P/iohyve`` prints ``iohyve already
exists on P``; kmod loads or unloads vmm, nmdm, if_bridge and if_tap; net creates ``bridge0``
described ``iohyve-bridge`` with the interface as member, or reports the existing bridge and
checks the tap sysctl (``sysctl already setup properly as well...``).
"""

from __future__ import annotations

from sysadmd.simulator import shell, zfs
from sysadmd.simulator.context import Context, arg
from sysadmd.simulator.hosttools import add_bridge_member, create_interface, interface_names
from sysadmd.simulator.state import Store

#: test(1)'s complaint about ``[ $prop = pool ]`` with an empty ``$prop``.
_EMPTY_TEST = "[: =: unexpected operator"
_IMPROPER = ("Improper syntax", "kmod=1 to load modules", "kmod=0 to unload modules")
_TAP_SYSCTL = "net.link.tap.up_on_open"


def _pairs(ctx: Context, args: list[str], *, skip: str = "") -> list[tuple[str, str]]:
    """Split the words like ``for arg in $args`` with ``cut -d= -f1`` and ``-f2``.

    Words equal to ``skip`` are left out (0.7.3 loops over ``setup`` itself too). Words with an
    empty key make each test of the key's ``if``/``elif`` chain complain.
    """
    pairs = []
    for word in shell.words(" ".join(args)):
        if skip and word == skip:
            continue
        key, value = shell.cut_field(word, "=", 1), shell.cut_field(word, "=", 2)
        if not key:
            for _test in range(3):
                ctx.output.err(_EMPTY_TEST)
            continue
        pairs.append((key, value))
    return pairs


# -- zfs and the kernel ---------------------------------------------------------------------------


def _pool_names(ctx: Context, store: Store) -> list[str]:
    return [pool.name for pool in store.host.pools(ctx.pool)]


def _create_iohyve(ctx: Context, store: Store, pool: str) -> int:
    """Run ``zfs create <pool>/iohyve``; record the pool when it works."""
    path = f"{pool}/iohyve"
    problem = zfs.name_error("create", path, pool, changing=True)
    if problem is None and pool not in _pool_names(ctx, store):
        problem = zfs.error("create", path, f"no such pool '{pool}'")
    if problem is None and pool in store.host.iohyve_pools:
        problem = zfs.error("create", path, zfs.ALREADY_EXISTS)
    if problem is not None:
        ctx.output.err(problem)
        return 1
    store.host.iohyve_pools.append(pool)
    store.dirty = True
    return 0


def _set_mountpoint(ctx: Context, store: Store, pool: str) -> int:
    """Run ``zfs set mountpoint=... <pool>/iohyve``: only whether it can be opened matters."""
    path = f"{pool}/iohyve"
    if zfs.validate_for_open(path) is not None:
        ctx.output.err(zfs.error("open", path, "invalid dataset name"))
        return 1
    if pool not in store.host.iohyve_pools:
        ctx.output.err(zfs.error("open", path, zfs.DOES_NOT_EXIST))
        return 1
    return 0


def _create_child(ctx: Context, store: Store, pool: str, child: str) -> int:
    """Run ``zfs create <pool>/iohyve/<child>`` right after ``<pool>/iohyve`` was made."""
    path = f"{pool}/iohyve/{child}"
    problem = zfs.name_error("create", path, pool, changing=True)
    if problem is None and pool not in _pool_names(ctx, store):
        problem = zfs.error("create", path, f"no such pool '{pool}'")
    if problem is None and pool not in store.host.iohyve_pools:
        problem = zfs.error("create", path, "parent does not exist")
    if problem is not None:
        ctx.output.err(problem)
        return 1
    return 0


def _setup_new_pool(ctx: Context, store: Store, pool: str) -> int:
    """The part both dialects share after ``Setting up iohyve pool...``."""
    first = not store.host.iohyve_pools
    _create_iohyve(ctx, store, pool)
    if not first:
        ctx.output.out("Secondary pool set up...")
        return _set_mountpoint(ctx, store, pool)
    _set_mountpoint(ctx, store, pool)
    _create_child(ctx, store, pool, "ISO")
    return _create_child(ctx, store, pool, "Firmware")


def _kldload(ctx: Context, store: Store, module: str) -> int:
    modules = store.host.modules
    if module in modules:
        ctx.output.err(f"kldload: can't load {module}: module already loaded or in kernel")
        return 1
    modules.append(module)
    store.dirty = True
    return 0


def _kldunload(ctx: Context, store: Store, module: str) -> int:
    host = store.host
    if module not in host.modules:
        ctx.output.err(f"kldunload: can't find file {module}")
        return 1
    busy = {
        "vmm": any(record.vmm for record in store.guests.values()),
        "if_bridge": any(name.startswith("bridge") for name in host.interfaces),
        "if_tap": any(name.startswith("tap") for name in host.interfaces),
    }
    if busy.get(module, False):
        ctx.output.err("kldunload: can't unload file: Device busy")
        return 1
    host.modules.remove(module)
    store.dirty = True
    return 0


def _set_tap_sysctl(ctx: Context, store: Store, *, quiet: bool) -> int:
    """Run ``sysctl net.link.tap.up_on_open=1``; it exists only with if_tap loaded."""
    host = store.host
    if "if_tap" not in host.modules:
        if not quiet:
            ctx.output.err(f"sysctl: unknown oid '{_TAP_SYSCTL}'")
        return 1
    if not quiet:
        ctx.output.out(f"{_TAP_SYSCTL}: {int(host.tap_up_on_open)} -> 1")
    host.tap_up_on_open = True
    store.dirty = True
    return 0


# -- 0.7.3 ----------------------------------------------------------------------------------------


def _setup_0_7_3(ctx: Context, store: Store, args: list[str]) -> int:
    status = 0
    for key, value in _pairs(ctx, args, skip="setup"):
        if key == "pool":
            ctx.output.out("Setting up iohyve pool...")
            status = _setup_new_pool(ctx, store, value)
        elif key == "kmod":
            status = _kmod_0_7_3(ctx, store, value)
        elif key == "net":
            status = _net_0_7_3(ctx, store, value)
        else:
            status = 0
    return status


def _kmod_0_7_3(ctx: Context, store: Store, value: str) -> int:
    if not value:
        # "[ $val = 1 ]" and "[ $val = 0 ]" with an empty $val.
        ctx.output.err(_EMPTY_TEST)
        ctx.output.err(_EMPTY_TEST)
    if value == "1":
        ctx.output.out("Loading kernel modules...")
        _kldload(ctx, store, "vmm")
        return _kldload(ctx, store, "nmdm")
    if value == "0":
        ctx.output.out("Unloading kernel modules...")
        _kldunload(ctx, store, "vmm")
        return _kldunload(ctx, store, "nmdm")
    for line in _IMPROPER:
        ctx.output.out(line)
    return 0


def _net_0_7_3(ctx: Context, store: Store, interface: str) -> int:
    if "bridge0" in interface_names(store.host):
        ctx.output.out("bridge0 is already enabled on this machine...")
        return 0
    ctx.output.out(f"Seting up bridge0 on {interface}...")
    create_interface(ctx, store, "tap0")
    _set_tap_sysctl(ctx, store, quiet=False)
    create_interface(ctx, store, "bridge0")
    for member in (*shell.words(interface), "tap0") if interface else ("addm", "tap0"):
        # "addm $val addm tap0": ifconfig stops at the first member it cannot add.
        if add_bridge_member(ctx, store, member) != 0:
            break
    return 0


# -- 0.7.9 ----------------------------------------------------------------------------------------


def _setup_0_7_9(ctx: Context, store: Store, args: list[str]) -> int:
    values = {"pool": "", "kmod": "", "net": ""}
    for key, value in _pairs(ctx, args):
        if key in values:
            values[key] = value
    status = 0
    if values["pool"]:
        pool = values["pool"]
        if ctx.profile.setup_pool_check and pool not in _pool_names(ctx, store):
            # "zpool status <pool>" fails: a dataset path, a typo, a pool with errors.
            ctx.output.out("There are errors with the pool or pool name.")
            return 1
        if pool in store.host.iohyve_pools:
            ctx.output.out(f"iohyve already exists on {pool}")
            status = 0
        else:
            ctx.output.out("Setting up iohyve pool...")
            status = _setup_new_pool(ctx, store, pool)
    if values["kmod"]:
        status = _kmod_0_7_9(ctx, store, values["kmod"])
    if values["net"]:
        status = _net_0_7_9(ctx, store, values["net"])
    return status


def _kmod_0_7_9(ctx: Context, store: Store, value: str) -> int:
    modules = ("vmm", "nmdm", "if_bridge", "if_tap")
    if value == "1":
        ctx.output.out("Loading kernel modules...")
        for module in modules:
            if module not in store.host.modules:
                _kldload(ctx, store, module)
        return 0
    if value == "0":
        ctx.output.out("Unloading kernel modules...")
        # One "kldunload vmm nmdm ...": it stops at the first module it cannot unload.
        for module in [module for module in modules if module in store.host.modules]:
            if _kldunload(ctx, store, module) != 0:
                return 1
        return 0
    for line in _IMPROPER:
        ctx.output.out(line)
    return 0


def _net_0_7_9(ctx: Context, store: Store, interface: str) -> int:
    host = store.host
    loaded = "if_tap" in host.modules
    if "bridge0" not in " ".join(interface_names(host)):
        ctx.output.out(f"Setting up bridge0 on {interface}...")
        if not loaded:
            ctx.output.out(f"cannot set '{_TAP_SYSCTL}': is if_tap loaded?")
        else:
            _set_tap_sysctl(ctx, store, quiet=True)
        # "ifconfig bridge0 create descr iohyve-bridge addm <if> up", one option at a time.
        create_interface(ctx, store, "bridge0")
        host.bridge_description = "iohyve-bridge"
        for member in shell.words(interface):
            if add_bridge_member(ctx, store, member) != 0:
                return 1
        return 0
    ctx.output.out("bridge0 is already enabled on this machine...")
    if not loaded:
        ctx.output.out(f"cannot set '{_TAP_SYSCTL}': is if_tap loaded?")
        return 1
    if not host.tap_up_on_open:
        ctx.output.out("Setting up correct sysctl value...")
        return _set_tap_sysctl(ctx, store, quiet=False)
    ctx.output.out("sysctl already setup properly as well...")
    return 0


def cmd_setup(ctx: Context, args: list[str]) -> int:
    """``iohyve setup pool=P [kmod=0|1] [net=IF]``."""
    if ctx.profile.argument_checks and not arg(args, 0):
        return ctx.usage("setup")
    with ctx.root.locked() as store:
        if ctx.profile.setup_checks:
            return _setup_0_7_9(ctx, store, args)
        return _setup_0_7_3(ctx, store, args)
