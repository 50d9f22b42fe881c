"""ISO uploads: a body streamed from a client into the ISO store, in place, as a task of the queue.

:meth:`~sysadmd.tasks._queue.FetchQueue.begin_upload` decides from the announced size
alone (409 if the name is taken or busy, 507 past the cap or the free space) before any
file exists; only then does the backend prepare the ISO's place
(:meth:`~sysadmd.backends.VMBackend.prepare_upload`: iohyve's dataset for the ISO,
vm-bhyve's ISO store), and the upload's temporary file is created there, under a hidden
name (:data:`~sysadmd.backends.UPLOAD_TEMPORARY_PREFIX` and the task's id) that no ISO
list shows. The transport hands every piece of the body to :meth:`IsoUpload.write` as it
arrives: it is written straight into that file and hashed on the way, so no body is ever
held in memory. At the end, :meth:`IsoUpload.finish` flushes the file to disk, compares the
digest with the one the client gave, if any, and renames the file to the ISO's name in the
same directory (one file system, so the ISO appears whole or not at all, and is never
copied); the directory is flushed too. A failure, a kill or a client that goes away
removes the temporary file and what the backend prepared
(:meth:`~sysadmd.backends.VMBackend.discard_partial`).

The task is journalled like a fetch, but its body cannot be asked for again: a daemon that
stops while an upload arrives ends it ``failed`` (:data:`INTERRUPTED_UPLOAD`) and removes
what it wrote; after a crash the next start does the same, and :func:`remove_left_overs`
removes every upload temporary no task owns (and the staging directory earlier versions
used), nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger

from sysadmd.api import ApiError
from sysadmd.backends import UPLOAD_TEMPORARY_PREFIX, VMBackend
from sysadmd.shared import TaskState
from sysadmd.tasks._checksum import Digest, InThread
from sysadmd.tasks._progress import Progress

if TYPE_CHECKING:
    from sysadmd.tasks._queue import FetchQueue, FetchTask

__all__ = [
    "INTERRUPTED_UPLOAD",
    "STAGING_DIRECTORY",
    "UPLOAD_URL_PREFIX",
    "IsoUpload",
    "remove_left_overs",
    "temporary_name",
]

#: The directory, beside the ISO store's ISOs, that earlier versions received uploads in
#: (removed at start if it is still there).
STAGING_DIRECTORY = ".sysadmd-uploads"

#: How an upload task's ``url`` begins (then the ISO's name): what marks it as an upload in
#: the journal.
UPLOAD_URL_PREFIX = "upload:"

#: Why an upload that was arriving when the daemon stopped or died has failed.
INTERRUPTED_UPLOAD = "the upload was interrupted by a restart of the daemon; send it again"

log = Logger()


def temporary_name(task_id: str) -> str:
    """The name of the temporary file of the upload task ``task_id``."""
    return UPLOAD_TEMPORARY_PREFIX + task_id.strip("{}")


class IsoUpload:
    """One upload in progress: the temporary file it writes into and the task it shows as."""

    def __init__(
        self,
        queue: FetchQueue,
        task: FetchTask,
        *,
        directory: Path,
        size: int,
        algorithm: str,
        expected: Digest | None,
        now: Callable[[], float],
        in_thread: InThread,
        backend: VMBackend,
    ) -> None:
        self.task = task
        self.size = size
        #: The directory the backend prepared: the ISO is the file ``<name>`` in it.
        self.directory = directory
        #: The file the body is written into, renamed to the ISO once it is whole.
        self.temporary = directory / temporary_name(task.id)
        self.received = 0
        self._queue = queue
        self._expected = expected
        self._now = now
        self._in_thread = in_thread
        self._backend = backend
        self._hash = hashlib.new(algorithm)
        self._ended = False
        self._aborted: str | None = None
        # O_EXCL and O_NOFOLLOW: never writes through a file or link that is already there.
        fd = os.open(
            self.temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
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
        self._queue.upload_progress(self.task)

    async def finish(self) -> dict[str, Any]:
        """The body has arrived whole: verify it, make it the ISO, return the reply."""
        task = self.task
        if self._aborted is not None:
            self._close()
            raise ApiError(409, f"the upload of ISO '{task.name}' ended: {self._aborted}")
        self._ended = True
        try:
            if self._file is not None:
                # On disk before it takes the ISO's name: a crash never leaves a short ISO.
                await self._in_thread(os.fsync, self._file.fileno())
            self._close()
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
            self._queue.upload_storing(task)
            try:
                await self._in_thread(_rename_in_place, self.temporary, task.name)
            except FileExistsError:
                raise ApiError(409, f"ISO '{task.name}' already exists") from None
            except OSError as e:
                raise ApiError(500, f"the upload could not be stored: {e.strerror}") from None
            listed = {iso.name for iso in await self._backend.list_isos()}
            if task.name not in listed:
                raise ApiError(500, f"the upload was stored but ISO '{task.name}' is not listed")
        except ApiError as e:
            await self._discard()
            if not task.state.final:
                self._queue.end_upload(task, TaskState.FAILED, e.message)
            raise
        except Exception as e:
            log.failure("Upload {task_id} could not be stored", task_id=task.id)
            await self._discard()
            if not task.state.final:
                self._queue.end_upload(task, TaskState.FAILED, str(e))
            raise ApiError(500, f"the upload could not be stored: {e}") from None
        self._queue.upload_stored(task, computed, self.size)
        return {"name": task.name, "size": task.size, "digest": task.digest}

    def abort(self, reason: str, state: TaskState = TaskState.CANCELLED) -> Deferred[None]:
        """The client went away or stalled, the task was killed or the daemon stops:
        remove what arrived and what the backend prepared, then end the task in ``state``
        (cancelled unless told). The Deferred fires once that is done."""
        if self._ended:
            return succeed(None)
        self._aborted = reason
        self._close()

        async def discard() -> None:
            try:
                await self._discard()
            finally:
                if not self.task.state.final:
                    self._queue.end_upload(self.task, state, reason)

        return ensureDeferred(discard()).addErrback(
            lambda f: log.failure("Upload {task_id}: cleaning up failed", f, task_id=self.task.id)
        )

    def _close(self) -> None:
        self._ended = True
        if self._file is not None:
            self._file.close()
            self._file = None

    async def _discard(self) -> None:
        """Remove the temporary file, then what the backend prepared for the ISO."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.temporary.unlink()
        if not await self._in_thread((self.directory / self.task.name).exists):
            await self._backend.discard_partial(self.task.name)


def _rename_in_place(temporary: Path, name: str) -> None:
    """Give ``temporary`` the name ``name`` in its directory (a new link, then the old
    name removed: never replacing a file), and flush the directory. Blocking: call it in
    a thread."""
    target = temporary.with_name(name)
    # Written private (0600); readable as a fetched ISO is once it is whole.
    os.chmod(temporary, 0o644, follow_symlinks=False)
    os.link(temporary, target)
    os.unlink(temporary)
    _sync_directory(temporary.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def remove_left_overs(
    backend: VMBackend, in_thread: InThread, busy: Callable[[str], bool]
) -> None:
    """At start: remove every upload temporary file in the places uploads stream into,
    then each ISO place (iohyve's dataset) that held one and has no ISO file, and the
    staging directory of earlier versions. Nothing else in the store is touched; ISO names
    that ``busy`` says a task owns are left alone. A failure is logged, never raised."""
    try:
        for directory, name in await backend.upload_places():
            if name is not None and busy(name):
                continue
            removed = await in_thread(_remove_temporaries, directory)
            for path in removed:
                log.info("Removed {path}, left by an interrupted upload", path=str(path))
            if removed and name is not None and not await in_thread((directory / name).exists):
                await backend.discard_partial(name)
        staging = backend.iso_directory(STAGING_DIRECTORY)
        if await in_thread(_remove_tree, staging):
            log.info("Removed the old upload staging directory {path}", path=str(staging))
    except Exception:
        log.failure("Could not remove what interrupted uploads left")


def _remove_temporaries(directory: Path) -> list[Path]:
    """Remove the upload temporaries directly in ``directory`` (never a directory or what
    a link points to); return them."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(UPLOAD_TEMPORARY_PREFIX) and not entry.is_dir(
            follow_symlinks=False
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _remove_tree(directory: Path) -> bool:
    if directory.is_symlink() or not directory.is_dir():
        return False
    shutil.rmtree(directory)
    return True
