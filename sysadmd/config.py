"""The daemon's configuration: a TOML file, overridden by command-line flags.

Every key is declared once in :data:`KEYS` with its type, default, bounds and
meaning; loading, validation, error messages and the documentation of
``conf/sysadmd.toml`` (checked by a test) follow from that table. A bad value
raises :class:`ConfigError` with one line naming the key and what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_LISTEN: Final = ("ssl:12150", "ssl:12151")
PROFILES: Final = ("0.7.3", "0.7.9")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


@dataclass(frozen=True)
class Key:
    """One configuration key: ``section.name`` in the file."""

    section: str
    name: str
    default: Any
    check: Callable[[Any, str], Any]
    doc: str

    @property
    def dotted(self) -> str:
        """The key as messages and docs name it."""
        return f"{self.section}.{self.name}"

    @property
    def attribute(self) -> str:
        """The :class:`Config` attribute holding the value."""
        return self.name if self.section == "daemon" else f"{self.section}_{self.name}"


def _string_list(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: must be a non-empty list of non-empty strings")
    return tuple(value)


def _origins(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", v)
        for v in value
    ):
        raise ConfigError(f"{key}: must be a list of origins such as 'https://admin.example:8443'")
    return tuple(value)


def _path(value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty path string")
    return Path(value)


def _directory(value: Any, key: str) -> Path:
    # Children run in "/", so a relative directory would mean something else to them.
    return _path(value, key).absolute()


def _absolute_path(value: Any, key: str) -> Path:
    path = _path(value, key)
    if not path.is_absolute():
        raise ConfigError(f"{key}: must be an absolute path")
    return path


def _paths(value: Any, key: str) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of absolute directory paths")
    return tuple(_absolute_path(v, key) for v in value)


def _optional_path(value: Any, key: str) -> Path | None:
    if value == "":
        return None
    return _path(value, key).absolute()


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false")
    return value


def _int(low: int, high: int) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key}: must be a whole number from {low} to {high}")
        return value

    return check


def _seconds(low: float, high: float) -> Callable[[Any, str], float]:
    def check(value: Any, key: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ConfigError(f"{key}: must be a number of seconds from {low:g} to {high:g}")
        return float(value)

    return check


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(repr(c) for c in choices)}")
        return str(value)

    return check


#: A host name (labels of letters, digits, '-' and '_', joined by dots) or an IP address.
_HOSTNAME: Final = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?"
    r"|[0-9A-Fa-f:.]{2,45}"
)


def _hostname(value: Any, key: str) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _HOSTNAME.fullmatch(value):
        raise ConfigError(f"{key}: must be an ASCII host name or an IP address")
    return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any, key: str) -> tuple[Network, ...]:
    message = f"{key}: must be a list of addresses or networks such as '127.0.0.1' or '10.0.0.0/8'"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(message)
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in value)
    except ValueError:
        raise ConfigError(message) from None


KEYS: Final = (
    Key(
        "daemon",
        "listen",
        list(DEFAULT_LISTEN),
        _string_list,
        "Twisted server endpoints to listen on; every one serves the WebSocket API at / and "
        "REST at /<namespace>/<name>. An ssl: endpoint without privateKey= uses the daemon's "
        "own certificate from the state directory. The defaults listen on every address.",
    ),
    Key(
        "daemon",
        "allowed_origins",
        [],
        _origins,
        "Browser origins (scheme://host[:port]) allowed to open the WebSocket. Programs send "
        "no Origin header and sysadm's Qt client sends 'sysadm-client'; both are always let "
        "in. Any other origin, 'null' included, is refused.",
    ),
    Key(
        "daemon",
        "state_dir",
        "/var/db/sysadmd",
        _directory,
        "Directory for everything the daemon writes (its TLS key and certificate, the "
        "simulator's state); a relative path is taken from the daemon's working directory.",
    ),
    Key(
        "daemon",
        "hostname",
        None,
        _hostname,
        "Host name put in the daemon's own certificate; defaults to this machine's name.",
    ),
    Key(
        "iohyve",
        "path",
        "/usr/local/sbin/iohyve",
        _absolute_path,
        "The iohyve executable.",
    ),
    Key(
        "iohyve",
        "rc_conf",
        "/etc/rc.conf",
        _absolute_path,
        "The rc.conf file whose iohyve_flags line setup writes and issetup reads.",
    ),
    Key("iohyve", "zpool", "/sbin/zpool", _absolute_path, "The zpool executable."),
    Key("iohyve", "ifconfig", "/sbin/ifconfig", _absolute_path, "The ifconfig executable."),
    Key(
        "iohyve",
        "sysctl",
        "/sbin/sysctl",
        _absolute_path,
        "The sysctl executable (list-devices reads a driver's description from it).",
    ),
    Key(
        "iohyve",
        "iso_root",
        "/iohyve/ISO",
        _absolute_path,
        "Where iohyve's ISO datasets are mounted; the daemon measures download progress "
        "from the files growing there.",
    ),
    Key(
        "iohyve",
        "simulate",
        False,
        _bool,
        "Drive the bundled iohyve simulator (state under <state_dir>/simulator) instead of "
        "iohyve, so the daemon runs on a machine without bhyve.",
    ),
    Key(
        "iohyve",
        "simulator_profile",
        "0.7.9",
        _choice(*PROFILES),
        "Which iohyve release the simulator imitates.",
    ),
    Key(
        "iohyve",
        "timeout",
        120,
        _seconds(1, 3600),
        "Seconds an iohyve command other than fetch may run before it is stopped.",
    ),
    Key(
        "iohyve",
        "list_cache",
        1.0,
        _seconds(0, 60),
        "Seconds a guest list is reused by later listvms calls; any change asked for since "
        "makes the next call list again, and 0 shares only a list still running. While a "
        "newer list runs, callers get the previous one if it is less than twice as old.",
    ),
    Key(
        "auth",
        "backend",
        "auto",
        _choice("auto", "pam", "local"),
        "Where passwords are checked: 'pam' (system accounts: root and members of wheel are "
        "admins, members of operator are operators), 'local' (the account database in "
        "<state_dir>/accounts.json, managed with sysadmd-admin), or 'auto': on a real host "
        "both, the account database first (a name found there is decided there), then PAM; "
        "local alone in simulate mode. 'sysadmd-admin backends' says which.",
    ),
    Key("auth", "session_idle", 900, _seconds(60, 86400), "Seconds a session lives unused."),
    Key(
        "auth",
        "session_lifetime",
        28800,
        _seconds(1, 30 * 86400),
        "Seconds a session lives at most, however much it is used (a few seconds are "
        "allowed, to see sessions end in tests).",
    ),
    Key(
        "auth",
        "lockout_failures",
        5,
        _int(1, 1000),
        "Failed logins from one address, or for one user name, that block further logins.",
    ),
    Key(
        "auth",
        "lockout_window",
        600,
        _seconds(1, 86400),
        "Seconds within which those failures must fall.",
    ),
    Key("auth", "lockout_block", 3600, _seconds(1, 7 * 86400), "Seconds a block lasts."),
    Key(
        "auth",
        "audit_log",
        "",
        _optional_path,
        "JSON-lines audit log of logins and of every call that changes something (mode "
        "0600); empty means <state_dir>/audit.log.",
    ),
    Key(
        "limits",
        "connections",
        256,
        _int(1, 100_000),
        "Open connections at most, over all listeners.",
    ),
    Key(
        "limits",
        "connections_per_address",
        8,
        _int(1, 100_000),
        "Open connections at most from one address (an IPv6 client counts by its /64 network).",
    ),
    Key(
        "limits",
        "connections_reserved",
        16,
        _int(0, 100_000),
        "Of limits.connections, how many only the addresses in metrics.allow may use, so "
        "that /livez, /readyz and /metrics still answer them when others hold every other "
        "connection. Must be less than limits.connections.",
    ),
    Key(
        "limits",
        "handshake_timeout",
        5,
        _seconds(1, 600),
        "Seconds a new connection has to finish its TLS handshake and send the first line "
        "of its first request; a connection that has not is closed.",
    ),
    Key(
        "limits",
        "login_timeout",
        30,
        _seconds(1, 3600),
        "Seconds a WebSocket may stay open without logging in.",
    ),
    Key(
        "limits",
        "idle_timeout",
        1800,
        _seconds(10, 86400),
        "Seconds a logged-in WebSocket may stay silent before it is closed.",
    ),
    Key(
        "limits",
        "message_size",
        65536,
        _int(1024, 16 * 1024 * 1024),
        "Largest WebSocket message and REST body, in bytes, once logged in (before a login "
        "WebSocket messages are limited to 8 KiB).",
    ),
    Key(
        "limits",
        "in_flight",
        8,
        _int(1, 1000),
        "Requests one WebSocket may have waiting for replies; more are refused with 429.",
    ),
    Key(
        "limits",
        "request_deadline",
        10,
        _seconds(1, 600),
        "Seconds a client has to send a whole REST request.",
    ),
    Key(
        "fetch",
        "concurrency",
        1,
        _int(1, 16),
        "How many ISO fetches run at the same time.",
    ),
    Key(
        "fetch",
        "queue_size",
        16,
        _int(1, 1000),
        "How many fetches may wait; a fetchiso beyond that is refused with 503.",
    ),
    Key(
        "fetch",
        "timeout",
        21600,
        _seconds(10, 7 * 86400),
        "Seconds one fetch may run before it is stopped.",
    ),
    Key(
        "fetch",
        "grace",
        30,
        _seconds(0, 3600),
        "Seconds running fetches get to finish when the daemon stops, before they are ended "
        "(they are then journalled as interrupted).",
    ),
    Key(
        "fetch",
        "requeue",
        True,
        _bool,
        "Queue again, at start, the fetches that were still queued when the daemon stopped.",
    ),
    Key(
        "fetch",
        "history",
        100,
        _int(0, 100_000),
        "Finished fetches kept for rpc/dispatcher list (and in the journal, for 7 days).",
    ),
    Key(
        "events",
        "guests_interval",
        3,
        _seconds(0.5, 3600),
        "Seconds between two looks at the guest list while a client listens to the 'guests' event.",
    ),
    Key(
        "fetch",
        "file_roots",
        [],
        _paths,
        "Directories whose regular files may be fetched with file:// URLs; empty refuses "
        "every file:// URL.",
    ),
    Key(
        "log",
        "file",
        "",
        _optional_path,
        "A file the daemon also writes its log to, reopened on SIGHUP (for newsyslog or "
        "logrotate); empty leaves logging to twistd alone (stdout with --nodaemon).",
    ),
    Key(
        "log",
        "format",
        "text",
        _choice("text", "json"),
        "How log.file is written: 'text' (twistd's readable lines) or 'json' (one Twisted "
        "JSON event per line).",
    ),
    Key(
        "log",
        "level",
        "info",
        _choice("debug", "info", "warn", "error", "critical"),
        "The least level of the lines logged (twistd's log and log.file alike): 'debug', "
        "'info', 'warn', 'error' or 'critical'. 'debug' adds a line per child process "
        "(one iohyve list every few seconds while a client listens to 'guests').",
    ),
    Key(
        "log",
        "access",
        False,
        _bool,
        "Log every HTTP request (the WebSocket upgrades and REST calls) in the combined log "
        "format. Off by default: clients poll, and the audit log already records every "
        "login and every change.",
    ),
    Key(
        "metrics",
        "allow",
        ["127.0.0.1", "::1"],
        _networks,
        "Addresses and networks (CIDR) that may read /metrics without a login; anyone else "
        "must log in as for REST (Basic or Bearer).",
    ),
)


@dataclass(frozen=True)
class Config:
    """The daemon's validated settings."""

    listen: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    state_dir: Path
    hostname: str
    iohyve_path: Path
    iohyve_rc_conf: Path
    iohyve_zpool: Path
    iohyve_ifconfig: Path
    iohyve_sysctl: Path
    iohyve_iso_root: Path
    iohyve_simulate: bool
    iohyve_simulator_profile: str
    iohyve_timeout: float
    iohyve_list_cache: float
    auth_backend: str
    auth_session_idle: float
    auth_session_lifetime: float
    auth_lockout_failures: int
    auth_lockout_window: float
    auth_lockout_block: float
    auth_audit_log: Path | None
    limits_connections: int
    limits_connections_per_address: int
    limits_connections_reserved: int
    limits_handshake_timeout: float
    limits_login_timeout: float
    limits_idle_timeout: float
    limits_message_size: int
    limits_in_flight: int
    limits_request_deadline: float
    fetch_concurrency: int
    fetch_queue_size: int
    fetch_timeout: float
    fetch_grace: float
    fetch_requeue: bool
    fetch_history: int
    events_guests_interval: float
    fetch_file_roots: tuple[Path, ...]
    log_file: Path | None
    log_format: str
    log_level: str
    log_access: bool
    metrics_allow: tuple[Network, ...]


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: is not valid TOML: {e}") from None


def _file_values(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    by_section: dict[str, dict[str, Key]] = {}
    for key in KEYS:
        by_section.setdefault(key.section, {})[key.name] = key
    values: dict[str, Any] = {}
    for section, table in document.items():
        keys = by_section.get(section)
        if keys is None:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section} must be a [{section}] table")
        for name, value in table.items():
            if name not in keys:
                raise ConfigError(f"{source}: unknown key {section}.{name}")
            values[keys[name].dotted] = value
    return values


def load(config_file: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the configuration from the defaults, a TOML file and flag overrides.

    ``overrides`` maps dotted keys (``"daemon.listen"``) to values given on the
    command line; they win over the file.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_file_values(_read_file(config_file), str(config_file)))
    values.update(overrides or {})
    settings: dict[str, Any] = {}
    for key in KEYS:
        raw = values.get(key.dotted, key.default)
        if raw is None and key.dotted == "daemon.hostname":
            raw = socket.gethostname()
        settings[key.attribute] = key.check(raw, key.dotted)
    return Config(**settings)


def documented_keys() -> Sequence[Key]:
    """Every key, for documentation and the test that checks the sample file."""
    return KEYS
