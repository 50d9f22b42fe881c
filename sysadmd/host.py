"""``sysadm/zfs list_pools`` and ``sysadm/network list-devices``: what sysadm's client
needs for its iohyve setup page (the pool and the interface to set iohyve up on).

On a host they come from ``zpool list``, ``ifconfig`` and ``sysctl``, run through the
process runner; in simulate mode from the simulator, which answers those commands too.

An interface's ``description`` is the one ``ifconfig`` prints (``description: …``, set with
``ifconfig em0 descr …`` or rc.conf's ``ifconfig_em0_descr``); an interface without one is
described by its driver, as sysadm did: ``sysctl -n dev.<driver>.<unit>.%desc`` (for
``em0``, ``dev.em.0.%desc``, e.g. "Intel(R) PRO/1000 Legacy Network Connection 1.1.0").
Interfaces that have neither (a bridge or tap without a description, a renamed interface)
keep an empty description.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from sysadmd.calls import Call
from sysadmd.iohyve.adapter import IohyveFailed, describe_failure
from sysadmd.registry import action
from sysadmd.roles import Role
from sysadmd.runner import ProcessRunner

POOL_COLUMNS: Final = ("name", "size", "alloc", "free", "frag", "dedup", "health")

#: A device interface's name: its driver and unit (``em0``: ``em``, ``0``).
_DEVICE_NAME: Final = re.compile(r"([a-z]+)([0-9]+)")


def parse_zpool_list(text: str) -> dict[str, dict[str, str]]:
    """``zpool list -H -o name,size,...`` (tab-separated, no header) by pool name."""
    pools: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(POOL_COLUMNS):
            raise ValueError("zpool list printed a row with the wrong number of columns")
        pools[fields[0]] = dict(zip(POOL_COLUMNS[1:], fields[1:], strict=True))
    return pools


def parse_ifconfig(text: str) -> dict[str, str | bool]:
    """One interface's ``ifconfig`` output: whether it is up and active, and its description."""
    up = active = False
    description = ""
    for number, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if number == 0:
            flags = stripped.partition("<")[2].partition(">")[0].split(",")
            up = "UP" in flags
        elif stripped.startswith("status:"):
            active = stripped.partition(":")[2].strip() == "active"
        elif stripped.startswith("description:"):
            description = stripped.partition(":")[2].strip()
    return {"is_active": up and active, "description": description}


class HostActions:
    """Handlers of ``sysadm/zfs`` and ``sysadm/network``."""

    def __init__(
        self,
        runner: ProcessRunner,
        zpool: Sequence[str],
        ifconfig: Sequence[str],
        sysctl: Sequence[str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        """``sysctl`` None: interfaces without a description of their own get none."""
        self._runner = runner
        self._zpool = tuple(zpool)
        self._ifconfig = tuple(ifconfig)
        self._sysctl = tuple(sysctl) if sysctl is not None else None
        self._timeout = timeout

    async def _output(self, what: str, command: Sequence[str], *args: str) -> str:
        result = await self._runner.run(command[0], (*command[1:], *args), timeout=self._timeout)
        if not result.ok:
            raise IohyveFailed(what, result, f"{what} failed: {describe_failure(result)}")
        return result.stdout.decode("utf-8", errors="replace")

    async def _driver_description(self, interface: str) -> str:
        """``sysctl -n dev.<driver>.<unit>.%desc`` for ``interface``; "" when there is none
        (no such device node: bridges, taps, renamed interfaces) or sysctl is not configured."""
        device = _DEVICE_NAME.fullmatch(interface)
        if device is None or self._sysctl is None:
            return ""
        oid = f"dev.{device.group(1)}.{device.group(2)}.%desc"
        result = await self._runner.run(
            self._sysctl[0], (*self._sysctl[1:], "-n", oid), timeout=self._timeout
        )
        if not result.ok:
            return ""
        return result.stdout.decode("utf-8", errors="replace").strip()

    @action(
        "sysadm",
        "zfs",
        "list_pools",
        summary="The ZFS pools, with their size, allocation, free space, fragmentation, "
        "dedup ratio and health, from zpool list.",
        role=Role.OPERATOR,
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
    )
    async def list_pools(self, call: Call) -> Any:
        text = await self._output(
            "zpool list", self._zpool, "list", "-H", "-o", ",".join(POOL_COLUMNS)
        )
        try:
            return parse_zpool_list(text)
        except ValueError as e:
            raise IohyveFailed("zpool list", None, str(e)) from None

    @action(
        "sysadm",
        "network",
        "list-devices",
        summary="The network interfaces (not loopback), keyed by name, with is_active "
        '("true" when up with a link) and description (the one ifconfig shows, else the '
        "driver's, from sysctl dev.<driver>.<unit>.%desc; empty when there is neither).",
        role=Role.OPERATOR,
        wrapped=False,
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "is_active": {"enum": ["true", "false"]},
                    "description": {"type": "string"},
                },
                "required": ["is_active", "description"],
            },
        },
    )
    async def list_devices(self, call: Call) -> Any:
        names = (await self._output("ifconfig", self._ifconfig, "-l")).split()
        devices: dict[str, dict[str, str]] = {}
        for name in names:
            if name.startswith("lo") or not name.isalnum():
                continue
            state = parse_ifconfig(await self._output("ifconfig", self._ifconfig, name))
            description = str(state["description"]) or await self._driver_description(name)
            devices[name] = {
                "is_active": "true" if state["is_active"] else "false",
                "description": description,
            }
        return devices
