"""The disk commands (add, remove, resize, disks), byte for byte, in both dialects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sim_support import NO_TTY, Sim, sim_environment

GIB = 1 << 30
BOTH = pytest.mark.parametrize("profile", ["0.7.3", "0.7.9"])
USAGE_TAIL = (
    "\nFor the property list, run: zfs set|get\n"
    "\nFor the delegated permission list, run: zfs allow|unallow\n"
)
DESTROY_USAGE = (
    "too many arguments\n"
    "usage:\n"
    "\tdestroy [-fnpRrv] <filesystem|volume>\n"
    "\tdestroy [-dnpRrv] <filesystem|volume>@<snap>[%<snap>][,...]\n"
    "\tdestroy <filesystem|volume>#<bookmark>\n" + USAGE_TAIL
)

pytestmark = pytest.mark.usefixtures(sim_environment.__name__)


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    """The simulator with the 0.7.9 profile (pass ``profile=`` per call to switch)."""
    return Sim(tmp_path, capsys, "0.7.9")


def guest(sim: Sim, name: str) -> dict[str, object]:
    entry = json.loads((sim.root / "guests.json").read_text())["guests"][name]
    assert isinstance(entry, dict)
    return entry


def disks_of(sim: Sim, name: str) -> dict[str, int]:
    disks = guest(sim, name)["disks"]
    assert isinstance(disks, dict)
    return disks


def props(sim: Sim, name: str) -> dict[str, str]:
    values = guest(sim, name)["props"]
    assert isinstance(values, dict)
    return values


def listing(name: str, *rows: str) -> str:
    return f"Listing  disks  for  {name}...\ndiskN    Size\n" + "".join(row + "\n" for row in rows)


# -- disks ----------------------------------------------------------------------------------------


@BOTH
def test_create_makes_disk0_and_disks_lists_it(sim: Sim, profile: str) -> None:
    sim.ok("create", "web", "8G", profile=profile)
    assert sim("disks", "web", profile=profile) == (0, listing("web", "disk0    8G"), "")
    assert disks_of(sim, "web") == {"disk0": 8 * GIB}


@BOTH
def test_disks_also_lists_guests_whose_names_contain_the_name(sim: Sim, profile: str) -> None:
    # Issue #298: "iohyve.*debian.*disk" also matches debian.old, which sorts first.
    sim.ok("create", "debian", "20G", profile=profile)
    assert sim("add", "debian", "40G", profile=profile) == (
        0,
        "Creating new zvol for debian...\n",
        "",
    )
    sim.ok("create", "debian.old", "10G", profile=profile)
    assert sim.ok("disks", "debian", profile=profile) == listing(
        "debian", "disk0    10G", "disk0    20G", "disk1    40G"
    )
    assert sim.ok("disks", "debian.old", profile=profile) == listing("debian.old", "disk0    10G")


def test_disks_without_a_guest(sim: Sim) -> None:
    assert sim("disks", "nope") == (0, "Not a valid guest name\n", "")
    assert sim("disks", "nope", profile="0.7.3") == (0, "Not a valid guest name\n", "")
    assert sim("disks", profile="0.7.3") == (0, "You must enter a guest name.\n", "")
    assert sim("disks") == (1, "missing argument\nusage:\n\tdisks <name>\n", "")
    # /iohyve/ISO is a directory too: the existence test passes and nothing matches.
    assert sim("disks", "ISO", profile="0.7.3") == (0, listing("ISO"), "")


def test_disks_reads_the_zvol_sizes_as_zfs_prints_them(sim: Sim) -> None:
    sim.ok("create", "web", "8192M")
    sim.ok("add", "web", "1.5G")
    sim.ok("add", "web", "512K")
    assert sim.ok("disks", "web") == listing(
        "web", "disk0    8G", "disk1    1.50G", "disk2    512K"
    )


# -- add ------------------------------------------------------------------------------------------


@BOTH
def test_add_numbers_disks_and_pcidev_properties(sim: Sim, profile: str) -> None:
    sim.ok("create", "web", "8G", profile=profile)
    for size in ("20G", "1.5G"):
        assert sim("add", "web", size, profile=profile) == (
            0,
            "Creating new zvol for web...\n",
            "",
        )
    assert disks_of(sim, "web") == {"disk0": 8 * GIB, "disk1": 20 * GIB, "disk2": 3 * GIB // 2}
    values = props(sim, "web")
    assert values["iohyve:pcidev:1"] == "ahci-hd,/dev/zvol/tank/iohyve/web/disk1"
    assert values["iohyve:pcidev:2"] == "ahci-hd,/dev/zvol/tank/iohyve/web/disk2"
    assert sim.ok("get", "web", "pcidev:2", profile=profile) == (
        "Getting web prop pcidev:2...\nahci-hd,/dev/zvol/tank/iohyve/web/disk2\n"
    )


def test_add_shows_in_getall(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("add", "web", "20G")
    lines = sim.ok("getall", "web").splitlines()
    assert "pcidev:1       ahci-hd,/dev/zvol/tank/iohyve/web/disk1" in lines
    lines = sim.ok("getall", "web", profile="0.7.3").splitlines()
    assert lines[-1] == "pcidev:1     ahci-hd,/dev/zvol/tank/iohyve/web/disk1"


@BOTH
def test_add_counts_the_disks_of_every_guest_containing_the_name(sim: Sim, profile: str) -> None:
    for name in ("web", "web2"):
        sim.ok("create", name, "1G", profile=profile)
    sim.ok("add", "web2", "1G", profile=profile)
    sim.ok("add", "web2", "1G", profile=profile)
    sim.ok("add", "web", "1G", profile=profile)
    # web2's disk2 and pcidev:2 count for web too.
    assert sorted(disks_of(sim, "web")) == ["disk0", "disk3"]
    assert props(sim, "web")["iohyve:pcidev:3"] == "ahci-hd,/dev/zvol/tank/iohyve/web/disk3"
    assert sorted(disks_of(sim, "web2")) == ["disk0", "disk1", "disk2"]


@BOTH
def test_add_with_an_empty_pool_argument_still_sets_the_property(sim: Sim, profile: str) -> None:
    # sysadm's adddisk passes the pool as a fourth argument even when it is empty.
    sim.ok("create", "web", "8G", profile=profile)
    assert sim("add", "web", "10G", "", profile=profile) == (
        0,
        "Creating new zvol for web...\n",
        "cannot create '/iohyve/web/disk1': leading slash in name\n",
    )
    assert disks_of(sim, "web") == {"disk0": 8 * GIB}
    assert props(sim, "web")["iohyve:pcidev:1"] == "ahci-hd,/dev/zvol//iohyve/web/disk1"


def test_add_with_sizes_zfs_refuses(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    out = "Creating new zvol for web...\n"
    assert sim("add", "web", "10X") == (
        0,
        out,
        "bad volume size '10X': invalid numeric suffix 'X'\n",
    )
    assert sim("add", "web", "12345") == (
        0,
        out,
        "cannot create 'tank/iohyve/web/disk1': volume size must be a multiple of volume block "
        "size\n",
    )
    assert sim("add", "web", "0") == (
        0,
        out,
        "cannot create 'tank/iohyve/web/disk1': volume size cannot be zero\n",
    )
    assert disks_of(sim, "web") == {"disk0": 8 * GIB}
    # Every attempt left a property behind, all pointing at the disk that was never made.
    assert [props(sim, "web")[f"iohyve:pcidev:{n}"] for n in (1, 2, 3)] == [
        "ahci-hd,/dev/zvol/tank/iohyve/web/disk1"
    ] * 3
    assert sim("add", "web") == (1, "missing argument\nusage:\n\tadd <name> <size>\n", "")


def test_add_to_an_unknown_guest(sim: Sim) -> None:
    assert sim("add", "nope", "1G") == (
        1,
        "Creating new zvol for nope...\n",
        "cannot create '/iohyve/nope/disk1': leading slash in name\n"
        "cannot open '/iohyve/nope': invalid dataset name\n",
    )
    # 0.7.3 numbers the disk with "expr $lastdisk + 1", which fails without a disk.
    assert sim("add", "nope", "1G", profile="0.7.3") == (
        1,
        "Creating new zvol for nope...\n",
        "expr: syntax error\n"
        "cannot create '/iohyve/nope/disk': leading slash in name\n"
        "cannot open '/iohyve/nope': invalid dataset name\n",
    )
    assert (
        not (sim.root / "guests.json").exists()
        or "nope" not in json.loads((sim.root / "guests.json").read_text())["guests"]
    )


def test_add_with_a_pool_creates_the_missing_guest_dataset(sim: Sim) -> None:
    # "zfs create tank/iohyve/nope 2> /dev/null" succeeds; 0.7.3 then lists it as a guest.
    assert sim("add", "nope", "1G", "tank", profile="0.7.3") == (
        1,
        "Creating new zvol for nope...\n",
        "expr: syntax error\ncannot open '/iohyve/nope': invalid dataset name\n",
    )
    assert guest(sim, "nope") == {
        "props": {},
        "vmm": False,
        "running": False,
        "disks": {"disk": GIB},
    }
    assert sim.ok("list", profile="0.7.3").splitlines()[1] == "nope   NO    NO       NO       -"
    assert sim.ok("list") == "Guest  VMM?  Running  rcboot?  Description\n"


# -- remove ---------------------------------------------------------------------------------------


def test_remove_with_force(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("add", "web", "20G")
    assert sim("remove", "-f", "web", "disk1") == (0, "Removing disk1 from web\n", "")
    assert disks_of(sim, "web") == {"disk0": 8 * GIB}
    assert "iohyve:pcidev:1" not in props(sim, "web")
    assert sim.ok("disks", "web") == listing("web", "disk0    8G")
    # disk0 has no pcidev property: it cannot be removed.
    assert sim("remove", "-f", "web", "disk0") == (
        0,
        "Removing disk0 from web\nNot a valid PCIDEV property\n",
        "",
    )
    usage = (1, "missing argument\nusage:\n\tremove [-f] <name> <diskN>\n", "")
    assert sim("remove", "-f", "web") == usage
    assert sim("remove", "web") == usage


@BOTH
def test_remove_without_force_asks_on_the_tty(sim: Sim, profile: str) -> None:
    sim.ok("create", "web", "8G", profile=profile)
    sim.ok("add", "web", "20G", profile=profile)
    assert sim("remove", "web", "disk1", profile=profile) == (0, "Not removed...\n", NO_TTY)
    assert sim("remove", "web", "disk0", profile=profile) == (
        0,
        "Not a valid PCIDEV property\n",
        "",
    )
    assert sorted(disks_of(sim, "web")) == ["disk0", "disk1"]
    assert "iohyve:pcidev:1" in props(sim, "web")


def test_0_7_3_remove_takes_minus_f_for_the_guest_name(sim: Sim) -> None:
    # sysadm's deletedisk runs "remove -f <name> <disk>", which 0.7.3 does not know: "-f" is the
    # name and the guest the disk. (grep's complaint about "-f" is not reproduced.)
    sim.ok("create", "web", "8G")
    sim.ok("add", "web", "20G")
    assert sim("remove", "-f", "web", "disk1", profile="0.7.3") == (
        0,
        "Not a valid PCIDEV property\n",
        "/iohyve/-f: No such file or directory\n",
    )
    assert sorted(disks_of(sim, "web")) == ["disk0", "disk1"]


def test_remove_of_a_running_guest_keeps_the_busy_zvol(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("add", "web", "20G")
    sim.ok("start", "web")
    assert sim("remove", "-f", "web", "disk1") == (
        1,
        "Removing disk1 from web\n",
        "cannot destroy 'tank/iohyve/web/disk1': dataset is busy\n",
    )
    # The property went first.
    assert "iohyve:pcidev:1" not in props(sim, "web")
    assert sorted(disks_of(sim, "web")) == ["disk0", "disk1"]


def test_remove_when_another_guest_name_contains_the_name(sim: Sim) -> None:
    for name in ("web", "web2"):
        sim.ok("create", name, "1G")
        sim.ok("add", name, "1G")
    # "grep web.*disk1" finds both zvols: $pool is "tank<newline>tank", so zfs inherit -r also
    # runs on the pool itself (clearing pcidev:1 everywhere) and zfs destroy gets two names.
    assert sim("remove", "-f", "web", "disk1") == (2, "Removing disk1 from web\n", DESTROY_USAGE)
    assert "iohyve:pcidev:1" not in props(sim, "web")
    assert "iohyve:pcidev:1" not in props(sim, "web2")
    assert sorted(disks_of(sim, "web")) == ["disk0", "disk1"]


# -- resize ---------------------------------------------------------------------------------------


@BOTH
def test_resize(sim: Sim, profile: str) -> None:
    sim.ok("create", "web", "8G", profile=profile)
    assert sim("resize", "web", "disk0", "20G", profile=profile) == (
        0,
        "Resizing disk0 to 20G\n",
        "",
    )
    assert sim.ok("disks", "web", profile=profile) == listing("web", "disk0    20G")
    # 0.7.4+ also update iohyve:size.
    assert props(sim, "web")["iohyve:size"] == ("8G" if profile == "0.7.3" else "20G")
    sim.ok("start", "web", profile=profile)
    assert sim("resize", "web", "disk0", "30G", profile=profile) == (
        0,
        "Resizing disk0 to 30G\nPlease stop the guest first\n",
        "",
    )
    assert disks_of(sim, "web") == {"disk0": 20 * GIB}
    assert sim("resize", "nope", "disk0", "1G", profile=profile) == (
        0,
        "Resizing disk0 to 1G\nNot a valid guest name\n",
        "",
    )


def test_resize_with_sizes_zfs_refuses(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    assert sim("resize", "web", "disk0", "10X", profile="0.7.3") == (
        1,
        "Resizing disk0 to 10X\n",
        "cannot set property for 'tank/iohyve/web/disk0': invalid numeric suffix 'X'\n",
    )
    # 0.7.9 sets iohyve:size afterwards regardless, and that works.
    assert sim("resize", "web", "disk0", "10X") == (
        0,
        "Resizing disk0 to 10X\n",
        "cannot set property for 'tank/iohyve/web/disk0': invalid numeric suffix 'X'\n",
    )
    assert props(sim, "web")["iohyve:size"] == "10X"
    assert disks_of(sim, "web") == {"disk0": 8 * GIB}
    assert sim("resize", "web", "disk0") == (
        1,
        "missing argument\nusage:\n\tresize <name> <diskN> <size>\n",
        "",
    )


def test_resize_of_a_missing_disk(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    # No dataset matches: $pool is empty and zfs gets the path-like "/iohyve/web/disk5".
    assert sim("resize", "web", "disk5", "1G", profile="0.7.3") == (
        1,
        "Resizing disk5 to 1G\n",
        "cannot open '/iohyve/web/disk5': invalid dataset name\n",
    )
    assert sim("resize", "web", "disk5", "1G") == (
        1,
        "Resizing disk5 to 1G\n",
        "cannot open '/iohyve/web/disk5': invalid dataset name\n"
        "cannot open '/iohyve/web': invalid dataset name\n",
    )


# -- the state file -------------------------------------------------------------------------------


def test_guests_saved_without_disks_have_disk0_of_their_size(sim: Sim) -> None:
    sim.root.mkdir(exist_ok=True)
    guests = {
        "old": {"props": {"iohyve:name": "old", "iohyve:size": "16G"}},
        "sizeless": {"props": {"iohyve:name": "sizeless"}},
    }
    (sim.root / "guests.json").write_text(json.dumps({"format": 1, "guests": guests}))
    assert sim.ok("disks", "old") == listing("old", "disk0    16G")
    assert sim.ok("disks", "sizeless") == listing("sizeless")
    sim.ok("set", "old", "boot=1")
    saved = json.loads((sim.root / "guests.json").read_text())
    assert saved["guests"]["old"]["disks"] == {"disk0": 16 * GIB}
    assert saved["guests"]["sizeless"]["disks"] == {}
    assert saved["host"]["iohyve_pools"] == []


def test_malformed_disks_are_reported(sim: Sim) -> None:
    sim.root.mkdir(exist_ok=True)
    guests = {"g": {"props": {}, "disks": {"disk0": "8G"}}}
    (sim.root / "guests.json").write_text(json.dumps({"format": 1, "guests": guests}))
    status, out, err = sim("list")
    assert (status, out) == (2, "")
    assert err.endswith(": g: guest disks are not sizes in bytes\n")
