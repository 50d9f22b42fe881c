"""iohyve_flags in rc.conf: read as sysadm did, rewritten atomically."""

from __future__ import annotations

from pathlib import Path

from sysadmd.backends._iohyve.rcconf import read_flags, write_flags


def test_read(tmp_path: Path) -> None:
    """The first uncommented line counts; quotes are stripped; empty means not set up."""
    rc = tmp_path / "rc.conf"
    assert read_flags(rc) is None
    rc.write_text('#iohyve_flags="kmod=1 net=em1"\nsshd_enable="YES"\n')
    assert read_flags(rc) is None
    rc.write_text('iohyve_flags=""\n')
    assert read_flags(rc) is None
    rc.write_text('sshd_enable="YES"\niohyve_flags="kmod=1 net=em0" # setup\n')
    assert read_flags(rc) == "kmod=1 net=em0"


def test_write_replaces_every_line_and_keeps_the_rest(tmp_path: Path) -> None:
    """Every iohyve_flags line is replaced; comments, other lines and the mode stay."""
    rc = tmp_path / "rc.conf"
    rc.write_text('# host\niohyve_flags="kmod=0"\nsshd_enable="YES"\n iohyve_flags="x"\n')
    rc.chmod(0o640)
    write_flags(rc, "kmod=1 net=em0")
    assert rc.read_text() == (
        '# host\niohyve_flags="kmod=1 net=em0"\nsshd_enable="YES"\niohyve_flags="kmod=1 net=em0"\n'
    )
    assert rc.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["rc.conf"]


def test_write_appends_to_a_file_without_the_line(tmp_path: Path) -> None:
    """A file without the line gets it at the end; a missing file is created."""
    rc = tmp_path / "rc.conf"
    rc.write_text('sshd_enable="YES"\n')
    write_flags(rc, "kmod=1 net=em1")
    assert rc.read_text() == 'sshd_enable="YES"\niohyve_flags="kmod=1 net=em1"\n'
    missing = tmp_path / "new.conf"
    write_flags(missing, "kmod=1 net=em0")
    assert read_flags(missing) == "kmod=1 net=em0"
