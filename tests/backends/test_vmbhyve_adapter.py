"""The vm-bhyve backend against a host made of files in a temporary directory.

A fake runner stands for the tools: it records every argv and answers ``vm``, ``sysrc``,
``pgrep``, ``zfs``, ``fetch`` and ``xz`` from a small model of the host (the guests'
files, rc.conf, the processes the test says run), so the adapter's reads of the files
and its command lines are both checked.
"""

from __future__ import annotations

import lzma
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from support import async_test
from twisted.internet.defer import Deferred, succeed

from sysadmd.backends import ProcessResult, ProcessRunner
from sysadmd.backends._errors import BackendFailed, Conflict, NotFound, Unsupported
from sysadmd.backends._interface import DiskInfo, GuestSpec, IsoInfo
from sysadmd.backends._iohyve.adapter import sized_isos
from sysadmd.backends._vmbhyve import parse
from sysadmd.backends._vmbhyve.adapter import Commands, VmBhyve
from sysadmd.backends._vmbhyve.host import read_settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vm-bhyve"
COMMANDS = Commands(
    vm=("/fake/vm",),
    sysrc=("/fake/sysrc",),
    pgrep=("/fake/pgrep",),
    zfs=("/fake/zfs",),
    fetch=("/fake/fetch",),
    xz=("/fake/xz",),
)
Answer = tuple[int, str, str]


def _sysrc(args: list[str]) -> Answer:
    """sysrc -f FILE [-x] key=value | key+=word | key-=word | key..."""
    assert args[0] == "-f"
    path, rest = Path(args[1]), args[2:]
    delete = rest[:1] == ["-x"]
    settings = read_settings(path)
    for word in rest[1:] if delete else rest:
        if delete:
            settings.pop(word, None)
            continue
        key, _, value = word.partition("=")
        if key.endswith("+"):
            key = key[:-1]
            value = " ".join([*settings.get(key, "").split(), value])
        elif key.endswith("-"):
            key = key[:-1]
            value = " ".join(w for w in settings.get(key, "").split() if w != value)
        settings[key] = value
    path.write_text("".join(f'{k}="{v}"\n' for k, v in settings.items()))
    return 0, "", ""


class Host:
    """A vm-bhyve host in ``root``: rc.conf, ``vm`` directory, /dev/vmm, processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rc_conf = root / "rc.conf"
        self.vm_dir = root / "vm"
        self.vmm = root / "vmm"
        for directory in (self.vm_dir / ".iso", self.vm_dir / ".config", self.vmm):
            directory.mkdir(parents=True)
        self.rc_conf.write_text(f'vm_enable="YES"\nvm_dir="{self.vm_dir}"\n')
        #: pgrep -fl lines.
        self.processes: list[str] = []
        self.calls: list[tuple[str, ...]] = []
        #: Answers for ``vm`` words, by the first word: a function of the arguments.
        self.vm: dict[str, Callable[[list[str]], Answer]] = {}
        #: Answers for ``zfs``, if the test has any.
        self.zfs: Callable[[list[str]], Answer] | None = None

    def guest(self, name: str, conf: str, *, disks: dict[str, int] | None = None) -> Path:
        directory = self.vm_dir / name
        directory.mkdir()
        (directory / f"{name}.conf").write_text(conf)
        for file, size in (disks or {}).items():
            with (directory / file).open("wb") as f:
                f.truncate(size)
        return directory

    def run(
        self, executable: str, args: tuple[str, ...], *, timeout: float | None = None
    ) -> Deferred[ProcessResult]:
        self.calls.append((executable, *args))
        tool = executable.rsplit("/", 1)[-1]
        words = list(args)
        if tool == "sysrc":
            code, out, err = _sysrc(words)
        elif tool == "pgrep":
            code, out, err = (0, "".join(p + "\n" for p in self.processes), "")
            if not self.processes:
                code = 1
        elif tool == "xz":
            packed = Path(words[-1])
            packed.with_suffix("").write_bytes(lzma.decompress(packed.read_bytes()))
            packed.unlink()
            code, out, err = 0, "", ""
        elif tool == "zfs" and self.zfs is not None:
            code, out, err = self.zfs(words)
        elif tool == "vm" and words[0] in self.vm:
            code, out, err = self.vm[words[0]](words[1:])
        else:
            code, out, err = 127, "", f"{tool}: not modelled: {words}"
        return succeed(
            ProcessResult(
                (executable, *args), code, None, out.encode(), err.encode(), False, False, False
            )
        )

    def backend(self) -> VmBhyve:
        return VmBhyve(cast(ProcessRunner, self), COMMANDS, rc_conf=self.rc_conf, vmm_dir=self.vmm)

    def tools(self) -> list[str]:
        return [call[0].rsplit("/", 1)[-1] for call in self.calls]


@pytest.fixture
def world(tmp_path: Path) -> Host:
    return Host(tmp_path)


@async_test
async def test_the_list_reads_the_conf_files_and_one_process_listing(world: Host) -> None:
    """Five guests in five states: running and bootloader come from one pgrep, suspended
    from <name>.save, locked from run.lock, rcboot from vm_list, vmm from /dev/vmm; no
    ``vm`` runs and nothing is spawned per guest."""
    default = (FIXTURES / "default.conf").read_text()
    for name in ("alpha", "boot", "db", "sleepy", "web"):
        world.guest(name, default.replace("cpu=1", "cpu=2") if name == "web" else default)
    (world.vm_dir / "sleepy" / "sleepy.save").write_bytes(b"")
    (world.vm_dir / "db" / "run.lock").write_text("otherhost\n")
    (world.vm_dir / "notaguest").mkdir()
    (world.vmm / "web").touch()
    (world.vmm / "boot").touch()
    world.processes = ["4123 bhyve: web", "4200 /usr/local/sbin/grub-bhyve -m x boot"]
    with world.rc_conf.open("a") as f:
        f.write('vm_list="web alpha"\n')

    guests = await world.backend().list_vms()

    assert world.tools() == ["pgrep"]
    assert list(guests) == ["alpha", "boot", "db", "sleepy", "web"]
    assert {name: g["state"] for name, g in guests.items()} == {
        "alpha": "stopped",
        "boot": "bootloader",
        "db": "locked",
        "sleepy": "suspended",
        "web": "running",
    }
    assert guests["web"] == {
        "description": "",
        "rcboot": "YES",
        "running": "YES",
        "vmm": "YES",
        "state": "running",
        "cpu": "2",
        "memory": "256M",
        "loader": "bhyveload",
        "datastore": "default",
    }
    assert guests["boot"]["running"] == "NO" and guests["boot"]["vmm"] == "YES"
    assert guests["alpha"]["rcboot"] == "YES" and guests["db"]["rcboot"] == "NO"


@async_test
async def test_a_conf_vm_bhyve_would_misread_fails_the_list_naming_the_file(
    world: Host,
) -> None:
    world.guest("web", 'memory="1G # big"\n')
    with pytest.raises(BackendFailed) as raised:
        await world.backend().list_vms()
    assert "web.conf" in raised.value.message and "double quotes" in raised.value.message


@async_test
async def test_lifecycle_commands_and_their_checks(world: Host) -> None:
    """start, stop (ACPI), stop force (poweroff -f), destroy -f: argv only, 404/409 decided
    before anything runs, and vm stop's WARNING (exit 0) is a failure."""
    world.guest("web", (FIXTURES / "default.conf").read_text())
    world.vm["start"] = lambda a: (0, "Starting web\n  * booting...\n", "")
    world.vm["stop"] = lambda a: (0, "", "/usr/local/sbin/vm: WARNING: web doesn't appear\n")
    world.vm["poweroff"] = lambda a: (0, "", "")

    def destroy(args: list[str]) -> Answer:
        shutil.rmtree(world.vm_dir / args[-1])
        return 0, "", ""

    world.vm["destroy"] = destroy
    vm = world.backend()
    with pytest.raises(NotFound):
        await vm.start("nope")
    with pytest.raises(Conflict):
        await vm.stop("web")
    await vm.start("web")
    assert " ".join(world.calls[-1]) == "/fake/vm start web"

    world.processes = ["4123 bhyve: web"]
    (world.vmm / "web").touch()
    with pytest.raises(Conflict):
        await vm.start("web")
    with pytest.raises(Conflict):
        await vm.delete("web")
    with pytest.raises(BackendFailed) as raised:
        await vm.stop("web")
    assert "doesn't appear" in raised.value.message
    await vm.stop("web", force=True)
    assert " ".join(world.calls[-1]) == "/fake/vm poweroff -f web"

    world.processes = []
    (world.vmm / "web").unlink()
    await vm.delete("web")
    assert " ".join(world.calls[-2]) == "/fake/vm destroy -f web"
    assert await vm.list_vms() == {}


@async_test
async def test_start_failure_lines_are_failures(world: Host) -> None:
    world.guest("web", "loader=bhyveload\n")
    world.vm["start"] = lambda a: (1, "  ! incomplete virtual machine configuration\n", "")
    with pytest.raises(BackendFailed) as raised:
        await world.backend().start("web")
    assert "incomplete virtual machine configuration" in raised.value.message


@async_test
async def test_create_passes_the_spec_and_is_verified(world: Host) -> None:
    def create(args: list[str]) -> Answer:
        world.guest(args[-1], "loader=bhyveload\n")
        return 0, "", ""

    world.vm["create"] = create
    vm = world.backend()
    await vm.create("web", GuestSpec("20G", template="linux", cpu="2", memory="1G"))
    assert " ".join(world.calls[-2]) == "/fake/vm create -t linux -c 2 -m 1G -s 20G web"
    with pytest.raises(Conflict):
        await vm.create("web", GuestSpec("20G"))
    world.vm["create"] = lambda a: (0, "", "")
    with pytest.raises(BackendFailed):
        await vm.create("db", GuestSpec("20G"))


@async_test
async def test_properties_are_translated_both_ways(world: Host) -> None:
    """getprops shows the conf in iohyve's names (grub as grub-bhyve, boot from vm_list);
    setprop writes the conf with sysrc -f and boot into rc.conf's vm_list; a property
    without a key, or a value the conf cannot hold, is refused before anything runs."""
    directory = world.guest("web", 'loader="grub"\nmemory="512M"\ncpu="1"\n')
    vm = world.backend()
    assert await vm.properties("web") == {
        "boot": "0",
        "cpu": "1",
        "loader": "grub-bhyve",
        "ram": "512M",
    }
    await vm.set_properties(
        "web", {"ram": "2G", "loader": "bhyveload", "boot": "1", "description": "build host"}
    )
    conf = str(directory / "web.conf")
    assert (
        "/fake/sysrc", "-f", conf, "description=build host", "loader=bhyveload", "memory=2G"
    ) in world.calls  # fmt: skip
    assert ("/fake/sysrc", "-f", str(world.rc_conf), "vm_list+=web") in world.calls
    assert parse.parse_conf((directory / "web.conf").read_text())["memory"] == "2G"
    props = await vm.properties("web")
    assert props["boot"] == "1" and props["ram"] == "2G" and props["loader"] == "bhyveload"
    assert props["description"] == "build host"
    assert (await vm.guest("web"))["description"] == "build host"

    before = len(world.calls)
    for values in ({"os": "freebsd"}, {"bargs": "-H#x"}, {"boot": "yes"}, {"description": 'a"b'}):
        with pytest.raises(Unsupported):
            await vm.set_properties("web", values)
    assert len(world.calls) == before


@async_test
async def test_disks_from_the_conf_resized_and_removed(world: Host) -> None:
    conf = (
        'disk0_type="virtio-blk"\ndisk0_name="disk0.img"\n'
        'disk1_type="virtio-blk"\ndisk1_name="disk1.img"\ndisk1_dev="file"\n'
    )
    directory = world.guest("web", conf, disks={"disk0.img": 20 << 30, "disk1.img": 1 << 30})
    vm = world.backend()
    assert await vm.disks("web") == {
        "disk0": DiskInfo("20G", str(directory / "disk0.img")),
        "disk1": DiskInfo("1G", str(directory / "disk1.img")),
    }
    await vm.resize_disk("web", "disk1", "2G")
    assert (directory / "disk1.img").stat().st_size == 2 << 30
    with pytest.raises(NotFound):
        await vm.resize_disk("web", "disk7", "2G")
    with pytest.raises(Conflict):
        await vm.delete_disk("web", "disk0")

    world.processes = ["1 bhyve: web"]
    with pytest.raises(Conflict):
        await vm.resize_disk("web", "disk1", "3G")
    world.processes = []

    await vm.delete_disk("web", "disk1")
    assert not (directory / "disk1.img").exists()
    assert "disk1_name" not in parse.parse_conf((directory / "web.conf").read_text())
    assert list(await vm.disks("web")) == ["disk0"]


@async_test
async def test_only_the_last_disk_can_be_removed(world: Host) -> None:
    conf = "".join(f'disk{n}_name="disk{n}.img"\n' for n in range(3))
    world.guest("web", conf, disks={f"disk{n}.img": 1 << 20 for n in range(3)})
    with pytest.raises(Conflict) as raised:
        await world.backend().delete_disk("web", "disk1")
    assert "disk2" in raised.value.message


@async_test
async def test_isos_are_files_renamed_and_removed_unless_in_use(world: Host) -> None:
    iso = world.vm_dir / ".iso"
    (iso / "a.iso").write_bytes(b"a")
    (iso / "b.iso").write_bytes(b"b")
    world.guest("web", 'disk1_type="ahci-cd"\ndisk1_name="/x/b.iso"\ndisk0_name="d.img"\n')
    vm = world.backend()
    assert await vm.list_isos() == [IsoInfo("a.iso", "default"), IsoInfo("b.iso", "default")]

    def free(name: str) -> bool:
        return False

    await vm.rename_iso("a.iso", "c.iso", busy=free)
    assert sorted(p.name for p in iso.iterdir()) == ["b.iso", "c.iso"]
    with pytest.raises(Conflict):
        await vm.rename_iso("c.iso", "b.iso", busy=free)
    with pytest.raises(Conflict) as raised:
        await vm.remove_iso("b.iso", busy=free)
    assert "web" in raised.value.message
    with pytest.raises(Conflict):
        await vm.remove_iso("c.iso", busy=lambda name: name == "c.iso")
    with pytest.raises(NotFound):
        await vm.remove_iso("zzz.iso", busy=free)
    await vm.remove_iso("c.iso", busy=free)
    assert [p.name for p in iso.iterdir()] == ["b.iso"]
    assert not any(tool == "vm" for tool in world.tools())


@async_test
async def test_iso_files_gives_each_stores_files_with_their_sizes(world: Host) -> None:
    """Every ISO store's files with their datastores and sizes, read by stat alone (no
    tool runs); a file that goes away between the listing and its stat is left out."""
    extra = world.root / "isos"
    extra.mkdir()
    (world.vm_dir / ".config" / "system.conf").write_text(
        f'datastore_list="default isos"\npath_isos="iso:{extra}"\n'
    )
    with (world.vm_dir / ".iso" / "big.iso").open("wb") as sparse:
        sparse.truncate(5 * 1024**3)
    (extra / "small.iso").write_bytes(b"s" * 1000)
    vm = world.backend()
    assert await vm.iso_files() == [
        (IsoInfo("big.iso", "default"), 5 * 1024**3),
        (IsoInfo("small.iso", "isos"), 1000),
    ]
    assert world.calls == []
    gone = world.root / "gone.iso"
    assert sized_isos([(IsoInfo("gone.iso"), gone), (IsoInfo("x.iso"), extra / "small.iso")]) == [
        (IsoInfo("x.iso"), 1000)
    ]


@async_test
async def test_a_running_guest_installing_from_an_iso_holds_it(world: Host) -> None:
    directory = world.guest("web", 'disk0_name="d.img"\n')
    (world.vm_dir / ".iso" / "os.iso").write_bytes(b"x")
    (directory / "vm-bhyve.log").write_text(
        "2026-01-01T00:00:00+00:00: booting\n"
        f"2026-01-01T00:00:00+00:00:  [bhyve iso device: -s 3:0,ahci-cd,{world.vm_dir}/.iso/"
        "os.iso,ro,bootindex=1]\n"
    )
    world.processes = ["7 bhyve: web"]
    with pytest.raises(Conflict):
        await world.backend().remove_iso("os.iso", busy=lambda name: False)


@async_test
async def test_a_fetched_xz_is_unpacked_into_the_iso_store(world: Host) -> None:
    """The download goes to its own directory (progress measures it alone), ``xz -d``
    unpacks it as vm-bhyve does, and the ISO lands in .iso under its unpacked name."""
    vm = world.backend()
    await vm.check_iso_absent("os.iso.xz")
    target = vm.iso_directory("os.iso.xz")
    assert target == world.vm_dir / ".iso" / ".fetch" / "os.iso.xz"
    # The queue starts fetch(1); here the file arrives as it would write it.
    target.mkdir(parents=True)
    (target / "os.iso.xz").write_bytes(lzma.compress(b"installer"))
    assert await vm.fetched("os.iso.xz")
    assert (world.vm_dir / ".iso" / "os.iso").read_bytes() == b"installer"
    assert not target.exists()
    assert vm.iso_size("os.iso.xz") == len(b"installer")
    assert await vm.list_isos() == [IsoInfo("os.iso", "default")]
    with pytest.raises(Conflict):
        await vm.check_iso_absent("os.iso.xz")


@async_test
async def test_the_console_device_comes_from_the_console_file(world: Host) -> None:
    directory = world.guest("fbsd14", 'loader="bhyveload"\n')
    vm = world.backend()
    with pytest.raises(NotFound):
        await vm.console_device("fbsd14")
    shutil.copy(FIXTURES / "console-fbsd14.txt", directory / "console")
    assert await vm.console_device("fbsd14") == Path("/dev/nmdm-fbsd14.1B")
    shutil.copy(FIXTURES / "console-tmux.txt", directory / "console")
    with pytest.raises(NotFound):
        await vm.console_device("fbsd14")


@async_test
async def test_version_names_the_release_and_its_dialect(world: Host) -> None:
    world.vm["version"] = lambda a: (
        0,
        "vm-bhyve: Bhyve virtual machine management v1.7.5\n",
        "",
    )
    vm = world.backend()
    assert await vm.version() == "1.7.5"
    assert vm.dialect == "1.7"


@async_test
async def test_setup_enables_vm_bhyve_and_undoes_rc_conf_on_failure(world: Host) -> None:
    world.rc_conf.write_text('hostname="h"\n')
    vm = world.backend()
    assert not await vm.is_setup()
    mount = world.root / "tank-vm"

    def zfs(args: list[str]) -> Answer:
        if args[0] == "create":
            (mount / ".config").mkdir(parents=True, exist_ok=True)
            return 0, "", ""
        return 0, f"{mount}\n", ""

    switches: list[str] = []

    def switch(args: list[str]) -> Answer:
        switches.append(" ".join(args))
        if args[0] == "add":
            return 1, "", "/usr/local/sbin/vm: ERROR: unable to add em9\n"
        (mount / ".config" / "system.conf").write_text('switch_list="public"\n')
        return 0, "", ""

    world.zfs = zfs
    world.vm["init"] = lambda a: (0, "", "")
    world.vm["switch"] = switch
    with pytest.raises(BackendFailed) as raised:
        await vm.setup("tank", "em9")
    assert "unable to add em9" in raised.value.message
    assert switches == ["create public", "add public em9"]
    assert read_settings(world.rc_conf) == {"hostname": "h"}

    (mount / ".config" / "system.conf").write_text('switch_list="public"\nports_public="em0"\n')
    await vm.setup("tank", "em0")
    assert read_settings(world.rc_conf)["vm_dir"] == "zfs:tank/vm"
    assert await vm.is_setup()


@async_test
async def test_without_pgrep_run_states_come_from_one_vm_list(world: Host) -> None:
    """With no pgrep the backend asks ``vm list`` once (after ``vm version`` for its
    dialect): its running and bootloader guests run and have a VM."""
    default = (FIXTURES / "default.conf").read_text()
    for name in ("alpine", "fbsd14"):
        world.guest(name, default)
    world.vm["version"] = lambda a: (0, "vm-bhyve: Bhyve virtual machine management v1.7.5\n", "")
    world.vm["list"] = lambda a: (0, (FIXTURES / "list-1.7.txt").read_text(), "")
    vm = VmBhyve(
        cast(ProcessRunner, world),
        Commands(vm=("/fake/vm",), sysrc=("/fake/sysrc",), pgrep=None, zfs=None, fetch=None),
        rc_conf=world.rc_conf,
        vmm_dir=world.vmm,
    )
    guests = await vm.list_vms()
    assert [" ".join(call[1:]) for call in world.calls] == ["version", "list"]
    assert (guests["fbsd14"]["running"], guests["fbsd14"]["vmm"]) == ("YES", "YES")
    assert (guests["alpine"]["running"], guests["alpine"]["vmm"]) == ("NO", "NO")
    assert guests["fbsd14"]["state"] == "running" and guests["fbsd14"]["rcboot"] == "NO"
