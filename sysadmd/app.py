"""Assembly: from a :class:`~sysadmd.config.Config` to the daemon's service tree.

One :class:`~twisted.web.server.Site` serves the WebSocket API at ``/`` and REST
at ``/<namespace>/<name>``; every listener serves that same Site.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import txaio
from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from sysadmd import tls
from sysadmd.accounts import LocalAccounts, ensure_initial_admin
from sysadmd.api import Api
from sysadmd.audit import AuditLog
from sysadmd.auth import Authenticator
from sysadmd.config import Config, ConfigError
from sysadmd.credentials import CredentialChecker
from sysadmd.dispatcher import DispatcherActions
from sysadmd.events import EventHub
from sysadmd.health import Guard, Livez, OperationsRoot, Readyz, daemon_checks
from sysadmd.host import HostActions
from sysadmd.iohyve.actions import IohyveActions
from sysadmd.iohyve.adapter import Iohyve
from sysadmd.journal import Journal
from sysadmd.limits import ConnectionCounter
from sysadmd.lockout import Lockout
from sysadmd.logs import LogFiles
from sysadmd.metrics import Metrics, MetricsResource
from sysadmd.pam_backend import PamChecker
from sysadmd.registry import Registry
from sysadmd.rest import ApiSite, RestApi
from sysadmd.rpc import QueryActions, Rpc
from sysadmd.runner import ProcessRunner
from sysadmd.sessions import Sessions
from sysadmd.sslauth import Challenges, KeyStore
from sysadmd.subscriptions import EVENT_NAMES, EventActions, GuestWatcher
from sysadmd.tasks import FetchQueue
from sysadmd.websocket import ApiServerFactory, Limits, OriginCheckedResource

log = Logger()


class Listener(Service):
    """Listens on one endpoint and logs where clients can connect.

    Listening happens in ``privilegedStartService``, so ports below 1024 are bound
    before twistd drops privileges, and a port that cannot be bound stops the start.
    The "Listening on" line waits for the reactor to run: by then the daemon's own
    SIGTERM handler is in place, so whoever stops the daemon as soon as it reads that
    line gets a clean stop.
    """

    def __init__(
        self,
        description: str,
        endpoint: IStreamServerEndpoint,
        site: IProtocolFactory,
        reactor: Any,
    ) -> None:
        self.description = description
        self._endpoint = endpoint
        self._site = site
        self._reactor = reactor
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failures: list[Failure] = []
        d = self._endpoint.listen(self._site)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            reason = failures[0].value
            detail = getattr(reason, "socketError", None) or reason
            log.critical(
                "Cannot listen on {description}: {detail}",
                description=self.description,
                detail=str(detail),
            )
            raise SystemExit(1)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self._reactor.callWhenRunning(self._announce, port)

    def _announce(self, port: IListeningPort) -> None:
        address = port.getHost()
        host = getattr(address, "host", None)
        secure = self.description.startswith("ssl:")
        if host is None:
            log.info("Listening on {description}", description=self.description)
            return
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):  # noqa: S104 (shown, not bound)
            shown = "localhost"
        where = f"{shown}:{getattr(address, 'port', '')}"
        ws, http = ("wss", "https") if secure else ("ws", "http")
        log.info(
            "Listening on {description}: WebSocket {ws}://{where}/ and REST "
            "{http}://{where}/sysadm/iohyve",
            description=self.description,
            ws=ws,
            http=http,
            where=where,
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        result: Deferred[None] | None = port.stopListening()
        return result


class _ChildProcesses(Service):
    """Ends every child process still running when the daemon stops."""

    def __init__(self, runner: ProcessRunner) -> None:
        self._runner = runner

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._runner.stop_all()


class _CloseWebSockets(Service):
    """Closes every WebSocket with 1001 when the daemon stops."""

    def __init__(self, websockets: ApiServerFactory) -> None:
        self._websockets = websockets

    def stopService(self) -> None:
        super().stopService()
        self._websockets.close_all()


def _stop_cleanly_on_sigterm(reactor: Any) -> None:
    """Make SIGTERM a normal stop, so that twistd exits 0 after the shutdown.

    Twisted's own handler stops the reactor too, but then makes twistd end by
    raising SIGTERM again once the shutdown is done: a service manager would see a
    death by signal rather than the clean exit it asked for.
    """

    def stop(signum: int, frame: object) -> None:
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)


def iohyve_command(config: Config) -> tuple[list[str], dict[str, str]]:
    """The argv prefix that starts iohyve (or the simulator), and extra environment."""
    if not config.iohyve_simulate:
        return [str(config.iohyve_path)], {}
    root = config.state_dir / "simulator"
    package_parent = Path(__file__).resolve().parent.parent
    command = [
        sys.executable,
        "-m",
        "sysadmd.simulator",
        "--root",
        str(root),
        "--profile",
        config.iohyve_simulator_profile,
    ]
    return command, {"PYTHONPATH": str(package_parent)}


def _prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"daemon.state_dir: {path} cannot be created: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"daemon.state_dir: {path} is not writable")


def _endpoints(
    config: Config, reactor: Any
) -> list[tuple[str, IStreamServerEndpoint, CertificateOptions | None]]:
    descriptions = list(config.listen)
    if tls.needs_default_certificate(descriptions):
        try:
            files = tls.ensure_certificate(config.state_dir / "tls", config.hostname)
        except tls.TLSError as e:
            raise ConfigError(f"daemon.listen: {e}") from None
        if files.created:
            log.info("Created a TLS certificate: {reason}", reason=files.reason or "first start")
        log.info(
            "TLS certificate {path}, SHA-256 fingerprint {fingerprint}",
            path=str(files.cert_path),
            fingerprint=files.fingerprint,
        )
        descriptions = [tls.with_default_certificate(d, files) for d in descriptions]
    endpoints = []
    for shown, description in zip(config.listen, descriptions, strict=True):
        try:
            tls_listener = tls.split_tls_endpoint(description)
            tcp, options = tls_listener if tls_listener else (description, None)
            endpoints.append((shown, serverFromString(reactor, tcp), options))
        except tls.TLSError as e:
            raise ConfigError(f"daemon.listen: {shown!r}: {e}") from None
        except (ValueError, TypeError, KeyError, OSError) as e:
            raise ConfigError(f"daemon.listen: {shown!r} is not a usable endpoint: {e}") from None
    return endpoints


def _credentials(config: Config, reactor: Any) -> CredentialChecker:
    backend = config.auth_backend
    if backend == "auto":
        backend = "local" if config.iohyve_simulate else "pam"
    if backend == "pam":
        return PamChecker(reactor)
    accounts = LocalAccounts(config.state_dir / "accounts.json", reactor)
    if config.iohyve_simulate:
        created = ensure_initial_admin(accounts, config.state_dir)
        if created is not None:
            log.info("Created the account 'admin'; its password is in {path}", path=str(created))
    return accounts


def make_authenticator(config: Config, reactor: Any) -> Authenticator:
    """The logins, sessions, lockout and audit log the configuration asks for."""
    return Authenticator(
        _credentials(config, reactor),
        sessions=Sessions(
            reactor, idle=config.auth_session_idle, absolute=config.auth_session_lifetime
        ),
        lockout=Lockout(
            reactor,
            limit=config.auth_lockout_failures,
            window=config.auth_lockout_window,
            block=config.auth_lockout_block,
        ),
        audit=AuditLog(config.auth_audit_log or config.state_dir / "audit.log", reactor),
        keys=KeyStore(config.state_dir / "ssl_keys.json", reactor),
        challenges=Challenges(reactor),
    )


def make_service(config: Config, reactor: Any) -> IService:
    """Build the daemon: listeners, the shared Site, the API, the fetch queue."""
    _prepare_state_dir(config.state_dir)
    # First, so that the log file gets every line of the start.
    log_files = LogFiles(config.log_file, config.log_format, reactor, level=config.log_level)
    endpoints = _endpoints(config, reactor)
    command, extra_env = iohyve_command(config)
    if not config.iohyve_simulate and not os.access(command[0], os.X_OK):
        log.warn("iohyve is not executable at {path}; every call will fail", path=command[0])
    runner = ProcessRunner(reactor, env=extra_env)
    iso_root = (
        config.state_dir / "simulator" / "iohyve" / "ISO"
        if config.iohyve_simulate
        else config.iohyve_iso_root
    )
    iohyve = Iohyve(
        runner,
        command,
        timeout=config.iohyve_timeout,
        iso_root=iso_root,
        clock=reactor,
        list_cache=config.iohyve_list_cache,
    )
    hub = EventHub(EVENT_NAMES)
    fetches = FetchQueue(
        iohyve,
        reactor,
        concurrency=config.fetch_concurrency,
        max_queued=config.fetch_queue_size,
        timeout=config.fetch_timeout,
        history=config.fetch_history,
        grace=config.fetch_grace,
        journal=Journal(
            config.state_dir / "tasks.sqlite", reactor, keep_finished=config.fetch_history
        ),
        publish=hub.publish,
        requeue=config.fetch_requeue,
    )
    GuestWatcher(iohyve, hub, reactor, interval=config.events_guests_interval)
    auth = make_authenticator(config, reactor)
    registry = Registry()
    registry.register(Rpc(auth, config.hostname))
    registry.register(DispatcherActions(fetches))
    registry.register(EventActions(hub))
    simulator = config.state_dir / "simulator"
    host = HostActions(
        runner,
        [*command, "zpool"] if config.iohyve_simulate else [str(config.iohyve_zpool)],
        [*command, "ifconfig"] if config.iohyve_simulate else [str(config.iohyve_ifconfig)],
    )
    registry.register(
        IohyveActions(
            iohyve,
            fetches,
            config.fetch_file_roots,
            rc_conf=simulator / "rc.conf" if config.iohyve_simulate else config.iohyve_rc_conf,
            slow_timeout=config.iohyve_timeout + 30,
            host=host,  # setup checks the pool exists before it changes anything
        )
    )
    registry.register(host)
    registry.register(QueryActions(registry))
    api = Api(registry, auth)
    metrics = Metrics(registry)
    api.on_call = metrics.call_answered
    auth.on_failed_login = metrics.login_failed
    fetches.on_bytes = metrics.bytes_fetched
    log_files.reopeners.append(auth.audit_log.reopen)
    guard = Guard(auth, config.metrics_allow)
    site = build_site(
        api,
        auth,
        reactor,
        hub=hub,
        allowed_origins=config.allowed_origins,
        limits=Limits(
            message_after_login=config.limits_message_size,
            login_timeout=config.limits_login_timeout,
            idle_timeout=config.limits_idle_timeout,
            in_flight=config.limits_in_flight,
        ),
        max_body=config.limits_message_size,
        request_deadline=config.limits_request_deadline,
        access_log=config.log_access,
        operations={
            b"metrics": MetricsResource(metrics, guard),
            b"livez": Livez(),
            b"readyz": Readyz(daemon_checks(command[0], config.state_dir, fetches), guard),
        },
    )
    connections = ConnectionCounter(
        total=config.limits_connections, per_address=config.limits_connections_per_address
    )
    metrics.watch(fetches, connections)

    # Services stop in the reverse order of this list: listeners first (no new
    # connections), then the WebSockets (closed with 1001), then the fetches (after
    # their grace period), then any child still running.
    top = MultiService()
    log_files.setServiceParent(top)  # stops last, so it logs the whole stop
    _ChildProcesses(runner).setServiceParent(top)
    fetches.setServiceParent(top)
    purge = TimerService(60, auth.sessions.purge)
    purge.clock = reactor
    purge.setServiceParent(top)
    _CloseWebSockets(site.websockets).setServiceParent(top)
    reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    for description, endpoint, tls_options in endpoints:
        # Limits outermost, so that a refused connection costs no TLS handshake.
        factory = TLSMemoryBIOFactory(tls_options, False, site) if tls_options else site
        Listener(description, endpoint, connections.wrap(factory), reactor).setServiceParent(top)
    mode = (
        "simulated iohyve " + config.iohyve_simulator_profile
        if config.iohyve_simulate
        else command[0]
    )
    log.info(
        "sysadmd starting with {mode}; state in {state}", mode=mode, state=str(config.state_dir)
    )
    return top


def build_site(
    api: Api,
    auth: Authenticator,
    clock: Any,
    *,
    allowed_origins: Iterable[str] = (),
    limits: Limits | None = None,
    max_body: int = 64 * 1024,
    request_deadline: float = 10.0,
    hub: EventHub | None = None,
    operations: Mapping[bytes, IResource] | None = None,
    access_log: bool = False,
) -> ApiSite:
    """The Site every listener serves: WebSocket at ``/``, REST below it.

    ``operations`` are served at ``/<name>`` (``/metrics``, ``/livez``, ``/readyz``)
    in front of the API, which sees every other path as before.
    """
    # Autobahn logs every frame at debug level through txaio; keep it to what matters.
    txaio.set_global_log_level("info")
    factory = ApiServerFactory(api, clock, limits, hub)
    # A factory wrapped in a resource is never started by the Site; start it here.
    factory.startFactory()
    rest = RestApi(api, auth, OriginCheckedResource(factory, allowed_origins))
    root = rest.resource()
    return ApiSite(
        OperationsRoot(root, operations) if operations else root,
        clock,
        max_body=max_body,
        request_deadline=request_deadline,
        websockets=factory,
        access_log=access_log,
    )
