"""``sysadmd-admin``: the account commands of :mod:`sysadmd.auth.admin`, and ``fleet``.

``sysadmd-admin fleet key`` prints the host's public key (making the key, mode 0600, if the
daemon has not yet); ``sysadmd-admin fleet router-config DIR`` writes a Crossbar.io node
directory for the fleet's router (``crossbar start --cbdir DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Final

from sysadmd.auth.admin import PROG, build_parser
from sysadmd.auth.admin import main as accounts_main
from sysadmd.catalog import all_specs
from sysadmd.config import FLEET_HOST_PATTERN
from sysadmd.fleet._hostkey import HostKeyError, ensure_host_key
from sysadmd.fleet._member import FLEET_EVENTS
from sysadmd.fleet._router import AUTHORIZER_MODULE, AUTHORIZER_SOURCE, User, router_config

_PUBKEY: Final = r"[0-9a-fA-F]{64}"


class FleetAdminError(Exception):
    """A fleet command cannot be carried out; the message is one line."""


def _key(accounts: object, args: argparse.Namespace) -> None:
    try:
        key, created = ensure_host_key(args.state_dir.absolute())
    except HostKeyError as e:
        raise FleetAdminError(str(e)) from None
    if created:
        print(f"{PROG}: made a new host key in {args.state_dir}", file=sys.stderr)
    print(key.public_hex)


def _host(text: str) -> tuple[str, str]:
    name, _, key = text.partition("=")
    if not re.fullmatch(FLEET_HOST_PATTERN, name, re.ASCII) or not re.fullmatch(_PUBKEY, key):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME=PUBKEY, a host name (letters, digits, '_', '-') and the "
            "64 hex digits `sysadmd-admin fleet key` prints on that host"
        )
    return name, key.lower()


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: give a TCP port from 1 to 65535")
    return int(text)


def _user(text: str) -> User:
    parts = text.split(":")
    if (
        len(parts) not in (2, 3)
        or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", parts[0])
        or parts[1] not in ("admin", "operator")
        or (len(parts) == 3 and not re.fullmatch(_PUBKEY, parts[2]))
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME:ROLE or NAME:ROLE:PUBKEY, ROLE admin or operator, PUBKEY "
            "64 hex digits (without one the user gets a ticket)"
        )
    return User(parts[0], parts[1], parts[2].lower() if len(parts) == 3 else None)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _router_config(accounts: object, args: argparse.Namespace) -> None:
    hosts = dict(args.host)
    if len(hosts) != len(args.host):
        raise FleetAdminError("a host is named twice")
    users: list[User] = args.user
    names = [u.authid for u in users]
    if len(set(names)) != len(names) or set(names) & set(hosts):
        raise FleetAdminError("a user is named twice, or like a host")
    if (args.tls_key is None) != (args.tls_certificate is None):
        raise FleetAdminError("give both --tls-key and --tls-certificate, or neither")
    config, tickets = router_config(
        realm=args.realm,
        port=args.port,
        interface=args.interface,
        hosts=hosts,
        users=users,
        specs=all_specs(),
        events=FLEET_EVENTS,
        tls_key=str(args.tls_key.absolute()) if args.tls_key else None,
        tls_certificate=str(args.tls_certificate.absolute()) if args.tls_certificate else None,
    )
    directory: Path = args.directory
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(directory / "config.json", json.dumps(config, indent=2) + "\n")
    (directory / f"{AUTHORIZER_MODULE}.py").write_text(AUTHORIZER_SOURCE, encoding="utf-8")
    print(
        f"{PROG}: wrote {directory / 'config.json'}; run: crossbar start --cbdir {directory}",
        file=sys.stderr,
    )
    for user, ticket in tickets.items():
        print(f"ticket {user} {ticket}")


def build_fleet_parser() -> argparse.ArgumentParser:
    """``sysadmd-admin``'s parser, with the ``fleet`` commands."""
    parser = build_parser()
    parser.description = "Manage the local accounts of sysadmd, and its fleet membership."
    areas = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fleet = areas.add_parser("fleet", help="this host's fleet key; the router's configuration")
    actions = fleet.add_subparsers(dest="action", required=True, metavar="ACTION")
    key = actions.add_parser(
        "key", help="print the host's public key (made now, mode 0600, if missing)"
    )
    key.set_defaults(command=_key)
    router = actions.add_parser(
        "router-config",
        help="write a Crossbar.io node directory (config.json) for the fleet's router; "
        "prints a ticket for each user without a key",
    )
    router.add_argument("directory", type=Path, metavar="DIR", help="the node directory to write")
    router.add_argument("--realm", default="sysadmd", help="the realm (default: %(default)s)")
    router.add_argument("--port", type=_port, default=8443, help="TCP port (default: %(default)s)")
    router.add_argument(
        "--interface", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    router.add_argument(
        "--host",
        type=_host,
        action="append",
        default=[],
        metavar="NAME=PUBKEY",
        help="a host of the fleet and its public key (repeat for each host)",
    )
    router.add_argument(
        "--user",
        type=_user,
        action="append",
        default=[],
        metavar="NAME:ROLE[:PUBKEY]",
        help="a user (admin or operator), with a cryptosign public key or else a ticket",
    )
    router.add_argument("--tls-key", type=Path, metavar="FILE", help="the router's TLS key (PEM)")
    router.add_argument(
        "--tls-certificate", type=Path, metavar="FILE", help="the router's certificate (PEM)"
    )
    router.set_defaults(command=_router_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``sysadmd-admin`` with ``argv``; the exit status."""
    try:
        return accounts_main(argv, build_fleet_parser())
    except FleetAdminError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
