"""setup, and the simulated FreeBSD tools zpool and ifconfig."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sim_support import Sim, run_process, sim_environment

pytestmark = pytest.mark.usefixtures(sim_environment.__name__)

ZPOOL_HEADER = "NAME   SIZE  ALLOC   FREE  EXPANDSZ   FRAG    CAP  DEDUP  HEALTH  ALTROOT\n"
ZPOOL_TANK = "tank  99.5G  1.82G  97.7G         -     3%     1%  1.00x  ONLINE  -\n"
EM0 = (
    "em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
    "\toptions=9b<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,VLAN_HWCSUM>\n"
    "\tether 08:00:27:5c:1f:0a\n"
    "\tinet 192.168.1.10 netmask 0xffffff00 broadcast 192.168.1.255 \n"
    "\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>\n"
    "\tmedia: Ethernet autoselect (1000baseT <full-duplex>)\n"
    "\tstatus: active\n"
)
EM1 = (
    "em1: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
    "\tdescription: storage network\n"
    "\toptions=9b<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,VLAN_HWCSUM>\n"
    "\tether 08:00:27:5c:1f:0b\n"
    "\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>\n"
    "\tmedia: Ethernet autoselect\n"
    "\tstatus: no carrier\n"
)
LO0 = (
    "lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384\n"
    "\toptions=600003<RXCSUM,TXCSUM,RXCSUM_IPV6,TXCSUM_IPV6>\n"
    "\tinet6 ::1 prefixlen 128 \n"
    "\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x3 \n"
    "\tinet 127.0.0.1 netmask 0xff000000 \n"
    "\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>\n"
    "\tgroups: lo \n"
)


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    """The simulator with the 0.7.9 profile (pass ``profile=`` per call to switch)."""
    return Sim(tmp_path, capsys, "0.7.9")


def host(sim: Sim) -> dict[str, object]:
    saved = json.loads((sim.root / "guests.json").read_text())["host"]
    assert isinstance(saved, dict)
    return saved


# -- setup, 0.7.3 ---------------------------------------------------------------------------------


def test_0_7_3_setup_on_a_fresh_host(sim: Sim) -> None:
    assert sim("setup", "pool=tank", "kmod=1", "net=em0", profile="0.7.3") == (
        0,
        "Setting up iohyve pool...\n"
        "Loading kernel modules...\n"
        "Seting up bridge0 on em0...\n"
        "net.link.tap.up_on_open: 0 -> 1\n",
        "",
    )
    assert sim.ok("ifconfig", "-l") == "em0 em1 lo0 tap0 bridge0\n"
    assert host(sim)["iohyve_pools"] == ["tank"]
    assert host(sim)["modules"] == ["vmm", "nmdm", "if_tap", "if_bridge"]
    # Issue #122: a second run treats the pool as a secondary one.
    assert sim("setup", "pool=tank", "kmod=1", "net=em0", profile="0.7.3") == (
        0,
        "Setting up iohyve pool...\n"
        "Secondary pool set up...\n"
        "Loading kernel modules...\n"
        "bridge0 is already enabled on this machine...\n",
        "cannot create 'tank/iohyve': dataset already exists\n"
        "kldload: can't load vmm: module already loaded or in kernel\n"
        "kldload: can't load nmdm: module already loaded or in kernel\n",
    )


def test_0_7_3_setup_handles_words_in_order(sim: Sim) -> None:
    assert sim("setup", "kmod=2", "foo=bar", "kmod=", profile="0.7.3") == (
        0,
        "Improper syntax\nkmod=1 to load modules\nkmod=0 to unload modules\n" * 2,
        "[: =: unexpected operator\n" * 2,
    )
    assert sim("setup", profile="0.7.3") == (0, "", "")
    assert sim("setup", "setup", profile="0.7.3") == (0, "", "")
    assert sim("setup", "=x", profile="0.7.3") == (0, "", "[: =: unexpected operator\n" * 3)


def test_0_7_3_setup_of_a_pool_that_does_not_exist(sim: Sim) -> None:
    assert sim("setup", "pool=nope", profile="0.7.3") == (
        1,
        "Setting up iohyve pool...\n",
        "cannot create 'nope/iohyve': no such pool 'nope'\n"
        "cannot open 'nope/iohyve': dataset does not exist\n"
        "cannot create 'nope/iohyve/ISO': no such pool 'nope'\n"
        "cannot create 'nope/iohyve/Firmware': no such pool 'nope'\n",
    )


def test_0_7_3_setup_with_an_unknown_interface(sim: Sim) -> None:
    assert sim("setup", "net=em9", profile="0.7.3") == (
        0,
        "Seting up bridge0 on em9...\nnet.link.tap.up_on_open: 0 -> 1\n",
        "ifconfig: BRDGADD em9: No such file or directory\n",
    )
    # ifconfig stopped at em9: tap0 never joined the bridge.
    assert host(sim)["bridge_members"] == []


def test_0_7_3_unloading_modules_in_use(sim: Sim) -> None:
    sim.ok("setup", "kmod=1", profile="0.7.3")
    sim.ok("create", "web", "1G")
    sim.ok("start", "web")
    assert sim("setup", "kmod=0", profile="0.7.3") == (
        0,
        "Unloading kernel modules...\n",
        "kldunload: can't unload file: Device busy\n",
    )
    assert host(sim)["modules"] == ["vmm"]
    assert sim("setup", "kmod=0", profile="0.7.3")[2] == (
        "kldunload: can't unload file: Device busy\nkldunload: can't find file nmdm\n"
    )


# -- setup, 0.7.9 ---------------------------------------------------------------------------------


def test_0_7_9_setup_on_a_fresh_host(sim: Sim) -> None:
    assert sim("setup", "pool=tank", "kmod=1", "net=em0") == (
        0,
        "Setting up iohyve pool...\nLoading kernel modules...\nSetting up bridge0 on em0...\n",
        "",
    )
    assert sim.ok("ifconfig", "-l") == "em0 em1 lo0 bridge0\n"
    assert host(sim)["modules"] == ["vmm", "nmdm", "if_bridge", "if_tap"]
    assert sim("setup", "net=em0", "kmod=1", "pool=tank") == (
        0,
        "iohyve already exists on tank\n"
        "Loading kernel modules...\n"
        "bridge0 is already enabled on this machine...\n"
        "sysctl already setup properly as well...\n",
        "",
    )


def test_0_7_9_setup_checks_the_pool(sim: Sim) -> None:
    assert sim("setup") == (
        1,
        "missing argument\nusage:\n\tsetup <pool=poolname> [kmod=0|1] [net=iface]\n",
        "",
    )
    for pool in ("nope", "tank/data"):
        assert sim("setup", f"pool={pool}", "kmod=1") == (
            1,
            "There are errors with the pool or pool name.\n",
            "",
        )
    # Nothing changed, nothing was saved.
    assert not (sim.root / "guests.json").exists()


def test_0_7_9_network_before_the_tap_module(sim: Sim) -> None:
    assert sim("setup", "net=em0") == (
        0,
        "Setting up bridge0 on em0...\ncannot set 'net.link.tap.up_on_open': is if_tap loaded?\n",
        "",
    )
    assert sim("setup", "net=em0") == (
        1,
        "bridge0 is already enabled on this machine...\n"
        "cannot set 'net.link.tap.up_on_open': is if_tap loaded?\n",
        "",
    )
    assert sim("setup", "kmod=1", "net=em0") == (
        0,
        "Loading kernel modules...\n"
        "bridge0 is already enabled on this machine...\n"
        "Setting up correct sysctl value...\n"
        "net.link.tap.up_on_open: 0 -> 1\n",
        "",
    )


def test_0_7_9_unloading_modules_in_use(sim: Sim) -> None:
    sim.ok("setup", "kmod=1")
    sim.ok("create", "web", "1G")
    sim.ok("start", "web")
    assert sim("setup", "kmod=0") == (
        1,
        "Unloading kernel modules...\n",
        "kldunload: can't unload file: Device busy\n",
    )
    sim.ok("forcekill", "web")
    assert sim("setup", "kmod=0") == (0, "Unloading kernel modules...\n", "")
    assert host(sim)["modules"] == []
    assert sim("setup", "kmod=x") == (
        0,
        "Improper syntax\nkmod=1 to load modules\nkmod=0 to unload modules\n",
        "",
    )


def test_setup_of_a_second_pool(sim: Sim) -> None:
    sim.root.mkdir(exist_ok=True)
    state = {"format": 1, "guests": {}, "host": {"zpools": [{"name": "tank"}, {"name": "fast"}]}}
    (sim.root / "guests.json").write_text(json.dumps(state))
    sim.ok("setup", "pool=tank")
    assert sim("setup", "pool=fast") == (
        0,
        "Setting up iohyve pool...\nSecondary pool set up...\n",
        "",
    )
    assert host(sim)["iohyve_pools"] == ["tank", "fast"]
    assert sim.ok("zpool", "list", "-H", "-o", "name") == "fast\ntank\n"


# -- zpool ----------------------------------------------------------------------------------------


def test_zpool_list(sim: Sim) -> None:
    assert sim("zpool", "list") == (0, ZPOOL_HEADER + ZPOOL_TANK, "")
    assert sim("zpool", "list", "-H", "-o", "name,size,alloc,free,frag,dedup,health") == (
        0,
        "tank\t99.5G\t1.82G\t97.7G\t3%\t1.00x\tONLINE\n",
        "",
    )
    assert sim.ok("zpool", "list", "-Hpo", "name,size,allocated,capacity") == (
        "tank\t106837311488\t1954210119\t1\n"
    )
    assert sim.ok("zpool", "list", "-o", "health,name") == "HEALTH  NAME\nONLINE  tank\n"
    assert sim.ok("zpool", "list", "-o", "name,cap", "tank") == "NAME    CAP\ntank     1%\n"


def test_zpool_list_counts_the_iso_images(sim: Sim) -> None:
    iso = sim.iso("big.iso")
    iso.mkdir(parents=True)
    with (iso / "big.iso").open("wb") as handle:
        handle.truncate(3 << 30)  # sparse: only the apparent size counts
    assert sim.ok("zpool", "list", "-H", "-o", "alloc,free,cap") == "4.82G\t94.7G\t4%\n"


def test_zpool_list_refusals(sim: Sim) -> None:
    assert sim("zpool", "list", "nope") == (1, "", "cannot open 'nope': no such pool\n")
    assert sim("zpool", "list", "-H", "nope", "tank") == (
        1,
        "tank\t99.5G\t1.82G\t97.7G\t-\t3%\t1%\t1.00x\tONLINE\t-\n",
        "cannot open 'nope': no such pool\n",
    )
    usage = "usage:\n\tlist [-Hpv] [-o property[,...]] [-T d|u] [pool] ... [interval [count]]\n"
    assert sim("zpool", "list", "-o", "name,bogus") == (
        2,
        "",
        "bad property list: invalid property 'bogus'\n" + usage,
    )
    assert sim("zpool", "list", "-x") == (2, "", "invalid option 'x'\n" + usage)
    assert sim("zpool", "list", "-o") == (2, "", "missing argument for 'o' option\n" + usage)
    assert sim("zpool", "status") == (
        2,
        "",
        "iohyve-sim: zpool status: subcommand not provided by the simulator\n",
    )


def test_zpool_and_ifconfig_only_as_the_first_word(sim: Sim) -> None:
    # 0.7.3 skips unknown words: "zpool" is one, "list" is iohyve's list.
    assert sim("foo", "zpool", "list", profile="0.7.3") == (
        0,
        "Guest  VMM?  Running  rcboot?  Description\n",
        "",
    )
    assert sim("foo", "zpool") == (
        1,
        "'foo' is not a valid command!\nTry 'iohyve help' for more info.\n",
        "",
    )
    assert sim.ok("zpool", "list", profile="0.7.3") == ZPOOL_HEADER + ZPOOL_TANK


# -- ifconfig -------------------------------------------------------------------------------------


def test_ifconfig_on_a_fresh_host(sim: Sim) -> None:
    assert sim("ifconfig", "-l") == (0, "em0 em1 lo0\n", "")
    assert sim("ifconfig", "em0") == (0, EM0, "")
    assert sim("ifconfig", "em1") == (0, EM1, "")
    assert sim("ifconfig", "lo0") == (0, LO0, "")
    assert sim("ifconfig") == (0, EM0 + EM1 + LO0, "")
    assert sim("ifconfig", "-a") == (0, EM0 + EM1 + LO0, "")
    assert sim("ifconfig", "bridge0") == (1, "", "ifconfig: interface bridge0 does not exist\n")


def test_ifconfig_shows_the_bridge_setup_made(sim: Sim) -> None:
    sim.ok("setup", "kmod=1", "net=em0")
    assert sim.ok("ifconfig", "bridge0") == (
        "bridge0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
        "\tdescription: iohyve-bridge\n"
        "\tether 02:6f:d0:5c:1f:00\n"
        "\tnd6 options=1<PERFORMNUD>\n"
        "\tgroups: bridge \n"
        "\tid 02:6f:d0:5c:1f:00 priority 32768 hellotime 2 fwddelay 15\n"
        "\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200\n"
        "\troot id 00:00:00:00:00:00 priority 32768 ifcost 0 port 0\n"
        "\tmember: em0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n"
        "\t        ifmaxaddr 0 port 1 priority 128 path cost 20000\n"
    )
    # A bridge member is promiscuous.
    assert sim.ok("ifconfig", "em0").splitlines()[0] == (
        "em0: flags=8943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500"
    )


def test_0_7_3_bridge_has_the_tap_as_member(sim: Sim) -> None:
    sim.ok("setup", "net=em1", profile="0.7.3")
    bridge = sim.ok("ifconfig", "bridge0").splitlines()
    assert "\tdescription: iohyve-bridge" not in bridge
    assert bridge[-4:] == [
        "\tmember: tap0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>",
        "\t        ifmaxaddr 0 port 4 priority 128 path cost 2000000",
        "\tmember: em1 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>",
        "\t        ifmaxaddr 0 port 2 priority 128 path cost 20000",
    ]
    assert sim.ok("ifconfig", "tap0") == (
        "tap0: flags=8902<BROADCAST,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"
        "\toptions=80000<LINKSTATE>\n"
        "\tether 00:bd:5c:1f:00:00\n"
        "\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>\n"
        "\tmedia: Ethernet autoselect\n"
        "\tstatus: no carrier\n"
        "\tgroups: tap \n"
    )


def test_ifconfig_refusals(sim: Sim) -> None:
    assert sim("ifconfig", "em9") == (1, "", "ifconfig: interface em9 does not exist\n")
    assert sim("ifconfig", "em0", "down") == (
        2,
        "",
        "iohyve-sim: ifconfig em0 down: not provided by the simulator\n",
    )


# -- sysctl ---------------------------------------------------------------------------------------


def test_sysctl_reads_the_interfaces_device_nodes(sim: Sim) -> None:
    intel = "Intel(R) PRO/1000 Legacy Network Connection 1.1.0"
    assert sim("sysctl", "-n", "dev.em.0.%desc") == (0, intel + "\n", "")
    assert sim("sysctl", "dev.em.1.%desc", "dev.em.1.%driver") == (
        0,
        f"dev.em.1.%desc: {intel}\ndev.em.1.%driver: em\n",
        "",
    )
    # A pseudo-interface has no device node.
    assert sim("sysctl", "-n", "dev.bridge.0.%desc") == (
        1,
        "",
        "sysctl: unknown oid 'dev.bridge.0.%desc'\n",
    )


def test_sysctl_refusals(sim: Sim) -> None:
    for args in (["-a"], ["dev.em.0.%desc=x"], [], ["-n"]):
        status, out, err = sim("sysctl", *args)
        assert (status, out) == (2, ""), args
        assert err == f"iohyve-sim: sysctl {' '.join(args)}: not provided by the simulator\n"


def test_sysctl_refuses_long_options_as_getopt_does(sim: Sim) -> None:
    status, out, err = sim("sysctl", "--all")
    assert (status, out) == (1, "")
    assert err.splitlines()[0] == "sysctl: illegal option -- -"
    assert err.splitlines()[1].startswith("usage: sysctl ")


# -- as the daemon calls them ---------------------------------------------------------------------


def test_the_tools_as_processes(tmp_path: Path) -> None:
    zpool = run_process(
        tmp_path,
        "--root",
        str(tmp_path),
        "--profile",
        "0.7.3",
        "zpool",
        "list",
        "-H",
        "-o",
        "name,size,alloc,free,frag,dedup,health",
    )
    assert (zpool.returncode, zpool.stdout, zpool.stderr) == (
        0,
        b"tank\t99.5G\t1.82G\t97.7G\t3%\t1.00x\tONLINE\n",
        b"",
    )
    names = run_process(tmp_path, "--root", str(tmp_path), "--profile", "0.7.9", "ifconfig", "-l")
    assert (names.returncode, names.stdout, names.stderr) == (0, b"em0 em1 lo0\n", b"")
    missing = run_process(tmp_path, "ifconfig", "em7")
    assert (missing.returncode, missing.stdout) == (1, b"")
    assert not os.path.exists(tmp_path / "guests.json")
