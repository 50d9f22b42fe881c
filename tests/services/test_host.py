"""``sysadm/network list-devices``: each interface's description, from ifconfig or its driver.

The handler runs the real simulated tools (``ifconfig``, ``sysctl``) as processes through the
daemon's process runner, as simulate mode wires them.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from probe import OpenGate
from support import async_fixture, async_test
from twisted.internet import reactor

from sysadmd.api import Api, ApiError, Connection, Registry, Role
from sysadmd.auth._authenticator import Account
from sysadmd.backends import ProcessRunner
from sysadmd.backends._hosttools import HostTools, parse_ifconfig
from sysadmd.services import HostActions
from sysadmd.simulator.cli import main as simulator

REPO = Path(__file__).resolve().parents[2]
INTEL = "Intel(R) PRO/1000 Legacy Network Connection 1.1.0"


class Host:
    """HostActions on the simulator's state in ``root``, behind the Api core."""

    def __init__(self, root: Path, *, sysctl: bool = True) -> None:
        self.root = root
        # The children import this checkout's simulator, as the daemon arranges for its own.
        self.runner = ProcessRunner(reactor, kill_grace=0.5, env={"PYTHONPATH": str(REPO)})
        command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(root)]
        actions = HostActions(
            HostTools(
                self.runner,
                [*command, "zpool"],
                [*command, "ifconfig"],
                [*command, "sysctl"] if sysctl else None,
            )
        )
        registry = Registry()
        registry.register(actions)
        self.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))

    def sim(self, *args: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert simulator(["--root", str(self.root), *args]) == 0

    async def devices(self) -> Any:
        return await self.api.call(
            "sysadm", "network", {"action": "list-devices"}, Connection("127.0.0.1", "test")
        )


@async_fixture()
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    running = Host(tmp_path / "sim")
    yield running
    await running.runner.stop_all()


@async_test
async def test_descriptions_come_from_ifconfig_else_from_the_driver(host: Host) -> None:
    """em1 has a description of its own (ifconfig prints it); em0 has none, so its driver's
    description stands in for it, as sysadm showed it; loopback is left out."""
    assert await host.devices() == {
        "em0": {"is_active": "true", "description": INTEL},
        "em1": {"is_active": "false", "description": "storage network"},
    }


@async_test
async def test_interfaces_without_a_device_node_keep_an_empty_description(host: Host) -> None:
    """iohyve 0.7.3's tap and bridge have no description and no driver node (sysctl: unknown
    oid): their descriptions stay empty."""
    host.sim("--profile", "0.7.3", "setup", "net=em0")
    devices = await host.devices()
    assert devices["tap0"] == {"is_active": "false", "description": ""}
    assert devices["bridge0"]["description"] == ""
    assert devices["em0"]["description"] == INTEL


@async_test
async def test_the_bridge_keeps_its_own_description(host: Host) -> None:
    """iohyve 0.7.9 makes its bridge with ``descr iohyve-bridge``."""
    host.sim("--profile", "0.7.9", "setup", "kmod=1", "net=em0")
    assert (await host.devices())["bridge0"]["description"] == "iohyve-bridge"


@async_test
async def test_without_sysctl_only_ifconfig_descriptions(tmp_path: Path) -> None:
    host = Host(tmp_path / "sim", sysctl=False)
    try:
        devices = await host.devices()
    finally:
        await host.runner.stop_all()
    assert devices["em0"]["description"] == ""
    assert devices["em1"]["description"] == "storage network"


def test_parse_ifconfig_reads_the_description_line() -> None:
    text = (
        "em1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
        "\tdescription: uplink: rack 4\n"
        "\tstatus: active\n"
    )
    assert parse_ifconfig(text) == {"is_active": True, "description": "uplink: rack 4"}


def _failing(message: str) -> list[str]:
    """A command that prints ``message`` on stderr and exits 1, whatever its arguments."""
    return [sys.executable, "-c", f"import sys; sys.stderr.write({message!r}); sys.exit(1)"]


@async_test
async def test_a_failing_tool_is_named_in_the_reply() -> None:
    """A zpool or ifconfig that fails is a 500 in that tool's name and words, not iohyve's."""
    runner = ProcessRunner(reactor, kill_grace=0.5)
    registry = Registry()
    registry.register(
        HostActions(HostTools(runner, _failing("no pools here\n"), _failing("ifconfig: broken\n")))
    )
    api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))
    connection = Connection("127.0.0.1", "test")
    try:
        with pytest.raises(ApiError) as pools:
            await api.call("sysadm", "zfs", {"action": "list_pools"}, connection)
        with pytest.raises(ApiError) as devices:
            await api.call("sysadm", "network", {"action": "list-devices"}, connection)
    finally:
        await runner.stop_all()
    assert (pools.value.code, pools.value.message) == (500, "zpool list failed: no pools here")
    assert (devices.value.code, devices.value.message) == (500, "ifconfig failed: ifconfig: broken")
