"""Names and URLs are checked at the edge, before any process is spawned."""

from __future__ import annotations

from pathlib import Path

import pytest

from sysadmd.errors import ApiError
from sysadmd.validate import check_name, iso_name_from_url, name_problem


@pytest.mark.parametrize(
    "name",
    ["a", "FreeBSD-10.2-RELEASE-amd64-bootonly.iso", "102.iso", "x_y-z.1", "A" * 128],
)
def test_valid_names(name: str) -> None:
    """Ordinary ISO and guest names pass."""
    assert name_problem(name) is None
    assert check_name(name, "target") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "-rf",
        ".hidden",
        "a..b",
        "a/b",
        "../../etc/passwd",
        "a b",
        "a\nb",
        "a\x00b",
        "a*",
        "a;rm",
        "$(x)",
        "é.iso",
        "A" * 129,
        "_a",
    ],
)
def test_invalid_names(name: str) -> None:
    """Anything iohyve's shell, zfs or mv could misread is refused with a 400."""
    with pytest.raises(ApiError) as raised:
        check_name(name, "argument 'target'")
    assert raised.value.code == 400
    assert raised.value.message.startswith("argument 'target' ")
    if len(name) > 2:
        assert name not in raised.value.message


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (
            "ftp://ftp.freebsd.org/pub/FreeBSD/releases/amd64/amd64/ISO-IMAGES/10.1/"
            "FreeBSD-10.1-RELEASE-amd64-disc1.iso",
            "FreeBSD-10.1-RELEASE-amd64-disc1.iso",
        ),
        ("http://127.0.0.1:8080/a.iso", "a.iso"),
        ("HTTPS://mirror.example/x/y.img", "y.img"),
        ("http://[::1]:8080/a.iso", "a.iso"),
    ],
)
def test_fetch_urls(url: str, name: str) -> None:
    """The ISO name is the URL's last path segment."""
    assert iso_name_from_url(url) == name


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("gopher://host/a.iso", "must start with"),
        ("http://host/a.iso?x=1", "query"),
        ("http://host/a.iso#f", "fragment"),
        ("http://host/a.iso?", "query"),
        ("http://user:pw@host/a.iso", "user name"),
        ("http://host/", "valid ISO file name"),
        ("http://host/..", "valid ISO file name"),
        ("http://host/-rf", "valid ISO file name"),
        ("http://host/a%20b.iso", "percent-encode"),
        ("http://host/a b.iso", "whitespace"),
        ("http://host/a.iso\n", "whitespace"),
        ("http://host/$(reboot).iso", "in its path only"),
        ("http://host/*/a.iso", "in its path only"),
        ("http://host/[ab].iso", "in its path only"),
        ("http:///a.iso", "must name a host"),
        ("http://ho$t/a.iso", "must name a host"),
        ("http://host:0/a.iso", "must name a host"),
        ("http://host:99999/a.iso", "must name a host"),
        ("http://host/" + "a" * 2100, "at most 2048"),
        ("file:///etc/passwd", "not allowed on this server"),
        ("file://otherhost/srv/a.iso", "local file"),
    ],
)
def test_bad_fetch_urls(url: str, words: str) -> None:
    """Bad URLs are refused with a 400 that says why."""
    with pytest.raises(ApiError) as raised:
        iso_name_from_url(url, "argument 'url'")
    assert raised.value.code == 400
    assert words in raised.value.message


def test_file_urls_only_below_allowed_directories(tmp_path: Path) -> None:
    """file:// works for regular files below a configured root, and only there."""
    root = tmp_path / "isos"
    root.mkdir()
    (root / "ok.iso").write_bytes(b"iso")
    (root / "sub").mkdir()
    outside = tmp_path / "secret.iso"
    outside.write_bytes(b"secret")
    (root / "link.iso").symlink_to(outside)
    assert iso_name_from_url(f"file://{root}/ok.iso", file_roots=[root]) == "ok.iso"
    for url, words in [
        (f"file://{outside}", "below an allowed directory"),
        (f"file://{root}/link.iso", "below an allowed directory"),
        (f"file://{root}/missing.iso", "existing regular file"),
        (f"file://{root}/sub", "existing regular file"),
    ]:
        with pytest.raises(ApiError) as raised:
            iso_name_from_url(url, file_roots=[root])
        assert words in raised.value.message, url
