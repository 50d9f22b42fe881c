"""The iohyve backend on its own, against the simulator: plain data out, its own errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import async_test
from test_iohyve_api import Stack

from sysadmd.backends._errors import Conflict, NotFound, Unsupported
from sysadmd.backends._interface import DiskInfo, GuestSpec, IsoInfo
from sysadmd.backends._iohyve.adapter import console_device_path, stored_forms


@pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
@async_test
async def test_guests_disks_and_consoles_as_plain_data(tmp_path: Path, profile: str) -> None:
    """Two guests get consoles nmdm0 and nmdm1: their devices are /dev/nmdm0B and
    /dev/nmdm1B; disks are DiskInfo, and the backend's errors are its own."""
    stack = Stack(tmp_path / "sim", profile, [], run_fetches=False)
    try:
        await stack.iohyve.create("web", GuestSpec("8G"))
        await stack.iohyve.create("db", GuestSpec("4G"))
        assert await stack.iohyve.console_device("web") == Path("/dev/nmdm0B")
        assert await stack.iohyve.console_device("db") == Path("/dev/nmdm1B")
        assert await stack.iohyve.disks("db") == {"disk0": DiskInfo("4G")}
        assert (await stack.iohyve.guest("web"))["running"] == "NO"
        with pytest.raises(Conflict):
            await stack.iohyve.create("web", GuestSpec("8G"))
        with pytest.raises(NotFound):
            await stack.iohyve.console_device("nope")
        with pytest.raises(NotFound):
            await stack.iohyve.guest("nope")
    finally:
        await stack.runner.stop_all()


@async_test
async def test_isos_are_listed_as_iso_info(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "sim", "0.7.9", [], run_fetches=False)
    (tmp_path / "os.iso").write_bytes(b"os")
    stack.sim("fetch", f"file://{tmp_path}/os.iso")
    try:
        assert await stack.iohyve.list_isos() == [IsoInfo("os.iso")]
    finally:
        await stack.runner.stop_all()


@async_test
async def test_what_iohyve_create_cannot_do_is_refused(tmp_path: Path) -> None:
    """iohyve has no templates, and its create sets no CPUs or memory: Unsupported, and
    nothing runs."""
    stack = Stack(tmp_path / "sim", "0.7.9", [], run_fetches=False)
    for spec in (GuestSpec("8G", template="web"), GuestSpec("8G", cpu="2", memory="1G")):
        with pytest.raises(Unsupported) as raised:
            await stack.iohyve.create("web", spec)
        assert raised.value.code == 400
    assert await stack.iohyve.list_vms() == {}
    await stack.runner.stop_all()


def test_the_console_device_is_the_hosts_end_of_the_null_modem() -> None:
    assert console_device_path("web", "nmdm12") == Path("/dev/nmdm12B")
    for con in ("", "-", "nmdm", "nmdm1B", "/dev/nmdm1", "nmdm1;x"):
        with pytest.raises(NotFound):
            console_device_path("web", con)


def test_the_values_getall_may_show_for_a_set_property() -> None:
    """bargs keeps '_' for spaces; a description may come back collapsed or cut at its
    first word (0.7.3)."""
    assert stored_forms("bargs", "-A -H") == ("-A_-H",)
    forms = stored_forms("description", "my  web server")
    assert "my web server" in forms and "my" in forms
