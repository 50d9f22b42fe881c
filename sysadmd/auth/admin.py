"""``sysadmd-admin``: manage the daemon's local accounts from the command line.

::

    sysadmd-admin [--state-dir DIR] [--config FILE] user add NAME --role admin|operator
    sysadmd-admin [--state-dir DIR] [--config FILE] user del NAME
    sysadmd-admin [--state-dir DIR] [--config FILE] user list
    sysadmd-admin [--state-dir DIR] [--config FILE] user passwd NAME
    sysadmd-admin [--state-dir DIR] [--config FILE] user role NAME admin|operator
    sysadmd-admin [--config FILE] backends
    sysadmd-admin [--state-dir DIR] lockout list
    sysadmd-admin [--state-dir DIR] lockout clear (--address IP | --user NAME | --all)

A password is read from standard input when that is not a terminal (one line, without its
newline), so scripts can pipe it in; on a terminal it is asked for twice without echo. The
running daemon sees every change at its next login check, without a restart, and within a
second or two ends every session of a user who was deleted or whose password or role
changed. ``del`` also removes the keys the account registered for ``rpc/auth_ssl``.
Changing the password of ``admin`` (or deleting it) removes the ``initial-admin-password``
file the daemon's first start left.

``backends`` says whose passwords the daemon configured in ``--config`` checks (default:
``/usr/local/etc/sysadmd.toml`` or ``/etc/sysadmd.toml``, whichever exists, else the
defaults). ``user add``, ``passwd`` and ``role`` add a note on standard error when that
daemon does not consult these accounts at all.

The ``lockout`` commands talk to the running daemon through its control socket
(:mod:`sysadmd.auth._control`): ``list`` shows the addresses and user names with failed logins or a
block, ``clear`` lifts a block and forgets the failures.

Exit status: 0 on success, 1 on an error (one line on standard error), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Final

from sysadmd.api import Role, client_address
from sysadmd.auth._accounts import (
    ACCOUNT_ROLES,
    ACCOUNTS_FILE,
    AccountError,
    LocalAccounts,
    validate_name,
)
from sysadmd.auth._control import (
    CONTROL_SOCKET,
    ControlError,
    ControlUnavailable,
    LockoutClear,
    call,
    list_lockout,
)
from sysadmd.auth._keys import KEYS_FILE, KeyStore, KeyStoreError
from sysadmd.auth._sources import LOCAL, consulted, describe
from sysadmd.config import Config, ConfigError
from sysadmd.config import load as load_config

PROG: Final = "sysadmd-admin"
DEFAULT_STATE_DIR: Final = Path("/var/db/sysadmd")
#: Where the daemon's configuration is looked for when --config is not given: the FreeBSD
#: rc.d script's default, then the systemd unit's.
CONFIG_FILES: Final = (Path("/usr/local/etc/sysadmd.toml"), Path("/etc/sysadmd.toml"))

_Command = Callable[[LocalAccounts, argparse.Namespace], None]


def read_password() -> str:
    """The new password: one line of standard input, or typed twice on a terminal.

    :raises AccountError: standard input is empty, or the two typed passwords differ.
    """
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        line = stdin.readline() if stdin is not None else ""
        if not line:
            raise AccountError("no password on standard input")
        return line.removesuffix("\n").removesuffix("\r")
    try:
        first = getpass.getpass("New password: ")
        second = getpass.getpass("Repeat the password: ")
    except EOFError:
        raise AccountError("no password given") from None
    if first != second:
        raise AccountError("the passwords do not match")
    return first


def _names(accounts: LocalAccounts) -> set[str]:
    return {name for name, _ in accounts.users()}


def _add(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    role = Role(args.role)
    # Fail before asking for a password that could not be used.
    validate_name(args.name)
    if args.name in _names(accounts):
        raise AccountError(f"user {args.name} already exists")
    accounts.add(args.name, role, read_password())
    print(f"added user {args.name} with role {role}")
    _note_if_unused(args)


def _config_file(args: argparse.Namespace) -> Path | None:
    """The daemon's configuration file: --config, else the first usual one that exists."""
    if args.config is not None:
        return Path(args.config)
    return next((path for path in CONFIG_FILES if path.exists()), None)


def _daemon_config(args: argparse.Namespace) -> tuple[Config, str]:
    """The configured daemon's settings and where they came from.

    :raises ConfigError: the file cannot be read or holds a bad value.
    """
    path = _config_file(args)
    return load_config(path), str(path) if path is not None else "the defaults"


def _consulted(config: Config) -> tuple[str, ...]:
    return consulted(config.auth_backend, config.iohyve_simulate)


def _note_if_unused(args: argparse.Namespace) -> None:
    """Warn on stderr when the configured daemon never consults the local accounts."""
    try:
        config, source = _daemon_config(args)
    except ConfigError as e:
        print(
            f"{PROG}: note: cannot tell whether the daemon uses these accounts: {e}",
            file=sys.stderr,
        )
        return
    if LOCAL not in _consulted(config):
        print(
            f"{PROG}: note: with auth.backend = {config.auth_backend!r} ({source}) the daemon "
            "does not consult these accounts",
            file=sys.stderr,
        )


def _backends(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    try:
        config, source = _daemon_config(args)
    except ConfigError as e:
        raise AccountError(str(e)) from None
    mode = "simulate mode" if config.iohyve_simulate else "a real host"
    print(
        f"auth.backend = {config.auth_backend!r} on {mode} ({source}): the daemon checks "
        f"{describe(_consulted(config))}"
    )


def _role(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    accounts.set_role(args.name, Role(args.role))
    print(f"user {args.name} now has role {args.role}")
    _note_if_unused(args)


def _delete(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    accounts.delete(args.name)
    print(f"deleted user {args.name}")
    # A key left behind would log in whoever gets this name next.
    removed = KeyStore(args.state_dir.absolute() / KEYS_FILE).remove_user(args.name)
    if removed:
        print(f"removed {removed} registered key{'s' if removed != 1 else ''} of {args.name}")


def _list(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    users = accounts.users()
    width = max([len("NAME")] + [len(name) for name, _ in users])
    print(f"{'NAME':<{width}}  ROLE")
    for name, role in users:
        print(f"{name:<{width}}  {role}")


def _passwd(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    validate_name(args.name)
    if args.name not in _names(accounts):
        raise AccountError(f"no such user: {args.name}")
    accounts.set_password(args.name, read_password())
    print(f"changed the password of user {args.name}")
    _note_if_unused(args)


def _ip_address(text: str) -> str:
    """An address as the daemon counts it (IPv4-mapped IPv6 as IPv4, IPv6 compressed)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return client_address(SimpleNamespace(host=text))


def _control_socket(args: argparse.Namespace) -> Path:
    path: Path = args.state_dir.absolute() / CONTROL_SOCKET
    return path


def _seconds(value: float) -> str:
    seconds = max(1, round(value))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _lockout_list(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    rows = list_lockout(_control_socket(args))
    if not rows:
        print("no failed logins and no blocks")
        return
    width = max([len("KEY")] + [len(row["key"]) for row in rows])
    print(f"{'KIND':<7}  {'KEY':<{width}}  FAILURES  CHECKING  BLOCKED FOR")
    for row in rows:
        blocked = row.get("blocked_for")
        shown = _seconds(blocked) if blocked is not None else "-"
        print(
            f"{row['kind']:<7}  {row['key']:<{width}}  {row['failures']:>8}  "
            f"{row['pending']:>8}  {shown}"
        )


def _lockout_clear(accounts: LocalAccounts, args: argparse.Namespace) -> None:
    path = _control_socket(args)
    if args.all:
        cleared = call(path, LockoutClear, kind="all")["cleared"]
        print(f"cleared the whole lockout ({cleared} entries)")
        return
    kind, key = ("address", args.address) if args.address is not None else ("user", args.user)
    if call(path, LockoutClear, kind=kind, key=key)["cleared"]:
        print(f"cleared {kind} {key}")
    else:
        print(f"{kind} {key} had no failed logins and no block")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sysadmd-admin``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Manage the local accounts of sysadmd.")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"the daemon's state directory, holding {ACCOUNTS_FILE} (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon's configuration, for its auth.backend (default: "
        f"{' or '.join(map(str, CONFIG_FILES))}, whichever exists)",
    )
    areas = parser.add_subparsers(dest="area", required=True, metavar="COMMAND")
    user = areas.add_parser("user", help="manage local accounts")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add", help="create an account; the password comes from stdin or a prompt"
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--role", required=True, choices=[str(role) for role in ACCOUNT_ROLES], help="its role"
    )
    add.set_defaults(command=_add)

    delete = actions.add_parser("del", help="delete an account")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(command=_delete)

    listing = actions.add_parser("list", help="list the accounts and their roles")
    listing.set_defaults(command=_list)

    passwd = actions.add_parser(
        "passwd", help="set a new password; it comes from stdin or a prompt"
    )
    passwd.add_argument("name", metavar="NAME")
    passwd.set_defaults(command=_passwd)

    role = actions.add_parser("role", help="give an account another role; its sessions end")
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=[str(r) for r in ACCOUNT_ROLES], metavar="ROLE")
    role.set_defaults(command=_role)

    backends = areas.add_parser("backends", help="say whose passwords the daemon checks")
    backends.set_defaults(command=_backends)
    lockout = areas.add_parser(
        "lockout", help="show or lift failed-login blocks of the running daemon"
    )
    lockout_actions = lockout.add_subparsers(dest="action", required=True, metavar="ACTION")
    lockout_list = lockout_actions.add_parser(
        "list", help="addresses and user names with failed logins or a block"
    )
    lockout_list.set_defaults(command=_lockout_list)
    lockout_clear = lockout_actions.add_parser("clear", help="lift a block and forget the failures")
    which = lockout_clear.add_mutually_exclusive_group(required=True)
    which.add_argument("--address", metavar="IP", type=_ip_address, help="a client IP address")
    which.add_argument("--user", metavar="NAME", help="a user name")
    which.add_argument("--all", action="store_true", help="every address and user name")
    lockout_clear.set_defaults(command=_lockout_clear)
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run ``sysadmd-admin`` with ``argv`` (default: the process's arguments); the exit status.

    ``parser`` is :func:`build_parser`'s, or one a layer above made from it with more
    commands (``sysadmd.fleet.admin`` adds ``fleet``).
    """
    args = (parser or build_parser()).parse_args(argv)
    accounts = LocalAccounts(args.state_dir.absolute() / ACCOUNTS_FILE)
    command: _Command = args.command
    try:
        command(accounts, args)
    except (AccountError, KeyStoreError, ControlError, ControlUnavailable) as e:
        return _error(str(e))
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
