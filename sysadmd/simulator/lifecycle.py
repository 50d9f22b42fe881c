"""The guest commands beyond create/start/stop: ``install``, ``forcekill``, ``delete`` and ``get``.

No bhyve runs: ``install`` marks the VM as created and running the way ``start`` does, and
``forcekill`` ends the simulated ``bhyve: ioh-<name>`` processes. Quirks kept from the real
scripts:

* ``install`` never looks at the ISO: a missing image would only show as loader/bhyve errors,
  which the simulator has none of.
* ``forcekill <name>`` is ``kill -9 $(pgrep -f <name>)`` followed by ``bhyvectl --destroy
  --vm=ioh-<name>``. ``pgrep -f`` matches process titles by substring, so every running guest
  whose ``bhyve: ioh-<guest>`` title contains ``<name>`` (``web`` also hits ``web2``) is killed
  too; only ``<name>`` itself loses its VM (``VMM?`` stays ``YES`` for the others). Without a VM
  to destroy bhyvectl prints ``VM:ioh-<name> is not created.`` on stdout and the status is 1;
  without a process to kill, ``kill -9`` prints its usage on stderr. (``pgrep``'s own usage for
  an empty name, and processes other than the guests' bhyve, are not simulated.)
* ``delete`` (0.7.3, and 0.7.4+ without ``-f``) reads the answer from ``/dev/tty``. The simulator
  has no controlling terminal, so the redirection fails (sh's message on stderr) and nothing is
  deleted. ``delete -f`` (0.7.4+) warns, sleeps ``IOHYVE_SIM_DELETE_DELAY`` seconds (default 10,
  as iohyve's ``sleep 10``) without holding the state lock, then destroys the guest and its
  zvols; a guest that is running keeps its zvols busy and survives.
* ``get`` prints ``zfs get -H -o value iohyve:<prop>``'s raw value, ``-`` when unset.
"""

from __future__ import annotations

import math
import os
import time

from sysadmd.simulator import shell, zfsops
from sysadmd.simulator.context import SIMULATOR_ERROR, Context, arg
from sysadmd.simulator.guests import (
    NO_TTY,
    by_name_property,
    console_started,
    console_stopped,
    dir_test_0_7_3,
    pool_of,
    running_guest,
    vm_name,
    volume_matches,
    volume_names,
    zfs_set,
)
from sysadmd.simulator.state import Store

#: Environment variable setting ``delete -f``'s pause in seconds (iohyve sleeps 10).
DELETE_DELAY_ENV = "IOHYVE_SIM_DELETE_DELAY"
_DEFAULT_DELETE_DELAY = 10.0


def delete_delay() -> float | None:
    """Return ``delete -f``'s pause from the environment, or None if it is not a duration."""
    value = os.environ.get(DELETE_DELAY_ENV, "").strip()
    if not value:
        return _DEFAULT_DELETE_DELAY
    try:
        delay = float(value)
    except ValueError:
        return None
    return delay if math.isfinite(delay) and delay >= 0 else None


# -- install --------------------------------------------------------------------------------------


def _install_target(ctx: Context, store: Store, name: str) -> tuple[str | None, list[str], int]:
    """Find the guest ``install`` acts on.

    Return the guest (None if the command ends here), the pools 0.7.3's lookup found and the
    status to end with.
    """
    if ctx.profile.identify_by_name_property:
        guest = by_name_property(store, name)
        if guest is None:
            ctx.output.out(f"guest {name} doesn't exist")
            return None, [], 1
        if store.guests[guest].props.get("iohyve:template") == "YES":
            ctx.output.out(f"{name} is a template. Cannot start")
            return None, [], 1
        return guest, [], 0
    pools = [pool_of(match) for match in volume_matches(ctx, store, name)]
    if not dir_test_0_7_3(ctx, store, name, pools):
        ctx.output.out("Not a valid guest name")
        return None, pools, 0
    # The test also passes for /iohyve/ISO and the like, which have no guest behind them.
    return (name if name in store.guests else ""), pools, 0


def cmd_install(ctx: Context, args: list[str]) -> int:
    """``iohyve install <name> <ISO>``: set ``install=yes`` and boot the guest from the ISO."""
    name, iso = arg(args, 0), arg(args, 1)
    profile = ctx.profile
    if profile.argument_checks and not iso:
        return ctx.usage("install")
    with ctx.root.locked() as store:
        guest, pools, status = _install_target(ctx, store, name)
        if guest is None:
            return status
        if running_guest(ctx, store, name) is not None:
            ctx.output.out("Guest is already running.")
            return 0
        ctx.output.out(f"Installing {name}...")
        if profile.identify_by_name_property:
            store.guests[guest].props["iohyve:install"] = "yes"
        else:
            target = shell.words(f"{chr(10).join(pools)}/iohyve/{name}")
            zfs_set(ctx, store, ["iohyve:install=yes", *target])
        record = store.guests.get(guest)
        if record is None:
            return 0
        record.vmm = True
        record.running = True
        store.dirty = True
        if profile.install_warns_outdated_bargs and "iohyve:bargs" not in record.props:
            ctx.output.out("This version of your guest is outdated.")
            ctx.output.out("Please run iohyve fix-bargs guestname to update.")
    console_started(ctx, guest, record, name, iso)
    return 0


# -- forcekill ------------------------------------------------------------------------------------


def cmd_forcekill(ctx: Context, args: list[str]) -> int:
    """``iohyve forcekill <name>``: ``kill -9`` every matching process, then destroy the VM."""
    name = arg(args, 0)
    if ctx.profile.argument_checks and not name:
        return ctx.usage("forcekill")
    with ctx.root.locked() as store:
        pattern = shell.grep_pattern(name) if name else None
        killed = [
            guest
            for guest in store.sorted_names()
            if pattern is not None
            and store.guests[guest].running
            and pattern.search(f"bhyve: ioh-{vm_name(ctx, guest, store.guests[guest])}")
        ]
        if not killed:
            ctx.output.err("kill: usage: kill [-s signal_name] pid ...")
        for guest in killed:
            store.guests[guest].running = False
            store.dirty = True
            console_stopped(ctx, guest, store.guests[guest])
        for guest in store.sorted_names():
            record = store.guests[guest]
            if record.vmm and vm_name(ctx, guest, record) == name:
                record.vmm = False
                store.dirty = True
                return 0
    ctx.output.out(f"VM:ioh-{name} is not created.")
    return 1


# -- delete ---------------------------------------------------------------------------------------


def _delete_target(ctx: Context, name: str) -> tuple[str | None, int]:
    """Find the guest ``delete`` acts on (0.7.6+: by ``iohyve:name``); None ends the command."""
    with ctx.root.locked() as store:
        guest = by_name_property(store, name)
        if guest is None:
            ctx.output.out(f"guest {name} doesn't exist")
            return None, 1
        if store.guests[guest].props.get("iohyve:template") == "YES":
            ctx.output.out(f"{name} is a template. Cannot delete")
            return None, 1
    return guest, 0


def cmd_delete(ctx: Context, args: list[str]) -> int:
    """``iohyve delete [-f] <name>``: destroy the guest's dataset and zvols."""
    if not ctx.profile.force_flags:
        # 0.7.3 asks on /dev/tty before anything else happens.
        ctx.output.err(NO_TTY)
        ctx.output.out("Not deleted...")
        return 0
    forced = arg(args, 0) == "-f"
    name = arg(args, 1) if forced else arg(args, 0)
    if not name:
        return ctx.usage("delete")
    delay = delete_delay()
    if delay is None:
        ctx.output.err(f"iohyve-sim: {DELETE_DELAY_ENV} is not a number of seconds")
        return SIMULATOR_ERROR
    guest, status = _delete_target(ctx, name)
    if guest is None:
        return status
    dataset = ctx.dataset(guest)
    ctx.output.out("")
    if not forced:
        ctx.output.out(
            f"[WARNING] Are you sure you want to permanently delete {name} and all child datasets?"
        )
        ctx.output.err(NO_TTY)
        ctx.output.out(f"{name} not deleted...")
        return 0
    ctx.output.out(f"[WARNING] Forcing permanent deletion of {name}")
    ctx.output.out(f"Location: {dataset} including children and clones")
    ctx.output.out("")
    ctx.output.out("Hit Ctrl+C in the next 10 seconds to cancel...")
    # No lock while waiting: other commands run meanwhile, the guest is looked up again after.
    time.sleep(delay)
    ctx.output.out(f"Deleting {name} at {dataset}...")
    with ctx.root.locked() as store:
        return zfsops.destroy_guest(ctx, store, dataset)


# -- get ------------------------------------------------------------------------------------------


def cmd_get(ctx: Context, args: list[str]) -> int:
    """``iohyve get <name> <prop>``: the title line, then ``zfs get``'s raw value."""
    name, prop = arg(args, 0), arg(args, 1)
    profile = ctx.profile
    if profile.argument_checks and not prop:
        return ctx.usage("get")
    with ctx.root.locked() as store:
        pattern = f"iohyve/{name}" if profile.lookup_anchored else name
        matches = shell.grep(pattern, volume_names(ctx, store))
        pool = pool_of(matches[0]) if matches else ""
        ctx.output.out(f"Getting {name} prop {prop}...")
        target = shell.words(f"{pool}/iohyve/{name}")
        return zfsops.get_values(ctx, store, [*shell.words(f"iohyve:{prop}"), *target])
