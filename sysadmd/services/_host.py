"""``sysadm/zfs list_pools`` and ``sysadm/network list-devices``: what sysadm's client
needs for its iohyve setup page (the pool and the interface to set iohyve up on).

The handlers ask the host layer (:class:`~sysadmd.backends.HostTools`, which runs
``zpool``, ``ifconfig`` and ``sysctl`` and reads their output) and answer in sysadm's
shapes; a tool that fails is a 500 named after that tool (``zpool list failed: …``).
"""

from __future__ import annotations

from typing import Any

from sysadmd.api import Call, Role, action
from sysadmd.backends import HostTools, maps_backend_errors


@maps_backend_errors
class HostActions:
    """Handlers of ``sysadm/zfs`` and ``sysadm/network``."""

    def __init__(self, tools: HostTools) -> None:
        self._tools = tools

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
        return await self._tools.pools()

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
        return {
            name: {
                "is_active": "true" if interface.active else "false",
                "description": interface.description,
            }
            for name, interface in (await self._tools.interfaces()).items()
        }
