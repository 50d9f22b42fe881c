"""Waiting for a result without taking it: the client's :class:`OneShotObserver`.

The client imports nothing from the daemon, so it keeps this copy of the daemon's
``sysadmd.shared.observer.OneShotObserver``; the same tests run against both. Each waiter gets a
Deferred of its own from :meth:`OneShotObserver.when_fired`, delivered at once when the
result is known; cancelling one ends that wait only.
"""

from __future__ import annotations

from typing import Generic, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["OneShotObserver"]

T = TypeVar("T")


class OneShotObserver(Generic[T]):
    """One result, fired once, handed to every waiter, before or after it came.

    A failure is handed to every waiter as a failure; with no waiter it is only kept, never
    logged as unhandled (each waiter's Deferred handles it or reports it itself).
    """

    def __init__(self) -> None:
        self._fired = False
        self._result: T | Failure | None = None
        self._waiters: list[Deferred[T]] = []

    @property
    def fired(self) -> bool:
        """Whether :meth:`fire` was called."""
        return self._fired

    def when_fired(self) -> Deferred[T]:
        """A new Deferred that fires with the result (at once if it is known already).

        Cancelling it stops this wait only (with ``CancelledError``); other waiters and the
        result are untouched.
        """
        waiter: Deferred[T] = Deferred(self._forget)
        if self._fired:
            self._deliver(waiter)
        else:
            self._waiters.append(waiter)
        return waiter

    def fire(self, result: T | Failure) -> None:
        """Set the result (a :class:`Failure` for a failure) and hand it to every waiter.

        Raise :class:`RuntimeError` if it was fired already: there is one result.
        """
        if self._fired:
            raise RuntimeError("this observer has fired already")
        self._fired = True
        self._result = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._deliver(waiter)

    def _deliver(self, waiter: Deferred[T]) -> None:
        result = self._result
        if isinstance(result, Failure):
            waiter.errback(result)
        else:
            waiter.callback(cast(T, result))

    def _forget(self, waiter: Deferred[T]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
