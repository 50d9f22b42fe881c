"""sysadm's Qt client, its iohyve page replayed against the daemon.

The conversation follows what the client sends (sysadm-protocol.md §7.6, §11.1): its
request ids, its Origin, identify before auth, a subscription to an event the
daemon does not have, rpc/query, then the page: issetup, the setup screen (pools,
network devices, setup), listvms and listisos, fetchiso, renameiso, rmiso, start,
stop. Every reply is checked for the shape the client reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from httpserver import HTTPServer
from support import async_test
from test_e2e import run_simulator
from wsclient import WsClient, connect, settle

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["iohyve", "vm-bhyve"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    """The simulated host of each backend, not set up yet. On iohyve the guest exists
    already; on vm-bhyve it is created once setup made ``$vm_dir`` (:func:`add_guest`)."""
    state = tmp_path / "state"
    if request.param == "vm-bhyve":
        (state / "simulator" / "etc").mkdir(parents=True)
        (state / "simulator" / "etc" / "rc.conf").write_text('hostname="bsdhost"\n')
        running = Daemon(state, "--backend", "vm-bhyve")
    else:
        run_simulator(state / "simulator", "create", "bsdguest", "8G")
        running = Daemon(state)
    yield running
    running.stop()


def add_guest(daemon: Daemon) -> None:
    """On a vm-bhyve host, the operator creates the guest once the host is set up."""
    root = daemon.state_dir / "simulator"
    if (root / "tank" / "vm").is_dir():
        run_simulator(root, "vm", "create", "-s", "8G", "bsdguest")


class Page:
    """The client's iohyve page: ids ``client_page_iohyve_<tag>``, replies matched by id."""

    def __init__(self, client: WsClient) -> None:
        self.client = client

    async def ask(self, tag: str, namespace: str, name: str, args: Any) -> Any:
        request_id = f"client_page_iohyve_{tag}"
        self.client.send({"args": args, "id": request_id, "name": name, "namespace": namespace})
        while True:
            reply = await self.client.next()
            if reply["id"] == request_id:
                assert reply["name"] == "response", reply
                return reply["args"]

    async def iohyve(self, tag: str, action: str, **args: str) -> Any:
        reply = await self.ask(tag, "sysadm", "iohyve", {"action": action, **args})
        assert list(reply) == [action]
        return reply[action]

    async def refresh(self) -> tuple[dict[str, Any], list[str]]:
        """What the page asks for after every other reply."""
        vms = await self.iohyve("listvms", "listvms")
        for guest in vms.values():
            assert set(guest) == {"vmm", "running", "rcboot", "description"}
            assert guest["running"].lower() in ("yes", "no")
        isos = await self.iohyve("listisos", "listisos")
        assert isinstance(isos, list) and all(isinstance(i, str) for i in isos)
        return vms, isos


@async_test
async def test_the_iohyve_page(daemon: Daemon, http: HTTPServer) -> None:
    """The whole page, as the official client drives it."""
    client = await connect(
        "localhost",
        daemon.ports[0],
        tls=daemon.tls(),  # type: ignore[arg-type]
        headers={"Origin": "sysadm-client"},
    )
    page = Page(client)
    identify = await page.ask("identify", "rpc", "identify", "")
    assert identify["type"] == "server"
    login = await page.ask(
        "auth", "rpc", "auth", {"username": "admin", "password": daemon.password}
    )
    assert isinstance(login, list) and len(login) >= 2 and isinstance(login[0], str)
    client.send(
        {
            "args": "system-state",
            "id": "sysadm-client-event-auto",
            "name": "subscribe",
            "namespace": "events",
        }
    )
    classes = await page.ask("query", "rpc", "query", "simple-query")
    for needed in ("sysadm/iohyve", "sysadm/network", "sysadm/zfs"):
        assert classes[needed] == "read/write"

    assert await page.iohyve("issetup", "issetup") == {"setup": "false"}
    pools = await page.ask("pools", "sysadm", "zfs", {"action": "list_pools"})
    assert "tank" in pools["list_pools"]
    devices = await page.ask("nics", "sysadm", "network", {"action": "list-devices"})
    assert all(set(d) == {"is_active", "description"} for d in devices.values())
    nic = next(name for name, d in devices.items() if d["is_active"] == "true")
    assert await page.iohyve("setup", "setup", pool="tank", nic=nic) == {"pool": "tank", "nic": nic}
    assert await page.iohyve("issetup", "issetup") == {"setup": "true"}
    add_guest(daemon)

    vms, isos = await page.refresh()
    assert vms["bsdguest"]["running"] == "NO" and isos == []
    assert await page.iohyve("start", "start", name="bsdguest") == {"name": "bsdguest"}
    vms, _ = await page.refresh()
    assert vms["bsdguest"]["running"].lower() == "yes"
    assert await page.iohyve("stop", "stop", name="bsdguest") == {"name": "bsdguest"}
    vms, _ = await page.refresh()
    assert vms["bsdguest"]["running"].lower() == "no"

    http.files.files["disc1.iso"] = b"d" * 50_000
    fetch = await page.iohyve("fetchiso", "fetchiso", url=http.url("disc1.iso"))
    assert fetch["comment"] == "Task Queued" and fetch["queueid"]
    for _ in range(200):
        jobs = await page.ask("jobs", "rpc", "dispatcher", {"action": "list"})
        if jobs["jobs"]["no_queue"][fetch["queueid"]]["state"] == "finished":
            break
        await settle(0.05)
    _, isos = await page.refresh()
    assert isos == ["disc1.iso"]
    renamed = await page.iohyve("renameiso", "renameiso", source="disc1.iso", target="new.iso")
    assert renamed == {"source": "disc1.iso", "target": "new.iso"}
    _, isos = await page.refresh()
    assert isos == ["new.iso"]
    assert await page.iohyve("rmiso", "rmiso", target="new.iso") == {"target": "new.iso"}
    _, isos = await page.refresh()
    assert isos == []
    await client.close()
