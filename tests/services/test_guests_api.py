"""The guest, disk and setup actions through the Api core, on the real simulator."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from probe import OpenGate
from support import async_fixture, async_test
from test_iohyve_api import VM_BHYVE_PROFILES, Stack, VmBhyveStack
from twisted.internet.defer import Deferred

from sysadmd.api import Api, ApiError, Registry, Role
from sysadmd.auth._authenticator import Account
from sysadmd.backends import HostTools, Iohyve
from sysadmd.services import IohyveActions


@async_fixture(params=["0.7.3", "0.7.9", *VM_BHYVE_PROFILES])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """Both backends: iohyve 0.7.3 and 0.7.9, vm-bhyve 1.6, 1.7 and dev."""
    (tmp_path / "files").mkdir()
    kind = VmBhyveStack if request.param in VM_BHYVE_PROFILES else Stack
    running = kind(tmp_path / "sim", request.param, [tmp_path / "files"], delete_delay=0.3)
    yield running
    await running.fetches.stopService()
    await running.runner.stop_all()


@async_fixture(params=["0.7.3", "0.7.9"])
async def iohyve_stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    """iohyve alone, for setup: vm-bhyve's setup creates a ZFS dataset, and the simulator
    has no zfs (tests/backends/test_vmbhyve_adapter.py tests that setup)."""
    (tmp_path / "files").mkdir()
    running = Stack(tmp_path / "sim", request.param, [tmp_path / "files"], delete_delay=0.3)
    yield running
    await running.fetches.stopService()
    await running.runner.stop_all()


async def _code(stack: Stack, action: str, **args: Any) -> int:
    try:
        await stack.call(action, **args)
    except ApiError as e:
        assert e.code != 500 or action in ("delete",), e.message
        return e.code
    return 200


@async_test
async def test_create_start_stop(stack: Stack) -> None:
    """A created guest shows in listvms; start and stop change its state; errors are typed."""
    assert await stack.call("create", name="web", size="8G") == {"name": "web", "size": "8G"}
    assert await _code(stack, "create", name="web", size="8G") == 409
    assert await _code(stack, "create", name="mydisk", size="8G") == 400
    assert await _code(stack, "create", name="web2", size="8 G") == 400
    vms = await stack.call("listvms")
    assert vms["web"]["running"] == "NO"
    assert await stack.call("start", name="web") == {"name": "web"}
    assert (await stack.call("listvms"))["web"]["running"] == "YES"
    assert await _code(stack, "start", name="web") == 409
    assert await _code(stack, "start", name="nope") == 404
    assert await stack.call("stop", name="web") == {"name": "web"}
    assert (await stack.call("listvms"))["web"]["running"] == "NO"
    assert await _code(stack, "stop", name="web") == 409
    await stack.call("start", name="web")
    assert await stack.call("stop", name="web", force="true") == {"name": "web"}
    assert (await stack.call("listvms"))["web"]["vmm"] == "NO"


@async_test
async def test_force_stop_is_not_inverted(stack: Stack) -> None:
    """force "true" runs forcekill (sysadm's check was inverted and never did)."""
    await stack.call("create", name="web", size="8G")
    await stack.call("start", name="web")
    before = stack.runner.spawned
    await stack.call("stop", name="web", force="true")
    assert stack.runner.spawned > before
    assert (await stack.call("listvms"))["web"] == {
        **(await stack.call("listvms"))["web"],
        "running": "NO",
    }


@async_test
async def test_disks(stack: Stack) -> None:
    """adddisk, listdisks, resizedisk and deletedisk, with disk0 protected."""
    await stack.call("create", name="web", size="8G")
    assert await stack.call("listdisks", name="web") == {"disk0": "8G"}
    assert await stack.call("adddisk", name="web", size="20G") == {"web": {"size": "20G"}}
    assert await stack.call("listdisks", name="web") == {"disk0": "8G", "disk1": "20G"}
    assert await stack.call("resizedisk", name="web", disk="disk1", size="30G") == {
        "name": "web",
        "disk": "disk1",
        "size": "30G",
    }
    assert (await stack.call("listdisks", name="web"))["disk1"] == "30G"
    assert await _code(stack, "deletedisk", name="web", disk="disk0") == 400
    assert await _code(stack, "deletedisk", name="web", disk="disk7") == 404
    if stack.profile == "0.7.9":
        assert await stack.call("deletedisk", name="web", disk="disk1") == {
            "name": "web",
            "disk": "disk1",
        }
        assert await stack.call("listdisks", name="web") == {"disk0": "8G"}
    await stack.call("start", name="web")
    assert await _code(stack, "resizedisk", name="web", disk="disk0", size="9G") == 409
    assert await _code(stack, "listdisks", name="nope") == 404


@async_test
async def test_properties(stack: Stack) -> None:
    """getprops gives whole values (0.7.9); setprop sets them and refuses unknown ones."""
    await stack.call("create", name="web", size="8G")
    reply = await stack.call("setprop", name="web", ram="1G", description="my web server")
    assert reply == {"web": {"ram": "1G", "description": "my web server"}}
    props = (await stack.call("getprops", name="web"))["web"]
    assert props["ram"] == "1G"
    expected = "my" if stack.profile == "0.7.3" else "my web server"
    assert props["description"] == expected
    assert await _code(stack, "setprop", name="web") == 400
    assert await _code(stack, "setprop", name="web", colour="red") == 400
    assert await _code(stack, "setprop", name="web", ram="1G; reboot") == 400
    assert await _code(stack, "setprop", name="web", cpu="2 4") == 400
    assert await _code(stack, "getprops", name="nope") == 404


@async_test
async def test_listisos_version_and_setup(iohyve_stack: Stack, tmp_path: Path) -> None:
    """listisos is an array; version the tool's line; setup runs iohyve, then writes rc.conf."""
    stack = iohyve_stack
    assert await stack.call("listisos") == []
    assert (await stack.call("version"))["version"].startswith("iohyve v0.7.")
    assert await stack.call("issetup") == {"setup": "false"}
    assert await stack.call("setup", pool="tank", nic="em0") == {"pool": "tank", "nic": "em0"}
    assert await stack.call("issetup") == {"setup": "true"}
    assert 'iohyve_flags="kmod=1 net=em0"' in stack.rc_conf.read_text()
    # Setting up again, on another interface, works: the pool is set up already.
    assert await stack.call("setup", pool="tank", nic="em1") == {"pool": "tank", "nic": "em1"}
    assert stack.rc_conf.read_text().count("iohyve_flags=") == 1
    assert await _code(stack, "setup", pool="tank", nic="em0; x") == 400


@async_test
async def test_install_and_delete(stack: Stack, tmp_path: Path) -> None:
    """install needs the guest and the ISO; delete waits out iohyve's pause, and a list
    asked for meanwhile does not wait for it."""
    (tmp_path / "files" / "os.iso").write_bytes(b"os")
    stack.add_iso(tmp_path / "files" / "os.iso")
    await stack.call("create", name="web", size="8G")
    assert await _code(stack, "install", name="web", iso="nope.iso") == 404
    assert await _code(stack, "install", name="nope", iso="os.iso") == 404
    assert await stack.call("install", name="web", iso="os.iso") == {"name": "web", "iso": "os.iso"}
    assert await _code(stack, "delete", name="web") == 409
    await stack.call("stop", name="web", force="true")
    if stack.profile == "0.7.3":
        # 0.7.3 has no delete -f and asks on a terminal the daemon does not have.
        assert await _code(stack, "delete", name="web") == 500
        return
    if isinstance(stack, VmBhyveStack):
        # vm destroy has no pause (iohyve 0.7.4+ waits 10 s): the delete just answers.
        assert await stack.call("delete", name="web") == {"name": "web"}
        assert await stack.call("listvms") == {}
        return
    deleting: Deferred[Any] = Deferred.fromCoroutine(stack.call("delete", name="web"))
    listed = await stack.call("listvms")
    assert not deleting.called and "web" in listed
    assert await deleting == {"name": "web"}
    assert await stack.call("listvms") == {}


def _with_host(stack: Stack) -> Stack:
    """The stack with setup's pool check wired to ``sysadm/zfs list_pools`` on the
    simulator's zpool, as the daemon wires it."""
    command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(stack.root)]
    command += ["--profile", stack.profile]
    host = HostTools(stack.runner, [*command, "zpool"], [*command, "ifconfig"])
    registry = Registry()
    registry.register(IohyveActions(stack.iohyve, stack.fetches, host=host))
    stack.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))
    return stack


_RC_CONF = 'hostname="host1"\n# iohyve_flags="kmod=0"\nsshd_enable="YES"\n'


@async_test
async def test_setup_on_a_missing_pool_is_404_and_changes_nothing(iohyve_stack: Stack) -> None:
    """A pool zpool does not know is refused before iohyve runs, naming the pool; rc.conf
    is not touched, so issetup stays false."""
    stack = iohyve_stack
    _with_host(stack)
    stack.rc_conf.parent.mkdir(parents=True, exist_ok=True)
    stack.rc_conf.write_text(_RC_CONF)
    inode = stack.rc_conf.stat().st_ino
    with pytest.raises(ApiError) as raised:
        await stack.call("setup", pool="nope", nic="em0")
    assert (raised.value.code, raised.value.message) == (404, "pool 'nope' does not exist")
    assert await stack.call("issetup") == {"setup": "false"}
    assert stack.rc_conf.read_text() == _RC_CONF
    assert stack.rc_conf.stat().st_ino == inode
    # iohyve setup never ran: no bridge was made.
    assert "bridge0" not in stack.sim("ifconfig", "-l")
    # The pool that exists still works afterwards.
    assert await stack.call("setup", pool="tank", nic="em0") == {"pool": "tank", "nic": "em0"}
    assert await stack.call("issetup") == {"setup": "true"}
    assert stack.rc_conf.read_text() == _RC_CONF + 'iohyve_flags="kmod=1 net=em0"\n'


@async_test
async def test_setup_with_the_pool_check_succeeds_and_can_be_repeated(iohyve_stack: Stack) -> None:
    """With the pool check wired, setup on an existing pool writes rc.conf once iohyve
    has set the pool up; a second setup on another interface rewrites the one line."""
    stack = iohyve_stack
    _with_host(stack)
    assert await stack.call("issetup") == {"setup": "false"}
    assert await stack.call("setup", pool="tank", nic="em0") == {"pool": "tank", "nic": "em0"}
    assert await stack.call("issetup") == {"setup": "true"}
    assert stack.rc_conf.read_text() == 'iohyve_flags="kmod=1 net=em0"\n'
    assert "bridge0" in stack.sim("ifconfig", "-l")
    assert await stack.call("setup", pool="tank", nic="em1") == {"pool": "tank", "nic": "em1"}
    assert stack.rc_conf.read_text() == 'iohyve_flags="kmod=1 net=em1"\n'


@async_test
async def test_failed_iohyve_setup_leaves_rc_conf_alone(iohyve_stack: Stack) -> None:
    """Without the pool check, iohyve itself meets the missing pool (0.7.9 refuses it,
    0.7.3 exits 0 after zfs complained): a 500 in the tools' words, and rc.conf as it
    was, so issetup stays false."""
    stack = iohyve_stack
    stack.rc_conf.parent.mkdir(parents=True, exist_ok=True)
    stack.rc_conf.write_text(_RC_CONF)
    with pytest.raises(ApiError) as raised:
        await stack.call("setup", pool="nope", nic="em0")
    assert raised.value.code == 500
    expected = {
        "0.7.3": "iohyve setup failed: cannot create 'nope/iohyve': no such pool 'nope'",
        "0.7.9": "iohyve setup failed: There are errors with the pool or pool name.",
    }
    assert raised.value.message == expected[stack.profile]
    assert await stack.call("issetup") == {"setup": "false"}
    assert stack.rc_conf.read_text() == _RC_CONF


@async_test
async def test_setup_that_cannot_write_rc_conf_says_so(iohyve_stack: Stack, tmp_path: Path) -> None:
    """iohyve ran, but rc.conf cannot be written (its directory is gone): a 500 that says
    so, and issetup stays false."""
    stack = iohyve_stack
    registry = Registry()
    missing = tmp_path / "no such directory" / "rc.conf"
    iohyve = Iohyve(stack.runner, stack.command, rc_conf=missing)
    registry.register(IohyveActions(iohyve, stack.fetches))
    stack.api = Api(registry, OpenGate(Account("alice", Role.ADMIN)))
    with pytest.raises(ApiError) as raised:
        await stack.call("setup", pool="tank", nic="em0")
    assert raised.value.code == 500
    assert raised.value.message.startswith(
        "iohyve setup failed: iohyve is set up on 'tank', but rc.conf could not be written"
    )
    assert await stack.call("issetup") == {"setup": "false"}
    assert not missing.exists()


@async_test
async def test_names_ending_in_a_newline_start_nothing(stack: Stack) -> None:
    """create "newg1\\n" and renameiso to "s0.iso\\n" are 400s before any process runs."""
    spawned = stack.runner.spawned
    code, message = await stack.error("create", name="newg1\n", size="8G")
    assert (code, message.startswith("argument 'name' ")) == (400, True)
    assert await _code(stack, "renameiso", source="s0.iso", target="s0.iso\n") == 400
    assert await _code(stack, "create", name="newg1", size="8G\n") == 400
    assert stack.runner.spawned == spawned
    assert await stack.call("listvms") == {}


@async_test
async def test_setprop_allow_lists(stack: Stack) -> None:
    """Programs and bhyve arguments come from allow-lists; what iohyve knows still works."""
    await stack.call("create", name="web", size="8G")
    spawned = stack.runner.spawned
    for props, words in [
        ({"loader": "/bin/sh"}, "property 'loader' must be one of: bhyveload, grub-bhyve, uefi"),
        ({"bhyve_path": "/usr/home/someone/evil"}, "must be one of: /usr/sbin/bhyve"),
        ({"bargs": "-A;reboot"}, "property 'bargs' must be bhyve flags"),
        ({"pcidev:5": "ahci-hd,/etc/master.passwd"}, "'pcidev:5' is not a settable property"),
    ]:
        code, message = await stack.error("setprop", name="web", **props)
        assert code == 400 and words in message, message
    assert stack.runner.spawned == spawned
    reply = await stack.call("setprop", name="web", loader="grub-bhyve", bargs="-A -H -P -w")
    assert reply == {"web": {"loader": "grub-bhyve", "bargs": "-A -H -P -w"}}
    props = (await stack.call("getprops", name="web"))["web"]
    assert (props["loader"], props["bargs"]) == ("grub-bhyve", "-A_-H_-P_-w")
    await stack.call("setprop", name="web", bargs="-A_-H_-P")
    assert (await stack.call("getprops", name="web"))["web"]["bargs"] == "-A_-H_-P"
