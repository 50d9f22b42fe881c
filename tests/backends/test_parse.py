"""The iohyve output parsers, on output in iohyve's real formats."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sysadmd.backends._iohyve import parse
from sysadmd.backends._output import first_message

Read = Callable[[str], str]


def test_list_0_7_3(fixture_text: Read) -> None:
    """0.7.3's table: descriptions keep their double spaces."""
    assert parse.parse_list(fixture_text("list-0.7.3.txt")) == {
        "bsdguest": {
            "description": "Fri Jan  8 20:15:33 CST 2016",
            "rcboot": "NO",
            "running": "YES",
            "vmm": "YES",
        },
        "deb8": {"description": "My web server", "rcboot": "YES", "running": "NO", "vmm": "NO"},
    }


def test_list_old_running_header(fixture_text: Read) -> None:
    """The 0.7 header spelt ``Running?``; it is read the same way."""
    assert parse.parse_list(fixture_text("list-0.7.txt")) == {
        "testguest": {
            "description": "February_1,_2016",
            "rcboot": "NO",
            "running": "NO",
            "vmm": "YES",
        }
    }


@pytest.mark.parametrize("text", ["", "\n", "Guest  VMM?  Running  rcboot?  Description\n"])
def test_list_empty(text: str) -> None:
    """No guests, or no output at all, is an empty object."""
    assert parse.parse_list(text) == {}


def test_list_names_that_hold_other_names(fixture_text: Read) -> None:
    """Guests whose names contain others' names, or 'disk', are all kept apart."""
    guests = parse.parse_list(fixture_text("list-substrings.txt"))
    assert list(guests) == ["web", "web2", "webdisk", "web.old"]
    assert guests["web"]["description"] == "a  b   c"
    assert guests["web2"] == {"description": "-", "rcboot": "YES", "running": "YES", "vmm": "YES"}
    assert guests["web.old"]["description"] == "Mon Feb  1 15:11:57 EST 2016"


@pytest.mark.parametrize(
    "text",
    [
        "Listing guests...\nweb\n",
        "Guest  VMM?  Running  rcboot?  Description\nweb  YES  NO  NO  x\n".replace(
            "web  ", "webby"
        ),
        "Guest  VMM?  Running  rcboot?  Description\nlongername  YES  NO  NO  x\n",
        "Guest  VMM?  Running  rcboot?  Description\nweb    YES   NO       NO       a\n"
        "web    NO    NO       NO       b\n",
    ],
    ids=["no-header", "misaligned", "overlong-name", "duplicate"],
)
def test_list_refuses_what_it_cannot_read(text: str) -> None:
    """Output that does not line up with its header is an error, never misread."""
    with pytest.raises(parse.ParseError):
        parse.parse_list(text)


def test_isolist(fixture_text: Read) -> None:
    """The title line is dropped; names stay in iohyve's order."""
    assert parse.parse_isolist(fixture_text("isolist.txt")) == [
        "FreeBSD-10.2-RELEASE-amd64-bootonly.iso",
        "debian-8.2.0-amd64-netinst.iso",
    ]
    assert parse.parse_isolist(fixture_text("isolist-empty.txt")) == []
    assert parse.parse_isolist("") == []


def test_isolist_without_title() -> None:
    """Anything but iohyve's isolist output is refused."""
    with pytest.raises(parse.ParseError):
        parse.parse_isolist("cannot open 'tank/iohyve': dataset does not exist\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "iohyve v0.7.3 2016/01/08 Bear in a Datacenter Edition\n",
            "iohyve v0.7.3 2016/01/08 Bear in a Datacenter Edition",
        ),
        (
            "iohyve  v0.7.9  2017/06/26 I Believe in You, You Can Do the Thing Edition\n",
            "iohyve v0.7.9 2017/06/26 I Believe in You, You Can Do the Thing Edition",
        ),
    ],
)
def test_version(text: str, expected: str) -> None:
    """The version line is returned with its whitespace collapsed."""
    assert parse.parse_version(text) == expected


def test_first_message_prefers_stderr() -> None:
    """The tool's error on stderr explains a failure better than iohyve's banner."""
    assert (
        first_message(
            "Deleting x.iso...\n", "\ncannot open 'tank/iohyve/ISO/x.iso': dataset does not exist\n"
        )
        == "cannot open 'tank/iohyve/ISO/x.iso': dataset does not exist"
    )
    assert first_message("only stdout\n", "") == "only stdout"
    assert first_message("", "") == "no output"


def test_getall_0_7_3() -> None:
    """0.7.3: values were cut at the first space by iohyve itself."""
    text = (
        "Getting web props...\n"
        "name         web\n"
        "size         8G\n"
        "description  Fri\n"
        "bargs        -A_-H_-P\n"
    )
    assert parse.parse_getall(text) == {
        "name": "web",
        "size": "8G",
        "description": "Fri",
        "bargs": "-A_-H_-P",
    }


def test_getall_0_7_9() -> None:
    """0.7.4+: names padded to 15 columns, values whole with their spaces."""
    text = (
        "Getting win10a iohyve properties...\n"
        "bargs          -H_-w\n"
        "boot           0\n"
        "description    Mon Jul  1 21:58:42 ACST 2016\n"
    )
    assert parse.parse_getall(text) == {
        "bargs": "-H_-w",
        "boot": "0",
        "description": "Mon Jul  1 21:58:42 ACST 2016",
    }


def test_getall_refuses_other_output() -> None:
    """A guest that does not exist prints no title line."""
    with pytest.raises(parse.ParseError):
        parse.parse_getall("Guest web doesn't exist!\n")


def test_disks() -> None:
    """The title and header go through column -t too; rows are disk and size."""
    text = "Listing  disks  for  debian...\ndiskN    Size\ndisk0    20G\ndisk1    40G\n"
    assert parse.parse_disks(text) == {"disk0": "20G", "disk1": "40G"}


def test_disks_of_a_guest_whose_name_another_contains() -> None:
    """iohyve's substring match lists debian.old's disks with debian's: refused."""
    text = (
        "Listing  disks  for  debian...\ndiskN    Size\ndisk0    20G\ndisk1    40G\ndisk0    10G\n"
    )
    with pytest.raises(parse.ParseError, match="cannot tell"):
        parse.parse_disks(text)
    with pytest.raises(parse.ParseError):
        parse.parse_disks("Not a valid guest name\n")
