"""ISO uploads: a body streamed from a client into the ISO store, as a task of the queue.

:meth:`~sysadmd.tasks._queue.FetchQueue.begin_upload` decides from the announced size
alone (409 if the name is taken or busy, 507 past the cap or the free space) before any
file exists; only then is the staging file created, in the staging directory beside the
ISO store (the same file system). The transport hands every piece of the body to
:meth:`IsoUpload.write` as it arrives: it is written straight into that file and hashed
on the way, so no body is ever held in memory. At the end, :meth:`IsoUpload.finish`
compares the digest with the one the client gave, if any (a mismatch removes the file),
then has the backend store the staged file as the ISO, in the task's queue, with the
computed digest checked again on the stored copy; the staged file is removed whatever
the outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.internet.defer import Deferred

from sysadmd.api import ApiError
from sysadmd.shared import TaskState
from sysadmd.tasks._checksum import Digest
from sysadmd.tasks._progress import Progress

if TYPE_CHECKING:
    from sysadmd.tasks._queue import FetchQueue, FetchTask

__all__ = ["STAGING_DIRECTORY", "IsoUpload"]

#: The directory, beside the ISO store's ISOs, that holds uploads while they arrive.
STAGING_DIRECTORY = ".sysadmd-uploads"


class IsoUpload:
    """One upload in progress: the staging file it writes into and the task it shows as."""

    def __init__(
        self,
        queue: FetchQueue,
        task: FetchTask,
        *,
        staged: Path,
        size: int,
        algorithm: str,
        expected: Digest | None,
        now: Callable[[], float],
    ) -> None:
        self.task = task
        self.size = size
        self.staged = staged
        self.received = 0
        self._queue = queue
        self._expected = expected
        self._now = now
        self._hash = hashlib.new(algorithm)
        self._ended = False
        self._aborted: str | None = None
        staged.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: never writes through a file or link that is already there.
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb", buffering=0)

    @property
    def ended(self) -> bool:
        """Whether the upload has ended (finished, failed or aborted)."""
        return self._ended

    def write(self, data: bytes) -> None:
        """Write the next piece of the body; a body longer than announced is refused."""
        if self._file is None:
            return
        if self.received + len(data) > self.size:
            raise ApiError(400, f"the body is longer than its Content-Length of {self.size}")
        self._file.write(data)
        self._hash.update(data)
        self.received += len(data)
        started = self.task.started or self._now()
        elapsed = max(self._now() - started, 1e-9)
        self.task.progress = Progress(
            self.received, self.size, self.received / elapsed if self.received else 0.0
        )

    async def finish(self) -> dict[str, Any]:
        """The body has arrived whole: verify it, store it as the ISO, return the reply."""
        self._close()
        task = self.task
        if self._aborted is not None:
            raise ApiError(409, f"the upload of ISO '{task.name}' ended: {self._aborted}")
        try:
            if self.received != self.size:
                raise ApiError(
                    400, f"the body had {self.received} bytes, not its Content-Length {self.size}"
                )
            computed = Digest(self._hash.name, self._hash.hexdigest())
            task.digest = str(computed)
            if self._expected is not None and computed != self._expected:
                raise ApiError(
                    400,
                    f"checksum mismatch: expected {self._expected}, the upload's is {computed}",
                )
            await self._queue.store_upload(task, self.staged, computed)
        except ApiError as e:
            self._discard()
            if not task.state.final:
                self._queue.end_upload(task, TaskState.FAILED, e.message)
            raise
        finally:
            self._discard()
        if task.state is not TaskState.SUCCEEDED:
            raise ApiError(500, f"the upload could not be stored: {task.message}")
        return {"name": task.name, "size": task.size, "digest": task.digest}

    def abort(self, reason: str) -> None:
        """The client went away or stalled: remove what arrived, end the task cancelled."""
        if self._ended:
            return
        self._aborted = reason
        self._close()
        self._discard()
        if not self.task.state.final:
            self._queue.end_upload(self.task, TaskState.CANCELLED, reason)

    def _close(self) -> None:
        self._ended = True
        if self._file is not None:
            self._file.close()
            self._file = None

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.staged.unlink()
        with contextlib.suppress(OSError):
            self.staged.parent.rmdir()


def upload_ended(task: FetchTask) -> Deferred[None]:
    """A Deferred for the end of ``task`` (kept on the task until it ends)."""
    ended: Deferred[None] = Deferred()
    task.waiters.append(ended)
    return ended
