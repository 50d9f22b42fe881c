"""Pure helpers: zfs name checks, shell tools and fetch's number formats."""

from __future__ import annotations

import pytest

from sysadmd.simulator import fetch, shell, zfs


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("tank/iohyve/ISO/x.iso", None),
        ("tank/iohyve/ISO/a b:c_d-e.f", None),
        ("tank/iohyve/ISO/", "trailing slash in name"),
        ("tank/iohyve//disk0", "empty component in name"),
        ("/iohyve/web", "leading slash in name"),
        ("tank/iohyve/ISO/x?y", "invalid character '?' in name"),
        ("tank/iohyve/ISO/x*y", "invalid character '*' in name"),
        ("tank/iohyve/x@a@b", "multiple '@' delimiters in name"),
        ("tank/iohyve/x@a/b", "trailing slash in name"),
        ("tank/" + "x" * 251, "name is too long"),
    ],
)
def test_namecheck(path: str, reason: str | None) -> None:
    assert zfs.namecheck(path) == reason


def test_create_and_open_report_differently() -> None:
    assert zfs.validate_for_change("tank/iohyve/x@s") == "snapshot delimiter '@' in filesystem name"
    assert zfs.validate_for_change("tank/iohyve/x%y") == "invalid character % in name"
    assert zfs.validate_for_open("tank/iohyve/x%y") is None
    assert zfs.validate_for_open("tank/iohyve/ISO/") == "invalid dataset name"
    assert (
        zfs.name_error("create", "tank/iohyve/ISO/a?b", "a?b", changing=True)
        == "cannot create 'tank/iohyve/ISO/a?b': invalid character '?' in name"
    )
    assert (
        zfs.name_error("open", "tank/iohyve/ISO/a?b", "a?b", changing=False)
        == "cannot open 'tank/iohyve/ISO/a?b': invalid dataset name"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a/b", "invalid character '/' in name"),
        (".", "self reference, '.' is found in name"),
        ("..", "parent reference, '..' is found in name"),
        ("..x", None),
    ],
)
def test_names_leaving_the_root_are_refused_for_every_operation(
    name: str, reason: str | None
) -> None:
    assert zfs.unsafe_component(name) == reason
    if reason is not None:
        path = f"tank/iohyve/ISO/{name}"
        assert (
            zfs.name_error("open", path, name, changing=False) == f"cannot open '{path}': {reason}"
        )


def test_user_property_names() -> None:
    assert zfs.valid_user_property("iohyve:pcidev:1")
    assert not zfs.valid_user_property("iohyve:Ram")
    assert not zfs.valid_user_property("ram")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("ftp://h/pub/x.iso", "x.iso"),
        ("http://h/pub/", "pub"),
        ("x.iso", "x.iso"),
        ("/", "/"),
        ("http://h/a?b=1", "a?b=1"),
    ],
)
def test_basename(path: str, name: str) -> None:
    assert shell.basename(path) == name


def test_cut_and_echo() -> None:
    assert shell.cut_field("a=b=c", "=", 2) == "b"
    assert shell.cut_fields_from("a=b=c", "=", 2) == "b=c"
    assert shell.cut_field("abc", "=", 2) == "abc"  # no delimiter: the whole line
    assert shell.cut_field('x "y z" w', '"', 2) == "y z"
    assert shell.echo_unquoted("  a \t b  ") == "a b"
    assert shell.cut_whitespace_fields("ds\tiohyve:x\tFri Jan  8\tlocal", 2, 3) == "iohyve:x\tFri"


def test_version_sort_and_grep() -> None:
    assert shell.version_sorted(["tap10", "tap9", "-", "tap1"]) == ["-", "tap1", "tap9", "tap10"]
    lines = ["tank/iohyve/web/disk0", "tank/iohyve/web2/disk0", "tank/iohyve/axb/disk0"]
    assert shell.grep("web", lines) == lines[:2]
    assert shell.grep("a.b", lines) == [lines[2]]
    assert shell.grep("", lines) == []


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "   0  B"),
        (9999, "9999  B"),
        (10000, "   9 kB"),
        (241172480, " 230 MB"),
        (-1, "  -1  B"),
    ],
)
def test_fetch_sizes(count: int, text: str) -> None:
    assert fetch.stat_bytes(count) == text


def test_fetch_rate_and_name() -> None:
    assert fetch.stat_rate(11 * 1024 * 1024, 1.0) == "  11 MBps"
    assert fetch.stat_rate(5, 0.0) == "?? Bps"
    name = "FreeBSD-10.2-RELEASE-amd64-bootonly.iso"
    long_path = f"/iohyve/ISO/{name}/{name}"
    assert (
        fetch.stat_name(long_path)
        == "/iohyve/ISO/FreeBSD-10.2-RELEASE-amd64-bootonly.iso/FreeBSD-10."
    )
    assert fetch.stat_name("/iohyve/ISO/a/a") == "/iohyve/ISO/a/a".ljust(46)
    assert fetch.output_file_name("http://h/pub/") == "fetch.out"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8G", 8 << 30),
        ("8g", 8 << 30),
        ("10GB", 10 << 30),
        ("10Gb", 10 << 30),
        ("512", 512),
        ("512B", 512),
        ("1.5G", 3 << 29),
        (".5K", 512),
        ("1T", 1 << 40),
        ("15E", 15 << 60),
    ],
)
def test_parse_size_reads_what_zfs_reads(text: str, size: int) -> None:
    assert zfs.parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "bad numeric value ''"),
        ("abc", "bad numeric value 'abc'"),
        ("-1G", "bad numeric value '-1G'"),
        ("10X", "invalid numeric suffix 'X'"),
        ("10BB", "invalid numeric suffix 'BB'"),
        ("10GiB", "invalid numeric suffix 'GiB'"),
        ("1.5Q", "invalid numeric suffix 'Q'"),
        ("16E", "numeric value is too large"),
        ("1Z", "numeric value is too large"),
    ],
)
def test_parse_size_refuses_what_zfs_refuses(text: str, reason: str) -> None:
    with pytest.raises(zfs.SizeError) as caught:
        zfs.parse_size(text)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0"),
        (1023, "1023"),
        (1024, "1K"),
        (8 << 30, "8G"),
        (3 << 29, "1.50G"),
        ((10 << 30) + 1, "10.0G"),
        ((100 << 30) + (1 << 29), "100G"),
        (106837311488, "99.5G"),
        (1954210119, "1.82G"),
        (1 << 60, "1E"),
    ],
)
def test_nicenum_prints_what_zfs_list_prints(size: int, text: str) -> None:
    assert zfs.nicenum(size) == text


def test_volume_sizes_must_be_whole_blocks() -> None:
    assert zfs.volume_size_problem(8192) is None
    assert zfs.volume_size_problem(0) == "volume size cannot be zero"
    assert zfs.volume_size_problem(12345) == "volume size must be a multiple of volume block size"
