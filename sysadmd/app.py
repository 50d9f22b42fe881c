"""Assembly: from a :class:`~sysadmd.config.Config` to the daemon's service tree.

One :class:`~twisted.web.server.Site` serves the WebSocket API at ``/`` and REST
at ``/<namespace>/<name>``; every listener serves that same Site.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import txaio
from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from sysadmd import __version__
from sysadmd.api import Api, EventHub
from sysadmd.auth import (
    CONTROL_SOCKET,
    KEYS_FILE,
    WATCH_INTERVAL,
    AccountWatcher,
    AuditLog,
    Authenticator,
    Challenges,
    ControlService,
    KeyStore,
    Lockout,
    Sessions,
)
from sysadmd.auth import build as build_backends
from sysadmd.backends import (
    HostTools,
    Iohyve,
    ProcessRunner,
    VMBackend,
    VmBhyve,
    VmBhyveCommands,
    end_left_over_group,
)
from sysadmd.catalog import build_registry
from sysadmd.config import Config, ConfigError
from sysadmd.console import ConsoleLimits, ConsoleService
from sysadmd.fleet import FleetMember, FleetTLSError, HostKeyError, ensure_host_key, router_tls
from sysadmd.ops import (
    Check,
    Guard,
    Livez,
    LogFiles,
    Metrics,
    MetricsResource,
    OperationsRoot,
    Readyz,
    daemon_checks,
)
from sysadmd.services import (
    EVENT_NAMES,
    ConsoleActions,
    DispatcherActions,
    EventActions,
    GuestWatcher,
    HostActions,
    IohyveActions,
    Rpc,
)
from sysadmd.tasks import EndLeftOvers, FetchQueue, Journal
from sysadmd.transport import (
    ApiServerFactory,
    ApiSite,
    ConnectionCounter,
    ConsoleRoot,
    ConsoleServerFactory,
    Limits,
    OriginCheckedResource,
    RestApi,
    Uploads,
    first_request_channel,
    tls,
)
from sysadmd.transport import ConsoleLimits as TransportConsoleLimits
from sysadmd.web import Dashboard, WithDashboard

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
            "{http}://{where}/sysadm/iohyve; dashboard {http}://{where}/ui/",
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


class StopInOrder(MultiService):
    """A MultiService that stops its services one at a time, the last added first.

    ``MultiService`` stops them all in the same turn, so a service that needs time to
    stop (the fetch queue's grace period) would find the services it relies on (the
    process runner) already stopped. Here each one starts stopping only when the one
    before it has finished; a service that fails to stop is logged and the others are
    still stopped.
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return ensureDeferred(self._stop_each())

    async def _stop_each(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                log.failure("{service} failed to stop", service=service)


class _ChildProcesses(Service):
    """Ends every child process still running when the daemon stops."""

    def __init__(self, runner: ProcessRunner) -> None:
        self._runner = runner

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._runner.stop_all()


class _CloseWebSockets(Service):
    """Closes every WebSocket with 1001 when the daemon stops."""

    def __init__(self, websockets: ApiServerFactory | ConsoleServerFactory) -> None:
        self._websockets = websockets

    def stopService(self) -> None:
        super().stopService()
        self._websockets.close_all()


def _in_threads(reactor: Any) -> EndLeftOvers:
    """End left-over process groups in the reactor's thread pool: it scans the process
    table and waits for the group to go."""

    def end(group: int, started: float | None, name: str) -> Deferred[list[int]]:
        ended: Deferred[list[int]] = deferToThreadPool(
            reactor, reactor.getThreadPool(), end_left_over_group, group, started, name
        )
        return ended

    return end


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


#: The environment variable that tells the simulator which vm-bhyve line its ``vm`` imitates.
VM_BHYVE_VERSION_ENV = "IOHYVE_SIM_VM_VERSION"


def choose_backend(config: Config) -> str:
    """The VM manager to serve: ``[host] backend``, or for ``auto`` vm-bhyve when its
    executable exists and rc.conf enables it (``vm_enable="YES"``), else iohyve. In
    simulate mode ``auto`` is iohyve. Runs once at start, before the reactor."""
    if config.host_backend != "auto":
        return config.host_backend
    if config.iohyve_simulate:
        return "iohyve"
    if os.access(config.vm_bhyve_path, os.X_OK) and vm_bhyve_enabled(config.vm_bhyve_rc_conf):
        return "vm-bhyve"
    return "iohyve"


def vm_bhyve_enabled(rc_conf: Path) -> bool:
    """Whether ``rc_conf`` sets ``vm_enable`` to YES (the last setting wins, as in sh)."""
    try:
        lines = rc_conf.read_text(errors="replace").splitlines()
    except OSError:
        return False
    value = ""
    for line in lines:
        match = re.fullmatch(r"\s*vm_enable=(\S*)\s*(?:#.*)?", line)
        if match is not None:
            value = match.group(1).strip("\"'")
    return value.lower() in ("yes", "true", "on", "1")


#: The word that selects FreeBSD's fetch in the simulator (``fetch`` alone is iohyve's).
SIMULATED_FETCH = "/usr/bin/fetch"


def make_backend(
    config: Config, runner: ProcessRunner, reactor: Any, command: list[str], backend: str
) -> VMBackend:
    """The backend ``backend`` names: on the host's tools, or on the simulator's
    (``command`` then starts the simulator, and ``<command> vm``, ``sysrc``, ``pgrep``,
    ``zfs``, ``/usr/bin/fetch`` and ``xz`` are its dialects, on a host whose ``/`` is
    ``<state_dir>/simulator``)."""
    simulator = config.state_dir / "simulator"
    if backend == "vm-bhyve":
        if config.iohyve_simulate:
            commands = VmBhyveCommands(
                vm=(*command, "vm"),
                sysrc=(*command, "sysrc"),
                pgrep=(*command, "pgrep"),
                zfs=(*command, "zfs"),
                fetch=(*command, SIMULATED_FETCH),
                xz=(*command, "xz"),
            )
            return VmBhyve(
                runner,
                commands,
                rc_conf=simulator / "etc" / "rc.conf",
                vmm_dir=simulator / "dev" / "vmm",
                timeout=config.iohyve_timeout,
                host_root=simulator,
            )
        return VmBhyve(
            runner,
            VmBhyveCommands(vm=(str(config.vm_bhyve_path),), sysrc=(str(config.vm_bhyve_sysrc),)),
            rc_conf=config.vm_bhyve_rc_conf,
            timeout=config.iohyve_timeout,
        )
    return Iohyve(
        runner,
        command,
        timeout=config.iohyve_timeout,
        iso_root=simulator / "iohyve" / "ISO" if config.iohyve_simulate else config.iohyve_iso_root,
        clock=reactor,
        list_cache=config.iohyve_list_cache,
        rc_conf=simulator / "rc.conf" if config.iohyve_simulate else config.iohyve_rc_conf,
        slow_timeout=config.iohyve_timeout + 30,
        # The simulator's guests link their consoles where /dev/nmdm<N>B would be.
        device_root=simulator / "dev" if config.iohyve_simulate else Path("/dev"),
        # An upload creates its ISO's dataset as iohyve fetch does: with zfs.
        zfs=(*command, "zfs") if config.iohyve_simulate else ("/sbin/zfs",),
        # fetch(1) continues interrupted downloads; the simulator's is a dialect of its own.
        fetch=(*command, SIMULATED_FETCH) if config.iohyve_simulate else ("/usr/bin/fetch",),
        host_root=simulator if config.iohyve_simulate else Path("/"),
    )


def _log_backend_version(backend: VMBackend) -> None:
    def logged(version: str) -> None:
        log.info("Backend {tool} {version}", tool=backend.tool, version=version)

    def failed(reason: Failure) -> None:
        log.warn(
            "Backend {tool}: its version could not be read ({why})",
            tool=backend.tool,
            why=getattr(reason.value, "message", reason.getErrorMessage()),
        )

    backend.version().addCallbacks(logged, failed)


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


def make_authenticator(config: Config, reactor: Any) -> tuple[Authenticator, AccountWatcher]:
    """The logins, sessions, lockout and audit log the configuration asks for, and the
    watcher that ends the sessions of accounts that change."""
    backends = build_backends(config, reactor)
    sessions = Sessions(
        reactor, idle=config.auth_session_idle, absolute=config.auth_session_lifetime
    )
    auth = Authenticator(
        backends.checker,
        sessions=sessions,
        lockout=Lockout(
            reactor,
            limit=config.auth_lockout_failures,
            window=config.auth_lockout_window,
            block=config.auth_lockout_block,
        ),
        audit=AuditLog(config.auth_audit_log or config.state_dir / "audit.log", reactor),
        keys=KeyStore(config.state_dir / KEYS_FILE, reactor),
        challenges=Challenges(reactor),
        reactor=reactor,
    )
    watcher = AccountWatcher(sessions, reactor, local=backends.local, system=backends.system)
    return auth, watcher


def _connection_counter(config: Config, reactor: Any) -> ConnectionCounter:
    """The caps on open connections, in all and per address, with the probes' reserve."""
    if config.limits_connections_reserved >= config.limits_connections:
        raise ConfigError(
            "limits.connections_reserved: must be less than limits.connections "
            f"({config.limits_connections})"
        )
    return ConnectionCounter(
        total=config.limits_connections,
        per_address=config.limits_connections_per_address,
        reserved=config.limits_connections_reserved,
        reserved_for=config.metrics_allow,
        clock=reactor,
    )


def _timer(seconds: float, call: Any, reactor: Any) -> TimerService:
    """A service that calls ``call`` every ``seconds`` on ``reactor``'s clock."""
    timer = TimerService(seconds, call)
    timer.clock = reactor
    return timer


def _fleet_member(
    config: Config, api: Api, hub: EventHub, backend: str, reactor: Any
) -> FleetMember | None:
    """The fleet session ``[fleet] router`` asks for (None without a router), with the host
    key made on the first start."""
    if not config.fleet_router:
        return None
    try:
        key, created = ensure_host_key(config.state_dir)
    except HostKeyError as e:
        raise ConfigError(f"fleet.router: {e}") from None
    if created:
        log.info("Created the fleet host key; sysadmd-admin fleet key prints its public key")
    log.info("Fleet host key (public) {key}", key=key.public_hex)
    tls = None
    if config.fleet_router.startswith("wss:"):
        host = urlsplit(config.fleet_router).hostname or ""
        try:
            tls = router_tls(host, config.fleet_ca_file, config.fleet_fingerprint)
        except FleetTLSError as e:
            raise ConfigError(str(e)) from None
    return FleetMember(
        api,
        hub,
        router=config.fleet_router,
        realm=config.fleet_realm,
        host=config.fleet_host,
        key=key,
        tls=tls,
        info={"backend": backend, "version": __version__, "url": config.fleet_url},
        reactor=reactor,
        in_flight=config.limits_in_flight,
        message_size=config.limits_message_size,
    )


def _backend_executable(
    config: Config, backend: str, iohyve: str, extra_env: dict[str, str]
) -> str:
    """The VM manager's program (warned about when it cannot run); sets the simulated
    vm-bhyve's version in ``extra_env``."""
    executable = iohyve
    if backend == "vm-bhyve":
        extra_env[VM_BHYVE_VERSION_ENV] = config.vm_bhyve_simulator_version
        if not config.iohyve_simulate:
            executable = str(config.vm_bhyve_path)
    if not config.iohyve_simulate and not os.access(executable, os.X_OK):
        log.warn(
            "{tool} is not executable at {path}; every call will fail",
            tool=backend,
            path=executable,
        )
    return executable


def _describe_backend(config: Config, backend: str, executable: str) -> str:
    """What the start-up line and the fleet say runs the guests."""
    if not config.iohyve_simulate:
        return f"{backend} at {executable}"
    version = (
        config.vm_bhyve_simulator_version
        if backend == "vm-bhyve"
        else config.iohyve_simulator_profile
    )
    return f"simulated {backend} {version}"


def make_service(config: Config, reactor: Any) -> IService:
    """Build the daemon: listeners, the shared Site, the API, the fetch queue."""
    _prepare_state_dir(config.state_dir)
    # First, so that the log file gets every line of the start.
    log_files = LogFiles(config.log_file, config.log_format, reactor, level=config.log_level)
    endpoints = _endpoints(config, reactor)
    backend = choose_backend(config)
    command, extra_env = iohyve_command(config)
    executable = _backend_executable(config, backend, command[0], extra_env)
    runner = ProcessRunner(reactor, env=extra_env)
    iohyve = make_backend(config, runner, reactor, command, backend)
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
        retries=config.fetch_retries,
        end_left_overs=_in_threads(reactor),
    )
    GuestWatcher(iohyve, hub, reactor, interval=config.events_guests_interval)
    auth, account_watcher = make_authenticator(config, reactor)
    consoles = ConsoleService(
        iohyve,
        reactor,
        config.state_dir / "console",
        limits=ConsoleLimits(
            history=config.console_history,
            log_size=config.console_log_size,
            log_keep=config.console_log_keep,
            viewers_per_guest=config.console_viewers_per_guest,
            viewers_per_user=config.console_viewers_per_user,
            viewer_buffer=config.console_viewer_buffer,
            interval=config.console_interval,
        ),
        audit=auth.audit_log.record,
    )
    host = HostTools(
        runner,
        [*command, "zpool"] if config.iohyve_simulate else [str(config.iohyve_zpool)],
        [*command, "ifconfig"] if config.iohyve_simulate else [str(config.iohyve_ifconfig)],
        [*command, "sysctl"] if config.iohyve_simulate else [str(config.iohyve_sysctl)],
    )
    registry = build_registry(
        Rpc(auth, config.hostname),
        DispatcherActions(fetches),
        EventActions(hub),
        # setup checks the pool exists before it changes anything
        IohyveActions(
            iohyve,
            fetches,
            config.fetch_file_roots,
            host=host,
            upload_max=config.fetch_upload_max,
        ),
        HostActions(host),
        ConsoleActions(consoles),
        backend=iohyve.tool,
    )
    api = Api(registry, auth)
    mode = _describe_backend(config, backend, executable)
    fleet = _fleet_member(config, api, hub, mode, reactor)
    checks = daemon_checks(executable, config.state_dir, fetches)
    if fleet is not None:
        checks.append(Check("fleet", fleet.problem, required=False))
    metrics = Metrics()
    api.on_call = metrics.call_answered
    auth.on_failed_login = metrics.login_failed
    fetches.on_bytes = metrics.bytes_fetched
    log_files.reopeners.append(auth.audit_log.reopen)
    guard = Guard(auth, config.metrics_allow)
    site = build_site(
        api,
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
        consoles=consoles,
        console_limits=TransportConsoleLimits(
            login_timeout=10.0,
            viewer_buffer=config.console_viewer_buffer,
            message_size=config.limits_message_size,
        ),
        operations={
            b"metrics": MetricsResource(metrics, guard),
            b"livez": Livez(),
            b"readyz": Readyz(checks, guard),
        },
        dashboard=Dashboard(router=config.fleet_router, realm=config.fleet_realm),
    )
    connections = _connection_counter(config, reactor)
    # A connection that has not sent its first request line in time is closed: its
    # channel counts from the moment the TCP connection is accepted, handshake included.
    # (An HTTP/1.1 channel: the listeners offer no ALPN, so HTTP/2 was never spoken.)
    site.protocol = first_request_channel(  # type: ignore[assignment]
        config.limits_handshake_timeout, connections.timed_out
    )
    metrics.watch(fetches, connections)

    # Services stop in the reverse order of this list, each once the one before has
    # stopped: listeners first (no new connections), then the WebSockets (closed with
    # 1001), then the fetches (which may take their grace period, while the runner still
    # starts the commands that check a finished fetch), then any child still running,
    # and the log file last.
    top = StopInOrder()
    log_files.setServiceParent(top)  # stops last, so it logs the whole stop
    _ChildProcesses(runner).setServiceParent(top)
    fetches.setServiceParent(top)
    _timer(60, auth.sessions.purge, reactor).setServiceParent(top)
    _timer(WATCH_INTERVAL, account_watcher.poll, reactor).setServiceParent(top)
    consoles.setServiceParent(top)  # closes the devices once no viewer is left
    _CloseWebSockets(site.websockets).setServiceParent(top)
    if site.consoles is not None:
        _CloseWebSockets(site.consoles).setServiceParent(top)
    ControlService(config.state_dir / CONTROL_SOCKET, auth.lockout, reactor).setServiceParent(top)
    reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    for description, endpoint, tls_options in endpoints:
        # Limits outermost, so that a refused connection costs no TLS handshake.
        factory = TLSMemoryBIOFactory(tls_options, False, site) if tls_options else site
        Listener(description, endpoint, connections.wrap(factory), reactor).setServiceParent(top)
    if fleet is not None:
        fleet.setServiceParent(top)  # leaves the router first, before the listeners close
    log.info(
        "sysadmd starting with {mode}; state in {state}", mode=mode, state=str(config.state_dir)
    )
    reactor.callWhenRunning(_log_backend_version, iohyve)
    return top


def build_site(
    api: Api,
    clock: Any,
    *,
    allowed_origins: Iterable[str] = (),
    limits: Limits | None = None,
    max_body: int = 64 * 1024,
    request_deadline: float = 10.0,
    hub: EventHub | None = None,
    operations: Mapping[bytes, IResource] | None = None,
    access_log: bool = False,
    consoles: ConsoleService | None = None,
    console_limits: TransportConsoleLimits | None = None,
    dashboard: Dashboard | None = None,
) -> ApiSite:
    """The Site every listener serves: WebSocket at ``/``, REST below it.

    Both transports hand every request to ``api``'s dispatch, which authenticates it
    through ``api``'s gate.

    ``consoles``, if given, are served at ``/console/<guest>`` (sysadmd.transport's console
    WebSocket), through the same dispatch.

    ``operations`` are served at ``/<name>`` (``/metrics``, ``/livez``, ``/readyz``)
    in front of the API, which sees every other path as before; ``dashboard``, if
    given, is served at ``/ui/``.
    """
    # Autobahn logs every frame at debug level through txaio; keep it to what matters.
    txaio.set_global_log_level("info")
    factory = ApiServerFactory(api, clock, limits, hub)
    # A factory wrapped in a resource is never started by the Site; start it here.
    factory.startFactory()
    rest = RestApi(api, OriginCheckedResource(factory, allowed_origins))
    root = rest.resource()
    console_factory: ConsoleServerFactory | None = None
    if consoles is not None:
        console_factory = ConsoleServerFactory(api, consoles, clock, console_limits)
        console_factory.startFactory()
        root = ConsoleRoot(root, console_factory, allowed_origins)
    served = OperationsRoot(root, operations) if operations else root
    site = ApiSite(
        WithDashboard(served, dashboard) if dashboard is not None else served,
        clock,
        max_body=max_body,
        request_deadline=request_deadline,
        websockets=factory,
        access_log=access_log,
        uploads=Uploads(api, clock),
    )
    site.consoles = console_factory
    return site
