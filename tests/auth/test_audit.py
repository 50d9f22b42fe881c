"""Tests of sysadmd.auth._audit: JSON lines, file mode, redaction, bounds and rotation."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import provider

from sysadmd.api import Role
from sysadmd.auth._audit import (
    MAX_RECORD_BYTES,
    MAX_STRING,
    REDACTED,
    AuditLog,
    redact_urls,
    sanitize,
)

START = 1_700_000_000.5  # 2023-11-14T22:13:20.500Z


@pytest.fixture
def clock() -> Clock:
    """A clock at a known wall-clock time."""
    clock = Clock()
    clock.advance(START)
    return clock


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the audit file goes."""
    return tmp_path / "audit.log"


@pytest.fixture
def log(path: Path, clock: Clock) -> Iterator[AuditLog]:
    """An open audit log, closed after the test."""
    audit_log = AuditLog(path, clock)
    yield audit_log
    audit_log.close()


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The text of every Twisted log event emitted during the test."""
    texts: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        texts.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield texts
    globalLogPublisher.removeObserver(observe)


def records(path: Path) -> list[dict[str, Any]]:
    """The records in the file, checking that every line is compact sorted ASCII JSON."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    result = []
    for line in raw.decode("ascii").splitlines():
        record = json.loads(line)
        assert isinstance(record, dict)
        assert line == json.dumps(record, sort_keys=True, separators=(",", ":"))
        result.append(record)
    return result


def test_records_are_json_lines(log: AuditLog, path: Path, clock: Clock) -> None:
    log.record(
        "login",
        user="joe",
        peer="192.0.2.7:50122",
        method="password",
        outcome="ok",
        role=Role.ADMIN,
        session="0123456789abcdef",
    )
    clock.advance(61.25)
    log.record(
        "call",
        user="joe",
        role=Role.ADMIN,
        peer="192.0.2.7:50122",
        namespace="sysadm",
        name="iohyve",
        action="rmiso",
        args={"action": "rmiso", "target": "FreeBSD-14.iso"},
        outcome="ok",
    )
    log.record("logout", user="joe", peer="192.0.2.7:50122", reason="auth_clear")
    first, second, third = records(path)
    assert first == {
        "time": "2023-11-14T22:13:20.500Z",
        "event": "login",
        "user": "joe",
        "peer": "192.0.2.7:50122",
        "method": "password",
        "outcome": "ok",
        "role": "admin",
        "session": "0123456789abcdef",
    }
    assert second["time"] == "2023-11-14T22:14:21.750Z"
    assert second["args"] == {"action": "rmiso", "target": "FreeBSD-14.iso"}
    assert (second["event"], second["outcome"]) == ("call", "ok")
    assert third["event"] == "logout"
    moment = datetime.fromisoformat(first["time"])
    assert moment.tzinfo == UTC
    assert moment.timestamp() == START


def test_time_and_event_cannot_be_overridden(log: AuditLog, path: Path) -> None:
    log.record("login", time="1999-01-01T00:00:00Z", user="joe")
    (record,) = records(path)
    assert record["time"] == "2023-11-14T22:13:20.500Z"
    assert record["event"] == "login"


def test_each_record_is_written_at_once(path: Path, clock: Clock) -> None:
    audit_log = AuditLog(path, clock)
    audit_log.record("login", user="joe")
    assert len(records(path)) == 1  # visible before close: nothing is buffered
    audit_log.close()


def test_new_file_is_0600(log: AuditLog, path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    log.record("login", user="joe")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_file_is_made_0600_and_appended_to(path: Path, clock: Clock) -> None:
    path.write_text('{"event":"earlier"}\n')
    path.chmod(0o644)
    audit_log = AuditLog(path, clock)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    audit_log.record("login", user="joe")
    audit_log.close()
    assert [r["event"] for r in records(path)] == ["earlier", "login"]


def test_file_is_0600_whatever_the_umask(path: Path, clock: Clock) -> None:
    old = os.umask(0)
    try:
        AuditLog(path, clock).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_symlinks_are_refused(tmp_path: Path, clock: Clock) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    target.chmod(0o644)
    link = tmp_path / "audit.log"
    link.symlink_to(target)
    with pytest.raises(OSError):  # ELOOP; the errno differs between systems
        AuditLog(link, clock)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_fifo_is_refused_without_hanging(tmp_path: Path, clock: Clock) -> None:
    fifo = tmp_path / "audit.log"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(OSError):  # ENXIO (no reader) or "not a regular file"
        AuditLog(fifo, clock)
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644


def test_a_directory_is_refused(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(OSError):  # EISDIR
        AuditLog(tmp_path, clock)


PASSWORD = "hunter2-top-level"
SECRETS = {
    "password": PASSWORD,
    "nested": "pw-nested-Qx81",
    "listed": "tok-in-a-list-Zr07",
    "deep": "enc-deep-Mm55",
    "auth": "Basic am9lOnNlY3JldA==",
    "client": "client-secret-Lp42",
    "apitoken": "api-token-Hb19",
    "upper": "UPPER-PASSWORD-Kd33",
    "new": "new-password-Tt08",
}


def test_secrets_are_redacted_at_any_depth(log: AuditLog, path: Path) -> None:
    log.record(
        "login",
        user="joe",
        method="password",  # a value, not a field name: kept
        outcome="failed",
        password=SECRETS["password"],
        args={
            "username": "joe",
            "password": SECRETS["nested"],
            "items": [{"other": 1}, {"Token": SECRETS["listed"]}],
            "stage2": {"deeper": {"encrypted_string": SECRETS["deep"]}},
            "ssl": ({"new_password": SECRETS["new"]},),
        },
        headers={"Authorization": SECRETS["auth"], "Host": "admin.example"},
        client_secret=SECRETS["client"],
        API_TOKEN=SECRETS["apitoken"],
        Old_PassWord=SECRETS["upper"],
    )
    text = path.read_text()
    for secret in SECRETS.values():
        assert secret not in text
    assert "am9lOnNlY3JldA" not in text
    (record,) = records(path)
    assert record["password"] == REDACTED
    assert record["method"] == "password"
    assert record["client_secret"] == REDACTED
    assert record["API_TOKEN"] == REDACTED
    assert record["Old_PassWord"] == REDACTED
    assert record["args"]["username"] == "joe"
    assert record["args"]["password"] == REDACTED
    assert record["args"]["items"] == [{"other": 1}, {"Token": REDACTED}]
    assert record["args"]["stage2"] == {"deeper": {"encrypted_string": REDACTED}}
    assert record["args"]["ssl"] == [{"new_password": REDACTED}]
    assert record["headers"] == {"Authorization": REDACTED, "Host": "admin.example"}


def test_a_secret_container_is_redacted_whole(log: AuditLog, path: Path) -> None:
    log.record("call", tokens=["tok-one-Aa11", "tok-two-Bb22"], secrets={"a": "sec-Cc33"})
    text = path.read_text()
    assert "tok-one" not in text
    assert "tok-two" not in text
    assert "sec-Cc33" not in text
    (record,) = records(path)
    assert record["tokens"] == record["secrets"] == REDACTED


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "https://joe:pa55w0rd@mirror.example/iso/FreeBSD.iso",
            "https://<redacted>@mirror.example/iso/FreeBSD.iso",
        ),
        ("ftp://anonymous@ftp.example/pub/a.iso", "ftp://<redacted>@ftp.example/pub/a.iso"),
        ("http://joe:p@ss@host.example/", "http://<redacted>@host.example/"),
        ("http://joe:pa/ss@host.example/a.iso", "http://<redacted>@host.example/a.iso"),
        ("http://joe:pa?ss@host.example/", "http://<redacted>@host.example/"),
        (
            "fetch of https://u:p@a.example/x.iso failed; retry ftp://v:q@b.example/",
            "fetch of https://<redacted>@a.example/x.iso failed; retry ftp://<redacted>@b.example/",
        ),
        ("HTTP://U:P@HOST/", "HTTP://<redacted>@HOST/"),
        ("https://mirror.example/iso/FreeBSD.iso", "https://mirror.example/iso/FreeBSD.iso"),
        ("mailto:joe@example.com", "mailto:joe@example.com"),
        ("joe@example.com and https://example.com/", "joe@example.com and https://example.com/"),
        ("", ""),
    ],
)
def test_url_credentials_are_redacted(given: str, expected: str) -> None:
    assert redact_urls(given) == expected


def test_url_credentials_are_redacted_in_the_file(log: AuditLog, path: Path) -> None:
    log.record(
        "call",
        action="fetchiso",
        args={"url": "https://joe:pa55w0rd-Ur99@mirror.example/a.iso"},
        message="cannot fetch ftp://anon:ftp-pass-Fp61@ftp.example/b.iso",
        urls=["http://u:list-pass-Lq27@h.example/"],
    )
    text = path.read_text()
    for secret in ("pa55w0rd-Ur99", "ftp-pass-Fp61", "list-pass-Lq27", "joe:", "anon:"):
        assert secret not in text
    (record,) = records(path)
    assert record["args"]["url"] == "https://<redacted>@mirror.example/a.iso"


def test_url_redaction_happens_before_truncation() -> None:
    secret = "s" * 2000
    value = sanitize(f"https://joe:{secret}@host.example/a.iso")
    assert value == "https://<redacted>@host.example/a.iso"
    cut = sanitize("x" * 1020 + f" https://joe:{secret}@host.example/")
    assert isinstance(cut, str)
    assert "sss" not in cut


def test_url_redaction_takes_linear_time() -> None:
    for hostile in ("a://" * 250_000, "a://@" * 200_000, "://" + "x" * 10**6 + "@", "@" * 10**6):
        started = time.perf_counter()
        redact_urls(hostile)
        assert time.perf_counter() - started < 1.0


def test_strings_are_truncated(log: AuditLog, path: Path) -> None:
    log.record("call", args={"target": "a" * 5000, "k" * 3000: "v"}, outcome="x" * 1024)
    (record,) = records(path)
    target = record["args"]["target"]
    assert len(target) == MAX_STRING
    assert target == "a" * (MAX_STRING - 1) + "…"
    assert record["outcome"] == "x" * 1024  # exactly at the limit: untouched
    (long_key,) = (key for key in record["args"] if key.startswith("k"))
    assert len(long_key) == MAX_STRING


def test_a_sensitive_word_past_the_cut_still_redacts() -> None:
    assert sanitize({"x" * 2000 + "password": "pw-Gh73"}) == {"x" * 1023 + "…": REDACTED}


def test_records_are_bounded(log: AuditLog, path: Path) -> None:
    log.record(
        "call",
        user="joe",
        outcome="ok",
        args={f"file{n}": "f" * 1024 for n in range(100)},  # about 100 KiB
        output=["o" * 1024] * 40,  # about 40 KiB
        small=[1, 2, 3],
    )
    raw = path.read_bytes()
    assert len(raw) <= MAX_RECORD_BYTES
    (record,) = records(path)
    assert record["truncated"] is True
    assert (record["event"], record["user"], record["outcome"], record["small"]) == (
        "call",
        "joe",
        "ok",
        [1, 2, 3],
    )
    assert record["args"] == "<truncated>"  # the largest field goes
    assert isinstance(record["output"], list)  # the smaller one fits


def test_a_record_of_many_large_fields_is_bounded(log: AuditLog, path: Path) -> None:
    fields: dict[str, object] = {f"field{n}": "x" * 1024 for n in range(200)}
    log.record("call", **fields)
    raw = path.read_bytes()
    assert len(raw) <= MAX_RECORD_BYTES
    (record,) = records(path)
    assert record["truncated"] is True
    assert len(record) == 200 + 3  # every field is there, with its value or a placeholder
    assert sum(value == "<truncated>" for value in record.values()) > 100


def test_containers_are_bounded() -> None:
    value = sanitize({"many": list(range(5000)), "map": {str(n): n for n in range(5000)}})
    assert isinstance(value, dict)
    assert len(value["many"]) == 1001
    assert value["many"][-1] == "<4000 more>"
    assert len(value["map"]) == 1001
    assert value["map"]["<more>"] == 4000


def test_deep_and_cyclic_values_do_not_recurse_forever(log: AuditLog, path: Path) -> None:
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    log.record("call", deep=deep, cyclic=cyclic)
    (record,) = records(path)
    assert "<truncated>" in json.dumps(record["deep"])
    assert "<truncated>" in json.dumps(record["cyclic"])


class Unprintable:
    """An object whose str() fails."""

    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_json_cannot_hold_become_text(log: AuditLog, path: Path) -> None:
    log.record(
        "call",
        raw=b"bytes\xff",
        names=frozenset({"only"}),
        path=Path("/var/db/iso"),
        nan=float("nan"),
        inf=float("-inf"),
        huge=10**5000,
        normal=10**20,
        flag=True,
        nothing=None,
        when=datetime(2026, 1, 2, tzinfo=UTC),
        broken=Unprintable(),
        text="caf\u00e9\n\u2028<script>",
        keys={1: "one", ("a", 2): "pair", None: "none"},
    )
    (record,) = records(path)
    assert record["raw"] == "b'bytes\\xff'"
    assert record["names"] == ["only"]
    assert record["path"] == "/var/db/iso"
    assert (record["nan"], record["inf"]) == ("nan", "-inf")
    assert record["huge"] == "<integer of 16610 bits>"
    assert record["normal"] == 10**20
    assert (record["flag"], record["nothing"]) == (True, None)
    assert record["when"] == "2026-01-02 00:00:00+00:00"
    assert record["broken"] == "<unprintable Unprintable>"
    assert record["text"] == "caf\u00e9\n\u2028<script>"
    assert record["keys"] == {"1": "one", "('a', 2)": "pair", "None": "none"}
    assert len(path.read_text().splitlines()) == 1  # the newline stayed escaped


def test_reopen_after_rotation(log: AuditLog, path: Path) -> None:
    log.record("login", user="before")
    rotated = path.with_name("audit.log.0")
    path.rename(rotated)
    log.record("login", user="in-between")  # still the old file until reopened
    log.reopen()
    log.record("login", user="after")
    assert [r["user"] for r in records(rotated)] == ["before", "in-between"]
    assert [r["user"] for r in records(path)] == ["after"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failed_reopen_keeps_the_old_file(
    tmp_path: Path, clock: Clock, logged: list[str]
) -> None:
    directory = tmp_path / "log"
    directory.mkdir()
    audit_log = AuditLog(directory / "audit.log", clock)
    moved = tmp_path / "moved"
    directory.rename(moved)
    audit_log.reopen()  # the directory is gone: cannot open
    audit_log.record("login", user="joe")
    audit_log.close()
    assert [r["user"] for r in records(moved / "audit.log")] == ["joe"]
    assert any("Cannot reopen audit log" in text for text in logged)


def test_a_write_error_is_logged_not_raised(
    log: AuditLog, path: Path, monkeypatch: pytest.MonkeyPatch, logged: list[str]
) -> None:
    def fail(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sysadmd.auth._audit.os.write", fail)
    log.record("login", user="joe", password="pw-Wq12")
    monkeypatch.undo()
    assert path.read_text() == ""
    (message,) = [text for text in logged if "audit log" in text]
    assert "login" in message
    assert "No space left" in message
    assert "pw-Wq12" not in message


def test_short_writes_are_completed(
    log: AuditLog, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def dribble(fd: int, data: bytes) -> int:
        return real_write(fd, data[:7])

    monkeypatch.setattr("sysadmd.auth._audit.os.write", dribble)
    log.record("login", user="joe", peer="192.0.2.7:50122")
    monkeypatch.undo()
    assert records(path)[0]["peer"] == "192.0.2.7:50122"


def test_close(path: Path, clock: Clock) -> None:
    audit_log = AuditLog(path, clock)
    audit_log.record("login", user="joe")
    audit_log.close()
    audit_log.record("login", user="dropped")
    audit_log.close()
    assert [r["user"] for r in records(path)] == ["joe"]
    assert "closed" in repr(audit_log)


def test_a_disabled_log_writes_nothing(tmp_path: Path, clock: Clock) -> None:
    audit_log = AuditLog(None, clock)
    audit_log.record("login", user="joe", password="x")
    audit_log.reopen()
    audit_log.record("logout", user="joe")
    audit_log.close()
    assert audit_log.path is None
    assert list(tmp_path.iterdir()) == []
    assert "disabled" in repr(audit_log)
