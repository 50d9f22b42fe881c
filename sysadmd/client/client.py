"""The asynchronous client: one WebSocket to sysadmd, on Twisted and Autobahn.

:meth:`Client.connect` opens ``wss://host:port/`` with the TLS mode given (see
:mod:`sysadmd.client.tls`); a login (:meth:`Client.login`, :meth:`Client.login_token` or
:meth:`Client.login_key`) makes the connection usable. Requests are sysadm envelopes
``{"namespace", "name", "id", "args"}``; replies are matched by id, so calls may overlap.
``events`` messages go to the callbacks given to :meth:`Client.subscribe`.

:meth:`Client.fetch_iso` returns a :class:`Task`: its :attr:`Task.progress` follows the
daemon's ``dispatcher`` events, and awaiting it waits until the download ends (raising
:class:`~sysadmd.client.errors.TaskFailed` unless it succeeded).
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor as _default_reactor
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectionRefusedError, DNSLookupError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from sysadmd.client.errors import (
    ApiError,
    ClientError,
    ConnectionFailed,
    SessionExpired,
    TaskFailed,
    TLSVerificationFailed,
)
from sysadmd.client.signing import sign_challenge
from sysadmd.client.tls import (
    CATLS,
    PinCheck,
    PinnedTLS,
    TLSMode,
    ca_options,
    format_address,
    normalize_fingerprint,
)
from sysadmd.shared import OneShotObserver, TaskState

__all__ = [
    "DEFAULT_PORT",
    "Client",
    "EventCallback",
    "Login",
    "Subscription",
    "Task",
    "TaskProgress",
    "upload_iso",
]

DEFAULT_PORT: Final = 12150
"""sysadm's WebSocket port."""

DEFAULT_TIMEOUT: Final = 60.0
"""Seconds to wait for a reply (iohyve's ``delete -f`` alone takes 10)."""

_EARLY_EVENTS: Final = 64  # task ids whose events arrived before the task's handle existed
TASK_STATUSES: Final = tuple(str(state) for state in TaskState)
"""A task's ``status`` values: the daemon's task states on the wire."""

FINAL_STATUSES: Final = frozenset(str(state) for state in TaskState.finals())
"""The statuses of a task that has ended."""

ACTIVE_STATUSES: Final = frozenset(str(state) for state in TaskState if not state.final)
"""The statuses of a task that has not ended: waiting for its turn, or fetching."""

SYSADM_TO_STATUS: Final = {state.sysadm: str(state) for state in TaskState if not state.final}
"""The status of an unfinished task from sysadm's event ``state``; ``finished`` gives its
``result`` instead."""
_LOGIN_CALLS: Final = frozenset({"auth", "auth_token", "auth_ssl", "auth_clear", "identify"})

EventCallback = Callable[[dict[str, Any]], object]
"""Called with the ``args`` of each event; runs in the reactor thread."""


class Login(NamedTuple):
    """A session: its token (a secret: keep it like a password) and seconds it stays valid."""

    token: str
    seconds: int


@dataclass(frozen=True)
class TaskProgress:
    """Where a fetch task is, as its last ``dispatcher`` event or the task list told.

    ``status``: ``queued``, ``running``, ``succeeded``, ``failed``, ``cancelled`` or
    ``interrupted``. ``bytes_total``/``percent`` are None while the size is unknown (always
    for ``ftp://``). ``rate`` is in bytes per second.
    """

    status: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    percent: float | None = None
    rate: float = 0.0
    message: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the task has ended, one way or another."""
        return self.status in FINAL_STATUSES


class Task:
    """A fetch task of the daemon (``rpc/dispatcher``), followed through its events.

    ``await task`` (or :meth:`wait`) returns the final :class:`TaskProgress` when it
    succeeded and raises :class:`TaskFailed` when it failed, was killed or interrupted.
    """

    def __init__(self, client: Client, task_id: str, iso: str | None = None) -> None:
        self.client = client
        self.id = task_id
        self.iso = iso
        self.progress = TaskProgress()
        self._ended: OneShotObserver[TaskProgress] = OneShotObserver()
        self._watchers: list[Callable[[Task], object]] = []
        self._outcome: TaskProgress | ClientError | None = None

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.progress.status}>"

    @property
    def done(self) -> bool:
        """Whether the outcome is known."""
        return self._outcome is not None

    def on_progress(self, callback: Callable[[Task], object]) -> None:
        """Call ``callback(task)`` after every change of :attr:`progress`."""
        self._watchers.append(callback)

    async def wait(self) -> TaskProgress:
        """Wait until the task ends; its last progress, or :class:`TaskFailed`."""
        return await self._ended.when_fired()

    def __await__(self) -> Generator[Any, None, TaskProgress]:
        return ensureDeferred(self.wait()).__await__()

    async def kill(self) -> bool:
        """Ask the daemon to end the task; whether it was still unfinished."""
        return self.id in await self.client.kill(self)

    # Fed by the client

    def _update(self, progress: TaskProgress) -> None:
        if self._outcome is not None:
            return
        self.progress = progress
        for watcher in list(self._watchers):
            _safely(watcher, self)

    def _end(self, outcome: TaskProgress | ClientError) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        self._ended.fire(Failure(outcome) if isinstance(outcome, ClientError) else outcome)

    def _fail(self, error: ClientError) -> None:
        self._end(error)


class Subscription:
    """One callback subscribed to one event; :meth:`Client.unsubscribe` ends it."""

    def __init__(self, event: str, callback: EventCallback) -> None:
        self.event = event
        self.callback = callback


_log = Logger()


def _safely(callback: Callable[..., object], *args: object) -> None:
    """Run a user callback; an exception is logged, never allowed into the protocol."""
    try:
        callback(*args)
    except Exception:
        _log.failure("A sysadm client callback failed")


class _Protocol(WebSocketClientProtocol):  # type: ignore[misc]
    """The WebSocket: hands messages and the close to its :class:`_Wire`."""

    def __init__(self, wire: _Wire) -> None:
        super().__init__()
        self.wire = wire

    def onOpen(self) -> None:
        self.wire.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.wire.message(payload)

    def connectionLost(self, reason: Failure) -> None:
        self.wire.lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.wire.closed(code, reason)


class _Wire:
    """What the protocol reports, until and after the :class:`Client` exists."""

    def __init__(self) -> None:
        self.open: Deferred[_Protocol] = Deferred()
        self.lost_reason: Failure | None = None
        self.client: Client | None = None
        self.early: list[bytes] = []
        self.closed_with: tuple[int | None, str | None] | None = None

    def opened(self, protocol: _Protocol) -> None:
        if not self.open.called:
            self.open.callback(protocol)

    def message(self, payload: bytes) -> None:
        if self.client is None:
            self.early.append(payload)
        else:
            self.client._received(payload)

    def closed(self, code: int | None, reason: str | None) -> None:
        self.closed_with = (code, reason)
        if not self.open.called:
            self.open.errback(Failure(ConnectionFailed(_close_text(code, reason))))
        if self.client is not None:
            self.client._closed(code, reason)


#: The close codes with which the daemon ends a WebSocket whose session ended: 4002
#: expired, 4003 revoked (its account changed), 4004 logged out elsewhere, 4005 evicted.
SESSION_ENDED_CODES: Final = frozenset({4002, 4003, 4004, 4005})


def _close_text(code: int | None, reason: str | None) -> str:
    if code in (1000, 1001) or code is None:
        return "the daemon closed the connection"
    return f"the daemon closed the connection ({code}: {reason or 'no reason given'})"


class Client:
    """A connection to sysadmd; create it with :meth:`connect`, end it with :meth:`close`."""

    def __init__(
        self,
        protocol: _Protocol,
        wire: _Wire,
        address: str,
        *,
        fingerprint: str | None,
        timeout: float,
        clock: IReactorTime,
    ) -> None:
        self._protocol = protocol
        self._wire = wire
        self.address = address
        #: The SHA-256 fingerprint of the server's certificate (pinned mode only).
        self.fingerprint = fingerprint
        self.timeout = timeout
        self._clock = clock
        self._ids = itertools.count(1)
        self._pending: dict[str, Deferred[dict[str, Any]]] = {}
        self._subscribers: dict[str, list[Subscription]] = {}
        self._tasks: dict[str, Task] = {}
        self._early_events: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._dispatcher: Subscription | None = None
        self._close_error: ConnectionFailed | SessionExpired | None = None
        self._logged_in = False
        self.when_closed: Deferred[None] = Deferred()
        wire.client = self
        for payload in wire.early:
            self._received(payload)
        wire.early.clear()
        if wire.closed_with is not None:
            self._closed(*wire.closed_with)

    # ----------------------------------------------------------------------------------------
    # Connecting

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        tls: TLSMode | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = 15.0,
        reactor: Any = None,
    ) -> Client:
        """Open ``wss://host:port/``, verifying the server as ``tls`` says (default: pinned
        against ``~/.config/sysadm/known_hosts``, refusing unknown hosts).

        Raises :class:`~sysadmd.client.errors.UnknownHost`,
        :class:`~sysadmd.client.errors.FingerprintMismatch`,
        :class:`~sysadmd.client.errors.TLSVerificationFailed` or
        :class:`~sysadmd.client.errors.ConnectionFailed`.
        """
        reactor = reactor if reactor is not None else _default_reactor
        mode = tls if tls is not None else PinnedTLS()
        host = host.strip().strip("[]")
        address = format_address(host, port)
        check, creator = _tls_creator(mode, host, address)
        url_host = f"[{host}]" if ":" in host else host
        wire = _Wire()
        factory = WebSocketClientFactory(f"wss://{url_host}:{port}/", reactor=reactor)
        factory.protocol = lambda: _Protocol(wire)
        factory.setProtocolOptions(openHandshakeTimeout=connect_timeout, autoPingInterval=0)
        endpoint = wrapClientTLS(
            creator, HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
        )
        attempt = ensureDeferred(_open(endpoint, factory, wire))
        timer = reactor.callLater(connect_timeout, attempt.cancel)
        try:
            protocol = await _opened(
                attempt, address, connect_timeout, wire=wire, check=check, mode=mode
            )
        finally:
            if timer.active():
                timer.cancel()

        fingerprint: str | None = None
        if check is not None:
            # The handshake is over, so the verify callback saw the leaf; check once more
            # before anything else is sent.
            fingerprint = check.presented
            if fingerprint is None or (
                check.expected is not None and fingerprint != check.expected
            ):
                protocol.dropConnection(abort=True)
                raise TLSVerificationFailed(f"{address}: the certificate was not checked")
            if isinstance(mode, PinnedTLS) and mode.known_hosts.get(address) is None:
                mode.known_hosts.add(address, fingerprint)
        return cls(protocol, wire, address, fingerprint=fingerprint, timeout=timeout, clock=reactor)

    async def close(self) -> None:
        """Close the WebSocket (sysadm's clients close first) and wait until it is closed."""
        if not self.when_closed.called:
            self._protocol.sendClose(1000, "sysadm client closed")
            timer = self._clock.callLater(5, self._protocol.dropConnection, True)
            try:
                await self.when_closed
            finally:
                if timer.active():
                    timer.cancel()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------------------------------
    # Calls

    async def call(
        self, namespace: str, name: str, args: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Send one request and return the ``args`` of its reply.

        Raises :class:`ApiError` for an error reply (:class:`SessionExpired` for a 401 outside
        the logins, and once the daemon closed the connection because its session ended)
        and :class:`ConnectionFailed` if the connection ends otherwise or no reply comes
        within ``timeout`` seconds (default: :attr:`timeout`).
        """
        if self._close_error is not None:
            raise self._close_error
        request_id = f"c{next(self._ids)}"
        message = {"namespace": namespace, "name": name, "id": request_id, "args": args or {}}
        waiter: Deferred[dict[str, Any]] = Deferred()
        self._pending[request_id] = waiter
        self._protocol.sendMessage(json.dumps(message).encode("utf-8"), isBinary=False)
        seconds = self.timeout if timeout is None else timeout
        timer = self._clock.callLater(seconds, waiter.cancel)
        try:
            reply = await waiter
        except CancelledError:
            raise ConnectionFailed(
                f"{namespace}/{name}: no reply from {self.address} within {seconds:g} s"
            ) from None
        finally:
            self._pending.pop(request_id, None)
            if timer.active():
                timer.cancel()
        if reply.get("name") == "error" or reply.get("namespace") == "error":
            error = reply.get("args") or {}
            code = _code(error.get("code"))
            text = str(error.get("message") or "no message")
            if (
                code == 401
                and self._logged_in
                and not (namespace == "rpc" and name in _LOGIN_CALLS)
            ):
                raise SessionExpired()
            raise ApiError(code, text)
        return reply.get("args")

    async def iohyve(self, action: str, **args: str) -> Any:
        """Call ``sysadm/iohyve`` ``action`` and return the value under the action's key."""
        reply = await self.call("sysadm", "iohyve", {"action": action, **args})
        if isinstance(reply, dict) and action in reply:
            return reply[action]
        return reply

    # Logins

    async def identify(self) -> dict[str, str]:
        """``rpc/identify``: ``{"type": "server", "hostname": ...}``; needs no login."""
        reply: dict[str, str] = await self.call("rpc", "identify")
        return reply

    async def login(self, username: str, password: str) -> Login:
        """``rpc/auth``: log in with a password; the session's token and lifetime."""
        reply = await self.call("rpc", "auth", {"username": username, "password": password})
        return self._session(reply)

    async def login_token(self, token: str) -> Login:
        """``rpc/auth_token``: continue a saved session; :class:`SessionExpired` if it ended."""
        try:
            reply = await self.call("rpc", "auth_token", {"token": token})
        except ApiError as e:
            if e.code == 401:
                raise SessionExpired() from None
            raise
        return self._session(reply)

    async def login_key(self, private_key: rsa.RSAPrivateKey) -> Login:
        """``rpc/auth_ssl``: log in with a registered RSA key (challenge, then its signature)."""
        challenge = await self.call("rpc", "auth_ssl")
        signed = sign_challenge(private_key, challenge["test_string"])
        return self._session(await self.call("rpc", "auth_ssl", {"encrypted_string": signed}))

    async def logout(self) -> None:
        """``rpc/auth_clear``: end the session, on every connection that uses its token."""
        await self.call("rpc", "auth_clear")
        self._logged_in = False

    async def query(self) -> dict[str, str]:
        """``rpc/query``: the API classes and ``read``/``read/write`` for each."""
        reply: dict[str, str] = await self.call("rpc", "query")
        return reply

    # sysadm/iohyve

    async def list_vms(self) -> dict[str, dict[str, str]]:
        """The guests: ``{name: {description, rcboot, running, vmm}}``."""
        reply: dict[str, dict[str, str]] = await self.iohyve("listvms")
        return reply

    async def list_isos(self) -> list[str]:
        """The ISO names."""
        reply: list[str] = await self.iohyve("listisos")
        return reply

    async def fetch_iso(
        self,
        url: str,
        *,
        checksum: str | None = None,
        checksum_url: str | None = None,
        verify: str | None = None,
    ) -> Task:
        """Queue a download; a :class:`Task` that follows it (await it to wait for the end).

        At most one of ``checksum`` (``sha256:<hex>`` or ``sha512:<hex>``), ``checksum_url``
        (a checksum file) and ``verify="auto"`` (FreeBSD's checksum file beside the image)
        makes the daemon verify the download; without them nothing changes.
        """
        await self._follow_dispatcher()
        extra = {
            key: value
            for key, value in (
                ("checksum", checksum),
                ("checksum_url", checksum_url),
                ("verify", verify),
            )
            if value is not None
        }
        reply = await self.iohyve("fetchiso", url=url, **extra)
        return self._task(reply["queueid"], iso=url.rstrip("/").rsplit("/", 1)[-1])

    async def iso_library(self) -> dict[str, dict[str, Any]]:
        """The ISOs with their sizes: ``{iso: {size, datastore?, digest?}}``."""
        reply: dict[str, dict[str, Any]] = await self.iohyve("isolibrary")
        return reply

    async def iso_digests(self) -> dict[str, dict[str, Any]]:
        """The digests verified fetches recorded: ``{iso: {digest, size, verified}}``."""
        reply: dict[str, dict[str, Any]] = await self.iohyve("isodigests")
        return reply

    async def rename_iso(self, source: str, target: str) -> dict[str, str]:
        """Rename an ISO."""
        reply: dict[str, str] = await self.iohyve("renameiso", source=source, target=target)
        return reply

    async def remove_iso(self, name: str) -> dict[str, str]:
        """Remove an ISO."""
        reply: dict[str, str] = await self.iohyve("rmiso", target=name)
        return reply

    async def create(self, name: str, size: str) -> dict[str, str]:
        """Create a guest with a first disk of ``size`` (e.g. ``10G``)."""
        reply: dict[str, str] = await self.iohyve("create", name=name, size=size)
        return reply

    async def install(self, name: str, iso: str) -> dict[str, str]:
        """Boot a stopped guest from an ISO to install it."""
        reply: dict[str, str] = await self.iohyve("install", name=name, iso=iso)
        return reply

    async def start(self, name: str) -> dict[str, str]:
        """Start a guest."""
        reply: dict[str, str] = await self.iohyve("start", name=name)
        return reply

    async def stop(self, name: str, *, force: bool = False) -> dict[str, str]:
        """Stop a guest: an ACPI shutdown, or with ``force`` at once (iohyve forcekill)."""
        args = {"name": name, "force": "true"} if force else {"name": name}
        reply: dict[str, str] = await self.iohyve("stop", **args)
        return reply

    async def delete(self, name: str) -> dict[str, str]:
        """Delete a stopped guest and all its disks (takes about 10 s: iohyve waits)."""
        reply: dict[str, str] = await self.iohyve("delete", name=name)
        return reply

    async def list_disks(self, name: str) -> dict[str, str]:
        """A guest's disks and their sizes: ``{"disk0": "10G", ...}``."""
        reply: dict[str, str] = await self.iohyve("listdisks", name=name)
        return reply

    async def add_disk(self, name: str, size: str, pool: str | None = None) -> dict[str, Any]:
        """Add a disk to a guest, on its pool or on ``pool``."""
        args = {"name": name, "size": size}
        if pool:
            args["pool"] = pool
        reply: dict[str, Any] = await self.iohyve("adddisk", **args)
        return reply

    async def delete_disk(self, name: str, disk: str) -> dict[str, str]:
        """Remove a disk other than disk0 from a guest."""
        reply: dict[str, str] = await self.iohyve("deletedisk", name=name, disk=disk)
        return reply

    async def resize_disk(self, name: str, disk: str, size: str) -> dict[str, str]:
        """Resize a disk of a stopped guest."""
        reply: dict[str, str] = await self.iohyve("resizedisk", name=name, disk=disk, size=size)
        return reply

    async def get_props(self, name: str) -> dict[str, str]:
        """A guest's iohyve properties (``iohyve getall``)."""
        reply = await self.iohyve("getprops", name=name)
        props: dict[str, str] = reply.get(name, reply) if isinstance(reply, dict) else {}
        return props

    async def set_props(self, name: str, props: Mapping[str, str]) -> dict[str, str]:
        """Set properties of a guest (``ram``, ``cpu``, ``description``, ...)."""
        if not props:
            raise ValueError("set_props needs at least one property")
        if "name" in props or "action" in props:
            raise ValueError("'name' and 'action' cannot be set as properties")
        reply = await self.iohyve("setprop", name=name, **props)
        result: dict[str, str] = reply.get(name, reply) if isinstance(reply, dict) else {}
        return result

    async def version(self) -> str:
        """iohyve's version string."""
        reply = await self.iohyve("version")
        return str(reply["version"])

    async def is_setup(self) -> bool:
        """Whether iohyve is set up on the host."""
        reply = await self.iohyve("issetup")
        return bool(reply["setup"] == "true")

    async def setup(self, pool: str, nic: str) -> dict[str, str]:
        """Set iohyve up on a ZFS pool and a network interface."""
        reply: dict[str, str] = await self.iohyve("setup", pool=pool, nic=nic)
        return reply

    # rpc/dispatcher

    async def tasks(self) -> dict[str, dict[str, Any]]:
        """``rpc/dispatcher list``: the tasks by id (``status``, ``iso``, progress, ...)."""
        reply = await self.call("rpc", "dispatcher", {"action": "list"})
        jobs: dict[str, dict[str, Any]] = reply["jobs"]["no_queue"]
        return jobs

    async def kill(self, *tasks: Task | str) -> list[str]:
        """``rpc/dispatcher kill``: end tasks; the ids that were still unfinished."""
        ids = [t.id if isinstance(t, Task) else t for t in tasks]
        if not ids:
            raise ValueError("kill needs at least one task")
        job_id: str | list[str] = ids[0] if len(ids) == 1 else ids
        reply = await self.call("rpc", "dispatcher", {"action": "kill", "job_id": job_id})
        killed: list[str] = reply["killed"]["jobs"]
        return killed

    async def task(self, task_id: str) -> Task:
        """A :class:`Task` handle for a task that exists already (from :meth:`tasks`)."""
        await self._follow_dispatcher()
        task = self._task(task_id)
        jobs = await self.tasks()
        if task_id not in jobs and not task.done:
            raise ApiError(404, f"no task {task_id}")
        if task_id in jobs and not task.done:
            job = jobs[task_id]
            task.iso = task.iso or job.get("iso")
            progress = _progress_from_job(job)
            task._update(progress)
            if progress.finished:
                self._finish(task, progress)
        return task

    # events

    async def subscribe(self, event: str, callback: EventCallback) -> Subscription:
        """Call ``callback(args)`` for each ``event`` (``dispatcher``, ``guests``)."""
        subscription = Subscription(event, callback)
        listeners = self._subscribers.setdefault(event, [])
        listeners.append(subscription)
        if len(listeners) == 1:
            try:
                reply = await self.call("events", "subscribe", [event])
            except BaseException:
                listeners.remove(subscription)
                raise
            if not isinstance(reply, dict) or "subscribe" not in reply:
                # The reply names the last known event subscribed; unknown ones are listed
                # under "unknown" (older daemons, and sysadm, answer {}).
                listeners.remove(subscription)
                raise ClientError(f"the daemon has no event {event!r}")
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop calling the subscription's callback."""
        listeners = self._subscribers.get(subscription.event, [])
        if subscription in listeners:
            listeners.remove(subscription)
            if not listeners:
                await self.call("events", "unsubscribe", [subscription.event])

    # ----------------------------------------------------------------------------------------
    # Inside

    def _session(self, reply: Any) -> Login:
        login = _login(reply)
        self._logged_in = True
        return login

    async def _follow_dispatcher(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = await self.subscribe("dispatcher", self._dispatcher_event)

    def _task(self, task_id: str, iso: str | None = None) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            task = self._tasks[task_id] = Task(self, task_id, iso)
            for args in self._early_events.pop(task_id, []):
                self._apply(task, args)
        return task

    def _dispatcher_event(self, args: dict[str, Any]) -> None:
        details = args.get("process_details")
        task_id = details.get("process_id") if isinstance(details, dict) else None
        if not isinstance(task_id, str):
            return
        task = self._tasks.get(task_id)
        if task is None:
            self._early_events.setdefault(task_id, []).append(args)
            self._early_events.move_to_end(task_id)
            while len(self._early_events) > _EARLY_EVENTS:
                self._early_events.popitem(last=False)
            return
        self._apply(task, args)

    def _apply(self, task: Task, args: dict[str, Any]) -> None:
        state = args.get("state")
        status = SYSADM_TO_STATUS.get(str(state))
        if status is None:
            status = str(args.get("result") or "failed")
        progress = TaskProgress(
            status=status,
            bytes_done=int(args.get("bytes_done") or 0),
            bytes_total=_int_or_none(args.get("bytes_total")),
            percent=_float_or_none(args.get("percent")),
            rate=float(args.get("rate") or 0.0),
        )
        if task.iso is None and isinstance(args.get("filename"), str):
            task.iso = args["filename"]
        task._update(progress)
        if progress.finished:
            self._finish(task, progress)

    def _finish(self, task: Task, progress: TaskProgress) -> None:
        if progress.status == "succeeded":
            task._end(progress)
            return
        if progress.message is not None:
            task._fail(TaskFailed(task.id, progress.status, progress.message))
            return

        # The event has no message; the task list has it.
        def failed(message: str | None) -> None:
            task._update(replace(progress, message=message))
            task._fail(TaskFailed(task.id, progress.status, message))

        ensureDeferred(self._message_of(task.id)).addCallback(failed)

    async def _message_of(self, task_id: str) -> str | None:
        try:
            job = (await self.tasks()).get(task_id, {})
        except ClientError:
            return None
        message = job.get("message")
        return message if isinstance(message, str) else None

    def _received(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            _log.warn("The daemon sent something that is not JSON; ignored")
            return
        if not isinstance(message, dict):
            return
        if message.get("namespace") == "events" and message.get("name") != "response":
            args = message.get("args")
            if isinstance(args, dict):
                for subscription in list(self._subscribers.get(str(message.get("name")), [])):
                    _safely(subscription.callback, args)
            return
        waiter = self._pending.get(str(message.get("id")))
        if waiter is not None and not waiter.called:
            waiter.callback(message)

    def _closed(self, code: int | None, reason: str | None) -> None:
        error: ConnectionFailed | SessionExpired
        if code in SESSION_ENDED_CODES:
            # The daemon closes a socket whose session ended (expired, revoked, logged out
            # elsewhere, evicted): to the caller that is the session's end, as a 401 is.
            error = SessionExpired(reason or "session ended")
        else:
            error = ConnectionFailed(f"{self.address}: {_close_text(code, reason)}")
        self._close_error = error
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.called:
                waiter.errback(Failure(error))
        for task in self._tasks.values():
            task._fail(error)
        if not self.when_closed.called:
            self.when_closed.callback(None)


def _tls_creator(
    mode: TLSMode, host: str, address: str
) -> tuple[PinCheck | None, IOpenSSLClientConnectionCreator]:
    """The TLS connection creator for ``mode``, and the pin check if it is one."""
    if isinstance(mode, CATLS):
        return None, ca_options(host, mode.ca_file)
    pinned = mode.known_hosts.get(address)
    if pinned is not None:
        check = PinCheck(host, pinned, accept_any=False)
    elif mode.accept is not None:
        check = PinCheck(host, normalize_fingerprint(mode.accept), accept_any=False)
    else:
        check = PinCheck(host, None, accept_any=mode.trust_on_first_use)
    return check, check


#: The same, for the client's other connections (the console's WebSocket).
tls_creator = _tls_creator


async def _open(endpoint: Any, factory: Any, wire: _Wire) -> _Protocol:
    await endpoint.connect(factory)
    return await wire.open


async def _opened(
    attempt: Deferred[_Protocol],
    address: str,
    connect_timeout: float,
    *,
    wire: _Wire,
    check: PinCheck | None,
    mode: TLSMode,
) -> _Protocol:
    """The open WebSocket, or the connection's failure as one clear ClientError."""
    try:
        return await attempt
    except CancelledError:
        raise ConnectionFailed(
            f"cannot connect to {address}: no answer within {connect_timeout:g} s"
        ) from None
    except ConnectionFailed as e:
        raise _explain(address, e, wire, check, mode) from None
    except DNSLookupError:
        raise ConnectionFailed(f"cannot connect to {address}: unknown host name") from None
    except ConnectionRefusedError:
        raise ConnectionFailed(f"cannot connect to {address}: connection refused") from None
    except ConnectError as e:
        text = str(e).strip().rstrip(".") or e.__class__.__name__
        raise ConnectionFailed(f"cannot connect to {address}: {text}") from None


def _explain(
    address: str,
    error: ConnectionFailed,
    wire: _Wire,
    check: PinCheck | None,
    mode: TLSMode,
) -> ClientError:
    """The error for a connection that closed before the WebSocket opened."""
    if check is not None and isinstance(mode, PinnedTLS):
        refused = check.explain(address, mode.known_hosts)
        if refused is not None:
            return refused
    reason = wire.lost_reason
    if reason is not None:
        from OpenSSL import SSL  # noqa: PLC0415

        if reason.check(SSL.Error) and isinstance(reason.value, Exception):
            detail = _ssl_detail(reason.value)
            if isinstance(mode, CATLS):
                return TLSVerificationFailed(
                    f"cannot connect to {address}: TLS verification failed: {detail}"
                )
            return TLSVerificationFailed(f"cannot connect to {address}: TLS failed: {detail}")
    return ConnectionFailed(f"cannot connect to {address}: {error}")


def _ssl_detail(error: Exception) -> str:
    for entry in getattr(error, "args", [[]])[0] or []:
        if isinstance(entry, tuple) and len(entry) >= 3 and entry[2]:
            return str(entry[2])
    return "handshake failed"


def _code(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 500


def _login(reply: Any) -> Login:
    if not isinstance(reply, list) or len(reply) < 2 or not isinstance(reply[0], str):
        raise ClientError("the daemon's login reply is not [token, seconds]")
    return Login(reply[0], int(reply[1]))


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _progress_from_job(job: Mapping[str, Any]) -> TaskProgress:
    return TaskProgress(
        status=str(job.get("status") or "queued"),
        bytes_done=int(job.get("bytes_done") or 0),
        bytes_total=_int_or_none(job.get("bytes_total")),
        percent=_float_or_none(job.get("percent")),
        rate=float(job.get("rate") or 0.0),
        message=job.get("message") if isinstance(job.get("message"), str) else None,
    )


#: How many bytes of the file an upload reads at a time.
UPLOAD_CHUNK: Final = 256 * 1024


class _CountingReader:
    """A file read in chunks, telling ``on_read`` the bytes read so far."""

    def __init__(self, file: BinaryIO, on_read: Callable[[int], object]) -> None:
        self._file = file
        self._on_read = on_read
        self._done = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(UPLOAD_CHUNK if size < 0 else min(size, UPLOAD_CHUNK))
        self._done += len(data)
        _safely(self._on_read, self._done)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


@implementer(IPolicyForHTTPS)
class _OneCreator:
    def __init__(self, creator: IOpenSSLClientConnectionCreator) -> None:
        self._creator = creator

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return self._creator


async def upload_iso(
    host: str,
    port: int,
    token: str,
    path: Path,
    *,
    name: str | None = None,
    checksum: str | None = None,
    tls: TLSMode | None = None,
    on_progress: Callable[[int], object] | None = None,
    reactor: Any = None,
) -> dict[str, Any]:
    """Upload the file at ``path`` as ISO ``name`` (its own name by default) with
    ``PUT /iso/<name>``, logged in with session ``token``; stream it in chunks, telling
    ``on_progress`` the bytes sent. Returns the reply's ``args``: name, size, digest."""
    reactor = reactor if reactor is not None else _default_reactor
    mode = tls if tls is not None else PinnedTLS()
    host = host.strip().strip("[]")
    address = format_address(host, port)
    _, creator = _tls_creator(mode, host, address)
    url_host = f"[{host}]" if ":" in host else host
    target = quote(name or path.name, safe="")
    query = f"?checksum={quote(checksum, safe=':')}" if checksum else ""
    agent = Agent(reactor, contextFactory=_OneCreator(creator))
    with path.open("rb") as file:
        body = FileBodyProducer(
            _CountingReader(file, on_progress or (lambda _: None)), readSize=UPLOAD_CHUNK
        )
        try:
            response = await agent.request(
                b"PUT",
                f"https://{url_host}:{port}/iso/{target}{query}".encode(),
                Headers(
                    {
                        b"Authorization": [f"Bearer {token}".encode()],
                        b"Content-Type": [b"application/octet-stream"],
                    }
                ),
                body,
            )
        except (ConnectError, DNSLookupError) as e:
            raise ConnectionFailed(f"{address}: {e}") from None
        raw = await readBody(response)
    try:
        reply = json.loads(raw)["args"]
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"{address}: the upload got an unexpected reply") from None
    if response.code != 201:
        if response.code == 401:
            raise SessionExpired()
        raise ApiError(int(reply.get("code", response.code)), str(reply.get("message", "")))
    result: dict[str, Any] = reply
    return result
