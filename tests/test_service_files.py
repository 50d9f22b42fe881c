"""The service files in conf/: FreeBSD rc.d, systemd, newsyslog."""

from __future__ import annotations

import configparser
import http.client
import os
import re
import selectors
import shlex
import signal
import subprocess
import time
from pathlib import Path

from daemon import TWISTD

from sysadmd import config

CONF = Path(__file__).parent.parent / "conf"
RC_D = CONF / "rc.d" / "sysadmd"
UNIT = CONF / "systemd" / "sysadmd.service"
NEWSYSLOG = CONF / "newsyslog.conf.d" / "sysadmd.conf"
GRACE = next(k.default for k in config.KEYS if k.dotted == "fetch.grace")

#: Enough of rc.subr to see the command that run_rc_command would start.
RC_SUBR_STUB = """
load_rc_config() { :; }
run_rc_command() {
    eval rc_flags=\\$${name}_flags
    echo "rcvar=$rcvar pidfile=$pidfile procname=$procname required_files=$required_files"
    echo "$command $rc_flags $command_args"
}
"""


def test_rc_d_parses() -> None:
    """The script is valid sh (here /bin/sh may well be dash: it must not need bash)."""
    subprocess.run(["/bin/sh", "-n", str(RC_D)], check=True)
    assert os.access(RC_D, os.X_OK)


def test_rc_d_header_and_variables() -> None:
    text = RC_D.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"^# PROVIDE: sysadmd$", text, re.M)
    required = re.search(r"^# REQUIRE: (.*)$", text, re.M)
    assert required is not None
    assert {"LOGIN", "NETWORKING", "zfs"} <= set(required.group(1).split())
    assert re.search(r"^# KEYWORD: shutdown$", text, re.M)
    for variable in ("sysadmd_enable", "sysadmd_flags", "sysadmd_config"):
        assert re.search(rf"^: \${{{variable}:=", text, re.M), variable
    assert ': ${sysadmd_config:="/usr/local/etc/sysadmd.toml"}' in text
    assert 'rcvar="sysadmd_enable"' in text
    # rc.subr reserves ${name}_program; using it would replace daemon(8).
    assert "sysadmd_program" not in text


def run_rc_d(tmp_path: Path, **variables: str) -> list[str]:
    stub = tmp_path / "rc.subr"
    stub.write_text(RC_SUBR_STUB)
    script = tmp_path / "sysadmd"
    script.write_text(RC_D.read_text().replace(". /etc/rc.subr", f". {stub}"))
    env = {"PATH": os.environ["PATH"], **variables}
    result = subprocess.run(
        ["/bin/sh", str(script), "start"], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def test_rc_d_command(tmp_path: Path) -> None:
    """daemon(8) supervises twistd in the foreground; the flags reach twistd, not daemon."""
    facts, command = run_rc_d(tmp_path, sysadmd_flags="--listen ssl:12150")
    assert "rcvar=sysadmd_enable pidfile=/var/run/sysadmd.pid procname=/usr/sbin/daemon" in facts
    assert "required_files=/usr/local/etc/sysadmd.toml" in facts
    argv = command.split()
    assert argv[0] == "/usr/sbin/daemon"
    twistd = argv.index("/usr/local/bin/twistd")
    supervisor = argv[1:twistd]
    assert "-r" in supervisor
    assert supervisor[supervisor.index("-P") + 1] == "/var/run/sysadmd.pid"
    assert supervisor[supervisor.index("-p") + 1] == "/var/run/sysadmd.child.pid"
    assert supervisor[supervisor.index("-t") + 1] == "sysadmd"
    assert supervisor[supervisor.index("-o") + 1] == "/var/log/sysadmd.log"
    assert "--listen" not in supervisor
    assert argv[twistd + 1 :] == [
        "--reactor=kqueue",
        "--nodaemon",
        "--pidfile=",
        "sysadmd",
        "--config",
        "/usr/local/etc/sysadmd.toml",
        "--listen",
        "ssl:12150",
    ]
    _, command = run_rc_d(tmp_path, sysadmd_config="/etc/s.toml")
    assert command.split()[-2:] == ["--config", "/etc/s.toml"]


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_unit_settings() -> None:
    service = unit()["Service"]
    assert service["Type"] in ("simple", "exec")
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # Running fetches get fetch.grace seconds, then TERM and KILL 5 s apart.
    assert seconds(service["TimeoutStopSec"]) >= GRACE + 10 + 20
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(service["ExecStart"])
    assert argv[1:] == [
        "--reactor=epoll",
        "--nodaemon",
        "--pidfile=",
        "sysadmd",
        "--config",
        "/etc/sysadmd.toml",
    ]


def test_systemd_exec_start_runs_and_stops_cleanly(tmp_path: Path) -> None:
    """ExecStart as written (our twistd, a test config), then the stop systemd sends."""
    service = unit()["Service"]
    settings = tmp_path / "sysadmd.toml"
    settings.write_text(
        "[daemon]\n"
        'listen = ["tcp:0:interface=127.0.0.1"]\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        "[iohyve]\nsimulate = true\n"
    )
    argv = shlex.split(service["ExecStart"])
    argv = [TWISTD, *(str(settings) if a == "/etc/sysadmd.toml" else a for a in argv[1:])]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while b"Listening on" not in output and time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                output += chunk
    try:
        listening = re.search(rb"Listening on tcp:0:interface=127\.0\.0\.1: .*:(\d+)/ ", output)
        assert listening, output.decode()
        # Once the reactor answers, its SIGTERM handling is in place.
        assert livez(int(listening.group(1))) == 200
    finally:
        process.send_signal(getattr(signal, service.get("KillSignal", "SIGTERM")))
        status = process.wait(timeout=seconds(service["TimeoutStopSec"]))
        output += process.stdout.read()
        process.stdout.close()
    assert status == 0, output.decode()
    assert b"Server Shut Down." in output


def livez(port: int) -> int:
    deadline = time.monotonic() + 20
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/livez")
            return connection.getresponse().status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            connection.close()


def newsyslog_lines() -> list[list[str]]:
    return [
        line.split()
        for line in NEWSYSLOG.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_newsyslog_fields(tmp_path: Path) -> None:
    """Every line: path, owner:group, mode, count, size, when, flags, pid file, signal."""
    _, command = run_rc_d(tmp_path)
    argv = command.split()
    pid_files = {argv[argv.index("-P") + 1], argv[argv.index("-p") + 1]}
    lines = newsyslog_lines()
    assert lines
    for fields in lines:
        path, owner, mode, count, size, when, flags, pid_file, sig = fields
        assert path.startswith("/")
        assert re.fullmatch(r"[a-z_]+:[a-z_]+", owner)
        assert mode == "600"
        assert int(count) > 0
        assert size == "*" or int(size) > 0
        assert when == "*" or re.fullmatch(r"@T\d\d|\$[DWM][0-9D]*|\d+", when)
        assert set(flags) <= set("BCDGJNpRSTUXYZ-")
        assert "C" in flags
        assert pid_file in pid_files
        assert sig == "SIGHUP"
    by_path = {fields[0]: fields for fields in lines}
    # daemon(8) writes the log (-o, reopened by -H on SIGHUP): the supervisor's pid file.
    assert by_path["/var/log/sysadmd.log"][7] == "/var/run/sysadmd.pid"
    # The daemon itself reopens the audit log on SIGHUP: twistd's own pid file.
    state_dir = next(k.default for k in config.KEYS if k.dotted == "daemon.state_dir")
    assert by_path[f"{state_dir}/audit.log"][7] == "/var/run/sysadmd.child.pid"
