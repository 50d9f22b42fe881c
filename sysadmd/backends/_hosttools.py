"""The host's own tools a VM manager relies on: ``zpool``, ``ifconfig`` and ``sysctl``.

:class:`HostTools` runs them through the process runner and returns plain data; the
parsers are pure functions (text in, data out). A failure is a
:class:`~sysadmd.backends._errors.BackendFailed` named after the tool that failed
(``zpool list failed: …``, ``ifconfig failed: …``).

On a host the commands are the system's; in simulate mode the simulator answers them
on the same state as its VM managers.

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
from dataclasses import dataclass
from typing import Final

from sysadmd.backends._errors import BackendFailed
from sysadmd.backends._output import describe_failure
from sysadmd.backends._runner import ProcessRunner

POOL_COLUMNS: Final = ("name", "size", "alloc", "free", "frag", "dedup", "health")

#: A device interface's name: its driver and unit (``em0``: ``em``, ``0``).
_DEVICE_NAME: Final = re.compile(r"([a-z]+)([0-9]+)")


@dataclass(frozen=True)
class Interface:
    """One network interface: whether it is up with a link, and its description."""

    active: bool
    description: str


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


class HostTools:
    """Runs the host's ``zpool``, ``ifconfig`` and ``sysctl`` and reads what they print."""

    def __init__(
        self,
        runner: ProcessRunner,
        zpool: Sequence[str],
        ifconfig: Sequence[str],
        sysctl: Sequence[str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        """Each command is the argv prefix that starts the tool. ``sysctl`` None:
        interfaces without a description of their own get none."""
        self._runner = runner
        self._zpool = tuple(zpool)
        self._ifconfig = tuple(ifconfig)
        self._sysctl = tuple(sysctl) if sysctl is not None else None
        self._timeout = timeout

    async def _output(self, what: str, command: Sequence[str], *args: str) -> str:
        result = await self._runner.run(command[0], (*command[1:], *args), timeout=self._timeout)
        if not result.ok:
            raise BackendFailed(what, describe_failure(result), result)
        return result.stdout.decode("utf-8", errors="replace")

    async def pools(self) -> dict[str, dict[str, str]]:
        """The ZFS pools by name, with size, alloc, free, frag, dedup and health."""
        text = await self._output(
            "zpool list", self._zpool, "list", "-H", "-o", ",".join(POOL_COLUMNS)
        )
        try:
            return parse_zpool_list(text)
        except ValueError as e:
            raise BackendFailed("zpool list", str(e)) from None

    async def interfaces(self) -> dict[str, Interface]:
        """The network interfaces but loopback, by name, in ``ifconfig -l``'s order."""
        names = (await self._output("ifconfig", self._ifconfig, "-l")).split()
        found: dict[str, Interface] = {}
        for name in names:
            if name.startswith("lo") or not name.isalnum():
                continue
            state = parse_ifconfig(await self._output("ifconfig", self._ifconfig, name))
            description = str(state["description"]) or await self._driver_description(name)
            found[name] = Interface(bool(state["is_active"]), description)
        return found

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
