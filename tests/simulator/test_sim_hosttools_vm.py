"""The FreeBSD tools a vm-bhyve backend runs beside ``vm``: zfs, fetch and xz."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from sim_support import Sim, run_process
from test_sim_iso import PAYLOAD, http, stats_line

__all__ = ["http"]  # the fixture, used by name below

FETCH = "/usr/bin/fetch"


@pytest.fixture
def sim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Sim:
    return Sim(tmp_path / "root", capsys, "0.7.9")


def made_datasets(sim: Sim) -> object:
    """The datasets ``zfs create`` made, as the state file keeps them."""
    return json.loads((sim.root / "guests.json").read_text())["host"]["datasets"]


# -- zfs ------------------------------------------------------------------------------------------


def test_zfs_create_makes_a_mounted_filesystem(sim: Sim) -> None:
    assert sim("zfs", "create", "tank/vm") == (0, "", "")
    assert (sim.root / "tank" / "vm").is_dir()
    assert sim("zfs", "get", "-H", "-o", "value", "mountpoint", "tank/vm") == (0, "/tank/vm\n", "")
    assert sim("zfs", "get", "mountpoint", "tank/vm") == (
        0,
        "NAME     PROPERTY    VALUE     SOURCE\ntank/vm  mountpoint  /tank/vm  default\n",
        "",
    )
    # The same namespace as iohyve's datasets, kept in the state.
    assert made_datasets(sim) == {"tank/vm": None}


def test_zfs_create_of_an_iso_dataset_is_iohyves_iso(sim: Sim) -> None:
    """``zfs create <pool>/iohyve/ISO/<name>`` (as iohyve fetch runs it) makes an ISO
    dataset mounted at ``/iohyve/ISO/<name>``: isolist shows it, rmiso destroys it."""
    assert sim("zfs", "create", "tank/iohyve/ISO/up.iso") == (0, "", "")
    assert sim.iso("up.iso").is_dir()
    assert sim("zfs", "get", "-H", "-o", "value", "mountpoint", "tank/iohyve/ISO/up.iso") == (
        0,
        "/iohyve/ISO/up.iso\n",
        "",
    )
    assert "up.iso" in sim.ok("isolist").splitlines()
    assert sim("zfs", "create", "tank/iohyve/ISO/up.iso")[2] == (
        "cannot create 'tank/iohyve/ISO/up.iso': dataset already exists\n"
    )
    sim.ok("rmiso", "up.iso")
    assert not sim.iso("up.iso").exists()
    assert "up.iso" not in sim.ok("isolist").splitlines()


def test_zfs_create_refusals(sim: Sim) -> None:
    sim.ok("zfs", "create", "tank/vm")
    assert sim("zfs", "create", "tank/vm") == (
        1,
        "",
        "cannot create 'tank/vm': dataset already exists\n",
    )
    assert sim("zfs", "create", "tank/a/b") == (
        1,
        "",
        "cannot create 'tank/a/b': parent does not exist\n",
    )
    assert sim("zfs", "create", "zroot/vm") == (
        1,
        "",
        "cannot create 'zroot/vm': no such pool 'zroot'\n",
    )
    assert sim("zfs", "create", "tank/v m!") == (
        1,
        "",
        "cannot create 'tank/v m!': invalid character '!' in name\n",
    )
    status, out, err = sim("zfs", "create")
    assert (status, out) == (2, "")
    assert err.startswith("missing filesystem argument\nusage:\n\tcreate [-pu]")
    status, _, err = sim("zfs", "create", "--parents", "tank/x")
    assert status == 2
    assert err.startswith("invalid option '-'\nusage:\n")
    assert not (sim.root / "tank" / "a").exists()


def test_zfs_volumes_get_set_destroy(sim: Sim) -> None:
    sim.ok("zfs", "create", "tank/vm")
    assert sim("zfs", "create", "-V", "1G", "tank/vm/disk0") == (0, "", "")
    assert sim("zfs", "get", "-Hp", "-o", "value", "volsize", "tank/vm/disk0") == (
        0,
        "1073741824\n",
        "",
    )
    assert sim("zfs", "get", "-H", "-o", "value", "volsize", "tank/vm/disk0") == (0, "1G\n", "")
    assert sim("zfs", "set", "volsize=2G", "tank/vm/disk0") == (0, "", "")
    assert sim("zfs", "get", "-H", "-o", "name,value", "volsize", "tank/vm/disk0") == (
        0,
        "tank/vm/disk0\t2G\n",
        "",
    )
    assert sim("zfs", "set", "volsize=1000", "tank/vm/disk0") == (
        1,
        "",
        "cannot set property for 'tank/vm/disk0': "
        "'volsize' must be a multiple of volume block size\n",
    )
    assert sim("zfs", "set", "volsize=1G", "tank/vm") == (
        1,
        "",
        "cannot set property for 'tank/vm': 'volsize' does not apply to datasets of this type\n",
    )
    assert sim("zfs", "create", "tank/vm/disk0/x") == (
        1,
        "",
        "cannot create 'tank/vm/disk0/x': parent is not a filesystem\n",
    )
    assert sim("zfs", "destroy", "tank/vm") == (
        1,
        "",
        "cannot destroy 'tank/vm': filesystem has children\n"
        "use '-r' to destroy the following datasets:\ntank/vm/disk0\n",
    )
    assert sim("zfs", "destroy", "tank/vm/disk0") == (0, "", "")
    assert sim("zfs", "get", "-H", "-o", "value", "volsize", "tank/vm/disk0") == (
        1,
        "",
        "cannot open 'tank/vm/disk0': dataset does not exist\n",
    )
    (sim.root / "tank" / "vm" / "file").write_text("data")
    assert sim("zfs", "destroy", "tank/vm") == (0, "", "")
    assert not (sim.root / "tank" / "vm").exists()


def test_zfs_argument_errors(sim: Sim) -> None:
    status, _, err = sim("zfs", "set", "volsize=", "tank")
    assert (status, err.splitlines()[0]) == (2, "missing value in property=value argument")
    status, _, err = sim("zfs", "get", "-H", "bad!prop", "tank")
    assert (status, err.splitlines()[0]) == (2, "bad property list: invalid property 'bad!prop'")
    assert sim("zfs", "get", "-H", "-o", "value", "mountpoint", "tank/none") == (
        1,
        "",
        "cannot open 'tank/none': dataset does not exist\n",
    )
    status, _, err = sim("zfs", "frobnicate")
    assert (status, err.splitlines()[0]) == (2, "unrecognized command 'frobnicate'")


def test_zfs_as_a_process(tmp_path: Path) -> None:
    done = run_process(tmp_path, "zfs", "create", "tank/vm")
    assert (done.returncode, done.stderr) == (0, b"")
    done = run_process(tmp_path, "zfs", "get", "-H", "-o", "value", "mountpoint", "tank/vm")
    assert (done.returncode, done.stdout) == (0, b"/tank/vm\n")


# -- fetch ----------------------------------------------------------------------------------------


def test_fetch_over_http(sim: Sim, http: tuple[str, dict[str, bytes]]) -> None:
    http[1]["disc1.iso"] = PAYLOAD
    (sim.root / "vm" / ".iso").mkdir(parents=True)
    status, out, err = sim(FETCH, "-o", "/vm/.iso/disc1.iso", f"{http[0]}/disc1.iso")
    assert (status, out) == (0, "")
    assert stats_line("/vm/.iso/disc1.iso", " 300 kB").fullmatch(err), err
    assert (sim.root / "vm" / ".iso" / "disc1.iso").read_bytes() == PAYLOAD
    # Into a directory: the URL's last component; -q prints nothing.
    assert sim(FETCH, "-q", "-o", "/vm", f"{http[0]}/disc1.iso") == (0, "", "")
    assert (sim.root / "vm" / "disc1.iso").read_bytes() == PAYLOAD


def test_fetch_failures(sim: Sim, http: tuple[str, dict[str, bytes]]) -> None:
    """An error before the transfer leaves nothing; a transfer cut short keeps what it
    wrote, under the target's own name (fetch.c's ``failure_keep``)."""
    (sim.root / "vm").mkdir(parents=True)
    url = f"{http[0]}/missing.iso"
    assert sim(FETCH, "-o", "/vm/missing.iso", url) == (1, "", f"fetch: {url}: Not Found\n")
    assert list((sim.root / "vm").iterdir()) == []
    status, _, err = sim(FETCH, "-o", "/vm/short.iso", f"{http[0]}/short.iso")
    assert status == 1
    assert err.endswith("fetch: /vm/short.iso appears to be truncated: 1000/307200 bytes\n")
    assert [p.name for p in (sim.root / "vm").iterdir()] == ["short.iso"]
    assert (sim.root / "vm" / "short.iso").read_bytes() == PAYLOAD[:1000]
    assert sim(FETCH, "-o", "/nowhere/x.iso", url.replace("missing", "x")) == (
        1,
        "",
        f"fetch: {url.replace('missing', 'x')}: Not Found\n",
    )


def test_fetch_file_urls_and_usage(sim: Sim, tmp_path: Path) -> None:
    source = tmp_path / "local.iso"
    source.write_bytes(b"local bytes")
    (sim.root / "vm").mkdir(parents=True)
    status, _, err = sim(FETCH, "-o", "/vm/local.iso", source.as_uri())
    assert status == 0
    assert stats_line("/vm/local.iso", "  11  B").fullmatch(err), err
    assert (sim.root / "vm" / "local.iso").read_bytes() == b"local bytes"
    absent = (tmp_path / "absent.iso").as_uri()
    assert sim(FETCH, "-o", "/vm/absent.iso", absent) == (
        1,
        "",
        f"fetch: {absent}: No such file or directory\n",
    )
    assert sim(FETCH, "-o", "/missing/dir/local.iso", source.as_uri()) == (
        1,
        "",
        "fetch: /missing/dir/local.iso: open(): No such file or directory\n",
    )
    status, out, err = sim(FETCH, "-Z", "x")
    assert (status, out) == (1, "")
    assert err.startswith("fetch: illegal option -- Z\nusage: fetch [-146AadFlMmnPpqRrsUv]")
    # The word "fetch" stays iohyve's own command.
    assert sim("fetch", source.as_uri())[1] == f"Fetching {source.as_uri()}...\n"


# -- xz -------------------------------------------------------------------------------------------


def test_xz_decompresses_in_place(sim: Sim) -> None:
    (sim.root / "vm").mkdir(parents=True)
    packed = sim.root / "vm" / "disc.img.xz"
    packed.write_bytes(lzma.compress(PAYLOAD))
    packed.chmod(0o640)
    assert sim("xz", "-d", "/vm/disc.img.xz") == (0, "", "")
    assert not packed.exists()
    unpacked = sim.root / "vm" / "disc.img"
    assert unpacked.read_bytes() == PAYLOAD
    assert unpacked.stat().st_mode & 0o777 == 0o640
    # -k keeps the source; an existing target needs -f.
    packed.write_bytes(lzma.compress(b"second"))
    assert sim("xz", "-dk", "/vm/disc.img.xz") == (1, "", "xz: /vm/disc.img: File exists\n")
    assert sim("xz", "-dkf", "/vm/disc.img.xz") == (0, "", "")
    assert packed.exists()
    assert unpacked.read_bytes() == b"second"


def test_xz_errors(sim: Sim) -> None:
    directory = sim.root / "vm"
    directory.mkdir(parents=True)
    (directory / "plain.iso").write_bytes(b"not packed")
    (directory / "junk.xz").write_bytes(b"not xz at all")
    (directory / "cut.xz").write_bytes(lzma.compress(PAYLOAD)[:200])
    assert sim("xz", "-d", "/vm/absent.xz") == (
        1,
        "",
        "xz: /vm/absent.xz: No such file or directory\n",
    )
    assert sim("xz", "-d", "/vm/plain.iso") == (
        2,
        "",
        "xz: /vm/plain.iso: Filename has an unknown suffix, skipping\n",
    )
    assert sim("xz", "-d", "/vm/junk.xz") == (
        1,
        "",
        "xz: /vm/junk.xz: File format not recognized\n",
    )
    assert sim("xz", "-d", "/vm/cut.xz") == (1, "", "xz: /vm/cut.xz: Unexpected end of input\n")
    # Sources stay, no partial target is left.
    assert sorted(p.name for p in directory.iterdir()) == ["cut.xz", "junk.xz", "plain.iso"]
    assert sim("xz", "-dZ", "/vm/cut.xz") == (
        1,
        "",
        "xz: illegal option -- Z\nxz: Try `xz --help' for more information.\n",
    )
