"""A blocking face of :class:`~sysadmd.client.client.Client` for plain synchronous Python.

The Twisted reactor runs in a daemon thread, started on first use
(``reactor.run(installSignalHandlers=False)``); each method hands its call to that thread with
:func:`twisted.internet.threads.blockingCallFromThread` and waits for the answer. Errors are
the same exceptions as the asynchronous client's.

Do not use it in a program that runs the reactor itself (use the asynchronous client there):
the reactor can run in one thread only, once per process. Event callbacks given to
:meth:`BlockingClient.subscribe` and :meth:`BlockingTask.on_progress` run in the reactor's
thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor as _installed_reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import blockingCallFromThread

from sysadmd.client.client import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    Client,
    EventCallback,
    Login,
    Subscription,
    Task,
    TaskProgress,
)
from sysadmd.client.errors import ClientError
from sysadmd.client.tls import TLSMode

__all__ = ["BlockingClient", "BlockingTask"]

_T = TypeVar("_T")
_reactor: Any = _installed_reactor
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _ensure_reactor() -> None:
    """Start the reactor in a daemon thread, once."""
    global _thread  # noqa: PLW0603 (one reactor thread per process)
    with _lock:
        if _thread is not None:
            return
        if _reactor.running:
            raise ClientError("the Twisted reactor is running already; use the asynchronous client")
        started = threading.Event()
        _reactor.callWhenRunning(started.set)
        _thread = threading.Thread(
            target=_reactor.run,
            kwargs={"installSignalHandlers": False},
            name="sysadm-reactor",
            daemon=True,
        )
        _thread.start()
        started.wait()


def _run(coroutine: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``coroutine()`` on the reactor thread and wait for its result."""

    def start() -> Deferred[Any]:
        return ensureDeferred(coroutine())

    return cast(_T, blockingCallFromThread(_reactor, start))


class BlockingTask:
    """A :class:`~sysadmd.client.client.Task`, waited for synchronously."""

    def __init__(self, task: Task) -> None:
        self._task = task

    @property
    def id(self) -> str:
        """The task id (``{uuid}``)."""
        return self._task.id

    @property
    def iso(self) -> str | None:
        """The ISO the task fetches."""
        return self._task.iso

    @property
    def progress(self) -> TaskProgress:
        """The last progress known."""
        return self._task.progress

    def on_progress(self, callback: Callable[[Task], object]) -> None:
        """Call ``callback(task)`` (in the reactor thread) after every change of progress."""
        _reactor.callFromThread(self._task.on_progress, callback)

    def wait(self) -> TaskProgress:
        """Block until the task ends; its final progress, or TaskFailed."""
        return _run(self._task.wait)

    def kill(self) -> bool:
        """Ask the daemon to end the task; whether it was still unfinished."""
        return _run(self._task.kill)


class BlockingClient:
    """The methods of :class:`~sysadmd.client.client.Client`, blocking."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def connect(
        cls,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        tls: TLSMode | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> BlockingClient:
        """Connect as :meth:`Client.connect` does, starting the reactor thread if needed."""
        _ensure_reactor()
        return cls(_run(lambda: Client.connect(host, port, tls=tls, timeout=timeout)))

    @property
    def address(self) -> str:
        """``host:port`` of the daemon."""
        return self.client.address

    @property
    def fingerprint(self) -> str | None:
        """The server certificate's SHA-256 fingerprint (pinned mode)."""
        return self.client.fingerprint

    def close(self) -> None:
        """Close the connection."""
        _run(self.client.close)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, namespace: str, name: str, args: Any = None) -> Any:
        """Any request; the ``args`` of the reply."""
        return _run(lambda: self.client.call(namespace, name, args))

    def identify(self) -> dict[str, str]:
        """``rpc/identify``."""
        return _run(self.client.identify)

    def login(self, username: str, password: str) -> Login:
        """``rpc/auth``."""
        return _run(lambda: self.client.login(username, password))

    def login_token(self, token: str) -> Login:
        """``rpc/auth_token``."""
        return _run(lambda: self.client.login_token(token))

    def login_key(self, private_key: rsa.RSAPrivateKey) -> Login:
        """``rpc/auth_ssl``."""
        return _run(lambda: self.client.login_key(private_key))

    def logout(self) -> None:
        """``rpc/auth_clear``."""
        _run(self.client.logout)

    def query(self) -> dict[str, str]:
        """``rpc/query``."""
        return _run(self.client.query)

    def list_vms(self) -> dict[str, dict[str, str]]:
        """The guests."""
        return _run(self.client.list_vms)

    def list_isos(self) -> list[str]:
        """The ISO names."""
        return _run(self.client.list_isos)

    def fetch_iso(self, url: str) -> BlockingTask:
        """Queue a download; ``.wait()`` on the result blocks until it ends."""
        return BlockingTask(_run(lambda: self.client.fetch_iso(url)))

    def rename_iso(self, source: str, target: str) -> dict[str, str]:
        """Rename an ISO."""
        return _run(lambda: self.client.rename_iso(source, target))

    def remove_iso(self, name: str) -> dict[str, str]:
        """Remove an ISO."""
        return _run(lambda: self.client.remove_iso(name))

    def create(self, name: str, size: str) -> dict[str, str]:
        """Create a guest."""
        return _run(lambda: self.client.create(name, size))

    def install(self, name: str, iso: str) -> dict[str, str]:
        """Boot a guest from an ISO to install it."""
        return _run(lambda: self.client.install(name, iso))

    def start(self, name: str) -> dict[str, str]:
        """Start a guest."""
        return _run(lambda: self.client.start(name))

    def stop(self, name: str, *, force: bool = False) -> dict[str, str]:
        """Stop a guest."""
        return _run(lambda: self.client.stop(name, force=force))

    def delete(self, name: str) -> dict[str, str]:
        """Delete a stopped guest."""
        return _run(lambda: self.client.delete(name))

    def list_disks(self, name: str) -> dict[str, str]:
        """A guest's disks."""
        return _run(lambda: self.client.list_disks(name))

    def add_disk(self, name: str, size: str, pool: str | None = None) -> dict[str, Any]:
        """Add a disk to a guest."""
        return _run(lambda: self.client.add_disk(name, size, pool))

    def delete_disk(self, name: str, disk: str) -> dict[str, str]:
        """Remove a disk from a guest."""
        return _run(lambda: self.client.delete_disk(name, disk))

    def resize_disk(self, name: str, disk: str, size: str) -> dict[str, str]:
        """Resize a disk of a stopped guest."""
        return _run(lambda: self.client.resize_disk(name, disk, size))

    def get_props(self, name: str) -> dict[str, str]:
        """A guest's properties."""
        return _run(lambda: self.client.get_props(name))

    def set_props(self, name: str, props: Mapping[str, str]) -> dict[str, str]:
        """Set properties of a guest."""
        return _run(lambda: self.client.set_props(name, props))

    def version(self) -> str:
        """iohyve's version string."""
        return _run(self.client.version)

    def is_setup(self) -> bool:
        """Whether iohyve is set up."""
        return _run(self.client.is_setup)

    def setup(self, pool: str, nic: str) -> dict[str, str]:
        """Set iohyve up."""
        return _run(lambda: self.client.setup(pool, nic))

    def tasks(self) -> dict[str, dict[str, Any]]:
        """``rpc/dispatcher list``."""
        return _run(self.client.tasks)

    def kill(self, *tasks: BlockingTask | Task | str) -> list[str]:
        """``rpc/dispatcher kill``."""
        ids = [t.id if isinstance(t, BlockingTask | Task) else t for t in tasks]
        return _run(lambda: self.client.kill(*ids))

    def task(self, task_id: str) -> BlockingTask:
        """A handle for an existing task."""
        return BlockingTask(_run(lambda: self.client.task(task_id)))

    def subscribe(self, event: str, callback: EventCallback) -> Subscription:
        """Call ``callback(args)`` (in the reactor thread) for each ``event``."""
        return _run(lambda: self.client.subscribe(event, callback))

    def unsubscribe(self, subscription: Subscription) -> None:
        """End a subscription."""
        _run(lambda: self.client.unsubscribe(subscription))
