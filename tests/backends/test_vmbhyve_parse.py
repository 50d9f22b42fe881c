"""The vm-bhyve parsers, on output in vm-bhyve's real formats (1.6.x, 1.7.x, master)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sysadmd.backends._interface import IsoInfo
from sysadmd.backends._vmbhyve import parse
from sysadmd.backends._vmbhyve.parse import ListedGuest

Read = Callable[[str], str]

HEADER = "NAME    DATASTORE  LOADER     CPU  MEMORY  VNC           AUTO     STATE\n"


def vm(name: str) -> str:
    return f"vm-bhyve/{name}"


@pytest.mark.parametrize(
    ("text", "dialect"),
    [
        ("vm-bhyve: Bhyve virtual machine management v1.6-devel (rev. 106001)\n", "1.6"),
        ("vm-bhyve: Bhyve virtual machine management v1.7.5\n", "1.7"),
        ("vm-bhyve: Bhyve virtual machine management v1.8-devel\n", "dev"),
    ],
)
def test_version(text: str, dialect: str) -> None:
    assert parse.parse_version(text) == dialect


@pytest.mark.parametrize(
    "text",
    ["", "iohyve v0.7.9", "vm-bhyve: Bhyve virtual machine management v2.0.0"],
)
def test_version_refused(text: str) -> None:
    with pytest.raises(parse.ParseError):
        parse.parse_version(text)


# conf


def test_conf_default_template(fixture_text: Read) -> None:
    assert parse.parse_conf(fixture_text(vm("default.conf"))) == {
        "loader": "bhyveload",
        "cpu": "1",
        "memory": "256M",
        "network0_type": "virtio-net",
        "network0_switch": "public",
        "disk0_type": "virtio-blk",
        "disk0_name": "disk0.img",
    }


def test_conf_comments_blanks_and_trailing_spaces() -> None:
    text = '# a guest\n\n  # indented comment\nmemory=2G   # two\nuuid="a b"  \nempty=\n'
    assert parse.parse_conf(text) == {"memory": "2G", "uuid": "a b", "empty": ""}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("  memory=2G\n", "lowercase letter"),
        ("MEMORY=2G\n", "lowercase letter"),
        ("memory\n", "not key=value"),
        ("memory 2G\n", "not key=value"),
        ("mem-ory=2G\n", "valid setting name"),
        ("memory =2G\n", "valid setting name"),
        ('description="a # b"\n', "double quotes"),
        ('memory="2G\n', "double quotes"),
        ("memory='2G'\n", "single quote"),
        ("cpu=1\ncpu=2\n", "set twice"),
    ],
)
def test_conf_refuses_what_vm_bhyve_misreads(text: str, words: str) -> None:
    with pytest.raises(parse.ParseError, match=words):
        parse.parse_conf(text)


_values = st.text(
    st.characters(codec="utf-8", exclude_characters="#\"'\\$`", exclude_categories=["Cc", "Cs"]),
    max_size=30,
).filter(lambda value: parse.conf_value_problem(value) is None)
_keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)


@given(st.dictionaries(_keys, _values, max_size=8))
def test_conf_round_trip(conf: dict[str, str]) -> None:
    assert parse.parse_conf(parse.render_conf(conf)) == conf


@pytest.mark.parametrize(
    "conf",
    [
        {"description": "a # b"},
        {"x": 'say "hi"'},
        {"x": "a\nb=c"},
        {"x": "end "},
        {"x": "a\x01"},
        {"Bad": "1"},
    ],
)
def test_render_conf_refuses_what_would_not_read_back(conf: dict[str, str]) -> None:
    with pytest.raises(parse.ParseError):
        parse.render_conf(conf)


# list


def test_list_master_with_tags(fixture_text: Read) -> None:
    guests = parse.parse_list(fixture_text(vm("list-dev.txt")), "dev")
    assert list(guests) == ["alpine", "fbsd14", "win11"]
    assert guests["alpine"] == ListedGuest(
        name="alpine",
        datastore="default",
        loader="grub",
        cpu="1",
        memory="512M",
        vnc=None,
        autostart=False,
        autostart_order=None,
        state="stopped",
    )
    assert guests["fbsd14"].tags == ("web", "prod")
    assert guests["fbsd14"].pid == 4123
    assert guests["fbsd14"].autostart_order == 1
    assert guests["win11"].vnc == "0.0.0.0:5900"
    assert guests["win11"].datastore == "ssd"
    assert guests["win11"].tags == ()


def test_list_1_7_states(fixture_text: Read) -> None:
    guests = parse.parse_list(fixture_text(vm("list-1.7.txt")), "1.7")
    assert {name: (g.state, g.pid, g.lock_host) for name, g in guests.items()} == {
        "alpine": ("stopped", None, None),
        "fbsd14": ("running", 4123, None),
        "old": ("locked", None, "host2"),
        "parked": ("suspended", None, None),
        "win11": ("bootloader", 5230, None),
    }
    assert guests["win11"].autostart and guests["win11"].autostart_order == 2


def test_list_1_6(fixture_text: Read) -> None:
    guests = parse.parse_list(fixture_text(vm("list-1.6.txt")), "1.6")
    assert [(g.name, g.cpu, g.memory, g.state) for g in guests.values()] == [
        ("alpine", "1", "512M", "stopped"),
        ("fbsd14", "2", "2G", "running"),
        ("win11", "4", "8G", "running"),
    ]


@pytest.mark.parametrize("text", ["", "\n", HEADER])
def test_list_empty(text: str) -> None:
    assert parse.parse_list(text, "1.7") == {}


def test_list_header_must_match_the_dialect(fixture_text: Read) -> None:
    with pytest.raises(parse.ParseError, match="TAGS"):
        parse.parse_list(fixture_text(vm("list-1.6.txt")), "dev")
    with pytest.raises(parse.ParseError, match="header"):
        parse.parse_list(fixture_text(vm("list-dev.txt")), "1.7")


@pytest.mark.parametrize(
    ("row", "words"),
    [
        # CPU and MEMORY unset: column -t drops the empty cells and the row moves left.
        ("web     default    none       -             No       Stopped", "CPU"),
        ("web     default    none       1    256M    -             Maybe    Stopped", "AUTO"),
        ("web     default    none       1    256M    -             No       Sleeping", "STATE"),
        ("web     default    none      1    256M    -             No       Stopped", "LOADER"),
        ("web12345default    none       1    256M    -             No       Stopped", "line up"),
        ("web     default    none       1    256M    -             No", "STATE"),
        ("-bad    default    none       1    256M    -             No       Stopped", "NAME"),
    ],
)
def test_list_refuses_rows_it_cannot_read(row: str, words: str) -> None:
    with pytest.raises(parse.ParseError, match=words):
        parse.parse_list(HEADER + row + "\n", "1.7")


def test_list_header_must_start_the_line() -> None:
    with pytest.raises(parse.ParseError, match="first column"):
        parse.parse_list(" " + HEADER, "1.7")


def test_list_refuses_duplicates_and_unknown_dialects() -> None:
    row = "web     default    none       1    256M    -             No       Stopped\n"
    with pytest.raises(parse.ParseError, match="twice"):
        parse.parse_list(HEADER + row + row, "1.7")
    with pytest.raises(parse.ParseError, match="dialect"):
        parse.parse_list(HEADER, "1.5")  # type: ignore[arg-type]


def test_list_1_6_has_no_suspended_state() -> None:
    row = "web     default    none       1    256M    -             No       Suspended\n"
    with pytest.raises(parse.ParseError, match="Suspended"):
        parse.parse_list(HEADER + row, "1.6")


# info


def test_info(fixture_text: Read) -> None:
    info = parse.parse_info(fixture_text(vm("info-fbsd14.txt")))["fbsd14"]
    assert (info.state, info.pid) == ("running", 4123)
    assert info.fields["loader"] == "bhyveload"
    assert info.fields["cpu-topology"] == "sockets=1, cores=2"
    assert info.fields["memory-resident"] == "532676608 (508.000M)"
    assert info.console_ports == {"com1": "/dev/nmdm-fbsd14.1B"}
    assert info.network_interfaces == [
        {
            "number": "0",
            "emulation": "virtio-net",
            "virtual-switch": "public",
            "fixed-mac-address": "58:9c:fc:0a:1b:2c",
            "fixed-device": "-",
            "active-device": "tap0",
        }
    ]
    assert info.disks[0]["system-path"] == "/zroot/vm/fbsd14/disk0.img"
    assert info.disks[0]["bytes-size"] == "21474836480 (20.000G)"


def test_info_several_guests_and_extra_sections() -> None:
    rule = "------------------------\n"
    text = (
        f"{rule}Virtual Machine: a\n{rule}  state: stopped\n  uuid: auto\n\n"
        "  virtual-disk\n    number: 0\n    device-type: zvol\n    number: 1\n"
        "    device-type: file\n\n  snapshots\n    zroot/vm/a@s1  0  Mon Jan 1\n"
        f"{rule}Virtual Machine: b\n{rule}  state: bootloader (77)\n"
    )
    infos = parse.parse_info(text)
    assert [d["device-type"] for d in infos["a"].disks] == ["zvol", "file"]
    assert infos["a"].sections == {"snapshots": ["zroot/vm/a@s1  0  Mon Jan 1"]}
    assert (infos["b"].state, infos["b"].pid) == ("bootloader", 77)


def test_info_each_disk_and_interface_under_its_own_title() -> None:
    """vm-bhyve prints the section's title before every disk and every interface."""
    rule = "------------------------\n"
    text = (
        f"{rule}Virtual Machine: a\n{rule}  state: stopped\n\n"
        "  network-interface\n    number: 0\n    emulation: virtio-net\n\n"
        "  network-interface\n    number: 1\n    emulation: e1000\n\n"
        "  virtual-disk\n    number: 0\n    device-type: file\n\n"
        "  virtual-disk\n    number: 1\n    device-type: zvol\n"
    )
    info = parse.parse_info(text)["a"]
    assert [n["emulation"] for n in info.network_interfaces] == ["virtio-net", "e1000"]
    assert [d["device-type"] for d in info.disks] == ["file", "zvol"]


RULE = "------------------------\n"
TITLE = f"{RULE}Virtual Machine: a\n{RULE}"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no guest"),
        ("  state: stopped\n", "before any guest"),
        (f"{RULE}a\n{RULE}", "title"),
        (f"{TITLE}  loader: none\n", "no state"),
        (f"{TITLE}  state: locked (h)\n", "not a guest state"),
        (f"{TITLE}  state: stopped\n  state: stopped\n", "repeats state"),
        (f"{TITLE}  state: stopped\n   odd\n", "neither a field"),
        (f"{TITLE}  state: stopped\n  virtual-disk\n    device-type: file\n", "number"),
        (f"{TITLE}  state: stopped\n  console-ports\n    com1 /dev/x\n", "key: value"),
        (
            f"{TITLE}  state: stopped\n  console-ports\n    com1: a\n    com1: b\n",
            "repeats the port",
        ),
        (
            f"{TITLE}  state: stopped\n  virtual-disk\n    number: 0\n    number: 1\n"
            "    emulation: a\n    emulation: b\n",
            "repeats emulation",
        ),
        (f"{TITLE}  state: stopped\n  snapshots\n    x\n  snapshots\n", "repeats the section"),
        (f"{TITLE}  state: stopped\n{TITLE}  state: stopped\n", "twice"),
    ],
)
def test_info_refuses_what_it_cannot_read(text: str, words: str) -> None:
    with pytest.raises(parse.ParseError, match=words):
        parse.parse_info(text)


# console


def test_console_device(fixture_text: Read) -> None:
    text = fixture_text(vm("console-fbsd14.txt"))
    assert parse.console_device(text) == "/dev/nmdm-fbsd14.1B"
    assert parse.console_device("com1=/dev/nmdm-a.1B\ncom2=/dev/nmdm-a.2B\n", "com2") == (
        "/dev/nmdm-a.2B"
    )


@pytest.mark.parametrize(
    ("text", "port", "words"),
    [
        ("vnc=0.0.0.0:5900\n", "com1", "no com1"),
        ("com1=/dev/nmdm-a.1B\ncom1=/dev/nmdm-a.1B\n", "com1", "twice"),
        ("com1=/dev/nmdm-a.1A\n", "com1", "not an nmdm"),
        ("com1=/dev/ttyu0; rm -rf /\n", "com1", "not an nmdm"),
        ("com1=/dev/nmdm-a.1B\n", "com9", "serial port"),
    ],
)
def test_console_device_refused(text: str, port: str, words: str) -> None:
    with pytest.raises(parse.ParseError, match=words):
        parse.console_device(text, port)


def test_console_device_tmux_mode(fixture_text: Read) -> None:
    with pytest.raises(parse.ParseError, match="tmux"):
        parse.console_device(fixture_text(vm("console-tmux.txt")))


# iso


def test_iso_list(fixture_text: Read) -> None:
    assert parse.parse_iso_list(fixture_text(vm("iso.txt"))) == [
        IsoInfo(name="FreeBSD-14.3-RELEASE-amd64-disc1.iso", datastore="default"),
        IsoInfo(name="debian-13.0.0-amd64-netinst.iso", datastore="isos"),
    ]
    assert parse.parse_iso_list("") == []
    assert parse.parse_iso_list("DATASTORE           FILENAME\n") == []


@pytest.mark.parametrize(
    "text",
    [
        "Listing ISOs\na.iso\n",
        "DATASTORE           FILENAME\ndefault\n",
        "DATASTORE           FILENAME\na-very-long-datastoreb.iso\n",
        "DATASTORE           FILENAME\ndefault              b.iso\n",
        "DATASTORE           FILENAME\ndefault             b c.iso\n",
    ],
    ids=["no-header", "no-name", "long-datastore", "misaligned", "space"],
)
def test_iso_list_refused(text: str) -> None:
    with pytest.raises(parse.ParseError):
        parse.parse_iso_list(text)


# property table


def test_property_table_both_ways() -> None:
    assert parse.IOHYVE_TO_VMBHYVE["ram"] == "memory"
    assert parse.VMBHYVE_TO_IOHYVE["network0_switch"] == "tap"
    assert len(parse.VMBHYVE_TO_IOHYVE) == len(parse.IOHYVE_TO_VMBHYVE)
    assert not set(parse.NO_VMBHYVE_KEY) & set(parse.IOHYVE_TO_VMBHYVE)


def test_unmapped_properties() -> None:
    names = ["ram", "boot", "cpu", "description", "con", "nonsense"]
    assert parse.unmapped_properties(names) == ["boot", "description", "con", "nonsense"]


def test_values_translate_both_ways() -> None:
    assert parse.to_vmbhyve("loader", "grub-bhyve") == ("loader", "grub")
    assert parse.to_vmbhyve("bargs", "-A_-H") == ("bhyve_options", "-A -H")
    assert parse.to_vmbhyve("ram", "2G") == ("memory", "2G")
    conf = {"loader": "grub", "bhyve_options": "-A -H", "memory": "2G", "uuid": "x"}
    assert parse.from_vmbhyve(conf) == {"loader": "grub-bhyve", "bargs": "-A_-H", "ram": "2G"}
    with pytest.raises(parse.ParseError, match=r"rc\.conf"):
        parse.to_vmbhyve("boot", "1")
    with pytest.raises(parse.ParseError, match="not an iohyve property"):
        parse.to_vmbhyve("nonsense", "1")
