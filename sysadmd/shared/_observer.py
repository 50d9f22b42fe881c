"""Waiting for a result without taking it: :class:`OneShotObserver` and :func:`settled`.

A :class:`~twisted.internet.defer.Deferred` has one chain: whoever adds a callback takes the
result from whoever comes after. Where several callers wait for the same outcome (a process's
end, a task's end, a read that many callers share), each gets a Deferred of its own from
:meth:`OneShotObserver.when_fired`; cancelling one ends that wait only. The shape is
magic-wormhole's ``OneShotObserver``, except that delivery is immediate (in :meth:`fire`,
or in :meth:`when_fired` once fired) rather than in a later reactor turn: the callers here
run under a :class:`~twisted.internet.task.Clock` in tests and rely on that order.

This module imports nothing else of sysadmd, so every layer and the client may use it.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["OneShotObserver", "settled"]

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


def settled(deferred: Deferred[Any]) -> Deferred[None]:
    """A new Deferred that fires with ``None`` once ``deferred`` has its result.

    The result (or failure) stays on ``deferred``'s own chain for whoever comes next, so this
    waits for an operation without taking its outcome from its owner. Cancelling the returned
    Deferred stops this wait only.
    """
    observer: OneShotObserver[None] = OneShotObserver()

    def release(result: object) -> object:
        observer.fire(None)
        return result

    deferred.addBoth(release)
    return observer.when_fired()
