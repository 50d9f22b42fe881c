"""The daemon's configuration: a TOML file, overridden by command-line flags.

Every key is declared once, as a field of :class:`Config` with its type, section, default,
check and meaning (:func:`_key`); the :data:`KEYS` table, loading, validation, error
messages and the test that checks ``conf/sysadmd.toml`` against the defaults follow from
those fields. A bad value
raises :class:`ConfigError` with one line naming the key and what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

DEFAULT_LISTEN: Final = ("ssl:12150", "ssl:12151")
PROFILES: Final = ("0.7.3", "0.7.9")
#: The VM managers the daemon can serve, and what ``[host] backend`` may say.
BACKENDS: Final = ("auto", "iohyve", "vm-bhyve")
#: The vm-bhyve dialects the simulator imitates (tagged 1.6.x, 1.7.x, the development line).
VM_BHYVE_VERSIONS: Final = ("1.6", "1.7", "dev")


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
        return self.name if self.section == "daemon" else f"{_prefix(self.section)}{self.name}"


def _prefix(section: str) -> str:
    """The start of the attribute names of ``section``'s keys (``vm-bhyve``: ``vm_bhyve_``)."""
    return "" if section == "daemon" else section.replace("-", "_") + "_"


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


#: A fleet host name: a guest name's characters without the dot, which separates a WAMP
#: URI's components (the host is one component of ``sysadmd.<host>.<namespace>.<name>``).
FLEET_HOST_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"


def _fleet_host(value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(FLEET_HOST_PATTERN, value, re.ASCII):
        raise ConfigError(
            f"{key}: must be 1 to 128 ASCII letters, digits, '_' or '-', starting with a "
            "letter or digit (no dots: the name is one component of the fleet's URIs)"
        )
    return value


def default_fleet_host() -> str:
    """This machine's name up to its first dot, the default of ``fleet.host``."""
    return socket.gethostname().split(".", 1)[0]


def _router_url(value: Any, key: str) -> str:
    if value == "":
        return ""
    if not isinstance(value, str) or not re.fullmatch(
        r"wss?://[A-Za-z0-9._-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?", value
    ):
        raise ConfigError(
            f"{key}: must be empty or a WebSocket URL such as 'wss://router.example:8443/ws'"
        )
    return value


def _public_url(value: Any, key: str) -> str:
    if value == "":
        return ""
    matched = (
        re.fullmatch(r"https?://[A-Za-z0-9._-]+(?::([0-9]{1,5}))?(/[A-Za-z0-9._~/-]*)?", value)
        if isinstance(value, str) and len(value) <= 512
        else None
    )
    if matched is None:
        raise ConfigError(
            f"{key}: must be empty or this host's public base URL, such as "
            "'https://bhyve1.example:12150' (http or https, a host name or IPv4 address, an "
            "optional port and path)"
        )
    if matched.group(1) is not None and not 0 < int(matched.group(1)) < 65536:
        raise ConfigError(f"{key}: the port must be from 1 to 65535")
    return str(value).rstrip("/")


def _realm(value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", value):
        raise ConfigError(f"{key}: must be a WAMP realm name such as 'sysadmd'")
    return value


def _fingerprint(value: Any, key: str) -> str:
    if value == "":
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a SHA-256 fingerprint (64 hex digits, ':' allowed)")
    digits = value.replace(":", "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digits):
        raise ConfigError(f"{key}: must be a SHA-256 fingerprint (64 hex digits, ':' allowed)")
    return digits


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any, key: str) -> tuple[Network, ...]:
    message = f"{key}: must be a list of addresses or networks such as '127.0.0.1' or '10.0.0.0/8'"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(message)
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in value)
    except ValueError:
        raise ConfigError(message) from None


_SPEC: Final = "sysadmd.config"


def _key(
    section: str, default: Any, check: Callable[[Any, str], Any], doc: str
) -> dict[str, object]:
    """The metadata that makes a :class:`Config` field the key ``section.<name>`` of the file.

    The field's name is the key's name, after ``<section>_`` for every section but
    ``daemon``; :data:`KEYS` is made from these declarations.
    """
    return {_SPEC: (section, default, check, doc)}


@dataclass(frozen=True)
class Config:
    """The daemon's validated settings; each field declares its key, default, check and doc."""

    listen: tuple[str, ...] = field(
        metadata=_key(
            "daemon",
            list(DEFAULT_LISTEN),
            _string_list,
            "Twisted server endpoints to listen on; every one serves the WebSocket API at / and "
            "REST at /<namespace>/<name>. An ssl: endpoint without privateKey= uses the daemon's "
            "own certificate from the state directory. The defaults listen on every address.",
        )
    )
    allowed_origins: tuple[str, ...] = field(
        metadata=_key(
            "daemon",
            [],
            _origins,
            "Browser origins (scheme://host[:port]) allowed to open the WebSocket. Programs send "
            "no Origin header and sysadm's Qt client sends 'sysadm-client'; both are always let "
            "in. Any other origin, 'null' included, is refused.",
        )
    )
    state_dir: Path = field(
        metadata=_key(
            "daemon",
            "/var/db/sysadmd",
            _directory,
            "Directory for everything the daemon writes (its TLS key and certificate, the "
            "simulator's state); a relative path is taken from the daemon's working directory.",
        )
    )
    hostname: str = field(
        metadata=_key(
            "daemon",
            None,
            _hostname,
            "Host name put in the daemon's own certificate; defaults to this machine's name.",
        )
    )
    host_backend: str = field(
        metadata=_key(
            "host",
            "auto",
            _choice(*BACKENDS),
            "The VM manager whose guests the API serves: 'iohyve', 'vm-bhyve', or 'auto': "
            "vm-bhyve if its executable (vm-bhyve.path) exists and rc.conf (vm-bhyve.rc_conf) "
            'says vm_enable="YES", else iohyve. In simulate mode the chosen manager is '
            "simulated, and 'auto' means iohyve.",
        )
    )
    iohyve_path: Path = field(
        metadata=_key("iohyve", "/usr/local/sbin/iohyve", _absolute_path, "The iohyve executable.")
    )
    iohyve_rc_conf: Path = field(
        metadata=_key(
            "iohyve",
            "/etc/rc.conf",
            _absolute_path,
            "The rc.conf file whose iohyve_flags line setup writes and issetup reads.",
        )
    )
    iohyve_zpool: Path = field(
        metadata=_key("iohyve", "/sbin/zpool", _absolute_path, "The zpool executable.")
    )
    iohyve_ifconfig: Path = field(
        metadata=_key("iohyve", "/sbin/ifconfig", _absolute_path, "The ifconfig executable.")
    )
    iohyve_sysctl: Path = field(
        metadata=_key(
            "iohyve",
            "/sbin/sysctl",
            _absolute_path,
            "The sysctl executable (list-devices reads a driver's description from it).",
        )
    )
    iohyve_iso_root: Path = field(
        metadata=_key(
            "iohyve",
            "/iohyve/ISO",
            _absolute_path,
            "Where iohyve's ISO datasets are mounted; the daemon measures download progress "
            "from the files growing there.",
        )
    )
    iohyve_simulate: bool = field(
        metadata=_key(
            "iohyve",
            False,
            _bool,
            "Drive the bundled iohyve simulator (state under <state_dir>/simulator) instead of "
            "iohyve, so the daemon runs on a machine without bhyve.",
        )
    )
    iohyve_simulator_profile: str = field(
        metadata=_key(
            "iohyve", "0.7.9", _choice(*PROFILES), "Which iohyve release the simulator imitates."
        )
    )
    iohyve_timeout: float = field(
        metadata=_key(
            "iohyve",
            120,
            _seconds(1, 3600),
            "Seconds an iohyve command other than fetch may run before it is stopped.",
        )
    )
    iohyve_list_cache: float = field(
        metadata=_key(
            "iohyve",
            1.0,
            _seconds(0, 60),
            "Seconds a guest list is reused by later listvms calls; any change asked for since "
            "makes the next call list again, and 0 shares only a list still running. While a "
            "newer list runs, callers get the previous one if it is less than twice as old.",
        )
    )
    vm_bhyve_path: Path = field(
        metadata=_key("vm-bhyve", "/usr/local/sbin/vm", _absolute_path, "vm-bhyve's vm executable.")
    )
    vm_bhyve_sysrc: Path = field(
        metadata=_key(
            "vm-bhyve",
            "/usr/sbin/sysrc",
            _absolute_path,
            "The sysrc executable, which writes guest configurations and rc.conf's vm_* lines.",
        )
    )
    vm_bhyve_rc_conf: Path = field(
        metadata=_key(
            "vm-bhyve",
            "/etc/rc.conf",
            _absolute_path,
            "The rc.conf that holds vm_enable, vm_dir and vm_list.",
        )
    )
    vm_bhyve_simulator_version: str = field(
        metadata=_key(
            "vm-bhyve",
            "1.7",
            _choice(*VM_BHYVE_VERSIONS),
            "Which vm-bhyve line the simulator imitates in simulate mode: '1.6', '1.7' or "
            "'dev' (the development line).",
        )
    )
    auth_backend: str = field(
        metadata=_key(
            "auth",
            "auto",
            _choice("auto", "pam", "local"),
            "Where passwords are checked: 'pam' (system accounts: root and members of wheel are "
            "admins, members of operator are operators), 'local' (the account database in "
            "<state_dir>/accounts.json, managed with sysadmd-admin), or 'auto': on a real host "
            "both, the account database first (a name found there is decided there), then PAM; "
            "local alone in simulate mode. 'sysadmd-admin backends' says which.",
        )
    )
    auth_session_idle: float = field(
        metadata=_key("auth", 900, _seconds(60, 86400), "Seconds a session lives unused.")
    )
    auth_session_lifetime: float = field(
        metadata=_key(
            "auth",
            28800,
            _seconds(1, 30 * 86400),
            "Seconds a session lives at most, however much it is used (a few seconds are "
            "allowed, to see sessions end in tests).",
        )
    )
    auth_lockout_failures: int = field(
        metadata=_key(
            "auth",
            5,
            _int(1, 1000),
            "Failed logins from one address, or for one user name, that block further logins.",
        )
    )
    auth_lockout_window: float = field(
        metadata=_key(
            "auth", 600, _seconds(1, 86400), "Seconds within which those failures must fall."
        )
    )
    auth_lockout_block: float = field(
        metadata=_key("auth", 3600, _seconds(1, 7 * 86400), "Seconds a block lasts.")
    )
    auth_audit_log: Path | None = field(
        metadata=_key(
            "auth",
            "",
            _optional_path,
            "JSON-lines audit log of logins and of every call that changes something (mode "
            "0600); empty means <state_dir>/audit.log.",
        )
    )
    limits_connections: int = field(
        metadata=_key(
            "limits", 256, _int(1, 100_000), "Open connections at most, over all listeners."
        )
    )
    limits_connections_per_address: int = field(
        metadata=_key(
            "limits",
            8,
            _int(1, 100_000),
            "Open connections at most from one address (an IPv6 client counts by its /64 network).",
        )
    )
    limits_connections_reserved: int = field(
        metadata=_key(
            "limits",
            16,
            _int(0, 100_000),
            "Of limits.connections, how many only the addresses in metrics.allow may use, so "
            "that /livez, /readyz and /metrics still answer them when others hold every other "
            "connection. Must be less than limits.connections.",
        )
    )
    limits_handshake_timeout: float = field(
        metadata=_key(
            "limits",
            5,
            _seconds(1, 600),
            "Seconds a new connection has to finish its TLS handshake and send the first line "
            "of its first request; a connection that has not is closed.",
        )
    )
    limits_login_timeout: float = field(
        metadata=_key(
            "limits", 30, _seconds(1, 3600), "Seconds a WebSocket may stay open without logging in."
        )
    )
    limits_idle_timeout: float = field(
        metadata=_key(
            "limits",
            1800,
            _seconds(10, 86400),
            "Seconds a logged-in WebSocket may stay silent before it is closed.",
        )
    )
    limits_message_size: int = field(
        metadata=_key(
            "limits",
            65536,
            _int(1024, 16 * 1024 * 1024),
            "Largest WebSocket message and REST body, in bytes, once logged in (before a login "
            "WebSocket messages are limited to 8 KiB).",
        )
    )
    limits_in_flight: int = field(
        metadata=_key(
            "limits",
            8,
            _int(1, 1000),
            "Requests one WebSocket may have waiting for replies; more are refused with 429.",
        )
    )
    limits_request_deadline: float = field(
        metadata=_key(
            "limits", 10, _seconds(1, 600), "Seconds a client has to send a whole REST request."
        )
    )
    fetch_concurrency: int = field(
        metadata=_key("fetch", 1, _int(1, 16), "How many ISO fetches run at the same time.")
    )
    fetch_queue_size: int = field(
        metadata=_key(
            "fetch",
            16,
            _int(1, 1000),
            "How many fetches may wait; a fetchiso beyond that is refused with 503.",
        )
    )
    fetch_timeout: float = field(
        metadata=_key(
            "fetch",
            21600,
            _seconds(10, 7 * 86400),
            "Seconds one fetch may run before it is stopped.",
        )
    )
    fetch_grace: float = field(
        metadata=_key(
            "fetch",
            30,
            _seconds(0, 3600),
            "Seconds running fetches get to finish when the daemon stops, before they are ended "
            "(they are then journalled to be resumed at the next start).",
        )
    )
    fetch_requeue: bool = field(
        metadata=_key(
            "fetch",
            True,
            _bool,
            "Queue again, at start, the fetches that were still queued when the daemon stopped.",
        )
    )
    fetch_retries: int = field(
        metadata=_key(
            "fetch",
            3,
            _int(0, 100),
            "Times an interrupted fetch (a network failure, its download process killed, the "
            "daemon restarted) is resumed or started again before it fails.",
        )
    )
    fetch_history: int = field(
        metadata=_key(
            "fetch",
            100,
            _int(0, 100_000),
            "Finished fetches kept for rpc/dispatcher list (and in the journal, for 7 days).",
        )
    )
    events_guests_interval: float = field(
        metadata=_key(
            "events",
            3,
            _seconds(0.5, 3600),
            "Seconds between two looks at the guest list while a client listens to the "
            "'guests' event.",
        )
    )
    console_interval: float = field(
        metadata=_key(
            "console",
            2,
            _seconds(0.5, 3600),
            "Seconds between two looks at which guests run, to open or close their consoles.",
        )
    )
    console_history: int = field(
        metadata=_key(
            "console",
            262144,
            _int(65536, 16 * 1024 * 1024),
            "Bytes of each guest's console output kept in memory and sent to a new viewer.",
        )
    )
    console_log_size: int = field(
        metadata=_key(
            "console",
            4194304,
            _int(65536, 1024 * 1024 * 1024),
            "Bytes of a guest's console log (<state_dir>/console/<guest>.log) before it is "
            "rotated.",
        )
    )
    console_log_keep: int = field(
        metadata=_key("console", 2, _int(0, 100), "Rotated console logs kept per guest.")
    )
    console_viewers_per_guest: int = field(
        metadata=_key("console", 16, _int(1, 1000), "Console viewers of one guest at a time.")
    )
    console_viewers_per_user: int = field(
        metadata=_key("console", 8, _int(1, 1000), "Console connections of one user at a time.")
    )
    console_viewer_buffer: int = field(
        metadata=_key(
            "console",
            1048576,
            _int(4096, 64 * 1024 * 1024),
            "Bytes queued for one console viewer before it is closed (1008) as too slow.",
        )
    )
    fetch_file_roots: tuple[Path, ...] = field(
        metadata=_key(
            "fetch",
            [],
            _paths,
            "Directories whose regular files may be fetched with file:// URLs; empty refuses "
            "every file:// URL.",
        )
    )
    fetch_upload_max: int = field(
        metadata=_key(
            "fetch",
            64 * 1024**3,
            _int(1, 2**62),
            "Bytes an ISO upload (PUT /iso/<name>) may have; a larger one is refused with 507 "
            "before any byte is written.",
        )
    )
    log_file: Path | None = field(
        metadata=_key(
            "log",
            "",
            _optional_path,
            "A file the daemon also writes its log to, reopened on SIGHUP (for newsyslog or "
            "logrotate); empty leaves logging to twistd alone (stdout with --nodaemon).",
        )
    )
    log_format: str = field(
        metadata=_key(
            "log",
            "text",
            _choice("text", "json"),
            "How log.file is written: 'text' (twistd's readable lines) or 'json' (one Twisted "
            "JSON event per line).",
        )
    )
    log_level: str = field(
        metadata=_key(
            "log",
            "info",
            _choice("debug", "info", "warn", "error", "critical"),
            "The least level of the lines logged (twistd's log and log.file alike): 'debug', "
            "'info', 'warn', 'error' or 'critical'. 'debug' adds a line per child process "
            "(one iohyve list every few seconds while a client listens to 'guests').",
        )
    )
    log_access: bool = field(
        metadata=_key(
            "log",
            False,
            _bool,
            "Log every HTTP request (the WebSocket upgrades and REST calls) in the combined log "
            "format. Off by default: clients poll, and the audit log already records every "
            "login and every change.",
        )
    )
    fleet_router: str = field(
        metadata=_key(
            "fleet",
            "",
            _router_url,
            "The WAMP router (Crossbar.io) to join, as a ws:// or wss:// URL; empty: no fleet. "
            "The daemon keeps serving its own listeners either way.",
        )
    )
    fleet_realm: str = field(
        metadata=_key("fleet", "sysadmd", _realm, "The router realm the daemon joins.")
    )
    fleet_host: str = field(
        metadata=_key(
            "fleet",
            None,
            _fleet_host,
            "This host's name in the fleet, and its cryptosign authid: its procedures are "
            "sysadmd.<host>.<namespace>.<name>. Letters, digits, '_' and '-'; defaults to "
            "this machine's name up to its first dot.",
        )
    )
    fleet_url: str = field(
        metadata=_key(
            "fleet",
            "",
            _public_url,
            "This host's public base URL (http or https), such as "
            "'https://bhyve1.example:12150': published with the host's fleet.info, so that the "
            "fleet view links each guest to its console on this host's own dashboard; empty: "
            "no link.",
        )
    )
    fleet_ca_file: Path | None = field(
        metadata=_key(
            "fleet",
            "",
            _optional_path,
            "PEM file of the CA(s) that a wss:// router's certificate must chain to; empty "
            "uses the system's trust store (unless fleet.fingerprint is set).",
        )
    )
    fleet_fingerprint: str = field(
        metadata=_key(
            "fleet",
            "",
            _fingerprint,
            "SHA-256 fingerprint of the router's certificate, pinned instead of a CA; empty: "
            "no pin.",
        )
    )
    metrics_allow: tuple[Network, ...] = field(
        metadata=_key(
            "metrics",
            ["127.0.0.1", "::1"],
            _networks,
            "Addresses and networks (CIDR) that may read /metrics without a login; anyone else "
            "must log in as for REST (Basic or Bearer).",
        )
    )


def _keys() -> tuple[Key, ...]:
    keys = []
    for declared in fields(Config):
        section, default, check, doc = declared.metadata[_SPEC]
        prefix = _prefix(section)
        if not declared.name.startswith(prefix):
            raise TypeError(f"Config.{declared.name} must start with {prefix!r}")
        keys.append(Key(section, declared.name.removeprefix(prefix), default, check, doc))
    return tuple(keys)


#: Every key, in the order of :class:`Config`'s fields.
KEYS: Final = _keys()


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
        if raw is None and key.dotted == "fleet.host":
            raw = default_fleet_host()
        settings[key.attribute] = key.check(raw, key.dotted)
    return Config(**settings)


def documented_keys() -> Sequence[Key]:
    """Every key, for documentation and the test that checks the sample file."""
    return KEYS
