"""info: 0.7.3's ``zfs list`` table and 0.7.6+'s flag-driven table, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from sim_support import Sim, sim_environment

pytestmark = pytest.mark.usefixtures(sim_environment.__name__)

DATE = "Fri Jan  8 20:15:33 CST 2016"


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    """The simulator with the 0.7.9 profile (pass ``profile=`` per call to switch)."""
    return Sim(tmp_path, capsys, "0.7.9")


@pytest.fixture
def old(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    """The simulator with the 0.7.3 profile."""
    return Sim(tmp_path, capsys, "0.7.3")


# -- 0.7.3 ----------------------------------------------------------------------------------------


def test_0_7_3_info_matches_the_reference_example(old: Sim) -> None:
    old.ok("create", "bsdguest", "8G")
    assert old("info") == (
        0,
        "Name            Size  RAM   CPU  OS       Loader\n"
        "bsdguest        -     256M  1    default  bhyveload\n"
        "bsdguest/disk0  8G    256M  1    default  bhyveload\n",
        "",
    )
    # The description's words spill over one column each.
    assert old("info", "-d") == (
        0,
        "Name            Size  RAM   CPU  OS       Loader     Description\n"
        "bsdguest        -     256M  1    default  bhyveload  "
        "Fri          Jan  8  20:15:33  CST  2016\n"
        "bsdguest/disk0  8G    256M  1    default  bhyveload  "
        "Fri          Jan  8  20:15:33  CST  2016\n",
        "",
    )


def test_0_7_3_info_lists_every_zvol_with_its_own_size(old: Sim) -> None:
    old.ok("create", "web", "8G")
    old.ok("add", "web", "20G")
    old.ok("set", "web", "ram=2G")
    assert old.ok("info") == (
        "Name       Size  RAM  CPU  OS       Loader\n"
        "web        -     2G   1    default  bhyveload\n"
        "web/disk0  8G    2G   1    default  bhyveload\n"
        "web/disk1  20G   2G   1    default  bhyveload\n"
    )


def test_0_7_3_info_quirks(old: Sim) -> None:
    assert old("info") == (0, "Name  Size  RAM  CPU  OS  Loader\n", "")
    assert old("info", "-v") == (0, "Invalid flag...\n", "")
    old.ok("create", "web", "1G")
    old.ok("create", "lab", "1G")
    # grep -Ev "ISO|Firmware" drops any line mentioning ISO, descriptions included.
    old.ok("set", "lab", "description=ISO tests")
    assert old.ok("info", "-d") == (
        "Name       Size  RAM   CPU  OS       Loader     Description\n"
        "web        -     256M  1    default  bhyveload  Fri          Jan  8  20:15:33  CST  2016\n"
        "web/disk0  1G    256M  1    default  bhyveload  Fri          Jan  8  20:15:33  CST  2016\n"
    )


# -- 0.7.9 ----------------------------------------------------------------------------------------


def test_0_7_9_info_matches_the_reference_example(sim: Sim) -> None:
    sim.ok("create", "bsdguest", "8G")
    assert sim("info", "-s") == (
        0,
        "Guest           Size  CPU  RAM   Pool  VMM?  Running  rcboot?\n"
        "bsdguest        -     1    512M  tank  NO    NO       NO\n"
        "bsdguest/disk0  8G    -    -     tank  -     -        -\n",
        "",
    )


def test_0_7_9_info_flags(sim: Sim) -> None:
    sim.ok("create", "web", "8G")
    sim.ok("add", "web", "20G")
    sim.ok("start", "web")
    sim.ok("create", "db", "4G")
    sim.ok("set", "db", "boot=1", "description=Main  database")
    assert sim.ok("info") == (
        "Guest      Size  CPU  RAM   Pool\n"
        "db         -     1    512M  tank\n"
        "db/disk0   4G    -    -     tank\n"
        "web        -     1    512M  tank\n"
        "web/disk0  8G    -    -     tank\n"
        "web/disk1  8G    -    -     tank\n"
    )
    # Disk rows show the guest's iohyve:size, inherited, not the zvol's size.
    assert sim.ok("info", "-vsd") == (
        "Guest      Size  CPU  RAM   Pool  OS       Loader     Tap   Con    VMM?  Running  "
        "rcboot?  Description\n"
        "db         -     1    512M  tank  default  bhyveload  tap1  nmdm1  NO    NO       "
        "YES      Main database\n"
        "db/disk0   4G    -    -     tank  -        -          -     -      -     -        "
        "-        Main database\n"
        "web        -     1    512M  tank  default  bhyveload  tap0  nmdm0  YES   YES      "
        f"NO       {DATE}\n"
        "web/disk0  8G    -    -     tank  -        -          -     -      -     -        "
        f"-        {DATE}\n"
        "web/disk1  8G    -    -     tank  -        -          -     -      -     -        "
        f"-        {DATE}\n"
    )
    # Only the first argument counts, as letters anywhere in it.
    assert sim.ok("info", "d", "-s") == sim.ok("info", "-d")
    assert sim.ok("info", "-x") == sim.ok("info")


def test_0_7_9_info_pager_flag(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.ok("create", "web", "8G")
    assert sim("info", "-l") == (0, "", "")
    monkeypatch.setenv("PAGER", "more")
    assert sim.ok("info", "-ld") == sim.ok("info", "-d")


def test_0_7_9_info_skips_datasets_without_a_name(sim: Sim) -> None:
    assert sim("add", "bare", "1G", "tank", profile="0.7.3")[0] == 1
    assert sim.ok("info") == "Guest  Size  CPU  RAM  Pool\n"
