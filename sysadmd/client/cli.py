"""``sysadm``: the command-line client of sysadmd.

``sysadm login HOST[:PORT]`` logs in and keeps the session's token (never the password) in
the configuration directory (``~/.config/sysadm``, or ``--config-dir`` /
``$SYSADM_CONFIG_DIR``), mode 0600; the other commands use that session. In fleet mode
(``--router URL`` or a profile kept by ``sysadm router save``, ``--profile NAME``) they reach
the host ``-H NAME`` through a WAMP router instead. Every command prints its result on
stdout and exits 0, or prints one line on stderr and exits non-zero:

* 1: the daemon refused the request (its code and message), or a fetch failed;
* 2: the command line is wrong;
* 3: the daemon cannot be reached, or its certificate is not the one trusted;
* 4: not logged in, or the session expired or was revoked;
* 130: interrupted.

Each command runs its work on the Twisted reactor with :func:`twisted.internet.task.react`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import click
from cryptography import x509
from rich import box
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.internet.task import deferLater, react

from sysadmd.client import console
from sysadmd.client.client import ACTIVE_STATUSES, DEFAULT_PORT, Client, Task, upload_iso
from sysadmd.client.errors import (
    ClientError,
    ConnectionFailed,
    SessionExpired,
    TaskFailed,
    UnknownHost,
)
from sysadmd.client.fleet import FleetClient, HostThroughRouter, read_key
from sysadmd.client.profiles import (
    ProfileError,
    Profiles,
    RouterProfile,
    check_profile_name,
    check_realm,
    check_router_url,
)
from sysadmd.client.tls import (
    CATLS,
    KnownHosts,
    PinnedTLS,
    TLSMode,
    default_config_dir,
    fingerprint_of_der,
    format_address,
    normalize_fingerprint,
)
from sysadmd.shared import FileStore

__all__ = ["main"]

EXIT_API: Final = 1
EXIT_USAGE: Final = 2
EXIT_CONNECTION: Final = 3
EXIT_SESSION: Final = 4
EXIT_INTERRUPTED: Final = 130

SESSION_FILE: Final = "session.json"
KNOWN_HOSTS_FILE: Final = "known_hosts"
_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700

_out = Console(highlight=False, soft_wrap=False)


class CommandError(ClientError):
    """A failure of the command itself, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_API) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Settings and the saved session


@dataclass(frozen=True)
class SavedSession:
    """What ``sysadm login`` keeps: where, who, the token, and how the server is trusted."""

    host: str
    port: int
    user: str
    token: str
    ca_file: str | None = None

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


@dataclass(frozen=True)
class Settings:
    """The global options."""

    config_dir: Path
    known_hosts_file: Path | None
    timeout: float
    #: Fleet mode: the router's URL, its realm, who logs in to it, and the host (or ``all``).
    router: str | None = None
    realm: str = "sysadmd"
    router_user: str | None = None
    router_ca_file: Path | None = None
    router_key: Path | None = None
    fleet_host: str | None = None

    @property
    def known_hosts(self) -> KnownHosts:
        return KnownHosts(self.known_hosts_file or self.config_dir / KNOWN_HOSTS_FILE)

    @property
    def session_path(self) -> Path:
        return self.config_dir / SESSION_FILE

    @property
    def _session_file(self) -> FileStore[SavedSession | None]:
        return FileStore(
            self.session_path,
            parse=self._parse_session,
            serialize=_serialize_session,
            empty=lambda: None,
            invalid=CommandError,
            mode=_FILE_MODE,
            directory_mode=_DIR_MODE,
        )

    def _parse_session(self, raw: bytes) -> SavedSession | None:
        try:
            data = json.loads(raw)
            return SavedSession(
                host=str(data["host"]),
                port=int(data["port"]),
                user=str(data["user"]),
                token=str(data["token"]),
                ca_file=data.get("ca_file"),
            )
        except (ValueError, KeyError, TypeError):
            raise CommandError(
                f"{self.session_path} is damaged; run `sysadm login HOST` again", EXIT_SESSION
            ) from None

    def load_session(self) -> SavedSession:
        try:
            session = self._session_file.read()
        except OSError:
            raise CommandError(
                f"{self.session_path} is damaged; run `sysadm login HOST` again", EXIT_SESSION
            ) from None
        if session is None:
            raise CommandError("not logged in; run `sysadm login HOST` first", EXIT_SESSION)
        return session

    def save_session(self, session: SavedSession) -> None:
        store = self._session_file
        try:
            with store.locked():
                store.write(session)
        except OSError as e:
            raise CommandError(f"{self.session_path}: cannot write: {e.strerror}") from None

    def forget_session(self) -> None:
        store = self._session_file
        with store.locked():
            store.remove()

    def tls_for(self, session: SavedSession) -> TLSMode:
        if session.ca_file is not None:
            return CATLS(Path(session.ca_file))
        return PinnedTLS(self.known_hosts)


def _serialize_session(session: SavedSession | None) -> bytes:
    if session is None:
        raise ValueError("no session to save")
    data = {
        "host": session.host,
        "port": session.port,
        "user": session.user,
        "token": session.token,
        "ca_file": session.ca_file,
    }
    return json.dumps(data).encode("utf-8")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address, port default 12150."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise click.BadParameter(f"no host name in {text!r}", param_hint="HOST[:PORT]")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise click.BadParameter(f"invalid port in {text!r}", param_hint="HOST[:PORT]")
    return host, int(port_text)


# --------------------------------------------------------------------------------------------
# Running a command on the reactor


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"sysadm: {message}", err=True)
    sys.exit(status)


def _status_of(error: ClientError) -> int:
    if isinstance(error, CommandError):
        return error.status
    if isinstance(error, SessionExpired):
        return EXIT_SESSION
    if isinstance(error, ConnectionFailed):
        return EXIT_CONNECTION
    return EXIT_API


def run(work: Callable[[], Awaitable[None]]) -> NoReturn:
    """Run ``work`` on the reactor; exit 0, or print one line on stderr and exit non-zero."""
    outcome: list[int] = []

    async def main(reactor: Any) -> None:
        attempt = ensureDeferred(_guarded(work, outcome))
        reactor.addSystemEventTrigger("before", "shutdown", attempt.cancel)
        await attempt

    with contextlib.suppress(SystemExit):
        react(main)
    sys.exit(outcome[0] if outcome else EXIT_INTERRUPTED)


async def _guarded(work: Callable[[], Awaitable[None]], outcome: list[int]) -> None:
    try:
        await work()
        outcome.append(0)
    except CancelledError:
        click.echo("sysadm: interrupted", err=True)
        outcome.append(EXIT_INTERRUPTED)
    except ClientError as e:
        click.echo(f"sysadm: {e}", err=True)
        outcome.append(_status_of(e))
    except Exception as e:
        click.echo(f"sysadm: internal error: {e.__class__.__name__}: {e}", err=True)
        outcome.append(EXIT_API)


async def _connect(settings: Settings) -> tuple[Client, SavedSession]:
    """A connection logged in with the saved session."""
    session = settings.load_session()
    client = await Client.connect(
        session.host, session.port, tls=settings.tls_for(session), timeout=settings.timeout
    )
    try:
        await client.login_token(session.token)
    except SessionExpired:
        await client.close()
        host = session.host if session.port == DEFAULT_PORT else session.address
        raise SessionExpired(
            f"session expired or revoked; run `sysadm login {host}` again"
        ) from None
    except BaseException:
        await client.close()
        raise
    return client, session


async def join_router(settings: Settings) -> FleetClient:
    """A session with the router ``--router`` names, logged in with a ticket from
    $SYSADM_ROUTER_TICKET or a prompt (never saved)."""
    router = settings.router or ""
    if settings.router_user is None:
        raise CommandError("--router needs --router-user NAME", EXIT_USAGE)
    key = read_key(settings.router_key) if settings.router_key is not None else None
    ticket = os.environ.get("SYSADM_ROUTER_TICKET", "")
    if key is None and not ticket:
        ticket = getpass.getpass(f"Ticket for {settings.router_user} at {router}: ")
    tls = None
    if router.startswith("wss:"):
        host = router.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        trust = (
            trustRootFromCertificates([Certificate.loadPEM(settings.router_ca_file.read_bytes())])
            if settings.router_ca_file is not None
            else platformTrust()
        )
        tls = optionsForClientTLS(host, trustRoot=trust)
    fleet = FleetClient(router, settings.realm, settings.router_user, ticket, key=key, tls=tls)
    await fleet.connect()
    return fleet


def _routed(
    settings: Settings, action: Callable[[Client], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """Work that runs ``action`` on the host ``-H`` names, through the router."""

    async def work() -> None:
        host = settings.fleet_host
        if host is None:
            raise CommandError("with --router, name the host with -H NAME", EXIT_USAGE)
        if host == "all":
            raise CommandError("-H all works with `vm list` only", EXIT_USAGE)
        fleet = await join_router(settings)
        try:
            await action(HostThroughRouter(fleet, host, timeout=settings.timeout))
        finally:
            await fleet.close()

    return work


def with_client(
    settings: Settings, action: Callable[[Client], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """Work that connects with the saved session (or, with ``--router``, reaches the host
    ``-H`` names through the router), runs ``action`` and closes."""
    if settings.router is not None:
        return _routed(settings, action)

    async def work() -> None:
        client, session = await _connect(settings)
        try:
            await action(client)
        except SessionExpired:
            host = session.host if session.port == DEFAULT_PORT else session.address
            raise SessionExpired(
                f"session expired or revoked; run `sysadm login {host}` again"
            ) from None
        finally:
            await client.close()

    return work


def change(settings: Settings, call: Callable[[Client], Awaitable[object]], done: str) -> NoReturn:
    """Make one call with the saved session, then say what was done."""

    async def action(client: Client) -> None:
        await call(client)
        click.echo(done)

    run(with_client(settings, action))


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _table(*columns: str | Column) -> Table:
    """A table of plain columns, two spaces apart. A name stands for a column that wraps
    (folding only words longer than the column); a :class:`Column` is taken as it is."""
    return Table(
        *(
            c if isinstance(c, Column) else Column(c, overflow="fold", no_wrap=c == "NAME")
            for c in columns
        ),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        highlight=False,
        padding=(0, 1, 0, 0),
    )


# --------------------------------------------------------------------------------------------
# The commands

CONTEXT: Final = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SYSADM_CONFIG_DIR",
    help="Where the session and known hosts live. [default: ~/.config/sysadm]",
)
@click.option(
    "--known-hosts",
    "known_hosts",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SYSADM_KNOWN_HOSTS",
    help="The file of pinned certificate fingerprints. [default: CONFIG_DIR/known_hosts]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for each reply.",
)
@click.option(
    "--router",
    metavar="URL",
    envvar="SYSADM_ROUTER",
    help="Fleet mode: reach the hosts through this WAMP router (ws:// or wss://) instead "
    "of the saved session; the ticket comes from $SYSADM_ROUTER_TICKET or a prompt.",
)
@click.option("--realm", default="sysadmd", show_default=True, help="The router's realm.")
@click.option(
    "--router-user", metavar="NAME", envvar="SYSADM_ROUTER_USER", help="Who logs in to the router."
)
@click.option(
    "--profile",
    metavar="NAME",
    envvar="SYSADM_PROFILE",
    help="Fleet mode with a router profile kept by `sysadm router save`; --router, --realm, "
    "--router-user, --router-ca-file and --router-key given on the command line override it.",
)
@click.option(
    "--router-ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify a wss:// router against this CA certificate (PEM) instead of the system's.",
)
@click.option(
    "--router-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="SYSADM_ROUTER_KEY",
    help="Log in to the router with this Ed25519 key (a file of 64 hex digits, mode 0600) "
    "instead of a ticket.",
)
@click.option(
    "-H",
    "--host",
    "fleet_host",
    metavar="NAME",
    help="With --router or --profile: the host a command acts on (`-H all vm list`: every host).",
)
@click.version_option(package_name="sysadmd", prog_name="sysadm")
@click.pass_context
def cli(
    ctx: click.Context,
    *,
    config_dir: Path | None,
    known_hosts: Path | None,
    timeout: float,
    router: str | None,
    realm: str,
    router_user: str | None,
    router_ca_file: Path | None,
    router_key: Path | None,
    profile: str | None,
    fleet_host: str | None,
) -> None:
    """Manage bhyve guests and ISOs on a sysadmd host.

    Start with `sysadm login HOST`; the other commands use the session it saves. The
    server's certificate is pinned on first use (like ssh's known_hosts) unless --ca-file
    is given at login.

    Shell completion: eval "$(_SYSADM_COMPLETE=bash_source sysadm)" (or zsh_source,
    fish_source). See docs/client.md.
    """
    config_dir = config_dir or default_config_dir()
    if profile is not None:
        try:
            saved = Profiles(config_dir).get(profile)
        except ProfileError as e:
            _fail(str(e), EXIT_USAGE)

        def given(name: str) -> bool:
            return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE

        router = router if given("router") else saved.router
        realm = realm if given("realm") else saved.realm
        router_user = router_user if given("router_user") else saved.router_user
        router_ca_file = router_ca_file if given("router_ca_file") else saved.router_ca_file
        router_key = router_key if given("router_key") else saved.router_key
    if fleet_host is not None and router is None:
        raise click.UsageError("-H/--host needs --router or --profile")
    ctx.obj = Settings(
        config_dir=config_dir,
        known_hosts_file=known_hosts,
        timeout=timeout,
        router=router,
        realm=realm,
        router_user=router_user,
        router_ca_file=router_ca_file,
        router_key=router_key,
        fleet_host=fleet_host,
    )


@cli.command()
@click.argument("address", metavar="HOST[:PORT]")
@click.option("-u", "--user", help="The user name (prompted for if not given).")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify the server against this CA bundle (PEM) and its host name, instead of "
    "pinning its certificate.",
)
@click.option(
    "--accept-fingerprint",
    metavar="FP",
    help="Pin this SHA-256 fingerprint (AA:BB:...) for a host seen for the first time; the "
    "server must present exactly it.",
)
@click.option(
    "--trust-on-first-use",
    is_flag=True,
    help="Pin whatever certificate a host seen for the first time presents.",
)
@click.pass_obj
def login(
    settings: Settings,
    *,
    address: str,
    user: str | None,
    ca_file: Path | None,
    accept_fingerprint: str | None,
    trust_on_first_use: bool,
) -> None:
    """Log in to HOST (port 12150 by default) and save the session.

    The password is read from $SYSADM_PASSWORD or prompted for; only the session token is
    saved (mode 0600), never the password.
    """
    host, port = parse_address(address)
    if ca_file is not None and (accept_fingerprint or trust_on_first_use):
        raise click.UsageError(
            "--ca-file does not go with --accept-fingerprint/--trust-on-first-use"
        )
    accept = None
    if accept_fingerprint is not None:
        try:
            accept = normalize_fingerprint(accept_fingerprint)
        except ClientError as e:
            raise click.BadParameter(str(e), param_hint="--accept-fingerprint") from None
    known_hosts = settings.known_hosts
    if ca_file is None and accept is None and not trust_on_first_use:
        accept = _ask_about_unknown_host(known_hosts, host, port)
    name = user or click.prompt("User", default=getpass.getuser(), err=True)
    password = _password()
    mode: TLSMode = (
        CATLS(ca_file)
        if ca_file is not None
        else PinnedTLS(known_hosts, accept=accept, trust_on_first_use=trust_on_first_use)
    )

    async def work() -> None:
        try:
            client = await Client.connect(host, port, tls=mode, timeout=settings.timeout)
        except UnknownHost as e:
            raise CommandError(
                f"{e.address} is not a known host; its certificate's SHA-256 fingerprint is "
                f"{e.fingerprint}: check it against the one the daemon logs at start, then run "
                f"again with --accept-fingerprint {e.fingerprint}",
                EXIT_CONNECTION,
            ) from None
        try:
            session = await client.login(name, password)
        finally:
            await client.close()
        settings.save_session(
            SavedSession(
                host=host,
                port=port,
                user=name,
                token=session.token,
                ca_file=str(ca_file.resolve()) if ca_file else None,
            )
        )
        click.echo(
            f"Logged in to {client.address} as {name}; the session stays valid for "
            f"{session.seconds} s unused."
        )

    run(work)


def _password() -> str:
    """$SYSADM_PASSWORD, a prompt on a terminal, or the first line of stdin."""
    password = os.environ.get("SYSADM_PASSWORD")
    if password is not None:
        return password
    if sys.stdin.isatty():
        entered: str = click.prompt("Password", hide_input=True, err=True)
        return entered
    line = sys.stdin.readline()
    if not line:
        _fail("no password: set SYSADM_PASSWORD, or give it on stdin or a terminal", EXIT_USAGE)
    return line.rstrip("\r\n")


def _ask_about_unknown_host(known_hosts: KnownHosts, host: str, port: int) -> str | None:
    """On a terminal, show an unknown host's fingerprint and ask whether to pin it.

    This only looks at the certificate (a TLS handshake with the standard library, nothing
    sent); the login's own connection then requires exactly the fingerprint accepted here.
    Returns None when there is nothing to ask: the host is pinned already, or there is no
    terminal (the connection then fails with the fingerprint in its message).
    """
    address = format_address(host, port)
    try:
        if known_hosts.get(address) is not None:
            return None
    except ClientError as e:
        _fail(str(e), EXIT_API)
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    try:
        pem = ssl.get_server_certificate((host, port), timeout=15)
    except OSError as e:
        _fail(f"cannot connect to {address}: {e.strerror or e}", EXIT_CONNECTION)
    fingerprint = fingerprint_of_der(ssl.PEM_cert_to_DER_cert(pem))
    click.echo(f"The authenticity of {address} cannot be established.", err=True)
    click.echo(f"Its certificate's SHA-256 fingerprint is {fingerprint}.", err=True)
    click.echo("Compare it with the fingerprint the daemon logs when it starts.", err=True)
    if not click.confirm("Trust this certificate and pin it?", default=False, err=True):
        _fail("host not trusted; nothing was sent to it", EXIT_CONNECTION)
    return fingerprint


@cli.command()
@click.pass_obj
def logout(settings: Settings) -> None:
    """End the session on the server (rpc/auth_clear) and forget its token."""
    session = settings.load_session()

    async def work() -> None:
        try:
            client = await Client.connect(
                session.host, session.port, tls=settings.tls_for(session), timeout=settings.timeout
            )
        except ConnectionFailed as e:
            settings.forget_session()
            raise CommandError(
                f"forgot the session, but could not end it on the server: {e}", EXIT_CONNECTION
            ) from None
        try:
            try:
                await client.login_token(session.token)
                await client.logout()
            except SessionExpired:
                pass  # It has ended already.
        finally:
            await client.close()
            settings.forget_session()
        click.echo(f"Logged out of {session.address}.")

    run(work)


# vm


@cli.group()
def vm() -> None:
    """Guests: list, create, install, start, stop, delete, console, disks and properties."""


def _json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the raw JSON reply.")(
        function
    )


@vm.command("list")
@_json_option
@click.pass_obj
def vm_list(settings: Settings, as_json: bool) -> None:
    """List the guests (with `--router URL -H all`: every host's, in one table)."""
    if settings.router is not None and settings.fleet_host == "all":
        run(_every_hosts_guests(settings, as_json))

    async def action(client: Client) -> None:
        guests = await client.list_vms()
        if as_json:
            _print_json({"listvms": guests})
            return
        if not guests:
            click.echo("No guests.")
            return
        table = _table("NAME", "RUNNING", "VMM", "RCBOOT", "DESCRIPTION")
        for name, guest in sorted(guests.items()):
            table.add_row(
                name,
                guest.get("running", ""),
                guest.get("vmm", ""),
                guest.get("rcboot", ""),
                guest.get("description", ""),
            )
        _out.print(table)

    run(with_client(settings, action))


def _every_hosts_guests(settings: Settings, as_json: bool) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        fleet = await join_router(settings)
        try:
            found: dict[str, Any] = {}
            for host in await fleet.hosts():
                try:
                    found[host.host] = await HostThroughRouter(
                        fleet, host.host, timeout=settings.timeout
                    ).list_vms()
                except ClientError as e:  # a host that left meanwhile; the others still count
                    click.echo(f"sysadm: {host.host}: {e}", err=True)
        finally:
            await fleet.close()
        if as_json:
            _print_json({host: {"listvms": guests} for host, guests in found.items()})
            return
        table = _table("HOST", "NAME", "RUNNING", "VMM", "RCBOOT", "DESCRIPTION")
        for host_name, guests in found.items():
            for name, guest in sorted(guests.items()):
                table.add_row(
                    host_name,
                    name,
                    guest.get("running", ""),
                    guest.get("vmm", ""),
                    guest.get("rcboot", ""),
                    guest.get("description", ""),
                )
        _out.print(table)

    return work


@cli.group()
def fleet() -> None:
    """The hosts joined to the router (--router)."""


@fleet.command("hosts")
@_json_option
@click.pass_obj
def fleet_hosts(settings: Settings, as_json: bool) -> None:
    """List every host joined to the router now: its backend, version, and since when."""
    if settings.router is None:
        raise click.UsageError("`fleet hosts` needs --router URL")

    async def work() -> None:
        router = await join_router(settings)
        try:
            hosts = await router.hosts()
        finally:
            await router.close()
        if as_json:
            _print_json([vars(h) for h in hosts])
            return
        table = _table("HOST", "BACKEND", "VERSION", "JOINED")
        for host in hosts:
            table.add_row(host.host, host.backend, host.version, host.joined)
        _out.print(table)

    run(work)


@cli.group("router")
def router_group() -> None:
    """Saved router profiles: how to reach a fleet's router, for `--profile NAME`."""


def _checked(check: Callable[[str], str]) -> Callable[[click.Context, click.Parameter, str], str]:
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
        try:
            return check(value)
        except ProfileError as e:
            raise click.BadParameter(str(e)) from None

    return callback


def _check_ca_file(path: Path) -> None:
    try:
        found = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ProfileError(f"{path}: is not a PEM certificate ({e})") from None
    if not found:
        raise ProfileError(f"{path}: holds no PEM certificate")


@router_group.command("save")
@click.argument("name", callback=_checked(check_profile_name))
@click.option(
    "--router",
    "router_url",
    metavar="URL",
    required=True,
    callback=_checked(check_router_url),
    help="The router's WebSocket URL (ws:// or wss://).",
)
@click.option(
    "--realm",
    default="sysadmd",
    show_default=True,
    callback=_checked(check_realm),
    help="The router's realm.",
)
@click.option("--router-user", metavar="USER", required=True, help="Who logs in to the router.")
@click.option(
    "--router-ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify a wss:// router against this CA certificate (PEM).",
)
@click.option(
    "--router-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Log in with this Ed25519 key file (64 hex digits, mode 0600) instead of a ticket.",
)
@click.pass_obj
def router_save(
    settings: Settings,
    *,
    name: str,
    router_url: str,
    realm: str,
    router_user: str,
    router_ca_file: Path | None,
    router_key: Path | None,
) -> None:
    """Keep how to reach a router as NAME (never a ticket: it is asked for each time)."""
    try:
        if router_key is not None:
            read_key(router_key)  # refused now, not at its first use
        if router_ca_file is not None:
            _check_ca_file(router_ca_file)
        profile = RouterProfile(
            router=router_url,
            realm=realm,
            router_user=router_user,
            router_ca_file=router_ca_file.resolve() if router_ca_file else None,
            router_key=router_key.resolve() if router_key else None,
        )
    except ClientError as e:
        _fail(str(e), EXIT_USAGE)
    profiles = Profiles(settings.config_dir)
    try:
        profiles.save(name, profile)
    except ProfileError as e:
        _fail(str(e), EXIT_API)
    click.echo(f"Saved the router profile {name} in {profiles.path}; use it with --profile {name}.")


@router_group.command("list")
@_json_option
@click.pass_obj
def router_list(settings: Settings, as_json: bool) -> None:
    """List the saved router profiles."""
    try:
        profiles = Profiles(settings.config_dir).all()
    except ProfileError as e:
        _fail(str(e), EXIT_API)
    if as_json:
        _print_json({name: p.as_json() for name, p in sorted(profiles.items())})
        return
    if not profiles:
        click.echo("No router profiles; save one with `sysadm router save NAME --router URL …`.")
        return
    table = _table("NAME", "ROUTER", "REALM", "USER", "CA FILE", "KEY")
    for name, p in sorted(profiles.items()):
        table.add_row(
            name,
            p.router,
            p.realm,
            p.router_user,
            str(p.router_ca_file or ""),
            str(p.router_key or ""),
        )
    _out.print(table)


@router_group.command("forget")
@click.argument("name", callback=_checked(check_profile_name))
@click.pass_obj
def router_forget(settings: Settings, name: str) -> None:
    """Remove the saved router profile NAME."""
    try:
        Profiles(settings.config_dir).forget(name)
    except ProfileError as e:
        _fail(str(e), EXIT_API)
    click.echo(f"Forgot the router profile {name}.")


@vm.command("create")
@click.argument("name")
@click.argument("size")
@click.pass_obj
def vm_create(settings: Settings, name: str, size: str) -> None:
    """Create guest NAME with a first disk of SIZE, such as 10G."""
    change(settings, lambda client: client.create(name, size), f"Created {name} (disk0: {size}).")


@vm.command("install")
@click.argument("name")
@click.argument("iso")
@click.pass_obj
def vm_install(settings: Settings, name: str, iso: str) -> None:
    """Boot stopped guest NAME from ISO to install it."""
    change(settings, lambda client: client.install(name, iso), f"Installing {name} from {iso}.")


@vm.command("start")
@click.argument("name")
@click.pass_obj
def vm_start(settings: Settings, name: str) -> None:
    """Start guest NAME."""
    change(settings, lambda client: client.start(name), f"Started {name}.")


@vm.command("stop")
@click.argument("name")
@click.option("-f", "--force", is_flag=True, help="Kill it at once instead of an ACPI shutdown.")
@click.pass_obj
def vm_stop(settings: Settings, name: str, force: bool) -> None:
    """Stop guest NAME (an ACPI shutdown request, or --force)."""
    change(
        settings,
        lambda client: client.stop(name, force=force),
        f"Stopped {name}." if force else f"Asked {name} to shut down.",
    )


@vm.command("console")
@click.argument("name")
@click.option("--read-only", is_flag=True, help="Watch without taking control.")
@click.pass_obj
def vm_console(settings: Settings, name: str, read_only: bool) -> None:
    """Attach this terminal to guest NAME's serial console, like cu.

    The guest's recent output comes first. ~. at the start of a line detaches. An admin
    types when nobody else does (another admin may take control); --read-only, and
    operators, only watch.
    """

    async def work() -> None:
        session = settings.load_session()
        code, reason = await console.attach(
            session.host,
            session.port,
            session.token,
            name,
            tls=settings.tls_for(session),
            read_only=read_only,
        )
        if code not in (1000, 1001):
            raise CommandError(f"console of {name} closed: {reason or code}")
        click.echo(f"\r\n[detached from {name}]", err=True)

    run(work)


@vm.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def vm_delete(settings: Settings, name: str, yes: bool) -> None:
    """Delete stopped guest NAME and all its disks (takes about 10 s).

    Asks for confirmation on a terminal; without one (a script, a pipe) --yes is required.
    """
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"no terminal to confirm on: give --yes to delete {name} and all its disks"
            )
        click.confirm(f"Delete {name} and all its disks?", abort=True, err=True)

    change(settings, lambda client: client.delete(name), f"Deleted {name}.")


@vm.command("disks")
@click.argument("name")
@_json_option
@click.pass_obj
def vm_disks(settings: Settings, name: str, as_json: bool) -> None:
    """List the disks of guest NAME."""

    async def action(client: Client) -> None:
        disks = await client.list_disks(name)
        if as_json:
            _print_json({"listdisks": disks})
            return
        table = _table("DISK", "SIZE")
        for disk, size in sorted(disks.items()):
            table.add_row(disk, size)
        _out.print(table)

    run(with_client(settings, action))


@vm.command("add-disk")
@click.argument("name")
@click.argument("size")
@click.option("--pool", help="The ZFS pool for it (default: the guest's).")
@click.pass_obj
def vm_add_disk(settings: Settings, name: str, size: str, pool: str | None) -> None:
    """Add a disk of SIZE to guest NAME."""
    change(
        settings,
        lambda client: client.add_disk(name, size, pool),
        f"Added a disk of {size} to {name}.",
    )


@vm.command("remove-disk")
@click.argument("name")
@click.argument("disk")
@click.pass_obj
def vm_remove_disk(settings: Settings, name: str, disk: str) -> None:
    """Remove DISK (not disk0) from guest NAME."""
    change(settings, lambda client: client.delete_disk(name, disk), f"Removed {disk} from {name}.")


@vm.command("resize-disk")
@click.argument("name")
@click.argument("disk")
@click.argument("size")
@click.pass_obj
def vm_resize_disk(settings: Settings, name: str, disk: str, size: str) -> None:
    """Resize DISK of stopped guest NAME to SIZE."""
    change(
        settings,
        lambda client: client.resize_disk(name, disk, size),
        f"Resized {disk} of {name} to {size}.",
    )


@vm.command("props")
@click.argument("name")
@_json_option
@click.pass_obj
def vm_props(settings: Settings, name: str, as_json: bool) -> None:
    """Show the iohyve properties of guest NAME."""

    async def action(client: Client) -> None:
        props = await client.get_props(name)
        if as_json:
            _print_json({"getprops": {name: props}})
            return
        table = _table("PROPERTY", "VALUE")
        for prop, value in sorted(props.items()):
            table.add_row(prop, value)
        _out.print(table)

    run(with_client(settings, action))


@vm.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True, metavar="PROP=VALUE...")
@click.pass_obj
def vm_set(settings: Settings, name: str, assignments: tuple[str, ...]) -> None:
    """Set properties of guest NAME, for instance `sysadm vm set web ram=2G cpu=2`."""
    props: dict[str, str] = {}
    for assignment in assignments:
        prop, equals, value = assignment.partition("=")
        if not equals or not prop:
            raise click.BadParameter(f"{assignment!r} is not PROP=VALUE", param_hint="PROP=VALUE")
        props[prop] = value
    if "name" in props or "action" in props:
        raise click.BadParameter("'name' and 'action' cannot be set", param_hint="PROP=VALUE")

    async def action(client: Client) -> None:
        result = await client.set_props(name, props)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(result.items()))
        click.echo(f"Set {shown} on {name}.")

    run(with_client(settings, action))


# iso


@cli.group()
def iso() -> None:
    """Installation ISOs: list, fetch, upload, rename, remove, digests."""


@iso.command("list")
@click.option(
    "--sizes",
    "-l",
    is_flag=True,
    help="Show each ISO's size (and its datastore where there are several).",
)
@_json_option
@click.pass_obj
def iso_list(settings: Settings, sizes: bool, as_json: bool) -> None:
    """List the ISOs, one per line."""

    async def action(client: Client) -> None:
        if sizes:
            library = await client.iso_library()
            if as_json:
                _print_json({"isolibrary": library})
                return
            for name, entry in sorted(library.items()):
                store = f"  {entry['datastore']}" if "datastore" in entry else ""
                click.echo(f"{_binary_size(entry['size']):>10}  {name}{store}")
            return
        isos = await client.list_isos()
        if as_json:
            _print_json({"listisos": isos})
            return
        for name in isos:
            click.echo(name)

    run(with_client(settings, action))


@iso.command("digests")
@_json_option
@click.pass_obj
def iso_digests(settings: Settings, as_json: bool) -> None:
    """The digests that verified fetches recorded, one ISO per line."""

    async def action(client: Client) -> None:
        digests = await client.iso_digests()
        if as_json:
            _print_json({"isodigests": digests})
            return
        for name, entry in digests.items():
            click.echo(f"{name}  {entry['digest']}  verified {entry['verified']}")

    run(with_client(settings, action))


class _RateColumn(ProgressColumn):
    """The download rate the daemon measured."""

    def render(self, task: Any) -> Text:
        rate = task.fields.get("rate") or 0.0
        return Text(f"{_size(rate)}/s", style="progress.data.speed")


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _binary_size(count: int) -> str:
    """A byte count in binary units, as the dashboard shows it: ``1.2 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{count} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@iso.command("fetch")
@click.argument("url")
@click.option(
    "--wait",
    is_flag=True,
    help="Show the download's progress and exit when it ends (non-zero if it failed).",
)
@click.option("--checksum", help="Verify against this digest: sha256:<hex> or sha512:<hex>.")
@click.option("--checksum-url", help="Verify against the checksum file at this URL.")
@click.option(
    "--verify",
    type=click.Choice(["auto"]),
    help="auto: verify against FreeBSD's checksum file beside the image.",
)
@click.pass_obj
def iso_fetch(
    settings: Settings,
    *,
    url: str,
    wait: bool,
    checksum: str | None,
    checksum_url: str | None,
    verify: str | None,
) -> None:
    """Queue a download of the ISO at URL (http, https, ftp), verified if asked."""

    async def action(client: Client) -> None:
        task = await client.fetch_iso(
            url, checksum=checksum, checksum_url=checksum_url, verify=verify
        )
        click.echo(f"Queued the fetch of {task.iso}: task {task.id}")
        if wait:
            await _follow(task)

    run(with_client(settings, action))


#: Below this many columns the progress bar leaves out the time left and shares what
#: the figures leave between the name and the bar.
_NARROW: Final = 100


def _progress(console: Console) -> Progress:
    """A one-line progress bar that fits ``console``'s width: no column wraps, a long ISO
    name is cut short (ending in …) before anything else gives way."""
    narrow = console.width < _NARROW

    def fixed() -> Column:
        return Column(no_wrap=True)

    # What the other columns take (status, percent, bytes, rate, time, spaces), and a bar of
    # at least 10 cells on a narrow console.
    name_width = max(12, console.width - (55 if narrow else 58))
    columns: list[ProgressColumn | str] = [
        TextColumn(
            "{task.description}",
            table_column=Column(no_wrap=True, overflow="ellipsis", max_width=name_width),
        ),
        TextColumn("({task.fields[status]})", table_column=fixed()),
        BarColumn(bar_width=None if narrow else 40, table_column=Column(ratio=1)),
        TaskProgressColumn(table_column=fixed()),
        DownloadColumn(table_column=fixed()),
        _RateColumn(table_column=fixed()),
    ]
    if not narrow:
        columns.append(TimeRemainingColumn(table_column=fixed()))
    return Progress(*columns, console=console, transient=False, expand=narrow)


async def _follow(task: Task) -> None:
    """Show ``task``'s progress until it ends."""
    console = Console(stderr=False, highlight=False)
    progress = _progress(console)
    bar = progress.add_task(task.iso or task.id, total=None, rate=0.0, status=task.progress.status)

    def show(changed: Task) -> None:
        state = changed.progress
        progress.update(
            bar,
            completed=state.bytes_done,
            total=state.bytes_total,
            rate=state.rate,
            status=state.status,
        )

    task.on_progress(show)
    show(task)
    with progress:
        try:
            final = await task
        except TaskFailed:
            show(task)
            raise
        except CancelledError:
            click.echo(
                f"sysadm: stopped waiting; the fetch goes on (`sysadm kill {task.id}` ends it)",
                err=True,
            )
            raise
        if final.bytes_total is None:
            progress.update(bar, total=final.bytes_done, completed=final.bytes_done)
    click.echo(f"Fetched {task.iso} ({final.bytes_done} bytes).")


@iso.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--name", help="The ISO's name on the host (default: the file's name).")
@click.option(
    "--checksum",
    help='What the ISO must hash to: "sha256:<hex>" or "sha512:<hex>"; checked by the host.',
)
@click.pass_obj
def iso_upload(settings: Settings, file: Path, name: str | None, checksum: str | None) -> None:
    """Upload FILE into the host's ISO store, streamed, with a progress bar."""

    async def work() -> None:
        session = settings.load_session()
        console = Console(stderr=False, highlight=False)
        progress = _progress(console)
        size = file.stat().st_size
        bar = progress.add_task(name or file.name, total=size, rate=0.0, status="uploading")
        started = time.monotonic()

        def sent(done: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            status = "storing" if done >= size else "uploading"
            progress.update(bar, completed=done, rate=done / elapsed, status=status)

        with progress:
            try:
                stored = await upload_iso(
                    session.host,
                    session.port,
                    session.token,
                    file,
                    name=name,
                    checksum=checksum,
                    tls=settings.tls_for(session),
                    on_progress=sent,
                )
            except SessionExpired:
                host = session.host if session.port == DEFAULT_PORT else session.address
                raise SessionExpired(
                    f"session expired or revoked; run `sysadm login {host}` again"
                ) from None
            progress.update(bar, completed=size, status="stored")
        click.echo(f"Uploaded {stored['name']} ({stored['size']} bytes, {stored['digest']}).")

    run(work)


@iso.command("rename")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def iso_rename(settings: Settings, source: str, target: str) -> None:
    """Rename ISO SOURCE to TARGET."""
    change(
        settings, lambda client: client.rename_iso(source, target), f"Renamed {source} to {target}."
    )


@iso.command("rm")
@click.argument("name")
@click.pass_obj
def iso_rm(settings: Settings, name: str) -> None:
    """Remove ISO NAME."""
    change(settings, lambda client: client.remove_iso(name), f"Removed {name}.")


# tasks


#: The fewest hexadecimal digits a task id is shown with in the tasks table.
SHORT_ID: Final = 8
#: A task id in full, as the daemon makes them: ``{<uuid4>}``.
_FULL_ID = re.compile(r"\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}")
#: What ``sysadm kill`` takes besides a full id: the start of one, with or without its brace.
_ID_PREFIX = re.compile(r"\{?[0-9a-fA-F][0-9a-fA-F-]*")


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id's shortest start of at least :data:`SHORT_ID` digits (no brace) that no
    other of ``ids`` starts with, as the tasks table shows them."""
    bare = {i: i.strip("{}") for i in ids}
    shown = {}
    for task_id, digits in bare.items():
        length = SHORT_ID
        while length < len(digits) and any(
            other != task_id and d.startswith(digits[:length]) for other, d in bare.items()
        ):
            length += 1
        shown[task_id] = digits[:length]
    return shown


def resolve_task_id(given: str, ids: list[str]) -> str:
    """The task id that ``given`` stands for among ``ids``: a full id as it is, or the one
    id that starts with ``given`` (with or without the brace, in either case).

    :raises CommandError: ``given`` is no id, or no id or more than one starts with it.
    """
    text = given.strip().lower()
    if _FULL_ID.fullmatch(text):
        return text
    if not _ID_PREFIX.fullmatch(text):
        raise CommandError(f"{given!r} is not a task id or the start of one", EXIT_USAGE)
    start = text.lstrip("{")
    found = sorted(i for i in ids if i.strip("{}").startswith(start))
    if not found:
        raise CommandError(f"no task id starts with {given!r} (see `sysadm tasks`)")
    if len(found) > 1:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise CommandError(f"{given!r} is the start of more than one task id: {shown}")
    return found[0]


def _tasks_table(jobs: dict[str, dict[str, Any]]) -> Table:
    table = _table(
        Column("TASK", no_wrap=True),
        Column("STATUS", no_wrap=True),
        Column("ISO", overflow="fold", min_width=10),
        Column("PROGRESS", no_wrap=True),
        Column("USER", no_wrap=True, overflow="ellipsis", max_width=10),
        Column("MESSAGE", overflow="fold", min_width=10),
    )
    shown_ids = short_ids(list(jobs))
    for task_id, job in sorted(jobs.items(), key=lambda item: item[1].get("time_queued") or ""):
        done = int(job.get("bytes_done") or 0)
        total = job.get("bytes_total")
        percent = job.get("percent")
        if isinstance(total, int):
            shown = f"{percent:.0f}% of {_size(total)}" if percent is not None else _size(total)
        else:
            shown = _size(done) if done else ""
        table.add_row(
            shown_ids[task_id],
            str(job.get("status", "")),
            str(job.get("iso") or ""),
            shown,
            str(job.get("user") or ""),
            str(job.get("message") or ""),
        )
    return table


def _busy(jobs: dict[str, dict[str, Any]]) -> bool:
    return any(job.get("status") in ACTIVE_STATUSES for job in jobs.values())


@cli.command()
@click.option("--watch", is_flag=True, help="Keep the table up to date until interrupted.")
@click.option(
    "--until-idle",
    is_flag=True,
    help="With --watch: exit once no task is queued or running.",
)
@_json_option
@click.pass_obj
def tasks(settings: Settings, watch: bool, until_idle: bool, as_json: bool) -> None:
    """List the fetch tasks: queued, running and recently finished.

    The table shows the start of each task id (8 digits, more where two ids begin
    alike), which `sysadm kill` takes; --json gives the ids in full.
    """
    if as_json and watch:
        raise click.UsageError("--json does not go with --watch")

    async def action(client: Client) -> None:
        jobs = await client.tasks()
        if as_json:
            _print_json({"jobs": {"no_queue": jobs}})
            return
        if not watch:
            if jobs:
                _out.print(_tasks_table(jobs))
            else:
                click.echo("No tasks.")
            return
        await _watch(client, until_idle)

    run(with_client(settings, action))


async def _watch(client: Client, until_idle: bool) -> None:
    from twisted.internet import reactor  # noqa: PLC0415

    changed: list[Deferred[None]] = []

    def wake(_: dict[str, Any]) -> None:
        for waiter in changed:
            if not waiter.called:
                waiter.callback(None)

    await client.subscribe("dispatcher", wake)
    jobs = await client.tasks()
    with Live(_tasks_table(jobs), console=_out, auto_refresh=False) as live:
        while not (until_idle and not _busy(jobs)):
            waiter: Deferred[None] = Deferred()
            changed[:] = [waiter]
            timer = reactor.callLater(2.0, waiter.callback, None)
            try:
                await waiter
            finally:
                if timer.active():
                    timer.cancel()
            # Let a burst of events settle into one look at the list.
            await deferLater(reactor, 0.2, lambda: None)
            jobs = await client.tasks()
            live.update(_tasks_table(jobs), refresh=True)


@cli.command()
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK...")
@click.pass_obj
def kill(settings: Settings, task_ids: tuple[str, ...]) -> None:
    """End fetch tasks: a queued one is dropped, a running one stopped.

    Each TASK is a task id or the start of one (as `sysadm tasks` shows it), with or
    without the brace, that no other task id starts with.
    """

    async def action(client: Client) -> None:
        wanted = [t.strip().lower() for t in task_ids]
        if not all(_FULL_ID.fullmatch(t) for t in wanted):
            known = list(await client.tasks())
            wanted = [resolve_task_id(t, known) for t in task_ids]
        wanted = list(dict.fromkeys(wanted))
        killed = await client.kill(*wanted)
        for task_id in killed:
            click.echo(f"Killed {task_id}.")
        missed = [t for t in wanted if t not in killed]
        if missed:
            raise CommandError(
                f"not running (finished already, or no such task): {', '.join(missed)}"
            )

    run(with_client(settings, action))


@cli.command()
@click.argument("namespace")
@click.argument("name")
@click.argument("args", required=False, default="{}", metavar="['{JSON ARGS}']")
@click.pass_obj
def call(settings: Settings, namespace: str, name: str, args: str) -> None:
    """Send any request and print the JSON reply.

    \b
    sysadm call sysadm iohyve '{"action": "version"}'
    sysadm call rpc query
    """
    try:
        parsed = json.loads(args)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="ARGS") from None

    async def action(client: Client) -> None:
        _print_json(await client.call(namespace, name, parsed))

    run(with_client(settings, action))


# known hosts


@cli.group("known-hosts")
def known_hosts_group() -> None:
    """The pinned certificate fingerprints."""


@known_hosts_group.command("list")
@click.pass_obj
def known_hosts_list(settings: Settings) -> None:
    """List the pinned hosts and their fingerprints."""
    try:
        entries = settings.known_hosts.entries()
    except ClientError as e:
        _fail(str(e), EXIT_API)
    for address, fingerprint in entries.items():
        click.echo(f"{address} {fingerprint}")


@known_hosts_group.command("remove")
@click.argument("address", metavar="HOST[:PORT]")
@click.pass_obj
def known_hosts_remove(settings: Settings, address: str) -> None:
    """Forget the pin of HOST[:PORT], so that the next login pins its new certificate."""
    host, port = parse_address(address)
    where = format_address(host, port)
    try:
        removed = settings.known_hosts.remove(where)
    except ClientError as e:
        _fail(str(e), EXIT_API)
    if not removed:
        _fail(f"{where} is not in {settings.known_hosts.path}", EXIT_API)
    click.echo(f"Removed the pin of {where}.")


def main(argv: list[str] | None = None) -> None:
    """The ``sysadm`` console script: click's errors as one line on stderr too."""
    try:
        status = cli.main(args=argv, prog_name="sysadm", standalone_mode=False)
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "sysadm"
        _fail(f"{e.format_message()} (see `{where} --help`)", EXIT_USAGE)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except click.Abort:
        _fail("aborted", EXIT_API)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
