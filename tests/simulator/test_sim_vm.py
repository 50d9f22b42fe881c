"""The ``vm`` dialect: vm-bhyve's output byte for byte per version, its exit statuses, the files
it keeps, and round trips through the daemon's vm-bhyve parsers."""

from __future__ import annotations

import io
import lzma
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from sim_support import REPO_ROOT, run_process, sim_env

from sysadmd.backends._vmbhyve import parse
from sysadmd.simulator.cli import main
from sysadmd.simulator.state import Root
from sysadmd.simulator.vmhost import Process, Processes, read_conf, sysrc_delete, sysrc_set

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vm-bhyve"
EACH = pytest.mark.parametrize("version", parse.DIALECTS)
ERROR = "/usr/local/sbin/vm: ERROR: "
WARNING = "/usr/local/sbin/vm: WARNING: "
GIB = 1 << 30


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


class Vm:
    """``iohyve-sim --root ROOT --vm-version V vm ...`` in-process, on a fresh host."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.capsys = capsys
        self.version = "1.7"

    def __call__(self, *words: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--root", str(self.root), "--vm-version", self.version, "vm", *words])
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err

    def ok(self, *words: str) -> str:
        status, out, err = self(*words)
        assert (status, err) == (0, ""), (words, status, out, err)
        return out

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def conf(self, name: str, datastore: str = "/zroot/vm") -> Path:
        return self.path(f"{datastore}/{name}/{name}.conf")

    def set(self, name: str, datastore: str = "/zroot/vm", **values: str) -> None:
        for key, value in values.items():
            sysrc_set(str(self.conf(name, datastore)), key, value)

    def processes(self) -> Processes:
        return Processes(Root(str(self.root)))


@pytest.fixture
def vm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Vm:
    """A host with ``vm_enable``, ``vm_dir=/zroot/vm``, no delay between starts, after init."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "rc.conf").write_text(
        'hostname="host1"\nvm_enable="YES"\nvm_dir="/zroot/vm"\nvm_delay="0"\n'
    )
    (tmp_path / "zroot" / "vm").mkdir(parents=True)
    sim = Vm(tmp_path, capsys)
    sim.ok("init")
    return sim


def add_datastore(vm: Vm, name: str, spec: str) -> None:
    system = str(vm.path("/zroot/vm/.config/system.conf"))
    current = read_conf(system).get("datastore_list", "")
    sysrc_set(system, "datastore_list", f"{current} {name}".strip())
    sysrc_set(system, f"path_{name}", spec)
    vm.path(spec.partition(":")[2] or spec).mkdir(parents=True, exist_ok=True)


def start_as(vm: Vm, name: str, pid: int) -> None:
    """``vm start name`` with the next pid set to ``pid``."""
    table = vm.processes()
    table.next_pid = pid
    table.save()
    vm.ok("start", name)


def fixture_host(vm: Vm) -> None:
    """The guests of tests/fixtures/vm-bhyve/list-<version>.txt."""
    add_datastore(vm, "ssd", "/ssd/vm")
    vm.ok("create", "-m", "512M", "alpine")
    vm.set("alpine", loader="grub")
    vm.ok("create", "-c", "2", "-m", "2G", "fbsd14")
    vm.ok("create", "-d", "ssd", "-c", "4", "-m", "8G", "win11")
    vm.set("win11", "/ssd/vm", loader="uefi", graphics="yes")
    with (vm.root / "etc" / "rc.conf").open("a") as rc:
        rc.write('vm_list="fbsd14 win11"\n')
    start_as(vm, "fbsd14", 4123)
    start_as(vm, "win11", 5230)
    if vm.version == "dev":
        vm.set("fbsd14", tags="web,prod")
    if vm.version == "1.7":
        vm.ok("create", "old")
        sysrc_delete(str(vm.conf("old")), "loader")
        vm.path("/zroot/vm/old/run.lock").write_text("host2\n")
        vm.ok("create", "-d", "ssd", "-c", "2", "-m", "1G", "parked")
        vm.set("parked", "/ssd/vm", loader="uefi")
        vm.path("/ssd/vm/parked/parked.save").write_bytes(b"")
        table = vm.processes()
        table.table[5230].title = "bhyveload -m 8G -d /ssd/vm/win11/disk0.img win11"
        table.save()


# -- version, usage, command names, start-up checks -----------------------------------------------


@pytest.mark.parametrize(
    ("version", "line"),
    [
        ("1.6", "vm-bhyve: Bhyve virtual machine management v1.6-devel (rev. 106001)\n"),
        ("1.7", "vm-bhyve: Bhyve virtual machine management v1.7.5\n"),
        ("dev", "vm-bhyve: Bhyve virtual machine management v1.8-devel\n"),
    ],
)
def test_version_needs_no_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str, line: str
) -> None:
    sim = Vm(tmp_path, capsys)
    sim.version = version
    assert sim("version") == (0, line, "")
    assert parse.parse_version(line) == version


def test_checks_in_vm_bhyve_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sim = Vm(tmp_path, capsys)
    assert sim("list") == (1, "", ERROR + "$vm_enable is not enabled in /etc/rc.conf!\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "rc.conf").write_text('vm_enable="YES"\nvm_dir="/nowhere"\n')
    assert sim("list") == (
        1,
        "",
        ERROR + "$vm_dir has not been configured or is not a valid directory\n",
    )
    (tmp_path / "etc" / "rc.conf").write_text('vm_enable="YES"\nvm_dir="zfs:tank/vm"\n')
    assert sim("list") == (1, "", ERROR + "unable to locate mountpoint for ZFS dataset tank/vm\n")
    (tmp_path / "tank" / "vm").mkdir(parents=True)
    assert sim("list") == (0, "NAME  DATASTORE  LOADER  CPU  MEMORY  VNC  AUTO  STATE\n", "")
    for sub in (".config", ".templates", ".iso", ".img"):
        assert (tmp_path / "tank" / "vm" / sub).is_dir()
    assert (tmp_path / "tank" / "vm" / ".config" / "null.iso").is_file()
    assert sim("") == (1, "", ERROR + "no command specified\n")


def test_init_writes_the_default_template(vm: Vm) -> None:
    template = vm.path("/zroot/vm/.templates/default.conf")
    assert template.read_text() == fixture("default.conf")
    assert parse.parse_conf(template.read_text())["disk0_name"] == "disk0.img"


def test_commands_match_by_unique_prefix(vm: Vm) -> None:
    assert vm("li")[0:2] == vm("list")[0:2]
    assert vm("LI")[0:2] == vm("list")[0:2]
    assert vm("st", "x") == (1, "", ERROR + "ambiguous command 'st'\n")
    assert vm("sto", "x") == (1, "", ERROR + "ambiguous command 'sto'\n")
    # An exact name wins over the longer names it is a prefix of (stop, stopall).
    assert vm("stop", "x") == (
        0,
        "",
        WARNING + "x doesn't appear to be a running virtual machine\n",
    )


@EACH
def test_unknown_command_prints_the_usage(vm: Vm, version: str) -> None:
    vm.version = version
    status, out, err = vm("frobnicate")
    assert (status, err) == (1, "")
    assert parse.parse_version(out.splitlines()[0]) == version
    assert "    create [-d datastore]" in out


@pytest.mark.parametrize(("version", "status"), [("1.6", 1), ("1.7", 1), ("dev", 0)])
def test_missing_argument_usage_or_help(vm: Vm, version: str, status: int) -> None:
    vm.version = version
    code, out, err = vm("create")
    assert (code, err) == (status, "")
    if version == "dev":
        synopsis = "create [-d datastore] [-t template] [-s size] [-m memory] [-c vCPUs] <name>"
        assert out == f"Usage:\n    vm {synopsis}\n"
    else:
        assert out.splitlines()[0].startswith("vm-bhyve: Bhyve virtual machine management v")


def test_long_options_are_letters_to_getopts(vm: Vm) -> None:
    # list has a "*) usage" branch: the first unknown letter ends in the usage.
    status, out, err = vm("list", "--all")
    assert (status, err) == (1, "Illegal option --\n")
    assert out.startswith("vm-bhyve: ")
    # create too: a long option never becomes a value.
    status, out, err = vm("create", "--size=8G", "web")
    assert (status, err) == (1, "Illegal option --\n")
    assert not vm.path("/zroot/vm/web").exists()


def test_unsimulated_commands_say_so(vm: Vm) -> None:
    assert vm("console", "x") == (2, "", "iohyve-sim: vm console is not simulated\n")
    assert vm("list", "-v") == (2, "", "iohyve-sim: vm list -v is not simulated\n")


def test_bad_version_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path), "--vm-version", "1.5", "vm", "version"]) == 2
    assert "unknown vm-bhyve version '1.5'" in capsys.readouterr().err


def test_as_a_process_with_the_version_from_the_environment(tmp_path: Path) -> None:
    done = run_process(tmp_path, "vm", "version", IOHYVE_SIM_VM_VERSION="dev")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        b"vm-bhyve: Bhyve virtual machine management v1.8-devel\n",
        b"",
    )


# -- vm list --------------------------------------------------------------------------------------


@EACH
def test_list_is_the_recorded_output(vm: Vm, version: parse.Dialect) -> None:
    vm.version = version
    fixture_host(vm)
    out = vm.ok("list")
    assert out == fixture(f"list-{version}.txt")
    guests = parse.parse_list(out, version)
    assert guests["fbsd14"].pid == 4123
    assert guests["fbsd14"].autostart_order == 1


def test_list_running_only_and_empty_cells(vm: Vm) -> None:
    fixture_host(vm)
    assert [line.split()[0] for line in vm.ok("list", "-r").splitlines()] == [
        "NAME",
        "fbsd14",
        "old",
        "win11",
    ]
    # An unset memory cell vanishes and shifts the row, as column -t does; the parser refuses it.
    vm.conf("alpine").write_text(vm.conf("alpine").read_text().replace('memory="512M"\n', ""))
    out = vm.ok("list")
    assert "alpine  default    grub       1    -" in out
    with pytest.raises(parse.ParseError):
        parse.parse_list(out, "1.7")


def test_version_1_6_has_no_suspended_state(vm: Vm) -> None:
    vm.ok("create", "parked")
    vm.path("/zroot/vm/parked/parked.save").write_bytes(b"")
    vm.version = "1.6"
    assert parse.parse_list(vm.ok("list"), "1.6")["parked"].state == "stopped"
    vm.version = "1.7"
    assert parse.parse_list(vm.ok("list"), "1.7")["parked"].state == "suspended"


# -- vm info, console -----------------------------------------------------------------------------


def test_info_is_the_recorded_output(vm: Vm) -> None:
    vm.ok("create", "-c", "2", "-m", "2G", "fbsd14")
    vm.set("fbsd14", uuid="6f2c\u2026", network0_mac="58:9c:fc:0a:1b:2c")
    vm.set("fbsd14", cpu_sockets="1", cpu_cores="2")
    start_as(vm, "fbsd14", 4123)
    table = vm.processes()
    table.table[4123].rss = 532676608
    table.save()
    with vm.path("/zroot/vm/fbsd14/disk0.img").open("r+b") as disk:
        disk.write(b"x" * 4096)
    out = vm.ok("info", "fbsd14")
    # The recording leaves out the lines about the tap device's traffic and the last blank line.
    extra = ("    desc: ", "    mtu: ", "    bridge: ", "    bytes-in: ", "    bytes-out: ")
    lines = [line for line in out.split("\n") if not line.startswith(extra)]
    assert lines[-2:] == ["", ""]
    used = [line for line in lines if line.startswith("    bytes-used: ")]
    recorded = fixture("info-fbsd14.txt").split("\n")
    assert [line for line in lines[:-2] if line not in used] == [
        line for line in recorded[:-1] if not line.startswith("    bytes-used: ")
    ]
    assert used == ["    bytes-used: 4096 (4.000K)"]
    info = parse.parse_info(out)["fbsd14"]
    assert (info.state, info.pid) == ("running", 4123)
    assert info.console_ports == {"com1": "/dev/nmdm-fbsd14.1B"}
    assert info.disks[0]["bytes-size"] == "21474836480 (20.000G)"
    assert info.network_interfaces[0]["bridge"] == "vm-public"


def test_info_of_every_guest_and_of_an_unknown_one(vm: Vm) -> None:
    vm.ok("create", "aa")
    vm.ok("create", "bb")
    info = parse.parse_info(vm.ok("info"))
    assert list(info) == ["aa", "bb"]
    assert info["aa"].state == "stopped"
    assert "memory-resident" not in info["aa"].fields
    assert vm("info", "cc") == (1, "", ERROR + "unable to locate virtual machine 'cc'\n")


def test_info_gives_every_disk_and_interface_its_own_section(vm: Vm) -> None:
    # vm-bhyve's info::guest_disks and info::guest_networking print the section's title
    # before each entry, not once.
    vm.ok("create", "web")
    vm.ok("add", "-d", "disk", "-s", "1G", "web")
    vm.ok("add", "-d", "network", "-s", "lan", "web")
    out = vm.ok("info", "web")
    assert out.count("\n  virtual-disk\n    number: ") == 2
    assert out.count("\n  network-interface\n    number: ") == 2
    assert "\n\n  virtual-disk\n    number: 1\n    device-type: file\n" in out


def test_console_file_while_running(vm: Vm) -> None:
    vm.ok("create", "fbsd14")
    vm.set("fbsd14", graphics="yes")
    vm.ok("start", "fbsd14")
    console = vm.path("/zroot/vm/fbsd14/console")
    assert console.read_text() == fixture("console-fbsd14.txt")
    assert parse.console_device(console.read_text()) == "/dev/nmdm-fbsd14.1B"
    assert vm.path("/zroot/vm/fbsd14/run.lock").read_text() == "host1\n"
    vm.ok("stop", "fbsd14")
    assert not console.exists()
    assert not vm.path("/zroot/vm/fbsd14/run.lock").exists()


def test_console_file_in_tmux_mode(vm: Vm) -> None:
    sysrc_set(str(vm.path("/zroot/vm/.config/system.conf")), "console", "tmux")
    vm.ok("create", "web.old")
    vm.ok("start", "web.old")
    text = vm.path("/zroot/vm/web.old/console").read_text()
    assert text == fixture("console-tmux.txt")
    with pytest.raises(parse.ParseError, match="tmux"):
        parse.console_device(text)


# -- vm create, add, rename -----------------------------------------------------------------------


def test_create_files(vm: Vm) -> None:
    assert vm("create", "-s", "8G", "-c", "2", "-m", "1G", "web") == (0, "", "")
    conf = parse.parse_conf(vm.conf("web").read_text())
    assert conf["cpu"] == "2"
    assert conf["memory"] == "1G"
    assert conf["disk0_name"] == "disk0.img"
    assert parse.parse_conf(vm.conf("web").read_text())["network0_mac"].startswith("58:9c:fc:")
    assert len(conf["uuid"]) == 36
    disk = vm.path("/zroot/vm/web/disk0.img")
    assert disk.stat().st_size == 8 * GIB
    assert disk.stat().st_blocks == 0
    assert stat.S_IMODE(disk.stat().st_mode) == 0o600


def test_create_drops_template_sizes_and_makes_every_disk(vm: Vm) -> None:
    template = vm.path("/zroot/vm/.templates/two.conf")
    template.write_text(
        fixture("default.conf") + 'disk0_size="4G"\ndisk1_type="virtio-blk"\n'
        'disk1_name="disk1.img"\ndisk1_size="1G"\n'
    )
    vm.ok("create", "-t", "two", "web")
    conf = parse.parse_conf(vm.conf("web").read_text())
    assert "disk0_size" not in conf
    assert "disk1_size" not in conf
    assert vm.path("/zroot/vm/web/disk0.img").stat().st_size == 4 * GIB
    assert vm.path("/zroot/vm/web/disk1.img").stat().st_size == GIB


def test_create_errors(vm: Vm) -> None:
    vm.ok("create", "web")
    assert vm("create", "web") == (
        1,
        "",
        ERROR + "virtual machine already exists in /zroot/vm/web\n",
    )
    assert vm("create", "--", "-web") == (1, "", ERROR + "invalid virtual machine name - '-web'\n")
    assert vm("create", "a_") == (1, "", ERROR + "invalid virtual machine name - 'a_'\n")
    assert vm("create", "x" * 232)[0] == 1
    assert vm("create", "-d", "nope", "db") == (
        1,
        "",
        ERROR + "unable to load datastore - 'nope'\n",
    )
    assert vm("create", "-t", "nope", "db") == (
        1,
        "",
        ERROR + "unable to find template /zroot/vm/.templates/nope.conf\n",
    )
    vm.path("/zroot/vm/.templates/bare.conf").write_text('cpu=1\nmemory="1G"\n')
    assert vm("create", "-t", "bare", "db") == (
        1,
        "",
        ERROR + "template is missing disk0_name specification\n",
    )
    # As in vm-bhyve, the guest's directory and conf stay when its disk cannot be made.
    assert vm("create", "-s", "lots", "db") == (
        1,
        "",
        "truncate: invalid size 'lots'\n" + ERROR + "failed to create sparse file for disk image\n",
    )
    assert not vm.path("/zroot/vm/db/disk0.img").exists()
    assert vm("create", "-s", "\u00b2G", "db2")[0] == 1
    assert vm("create", "-s", "9999999999T", "db3") == (
        1,
        "",
        "truncate: invalid size '9999999999T'\n"
        + ERROR
        + "failed to create sparse file for disk image\n",
    )
    # A template cannot place a disk outside the simulated host.
    vm.path("/zroot/vm/.templates/far.conf").write_text(
        'disk0_type="virtio-blk"\ndisk0_name="../../../../../x.img"\n'
    )
    vm.ok("create", "-t", "far", "db4")
    assert vm.path("/x.img").is_file()


def test_create_in_a_datastore(vm: Vm) -> None:
    add_datastore(vm, "ssd", "/ssd/vm")
    vm.ok("create", "-d", "ssd", "db")
    assert vm.conf("db", "/ssd/vm").is_file()
    assert parse.parse_list(vm.ok("list"), "1.7")["db"].datastore == "ssd"


def test_add_disk_and_network(vm: Vm) -> None:
    vm.ok("create", "web")
    assert vm("add", "-d", "disk", "-s", "2G", "web") == (0, "", "")
    conf = parse.parse_conf(vm.conf("web").read_text())
    assert (conf["disk1_name"], conf["disk1_type"], conf["disk1_dev"]) == (
        "disk1.img",
        "virtio-blk",
        "file",
    )
    assert vm.path("/zroot/vm/web/disk1.img").stat().st_size == 2 * GIB
    vm.ok("add", "-d", "network", "-s", "lan", "web")
    conf = parse.parse_conf(vm.conf("web").read_text())
    assert (conf["network1_type"], conf["network1_switch"]) == ("virtio-net", "lan")
    assert vm("add", "-d", "usb", "-s", "1G", "web") == (
        1,
        "",
        ERROR + "device must be one of the following: disk network\n",
    )
    # vm-bhyve forgets util::err here: sh reports the message as a missing command, goes on.
    assert vm("add", "-d", "disk", "-s", "1G", "nope") == (
        1,
        "",
        "/usr/local/sbin/vm: nope does not appear to be a valid virtual machine: not found\n"
        + ERROR
        + "failed to get emulation type of the existing guest disks\n",
    )


def test_rename(vm: Vm) -> None:
    vm.ok("create", "web")
    vm.ok("start", "web")
    assert vm("rename", "web", "www") == (
        1,
        "",
        WARNING + "web appears to be running on host1 (locked)\n",
    )
    vm.ok("stop", "web")
    assert vm("rename", "web", "-x") == (1, "", ERROR + "invalid virtual machine name - ''\n")
    assert vm("rename", "web", "www") == (0, "", "")
    assert vm.conf("www").is_file()
    assert not vm.path("/zroot/vm/web").exists()
    assert vm("rename", "web", "w2") == (
        1,
        "",
        ERROR + "web doesn't appear to be a valid virtual machine\n",
    )


# -- start, stop, poweroff, destroy, install ------------------------------------------------------


def test_start_and_stop(vm: Vm) -> None:
    vm.ok("create", "web")
    assert vm("start", "web") == (
        0,
        "Starting web\n  * found guest in /zroot/vm/web\n  * booting...\n",
        "",
    )
    table = vm.processes()
    pid = table.running("web")
    assert pid is not None
    assert table.table[pid].title == "bhyve: web"
    assert table.vmm == ["web"]
    assert vm.path("/dev/vmm/web").is_file()
    assert vm("start", "web") == (
        1,
        "Starting web\n  * found guest in /zroot/vm/web\n  ! guest appears to be running already\n",
        "",
    )
    assert vm("stop", "web") == (0, "Sending ACPI shutdown to web\n", "")
    assert vm.processes().table == {}
    assert vm("stop", "web") == (
        0,
        "",
        WARNING + "web doesn't appear to be a running virtual machine\n",
    )
    # stop has no options: -f is a guest's name.
    assert vm("stop", "-f") == (
        0,
        "",
        WARNING + "-f doesn't appear to be a running virtual machine\n",
    )
    log = vm.path("/zroot/vm/web/vm-bhyve.log").read_text()
    assert ": booting\n" in log
    assert ": stopped\n" in log


def test_concurrent_starts_lose_no_guest(vm: Vm) -> None:
    names = [f"g{number}" for number in range(8)]
    for name in names:
        vm.ok("create", name)
    env = sim_env(vm.root)
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "sysadmd.simulator", "vm", "start", name],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
        )
        for name in names
    ]
    assert [start.wait(timeout=60) for start in starts] == [0] * len(names)
    table = vm.processes()
    assert sorted(table.vmm) == names
    assert sorted(process.title for process in table.table.values()) == [
        f"bhyve: {name}" for name in names
    ]


def test_start_counts_failed_guests(vm: Vm) -> None:
    vm.ok("create", "web")
    vm.conf("web").write_text(vm.conf("web").read_text().replace("cpu=1\n", ""))
    status, out, err = vm("start", "nope", "web", "zz")
    assert (status, err) == (3, "")
    assert out == (
        "Starting nope\n  ! nope does not seem to be a valid virtual machine\n"
        "Waiting 0 second(s)\n"
        "Starting web\n  * found guest in /zroot/vm/web\n"
        "  ! incomplete virtual machine configuration\n"
        "Waiting 0 second(s)\n"
        "Starting zz\n  ! zz does not seem to be a valid virtual machine\n"
    )


def test_stop_in_the_bootloader_and_without_a_process(vm: Vm) -> None:
    vm.ok("create", "web")
    vm.ok("start", "web")
    table = vm.processes()
    pid = table.running("web")
    assert pid is not None
    table.table[pid] = Process("bhyveload -m 256M -d /zroot/vm/web/disk0.img web")
    table.save()
    assert parse.parse_list(vm.ok("list"), "1.7")["web"].state == "bootloader"
    assert vm("stop", "web") == (0, "Killing web\n", "")
    vm.ok("start", "web")
    table = vm.processes()
    table.table.clear()
    table.save()
    assert vm("stop", "web") == (0, "", WARNING + "unable to locate process id for web\n")


def test_poweroff(vm: Vm) -> None:
    vm.ok("create", "web")
    assert vm("poweroff", "-f", "web") == (
        1,
        "",
        ERROR + "web doesn't appear to be a running virtual machine\n",
    )
    vm.ok("start", "web")
    assert vm("poweroff", "-f", "web") == (0, "", "")
    assert parse.parse_list(vm.ok("list"), "1.7")["web"].state == "stopped"


def test_destroy(vm: Vm) -> None:
    vm.ok("create", "web")
    vm.ok("start", "web")
    assert vm("destroy", "-f", "web") == (
        1,
        "",
        WARNING + "web appears to be running on host1 (locked)\n",
    )
    # The lock of a guest that crashed on this host, without its VM, still stops destroy.
    vm.ok("stop", "web")
    assert vm("destroy", "-f", "web") == (0, "", "")
    assert not vm.path("/zroot/vm/web").exists()
    assert vm("destroy", "-f", "web") == (
        1,
        "",
        ERROR + "web doesn't appear to be a valid virtual machine\n",
    )


def test_destroy_asks_on_stdin(vm: Vm, monkeypatch: pytest.MonkeyPatch) -> None:
    vm.ok("create", "web")
    monkeypatch.setattr("sys.stdin", io.StringIO("Y\n  no\n"))
    assert vm("destroy", "web") == (0, "", "")
    assert vm.conf("web").is_file()
    monkeypatch.setattr("sys.stdin", io.StringIO("maybe\n yes\n"))
    assert vm("destroy", "web") == (0, "", "")
    assert not vm.path("/zroot/vm/web").exists()
    # At the end of the input the answer is yes, as vm-bhyve's read loop ends.
    vm.ok("create", "web")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert vm("destroy", "web") == (0, "", "")
    assert not vm.path("/zroot/vm/web").exists()


def test_destroy_refuses_a_guest_locked_elsewhere(vm: Vm) -> None:
    vm.ok("create", "web")
    vm.path("/zroot/vm/web/run.lock").write_text("host2\n")
    assert vm("destroy", "-f", "web") == (
        1,
        "",
        WARNING + "web appears to be running on host2 (locked)\n",
    )
    assert parse.parse_list(vm.ok("list"), "1.7")["web"].lock_host == "host2"


@pytest.mark.parametrize(
    ("version", "device"),
    [
        ("1.6", "-s 3:0,ahci-cd,/zroot/vm/.iso/os.iso,ro]"),
        ("1.7", "-s 3:0,ahci-cd,/zroot/vm/.iso/os.iso,ro,bootindex=1]"),
    ],
)
def test_install(vm: Vm, version: str, device: str) -> None:
    vm.version = version
    vm.ok("create", "web")
    assert vm("install", "web", "os.iso") == (
        1,
        "",
        ERROR + "unable to locate iso file - 'os.iso'\n",
    )
    vm.path("/zroot/vm/.iso/os.iso").write_bytes(b"iso")
    assert vm("install", "web", "os.iso") == (
        0,
        "Starting web\n  * found guest in /zroot/vm/web\n  * booting...\n",
        "",
    )
    log = vm.path("/zroot/vm/web/vm-bhyve.log").read_text()
    assert f":  [bhyve iso device: {device}\n" in log
    assert vm.processes().running("web") is not None


# -- ISOs -----------------------------------------------------------------------------------------


def test_iso_list_is_the_recorded_output(vm: Vm) -> None:
    vm.path("/zroot/vm/.iso/FreeBSD-14.3-RELEASE-amd64-disc1.iso").write_bytes(b"")
    add_datastore(vm, "isos", "iso:/data/iso")
    vm.path("/data/iso/debian-13.0.0-amd64-netinst.iso").write_bytes(b"")
    out = vm.ok("iso")
    assert out == fixture("iso.txt")
    assert [(iso.datastore, iso.name) for iso in parse.parse_iso_list(out)] == [
        ("default", "FreeBSD-14.3-RELEASE-amd64-disc1.iso"),
        ("isos", "debian-13.0.0-amd64-netinst.iso"),
    ]


def test_iso_fetch_and_decompress(vm: Vm, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "plain.iso").write_bytes(b"p" * 1000)
    (source / "small.img.xz").write_bytes(lzma.compress(b"z" * 5000))
    status, out, err = vm("iso", f"file://{source}/plain.iso")
    assert (status, out) == (0, "")
    assert err.startswith("/zroot/vm/.iso/plain.iso")
    assert vm.path("/zroot/vm/.iso/plain.iso").read_bytes() == b"p" * 1000
    assert vm("iso", f"file://{source}/small.img.xz")[0] == 0
    assert vm.path("/zroot/vm/.iso/small.img").read_bytes() == b"z" * 5000
    assert not vm.path("/zroot/vm/.iso/small.img.xz").exists()
    with tarfile.open(source / "bundle.tar.gz", "w:gz") as archive:
        member = tarfile.TarInfo("inner.img")
        member.size = 3
        archive.addfile(member, io.BytesIO(b"abc"))
    assert vm("iso", f"file://{source}/bundle.tar.gz")[0] == 0
    assert vm.path("/zroot/vm/.iso/inner.img").read_bytes() == b"abc"
    assert not vm.path("/zroot/vm/.iso/bundle.tar.gz").exists()
    vm.path("/zroot/vm/.iso/inner.img").unlink()
    # fetch fails, but vm-bhyve's status is the decompression step's: 0 for a plain name.
    status, _, err = vm("iso", f"file://{source}/missing.iso")
    assert status == 0
    assert err == f"fetch: file://{source}/missing.iso: No such file or directory\n"
    assert sorted(os.listdir(vm.path("/zroot/vm/.iso"))) == ["plain.iso", "small.img"]
    # A download in progress is a dot file, which the listing does not show.
    vm.path("/zroot/vm/.iso/.fetch.123.big.iso").write_bytes(b"")
    assert vm.ok("iso") == (
        "DATASTORE           FILENAME\n"
        "default             plain.iso\n"
        "default             small.img\n"
    )
    assert vm("iso", "-d", "nope", "file:///x.iso") == (
        1,
        "",
        ERROR + "unable to locate path for datastore 'nope'\n",
    )


def test_datastore_list(vm: Vm) -> None:
    add_datastore(vm, "ssd", "/ssd/vm")
    add_datastore(vm, "isos", "iso:/data/iso")
    assert vm.ok("datastore", "list") == (
        "NAME            TYPE        PATH                      ZFS DATASET\n"
        "default         directory   /zroot/vm                 -\n"
        "ssd             directory   /ssd/vm                   -\n"
        "isos            iso         /data/iso                 -\n"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_iso_fetch_interrupted_leaves_what_fetch_leaves(
    vm: Vm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    source = tmp_path / "big.iso"
    source.write_bytes(b"b" * 300_000)
    monkeypatch.setenv("IOHYVE_SIM_FETCH_BPS", "100000")
    store = vm.path("/zroot/vm/.iso")

    def interrupt_when_data_arrives() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(entry.stat().st_size for entry in store.iterdir()):
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signum)

    killer = threading.Thread(target=interrupt_when_data_arrives)
    killer.start()
    try:
        status, out, err = vm("iso", source.as_uri())
    finally:
        killer.join()
    assert (status, out) == (128 + signum, "")
    assert err.endswith("fetch: transfer interrupted\n") == (signum == signal.SIGINT)
    if signum == signal.SIGINT:
        # fetch(1) stops, complains and removes its file.
        assert list(store.iterdir()) == []
    else:
        # Killed, fetch(1) leaves what it wrote, under the file's own name.
        [kept] = store.iterdir()
        assert kept.name == "big.iso" and 0 < kept.stat().st_size < 300_000


# -- switches -------------------------------------------------------------------------------------


def test_switch_create_add_list(vm: Vm) -> None:
    assert vm("switch", "create", "public") == (0, "", "")
    assert vm("switch", "add", "public", "em0") == (0, "", "")
    assert vm.ok("switch", "list") == (
        "NAME    TYPE      IFACE      ADDRESS  PRIVATE  MTU  VLAN  PORTS\n"
        "public  standard  vm-public  -        no       -    -     em0\n"
    )
    assert vm("switch", "create", "public") == (1, "", ERROR + "switch public already exists\n")
    assert vm("switch", "create", "a/b") == (1, "", ERROR + "invalid switch name - 'a/b'\n")
    assert vm("switch", "add", "lan", "em1") == (
        1,
        "",
        ERROR + "unable to configure switch of unknown type\n",
    )


# -- sysrc ---------------------------------------------------------------------------------------


def sysrc(vm: Vm, *words: str) -> tuple[int, str, str]:
    vm.capsys.readouterr()
    status = main(["--root", str(vm.root), "sysrc", *words])
    captured = vm.capsys.readouterr()
    return status, captured.out, captured.err


def test_sysrc_on_rc_conf_drives_vm_list(vm: Vm) -> None:
    vm.ok("create", "web")
    vm.ok("create", "db")
    assert sysrc(vm, "vm_list+=web") == (0, "vm_list:  -> web\n", "")
    assert sysrc(vm, "vm_list+=db") == (0, "vm_list: web -> web db\n", "")
    assert sysrc(vm, "vm_list+=db") == (0, "vm_list: web db -> web db\n", "")
    auto = {
        name: guest.autostart_order
        for name, guest in parse.parse_list(vm.ok("list"), "1.7").items()
    }
    assert auto == {"db": 2, "web": 1}
    assert sysrc(vm, "-n", "vm_list") == (0, "web db\n", "")
    assert sysrc(vm, "vm_list-=web") == (0, "vm_list: web db -> db\n", "")
    assert sysrc(vm, "nope") == (1, "", "sysrc: unknown variable 'nope'\n")
    assert sysrc(vm, "-i", "nope") == (0, "", "")


def test_sysrc_on_a_guest_conf(vm: Vm) -> None:
    vm.ok("create", "web")
    conf = "/zroot/vm/web/web.conf"
    assert sysrc(vm, "-f", conf, "memory=1G") == (0, "memory: 256M -> 1G\n", "")
    assert sysrc(vm, "-qf", conf, "description=build host") == (0, "", "")
    assert sysrc(vm, "-f", conf, "-x", "description") == (0, "", "")
    values = parse.parse_conf(vm.conf("web").read_text())
    assert values["memory"] == "1G"
    assert "description" not in values
    assert parse.parse_list(vm.ok("list"), "1.7")["web"].memory == "1G"
    assert sysrc(vm, "-f", "/nowhere/x.conf", "a=b") == (
        1,
        "",
        "sysrc: /nowhere/x.conf: No such file or directory\n",
    )
    # A path cannot climb out of the simulated host.
    assert sysrc(vm, "-f", "/../../zroot/vm/web/web.conf", "cpu=3") == (0, "cpu: 1 -> 3\n", "")
    assert parse.parse_conf(vm.conf("web").read_text())["cpu"] == "3"
    status, out, err = sysrc(vm, "--file", conf, "cpu")
    assert (status, out) == (1, "")
    assert err.startswith("sysrc: illegal option -- -\n")


# -- pgrep ---------------------------------------------------------------------------------------


def pgrep(vm: Vm, *words: str) -> tuple[int, str, str]:
    vm.capsys.readouterr()
    status = main(["--root", str(vm.root), "pgrep", *words])
    captured = vm.capsys.readouterr()
    return status, captured.out, captured.err


def test_pgrep_finds_guests_as_vm_bhyve_looks_for_them(vm: Vm) -> None:
    for name in ("web", "web2"):
        vm.ok("create", name)
    start_as(vm, "web", 4200)
    start_as(vm, "web2", 4300)
    table = vm.processes()
    table.table[4300].title = "bhyveload -m 256M -d /zroot/vm/web2/disk0.img web2"
    table.save()
    assert pgrep(vm, "-fx", "bhyve: web") == (0, "4200\n", "")
    assert pgrep(vm, "-fx", "bhyve: we") == (1, "", "")
    assert pgrep(vm, "-fl", "grub-bhyve|bhyveload") == (
        0,
        "4300 bhyveload -m 256M -d /zroot/vm/web2/disk0.img web2\n",
        "",
    )
    assert pgrep(vm, "-f", "web") == (0, "4200\n4300\n", "")
    # Without -f the pattern meets the process name only.
    assert pgrep(vm, "-l", "bhyve") == (0, "4200 bhyve\n4300 bhyveload\n", "")
    assert pgrep(vm, "-x", "bhyve") == (0, "4200\n", "")
    assert pgrep(vm, "-f", "(")[0] == 2
    assert pgrep(vm, "--full", "web")[0:2] == (2, "")
    vm.ok("stop", "web")
    assert pgrep(vm, "-fx", "bhyve: web") == (1, "", "")
    assert not vm.path("/dev/vmm/web").exists()
