"""The states of a task, declared once.

Every module of the daemon that speaks of a task's state uses :class:`TaskState`: the queue
(:mod:`sysadmd.tasks._queue`), the journal and the ``CHECK`` constraint of its SQL
(:mod:`sysadmd.tasks._journal`), the ``dispatcher`` events (:mod:`sysadmd.tasks._progress`) and
``rpc/dispatcher list`` (:mod:`sysadmd.services._dispatcher`). The values are on the wire (a job's
``status``, a finished event's ``result``) and in journal files, so they never change.

sysadm itself knows three process-log states, ``pending``, ``running`` and ``finished``;
:attr:`TaskState.sysadm` maps ours onto them. The client reads them from here too (it may
import ``sysadmd.shared``, nothing else of the daemon).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["SYSADM_STATES", "TaskState"]

#: sysadm's process-log states, in the order a task goes through them.
SYSADM_STATES: Final = ("pending", "running", "finished")


class TaskState(StrEnum):
    """Where a task is in its life: queued, running, then one of four final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        """Whether the task has ended: it never leaves a final state."""
        return self not in (TaskState.QUEUED, TaskState.RUNNING)

    @property
    def sysadm(self) -> str:
        """sysadm's name of this state: ``pending``, ``running`` or ``finished``."""
        if self is TaskState.QUEUED:
            return "pending"
        if self is TaskState.RUNNING:
            return "running"
        return "finished"

    @classmethod
    def finals(cls) -> frozenset[TaskState]:
        """Every final state."""
        return frozenset(state for state in cls if state.final)
