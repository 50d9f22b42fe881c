"""The FreeBSD rc.d script and newsyslog file, checked as far as Linux allows.

* The script is POSIX sh (``dash -n``) and clean under ``shellcheck -s sh``.
* Run against a stub ``rc.subr`` that does what rc.subr(8) does with the script's variables
  (``eval "$command $rc_flags $command_args"`` for start, ``eval "$reload_cmd"`` for reload),
  with ``daemon`` and ``kill`` replaced by recorders: the exact argv is asserted.
* The ``daemon(8)`` part of that argv is parsed against the options of FreeBSD 14's daemon(8),
  and the variables the script sets are the ones rc.subr(8) documents (or its own).
* Each line of the newsyslog file has newsyslog.conf(5)'s fields, flags and signal, and names
  the pid file of the process that reopens that log on SIGHUP.

What still needs FreeBSD: the real rc.subr, daemon(8), kqueue and newsyslog(8) running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from sysadmd import config

CONF = Path(__file__).resolve().parent.parent / "conf"
RC_D = CONF / "rc.d" / "sysadmd"
NEWSYSLOG = CONF / "newsyslog.conf.d" / "sysadmd.conf"

#: What rc.subr does with the script's variables, for start and reload; everything the script
#: would execute goes through ``record`` (a file of NUL-separated words, one run a line).
RC_SUBR_STUB = r"""
load_rc_config() { :; }
kill() { record kill "$@"; }
run_rc_command() {
    eval "rc_flags=\$${name}_flags"
    case "$1" in
    start)
        for _f in $required_files; do
            [ -r "$_f" ] || { echo "${name}: required file $_f not readable." >&2; return 1; }
        done
        eval "record $command $rc_flags $command_args"
        ;;
    reload)
        eval "$reload_cmd"
        ;;
    variables)
        echo "rcvar=$rcvar pidfile=$pidfile procname=$procname"
        echo "extra_commands=$extra_commands reload_cmd=$reload_cmd"
        ;;
    esac
}
"""

RECORDER = """#!/bin/sh
for word; do printf '%s\\0' "$word"; done >> "$RECORD"
printf '\\n' >> "$RECORD"
"""

#: FreeBSD 14's daemon(8): flags without a value, and options that take one.
DAEMON_FLAGS = set("cfHrS")
DAEMON_VALUED = set("pPtumosTlR")

#: The variables rc.subr(8) reads from an rc.d script (besides ${name}_* ones).
RC_SUBR_VARIABLES = {
    "name",
    "rcvar",
    "command",
    "command_args",
    "command_interpreter",
    "extra_commands",
    "pidfile",
    "procname",
    "required_dirs",
    "required_files",
    "required_vars",
    "required_modules",
    "start_cmd",
    "start_precmd",
    "start_postcmd",
    "stop_cmd",
    "stop_precmd",
    "stop_postcmd",
    "restart_cmd",
    "reload_cmd",
    "status_cmd",
    "sig_reload",
    "sig_stop",
}

#: newsyslog.conf(5) flags.
NEWSYSLOG_FLAGS = set("BCDEGJNpRTUXYZ-")


class RcD:
    """The rc.d script, its rc.subr replaced by the stub, run by dash in a scratch directory."""

    def __init__(self, tmp_path: Path, pid_dir: Path | None = None) -> None:
        self.record = tmp_path / "record"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        recorder = bin_dir / "record"
        recorder.write_text(RECORDER)
        recorder.chmod(0o755)
        stub = tmp_path / "rc.subr"
        stub.write_text(RC_SUBR_STUB)
        text = RC_D.read_text()
        assert text.count(". /etc/rc.subr\n") == 1
        text = text.replace(". /etc/rc.subr\n", f". {stub}\n")
        if pid_dir is not None:
            text = text.replace("/var/run/", f"{pid_dir}/")
        self.script = tmp_path / "sysadmd"
        self.script.write_text(text)
        self.config = tmp_path / "sysadmd.toml"
        self.config.write_text("")
        self.path = f"{bin_dir}:{os.environ['PATH']}"

    def __call__(self, command: str, **variables: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": self.path,
            "RECORD": str(self.record),
            "sysadmd_config": str(self.config),
            **variables,
        }
        return subprocess.run(
            [shell(), str(self.script), command],
            check=False,
            env=env,
            capture_output=True,
            text=True,
        )

    def runs(self) -> list[list[str]]:
        """Every argv recorded so far."""
        if not self.record.exists():
            return []
        lines = self.record.read_bytes().split(b"\n")
        return [line.decode().split("\0")[:-1] for line in lines if line]


def shell() -> str:
    """dash: a strict POSIX sh, like FreeBSD's /bin/sh in what it accepts."""
    found = shutil.which("dash")
    assert found, "dash is needed (Debian: it is /bin/sh)"
    return found


def test_rc_d_is_posix_sh() -> None:
    subprocess.run([shell(), "-n", str(RC_D)], check=True)


def test_rc_d_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (dev/test and .ci/run install it as root)")
    result = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", str(RC_D)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def twistd_argv(config_path: str, *extra: str, reactor: str = "kqueue") -> list[str]:
    return [
        "/usr/local/bin/twistd",
        f"--reactor={reactor}",
        "--nodaemon",
        "--pidfile=",
        "sysadmd",
        "--config",
        config_path,
        *extra,
    ]


def test_start_runs_daemon_with_twistd(tmp_path: Path) -> None:
    rc_d = RcD(tmp_path)
    result = rc_d("start")
    assert result.returncode == 0, result.stderr
    assert rc_d.runs() == [
        [
            "/usr/sbin/daemon",
            "-f",
            "-r",
            "-R",
            "5",
            "-P",
            "/var/run/sysadmd.pid",
            "-p",
            "/var/run/sysadmd.child.pid",
            "-t",
            "sysadmd",
            "-o",
            "/var/log/sysadmd.log",
            "-H",
            *twistd_argv(str(rc_d.config)),
        ]
    ]


def test_start_with_rc_conf_variables(tmp_path: Path) -> None:
    """sysadmd_flags reach twistd (after --config, quoting as in rc.conf), not daemon(8)."""
    rc_d = RcD(tmp_path)
    result = rc_d(
        "start",
        sysadmd_flags="--listen 'tcp:8080:interface=127.0.0.1' --listen ssl:12150",
        sysadmd_twistd="/usr/local/sysadmd/bin/twistd",
        sysadmd_logfile="/var/log/other.log",
        sysadmd_reactor="poll",
    )
    assert result.returncode == 0, result.stderr
    [argv] = rc_d.runs()
    twistd = argv.index("/usr/local/sysadmd/bin/twistd")
    assert argv[argv.index("-o") + 1] == "/var/log/other.log"
    assert argv[twistd:] == [
        "/usr/local/sysadmd/bin/twistd",
        "--reactor=poll",
        "--nodaemon",
        "--pidfile=",
        "sysadmd",
        "--config",
        str(rc_d.config),
        "--listen",
        "tcp:8080:interface=127.0.0.1",
        "--listen",
        "ssl:12150",
    ]


def test_start_needs_the_configuration_file(tmp_path: Path) -> None:
    rc_d = RcD(tmp_path)
    result = rc_d("start", sysadmd_config=str(tmp_path / "missing.toml"))
    assert result.returncode != 0
    assert "missing.toml" in result.stderr
    assert rc_d.runs() == []


def parse_daemon(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """daemon(8)'s options (getopt, as FreeBSD 14 parses them) and the command after them."""
    assert argv[0] == "/usr/sbin/daemon"
    options: dict[str, str] = {}
    index = 1
    while index < len(argv) and argv[index].startswith("-") and argv[index] != "--":
        word = argv[index]
        index += 1
        for position, letter in enumerate(word[1:], start=2):
            if letter in DAEMON_FLAGS:
                options[letter] = ""
                continue
            assert letter in DAEMON_VALUED, f"daemon(8) has no option -{letter}"
            value = word[position:]
            if not value:
                value = argv[index]
                index += 1
            options[letter] = value
            break
    return options, argv[index:]


def test_daemon_options_against_daemon_8(tmp_path: Path) -> None:
    rc_d = RcD(tmp_path)
    rc_d("start")
    [argv] = rc_d.runs()
    options, command = parse_daemon(argv)
    assert command[0] == "/usr/local/bin/twistd"
    # -f: stdin from /dev/null (python-pam reads a tty name from it), -o/-H: the log file,
    # reopened on SIGHUP; -r/-R: restarted 5 s after it dies; -P/-p: both pid files.
    assert set(options) == {"f", "r", "R", "P", "p", "t", "o", "H"}
    assert int(options["R"]) > 0
    assert options["P"] == "/var/run/sysadmd.pid"
    assert options["p"] == "/var/run/sysadmd.child.pid"
    assert options["o"].startswith("/")
    # rc.subr checks and signals the supervisor: its pid file, its name.
    variables = rc_d("variables").stdout
    assert "pidfile=/var/run/sysadmd.pid procname=/usr/sbin/daemon" in variables
    assert "rcvar=sysadmd_enable" in variables
    assert "extra_commands=reload reload_cmd=sysadmd_reload" in variables


def test_variables_are_rc_subr_s_or_the_script_s() -> None:
    assigned = set()
    for line in RC_D.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=.*", line)
        if match:
            assigned.add(match.group(1))
    assert {"name", "rcvar", "command", "command_args", "pidfile", "procname"} <= assigned
    unknown = {v for v in assigned if v not in RC_SUBR_VARIABLES and not v.startswith("sysadmd_")}
    assert unknown == set()
    # ${name}_program would replace $command (daemon) in rc.subr; it is never set.
    assert "sysadmd_program" not in assigned


def test_reload_signals_twistd_not_the_supervisor(tmp_path: Path) -> None:
    rc_d = RcD(tmp_path, pid_dir=tmp_path)
    (tmp_path / "sysadmd.pid").write_text("100\n")
    (tmp_path / "sysadmd.child.pid").write_text("4242\n")
    result = rc_d("reload")
    assert result.returncode == 0, result.stderr
    assert rc_d.runs() == [["kill", "-HUP", "4242"]]


def test_reload_when_not_running(tmp_path: Path) -> None:
    rc_d = RcD(tmp_path, pid_dir=tmp_path)
    result = rc_d("reload")
    assert result.returncode == 1
    assert result.stdout == "sysadmd is not running.\n"
    assert rc_d.runs() == []


# -- newsyslog ------------------------------------------------------------------------------------


def newsyslog_entries() -> list[list[str]]:
    entries = []
    for line in NEWSYSLOG.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            entries.append(fields)
    return entries


def parse_entry(fields: list[str]) -> dict[str, str]:
    """newsyslog.conf(5): logfile [owner:group] mode count size when [flags] [/pid] [sig]."""
    assert 5 <= len(fields) <= 9, fields
    rest = list(fields)
    entry = {"logfile": rest.pop(0)}
    if ":" in rest[0]:
        entry["owner"] = rest.pop(0)
    for key in ("mode", "count", "size", "when"):
        entry[key] = rest.pop(0)
    if rest and not rest[0].startswith("/"):
        entry["flags"] = rest.pop(0)
    if rest and rest[0].startswith("/"):
        entry["pid_file"] = rest.pop(0)
    if rest:
        entry["signal"] = rest.pop(0)
    assert rest == [], fields
    return entry


def test_newsyslog_entries_against_newsyslog_conf_5(tmp_path: Path) -> None:
    rc_d = RcD(tmp_path)
    rc_d("start")
    [argv] = rc_d.runs()
    options, _command = parse_daemon(argv)
    entries = [parse_entry(fields) for fields in newsyslog_entries()]
    assert len(entries) >= 2
    for entry in entries:
        assert entry["logfile"].startswith("/")
        assert re.fullmatch(r"[a-z_][a-z0-9_]*:[a-z_][a-z0-9_]*", entry["owner"])
        assert re.fullmatch(r"[0-7]{3}", entry["mode"])
        assert int(entry["count"]) > 0
        assert entry["size"] == "*" or int(entry["size"]) > 0
        when = entry["when"]
        assert when == "*" or re.fullmatch(r"\d+|@[0-9T]+|\$[DWM][0-9D]*", when), when
        assert set(entry["flags"]) <= NEWSYSLOG_FLAGS
        assert "N" not in entry["flags"]  # someone must reopen the file
        assert "C" in entry["flags"]
        assert entry["pid_file"] in {options["P"], options["p"]}
        assert hasattr(signal, entry["signal"]), entry["signal"]
        assert entry["signal"] == "SIGHUP"
    by_path = {entry["logfile"]: entry for entry in entries}
    # daemon(8) writes the -o file and reopens it (-H) on SIGHUP: the supervisor's pid file.
    assert "H" in options
    assert by_path[options["o"]]["pid_file"] == options["P"]
    # twistd (sysadmd) writes the audit log and reopens it on SIGHUP: its own pid file.
    defaults = config.load()
    audit = defaults.auth_audit_log or defaults.state_dir / "audit.log"
    assert by_path[str(audit)]["pid_file"] == options["p"]
