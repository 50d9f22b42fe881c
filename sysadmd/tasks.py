"""The fetch queue: ``iohyve fetch`` runs as a queued background task.

``fetchiso`` replies at once with a task id; the download itself waits in a
bounded :class:`~twisted.internet.defer.DeferredQueue` until one of
``concurrency`` workers takes it. A full queue refuses new work with 503. While a
task is queued or running it owns its ISO name, so no second fetch, rename or
removal can touch that name.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredQueue,
    QueueOverflow,
    ensureDeferred,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sysadmd.errors import ApiError, conflict
from sysadmd.iohyve.adapter import Iohyve, describe_failure
from sysadmd.runner import RunningProcess


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class FetchTask:
    """One queued ``iohyve fetch``."""

    id: str
    url: str
    name: str
    created: datetime
    state: TaskState = TaskState.QUEUED
    started: datetime | None = None
    finished: datetime | None = None
    exit_code: int | None = None
    message: str | None = None
    process: RunningProcess | None = field(default=None, repr=False)

    @property
    def command(self) -> str:
        """The command as sysadm's reply shows it."""
        return f"iohyve fetch {self.url}"


def braced_uuid() -> str:
    """A task id in the form of the API page's example: ``{<uuid4>}``."""
    return "{" + str(uuid.uuid4()) + "}"


class FetchQueue(Service):
    """A bounded queue of fetch tasks and the workers that run them."""

    log = Logger()

    def __init__(
        self,
        iohyve: Iohyve,
        clock: IReactorTime,
        *,
        concurrency: int = 1,
        max_queued: int = 16,
        timeout: float = 6 * 3600.0,
        history: int = 100,
        new_id: Callable[[], str] = braced_uuid,
    ) -> None:
        if concurrency < 1 or max_queued < 1:
            raise ValueError("concurrency and max_queued must be at least 1")
        self._iohyve = iohyve
        self._clock = clock
        self._concurrency = concurrency
        self._timeout = timeout
        self._history = history
        self._new_id = new_id
        self._queue: DeferredQueue[FetchTask] = DeferredQueue(size=max_queued)
        self._workers: list[Deferred[None]] = []
        self._waiting: list[Deferred[FetchTask]] = []
        self.tasks: dict[str, FetchTask] = {}
        self._owners: dict[str, FetchTask] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def busy(self, name: str) -> bool:
        """Whether a queued or running task owns ISO ``name``."""
        return name in self._owners

    def ensure_free(self, name: str) -> None:
        """Raise 409 if a queued or running task owns ISO ``name``."""
        if self.busy(name):
            raise conflict(f"ISO '{name}' is already being fetched")

    def submit(self, url: str, name: str) -> FetchTask:
        """Queue a fetch of ``url`` into ISO ``name``; 409 if busy, 503 if full."""
        self.ensure_free(name)
        task = FetchTask(self._new_id(), url, name, self._now())
        try:
            self._queue.put(task)
        except QueueOverflow:
            raise ApiError(
                503, "the fetch queue is full; try again when a queued fetch has finished"
            ) from None
        self.tasks[task.id] = task
        self._owners[name] = task
        self.log.info("Queued fetch {task_id} of {name}", task_id=task.id, name=name)
        return task

    def startService(self) -> None:
        """Start the workers."""
        super().startService()
        self._workers = [ensureDeferred(self._work()) for _ in range(self._concurrency)]

    def stopService(self) -> Deferred[Any]:
        """Stop taking tasks, stop running downloads, and wait for the workers to finish."""
        super().stopService()
        for task in self.tasks.values():
            if task.process is not None:
                task.process.stop()
        for waiting in self._waiting:
            waiting.cancel()
        workers, self._workers = self._workers, []
        return DeferredList(workers, consumeErrors=True)

    async def _work(self) -> None:
        while self.running:
            waiting = self._queue.get()
            self._waiting.append(waiting)
            try:
                task = await waiting
            except CancelledError:
                return
            finally:
                self._waiting.remove(waiting)
            await self._run(task)

    def _forget_old(self) -> None:
        finished = [t for t in self.tasks.values() if t.finished is not None]
        for task in finished[: max(0, len(finished) - self._history)]:
            del self.tasks[task.id]

    async def _run(self, task: FetchTask) -> None:
        task.state = TaskState.RUNNING
        task.started = self._now()
        self.log.info("Fetch {task_id} started: {name}", task_id=task.id, name=task.name)
        try:
            task.process = self._iohyve.start_fetch(task.url, timeout=self._timeout)
            result = await task.process.when_ended()
            task.exit_code = result.exit_code
            if result.cancelled:
                task.state, task.message = TaskState.CANCELLED, "cancelled"
            elif result.ok and await self._iohyve.fetched(task.name):
                task.state = TaskState.SUCCEEDED
            else:
                task.state, task.message = TaskState.FAILED, describe_failure(result)
            if task.state is not TaskState.SUCCEEDED:
                # The name was free when the task was queued and the task has owned it
                # since, so whatever iohyve left under it (an empty dataset after a
                # failed download) belongs to this task and is removed.
                await self._iohyve.discard_partial(task.name)
        except Exception as e:
            task.state, task.message = TaskState.FAILED, str(e)
            self.log.failure("Fetch {task_id} could not run", task_id=task.id)
        finally:
            task.finished = self._now()
            task.process = None
            self._owners.pop(task.name, None)
            self._forget_old()
        self.log.info(
            "Fetch {task_id} of {name} {state}{detail}",
            task_id=task.id,
            name=task.name,
            state=task.state.value,
            detail=f": {task.message}" if task.message else "",
        )
