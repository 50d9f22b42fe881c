"""Assembly: from a :class:`~sysadmd.config.Config` to the daemon's service tree.

One :class:`~twisted.web.server.Site` serves the WebSocket API at ``/`` and REST
at ``/<namespace>/<name>``; every listener serves that same Site.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import txaio
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from sysadmd import tls
from sysadmd.api import Api
from sysadmd.config import Config, ConfigError
from sysadmd.iohyve.actions import IohyveActions
from sysadmd.iohyve.adapter import Iohyve
from sysadmd.registry import Registry
from sysadmd.rest import RestApi
from sysadmd.runner import ProcessRunner
from sysadmd.tasks import FetchQueue
from sysadmd.websocket import ApiServerFactory, OriginCheckedResource

log = Logger()


class Listener(Service):
    """Listens on one endpoint and logs where clients can connect.

    Listening happens in ``privilegedStartService``, so ports below 1024 are bound
    before twistd drops privileges, and a port that cannot be bound stops the start.
    """

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, site: Site) -> None:
        self.description = description
        self._endpoint = endpoint
        self._site = site
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


def _endpoints(config: Config, reactor: Any) -> list[tuple[str, IStreamServerEndpoint]]:
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
            endpoints.append((shown, serverFromString(reactor, description)))
        except (ValueError, TypeError, KeyError, OSError) as e:
            raise ConfigError(f"daemon.listen: {shown!r} is not a usable endpoint: {e}") from None
    return endpoints


def make_service(config: Config, reactor: Any) -> IService:
    """Build the daemon: listeners, the shared Site, the API, the fetch queue."""
    _prepare_state_dir(config.state_dir)
    endpoints = _endpoints(config, reactor)
    command, extra_env = iohyve_command(config)
    if not config.iohyve_simulate and not os.access(command[0], os.X_OK):
        log.warn("iohyve is not executable at {path}; every call will fail", path=command[0])
    runner = ProcessRunner(reactor, env=extra_env)
    iohyve = Iohyve(runner, command, timeout=config.iohyve_timeout)
    fetches = FetchQueue(
        iohyve,
        reactor,
        concurrency=config.fetch_concurrency,
        max_queued=config.fetch_queue_size,
        timeout=config.fetch_timeout,
    )
    registry = Registry()
    registry.register(IohyveActions(iohyve, fetches, config.fetch_file_roots))
    api = Api(registry)
    site = build_site(api, config.allowed_origins)

    top = MultiService()
    _ChildProcesses(runner).setServiceParent(top)
    fetches.setServiceParent(top)
    for description, endpoint in endpoints:
        Listener(description, endpoint, site).setServiceParent(top)
    mode = (
        "simulated iohyve " + config.iohyve_simulator_profile
        if config.iohyve_simulate
        else command[0]
    )
    log.info(
        "sysadmd starting with {mode}; state in {state}", mode=mode, state=str(config.state_dir)
    )
    return top


def build_site(api: Api, allowed_origins: Iterable[str] = ()) -> Site:
    """The Site every listener serves: WebSocket at ``/``, REST below it."""
    # Autobahn logs every frame at debug level through txaio; keep it to what matters.
    txaio.set_global_log_level("info")
    factory = ApiServerFactory(api)
    # A factory wrapped in a resource is never started by the Site; start it here.
    factory.startFactory()
    rest = RestApi(api, OriginCheckedResource(factory, allowed_origins))
    site = Site(rest.resource())
    site.displayTracebacks = False
    return site
