"""log.file: text or JSON lines, the start included, reopened on SIGHUP after a rename."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import time
from pathlib import Path
from typing import Any, cast

import pytest
from daemon import Daemon
from support import async_test
from test_e2e import ws
from twisted.internet import reactor
from twisted.logger import ILogObserver, Logger, LogPublisher, eventsFromJSONLogFile
from wsclient import settle

from sysadmd import config
from sysadmd.ops import LogFiles


def wait_for(predicate: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def service(path: Path, format: str, publisher: LogPublisher, **kwargs: Any) -> LogFiles:
    return LogFiles(path, format, reactor, publisher=publisher, **kwargs)


def test_text_lines_and_early_events(tmp_path: Path) -> None:
    """Text lines as twistd writes them; events before the start are kept, once each."""
    publisher = LogPublisher()
    log = Logger(namespace="sysadmd.test", observer=cast(ILogObserver, publisher))
    path = tmp_path / "sysadmd.log"
    files = service(path, "text", publisher)
    assert path.stat().st_mode & 0o777 == 0o600
    event_before = {"log_format": "before {n}", "n": 1, "log_level": None, "log_time": 0.0}
    publisher(event_before)
    publisher(event_before)  # twistd replays its buffer through the publisher
    files.startService()
    try:
        log.info("Listening on {where}", where="127.0.0.1:1")
    finally:
        files.stopService()
    log.info("after the stop")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("before 1")
    assert "[sysadmd.test#info] Listening on 127.0.0.1:1" in lines[1]


def test_json_lines(tmp_path: Path) -> None:
    """One Twisted JSON event per line, readable with eventsFromJSONLogFile."""
    publisher = LogPublisher()
    log = Logger(namespace="sysadmd.test", observer=cast(ILogObserver, publisher))
    path = tmp_path / "sysadmd.json"
    files = service(path, "json", publisher)
    files.startService()
    try:
        log.info("Fetch {task_id} started", task_id="{1}")
        log.warn("a warning")
    finally:
        files.stopService()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["log_format"] for line in lines] == [
        "Fetch {task_id} started",
        "a warning",
    ]
    with path.open() as f:
        events = list(eventsFromJSONLogFile(f, recordSeparator=""))
    assert events[0]["task_id"] == "{1}"
    assert events[1]["log_level"].name == "warn"


def test_reopen_after_rename(tmp_path: Path) -> None:
    """After newsyslog moves the file, reopen writes a new one; other files reopen too."""
    publisher = LogPublisher()
    log = Logger(observer=cast(ILogObserver, publisher))
    path = tmp_path / "sysadmd.log"
    reopened: list[str] = []
    files = service(path, "text", publisher, reopen=[lambda: reopened.append("audit")])
    files.startService()
    try:
        log.info("first")
        path.rename(tmp_path / "sysadmd.log.0")
        log.info("second")
        files.reopen()
        log.info("third")
    finally:
        files.stopService()
    assert reopened == ["audit"]
    old = (tmp_path / "sysadmd.log.0").read_text()
    assert "first" in old and "second" in old and "third" not in old
    assert "third" in path.read_text()


def test_the_log_file_is_never_followed_or_opened_unless_regular(tmp_path: Path) -> None:
    """A symbolic link or a FIFO at log.file stops the start; neither is touched."""
    target = tmp_path / "elsewhere"
    target.write_text("")
    target.chmod(0o644)
    link = tmp_path / "sysadmd.log"
    link.symlink_to(target)
    with pytest.raises(config.ConfigError, match=r"log\.file: .* cannot be opened"):
        service(link, "text", LogPublisher())
    assert target.stat().st_mode & 0o777 == 0o644
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(config.ConfigError, match=r"log\.file: .* cannot be opened"):
        service(fifo, "text", LogPublisher())
    assert fifo.stat().st_mode & 0o777 == 0o644


def test_an_existing_log_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "sysadmd.log"
    path.write_text("old line\n")
    path.chmod(0o644)
    publisher = LogPublisher()
    files = service(path, "text", publisher)
    assert path.stat().st_mode & 0o777 == 0o600
    files.startService()
    try:
        Logger(observer=cast(ILogObserver, publisher)).info("new line")
    finally:
        files.stopService()
    lines = path.read_text().splitlines()
    assert lines[0] == "old line" and lines[1].endswith("new line")


def test_a_failed_reopen_keeps_writing_to_the_old_file(tmp_path: Path) -> None:
    publisher = LogPublisher()
    log = Logger(observer=cast(ILogObserver, publisher))
    path = tmp_path / "logs" / "sysadmd.log"
    path.parent.mkdir()
    files = service(path, "text", publisher)
    files.startService()
    try:
        log.info("first")
        moved = tmp_path / "moved"
        path.parent.rename(moved)  # the directory is gone: the reopen cannot create the file
        files.reopen()
        log.info("second \udcff")  # a lone surrogate, as an odd file name gives
    finally:
        files.stopService()
    written = (moved / "sysadmd.log").read_text()
    assert "first" in written and "second \\udcff" in written
    assert not path.exists()


def test_log_level_filters_every_observer_while_running(tmp_path: Path) -> None:
    """log.level "info": no debug line in twistd's log or the file; put back at the stop."""
    publisher = LogPublisher()
    twistd: list[dict[str, Any]] = []
    publisher.addObserver(cast(ILogObserver, twistd.append))
    log = Logger(namespace="sysadmd.test", observer=cast(ILogObserver, publisher))
    path = tmp_path / "sysadmd.log"
    files = service(path, "text", publisher, level="info")
    log.debug("debug before the start")
    files.startService()
    try:
        log.debug("spawned pid {pid}", pid=1)
        log.info("kept")
        log.error("an error")
        publisher({"log_format": "no level", "log_time": 0.0})
    finally:
        files.stopService()
    log.debug("debug after the stop")
    seen = [e["log_format"] for e in twistd]
    assert seen == [
        "debug before the start",
        "kept",
        "an error",
        "no level",
        "debug after the stop",
    ]
    written = path.read_text()
    assert "kept" in written and "an error" in written and "no level" in written
    assert "debug" not in written and "spawned pid" not in written


def test_log_level_debug_keeps_everything(tmp_path: Path) -> None:
    publisher = LogPublisher()
    twistd: list[dict[str, Any]] = []
    publisher.addObserver(cast(ILogObserver, twistd.append))
    log = Logger(observer=cast(ILogObserver, publisher))
    files = service(tmp_path / "sysadmd.log", "text", publisher, level="debug")
    files.startService()
    try:
        log.debug("spawned pid {pid}", pid=1)
    finally:
        files.stopService()
    assert [e["log_format"] for e in twistd] == ["spawned pid {pid}"]
    assert "spawned pid 1" in (tmp_path / "sysadmd.log").read_text()


def test_log_level_warn_drops_info(tmp_path: Path) -> None:
    publisher = LogPublisher()
    twistd: list[dict[str, Any]] = []
    publisher.addObserver(cast(ILogObserver, twistd.append))
    log = Logger(observer=cast(ILogObserver, publisher))
    files = LogFiles(None, "text", reactor, publisher=publisher, level="warn")
    files.startService()
    try:
        log.info("an info line")
        log.warn("a warning")
    finally:
        files.stopService()
    assert [e["log_format"] for e in twistd] == ["a warning"]


def test_sighup_handler_is_installed_and_restored(tmp_path: Path) -> None:
    """The handler only hands the work to the reactor; stopping restores the old one."""
    before = signal.getsignal(signal.SIGHUP)
    calls: list[Any] = []

    class Reactor:
        def callFromThread(self, f: Any, *args: Any) -> None:
            calls.append(f)

    files = LogFiles(None, "text", Reactor(), publisher=LogPublisher())
    files.startService()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: calls, 5)
    finally:
        files.stopService()
    assert calls == [files.reopen]
    assert signal.getsignal(signal.SIGHUP) == before


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[log]\nformat = "xml"\n', "log.format: must be one of 'text', 'json'"),
        ("[log]\nfile = 3\n", "log.file: must be a non-empty path string"),
        ('[log]\nlevel = "verbose"\n', "log.level: must be one of 'debug', 'info', 'warn'"),
        ('[log]\nlevel = "INFO"\n', "log.level: must be one of"),
        ('[metrics]\nallow = ["localhost"]\n', "metrics.allow: must be a list of addresses"),
        ('[metrics]\nallow = "127.0.0.1"\n', "metrics.allow: must be a list of addresses"),
    ],
)
def test_bad_settings(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=words):
        config.load(path)


def test_unwritable_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"log\.file: .* cannot be opened"):
        LogFiles(tmp_path / "missing" / "sysadmd.log", "text", reactor)


def test_daemon_reopens_on_sighup(tmp_path: Path) -> None:
    """The real daemon: the whole start in the file; SIGHUP after newsyslog's rename."""
    log_file = tmp_path / "sysadmd.log"
    settings = tmp_path / "sysadmd.toml"
    settings.write_text(f'[log]\nfile = "{log_file}"\n')
    daemon = Daemon(tmp_path / "state", f"--config={settings}")
    try:
        wait_for(lambda: "Listening on" in log_file.read_text())
        start = log_file.read_text()
        assert "TLS certificate" in start and "sysadmd starting with" in start
        assert start.count("sysadmd starting with") == 1
        log_file.rename(tmp_path / "sysadmd.log.0")
        audit = daemon.state_dir / "audit.log"
        audit.rename(tmp_path / "audit.log.0")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: log_file.exists() and "Reopened the log files" in log_file.read_text())
        assert daemon.process.poll() is None
        secret = "not-the-password-Zq9"
        assert failed_login(daemon, secret) == 401
        wait_for(lambda: "Failed basic login" in log_file.read_text())
        assert audit.exists() and '"outcome":"failed"' in audit.read_text()
        for text in (log_file.read_text(), (tmp_path / "sysadmd.log.0").read_text()):
            assert secret not in text
            assert daemon.password not in text
        assert "Failed basic login" not in (tmp_path / "sysadmd.log.0").read_text()
    finally:
        assert daemon.stop()


@pytest.mark.parametrize("level", ["info", "debug"])
@async_test
async def test_guest_polls_log_at_debug_only(tmp_path: Path, level: str) -> None:
    """While a client listens to 'guests', each poll's process lines are debug lines: the
    default level (info) writes none of them, "debug" writes them."""
    settings = tmp_path / "sysadmd.toml"
    text = "[events]\nguests_interval = 0.5\n"
    settings.write_text(text if level == "info" else f'{text}[log]\nlevel = "debug"\n')
    daemon = Daemon(tmp_path / "state", f"--config={settings}")
    try:
        client = await ws(daemon)
        client.send({"namespace": "events", "name": "subscribe", "id": "g", "args": "guests"})
        assert (await client.next())["args"] == {"subscribe": "guests"}
        await client.next()  # the first guests event: one poll has run
        await settle(1.2)  # two or three more polls
        await client.close()
    finally:
        assert daemon.stop()
    spawned = daemon.log_text().count("spawned pid")
    if level == "info":
        assert spawned == 0, daemon.log_text()
        assert "Listening on" in daemon.log_text()
    else:
        assert spawned >= 2, daemon.log_text()


def failed_login(daemon: Daemon, password: str) -> int:
    context = ssl.create_default_context(cafile=str(daemon.state_dir / "tls" / "cert.pem"))
    context.check_hostname = False
    connection = http.client.HTTPSConnection("127.0.0.1", daemon.ports[1], context=context)
    credentials = base64.b64encode(f"admin:{password}".encode()).decode()
    try:
        connection.request(
            "PUT",
            "/sysadm/iohyve",
            body=b'{"action": "listvms"}',
            headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
        )
        return connection.getresponse().status
    finally:
        connection.close()
