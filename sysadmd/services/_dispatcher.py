"""``rpc/dispatcher``: the tasks, and killing them."""

from __future__ import annotations

from typing import Any, Final

from sysadmd.api import NAMES, Arg, Call, Role, action
from sysadmd.shared import SYSADM_STATES, TaskState
from sysadmd.tasks import FetchQueue, FetchTask, local_time

_JOB: Final = {
    "type": "object",
    "properties": {
        "commands": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": list(SYSADM_STATES)},
        "status": {"enum": [s.value for s in TaskState]},
    },
    "required": ["commands", "state", "status"],
}


def job(task: FetchTask) -> dict[str, Any]:
    """One task as ``rpc/dispatcher list`` shows it: sysadm's keys, then sysadmd's."""
    progress = task.progress
    return {
        "commands": [task.command],
        "state": task.state.sysadm,
        "status": task.state.value,
        "iso": task.name,
        "user": task.user,
        "time_queued": local_time(task.created),
        "time_started": local_time(task.started),
        "time_finished": local_time(task.finished),
        "return_code": task.exit_code,
        "message": task.message,
        "bytes_done": progress.done if progress else 0,
        "bytes_total": progress.total if progress else None,
        "percent": progress.percent if progress else None,
        "rate": progress.rate if progress else 0.0,
        "arrived": task.arrived,
        "size": task.size,
        # A resumed fetch: attempts after interruptions, bytes on disk when this one began.
        "attempts": task.attempts,
        "resumed_from": task.resumed_from,
    }


class DispatcherActions:
    """Handlers of ``rpc/dispatcher``."""

    def __init__(self, fetches: FetchQueue) -> None:
        self._fetches = fetches

    @action(
        "rpc",
        "dispatcher",
        "list",
        summary=(
            "The fetch tasks, queued, running and recently finished, by id, in sysadm's "
            "shape (commands, state pending/running/finished) with sysadmd's details: the "
            "exact status, ISO, user, times, return code, message, progress and, for a "
            "resumed fetch, its attempts."
        ),
        role=Role.OPERATOR,
        wrapped=False,
        reply={
            "type": "object",
            "properties": {
                "jobs": {
                    "type": "object",
                    "properties": {
                        "no_queue": {"type": "object", "additionalProperties": _JOB},
                    },
                    "required": ["no_queue"],
                }
            },
            "required": ["jobs"],
        },
    )
    async def list(self, call: Call) -> Any:
        return {"jobs": {"no_queue": {t.id: job(t) for t in self._fetches.listing()}}}

    @action(
        "rpc",
        "dispatcher",
        "kill",
        summary=(
            "End tasks: a queued one is dropped, a running one has its whole process group "
            "ended; what it left is removed and it ends 'cancelled'. Replies with the ids "
            "that were found and not finished already."
        ),
        role=Role.ADMIN,
        wrapped=False,
        args=[Arg("job_id", NAMES, "a task id, or a list of them")],
        reply={
            "type": "object",
            "properties": {
                "killed": {
                    "type": "object",
                    "properties": {"jobs": {"type": "array", "items": {"type": "string"}}},
                    "required": ["jobs"],
                }
            },
            "required": ["killed"],
        },
    )
    async def kill(self, call: Call) -> Any:
        return {"killed": {"jobs": self._fetches.kill(call.args["job_id"])}}
