"""A blocking face of :class:`~sysadmd.client.client.Client` for plain synchronous Python.

The Twisted reactor runs in a daemon thread, started on first use
(``reactor.run(installSignalHandlers=False)``); each method hands its call to that thread with
:func:`twisted.internet.threads.blockingCallFromThread` and waits for the answer. Errors are
the same exceptions as the asynchronous client's.

Each method is the asynchronous client's method of the same name, made blocking by one
generic wrapper (``_blocking``), so its parameters, result type (mypy reads both from the
asynchronous method through a ``ParamSpec``) and docstring are written once, there.
Methods that return a :class:`~sysadmd.client.client.Task` hand back a
:class:`BlockingTask`. Only :meth:`BlockingClient.connect` (it starts the reactor thread)
and :meth:`BlockingClient.kill` (it also takes a :class:`BlockingTask`) are written out; a
test holds them and the list of names to the asynchronous client's.

Do not use it in a program that runs the reactor itself (use the asynchronous client there):
the reactor can run in one thread only, once per process. Event callbacks given to
:meth:`BlockingClient.subscribe` and :meth:`BlockingTask.on_progress` run in the reactor's
thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from twisted.internet import reactor as _installed_reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import blockingCallFromThread

from sysadmd.client.client import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    Client,
    Task,
    TaskProgress,
)
from sysadmd.client.errors import ClientError
from sysadmd.client.tls import TLSMode

__all__ = ["BlockingClient", "BlockingTask"]

_T = TypeVar("_T")
_P = ParamSpec("_P")
_F = TypeVar("_F", bound=Callable[..., Any])
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


def _blocking(
    method: Callable[Concatenate[Client, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[BlockingClient, _P], _T]:
    """``method`` of :class:`Client` as a method of :class:`BlockingClient` that runs it on
    the reactor thread and waits for its result: same name, parameters (mypy reads them
    from ``method``), docstring, result and exceptions."""

    def proxy(self: BlockingClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return _run(lambda: method(self.client, *args, **kwargs))

    return _named_after(proxy, method)


def _blocking_task(
    method: Callable[Concatenate[Client, _P], Coroutine[Any, Any, Task]],
) -> Callable[Concatenate[BlockingClient, _P], BlockingTask]:
    """As :func:`_blocking`, for a method that returns a :class:`Task`: the task is
    handed back as a :class:`BlockingTask` (``.wait()`` blocks until it ends)."""

    def proxy(self: BlockingClient, /, *args: _P.args, **kwargs: _P.kwargs) -> BlockingTask:
        return BlockingTask(_run(lambda: method(self.client, *args, **kwargs)))

    return _named_after(proxy, method)


def _named_after(proxy: _F, method: Callable[..., Any]) -> _F:
    """``proxy`` with ``method``'s name and docstring; ``inspect.signature`` shows the
    parameters of ``method`` (through ``__wrapped__``)."""
    functools.update_wrapper(proxy, method)
    proxy.__qualname__ = f"BlockingClient.{method.__name__}"
    return proxy


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
        connect_timeout: float = 15.0,
    ) -> BlockingClient:
        """Connect as :meth:`Client.connect` does (on the reactor this module runs in its
        thread), starting that thread if needed."""
        _ensure_reactor()
        return cls(
            _run(
                lambda: Client.connect(
                    host, port, tls=tls, timeout=timeout, connect_timeout=connect_timeout
                )
            )
        )

    @property
    def address(self) -> str:
        """``host:port`` of the daemon."""
        return self.client.address

    @property
    def fingerprint(self) -> str | None:
        """The server certificate's SHA-256 fingerprint (pinned mode)."""
        return self.client.fingerprint

    close = _blocking(Client.close)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Each of these is the asynchronous client's method of the same name, blocking: its
    # parameters and result type are read from that method (see _blocking).
    call = _blocking(Client.call)
    identify = _blocking(Client.identify)
    login = _blocking(Client.login)
    login_token = _blocking(Client.login_token)
    login_key = _blocking(Client.login_key)
    logout = _blocking(Client.logout)
    query = _blocking(Client.query)
    list_vms = _blocking(Client.list_vms)
    list_isos = _blocking(Client.list_isos)
    fetch_iso = _blocking_task(Client.fetch_iso)
    iso_digests = _blocking(Client.iso_digests)
    iso_library = _blocking(Client.iso_library)
    rename_iso = _blocking(Client.rename_iso)
    remove_iso = _blocking(Client.remove_iso)
    create = _blocking(Client.create)
    install = _blocking(Client.install)
    start = _blocking(Client.start)
    stop = _blocking(Client.stop)
    delete = _blocking(Client.delete)
    list_disks = _blocking(Client.list_disks)
    add_disk = _blocking(Client.add_disk)
    delete_disk = _blocking(Client.delete_disk)
    resize_disk = _blocking(Client.resize_disk)
    get_props = _blocking(Client.get_props)
    set_props = _blocking(Client.set_props)
    version = _blocking(Client.version)
    is_setup = _blocking(Client.is_setup)
    setup = _blocking(Client.setup)
    tasks = _blocking(Client.tasks)
    task = _blocking_task(Client.task)
    subscribe = _blocking(Client.subscribe)
    unsubscribe = _blocking(Client.unsubscribe)

    def kill(self, *tasks: BlockingTask | Task | str) -> list[str]:
        """``rpc/dispatcher kill``: end tasks; the ids that were still unfinished."""
        ids = [t.id if isinstance(t, BlockingTask | Task) else t for t in tasks]
        return _run(lambda: self.client.kill(*ids))
