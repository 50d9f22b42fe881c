"""The fetch queue: ``iohyve fetch`` runs as a queued, followed, durable task.

``fetchiso`` replies at once with a task id; the download waits in a
:class:`~twisted.internet.defer.DeferredQueue` until one of ``concurrency``
workers takes it. At most ``max_queued`` tasks wait (503 past that). While a task
is queued or running it owns its ISO name, so no second fetch, rename or removal
can touch that name.

A task's state is a :class:`~sysadmd.shared.TaskState`. Every change of it goes
to the journal (SQLite, through a thread pool; the journal keeps the order in which
writes are asked for, and commits those asked for together in one transaction) and to
the ``dispatcher`` event subscribers, in sysadm's event shape:
``pending`` when queued, ``running`` when the command starts and then every second
with the bytes on disk, the rate and the new output, ``finished`` with the outcome
and whether the ISO arrived. A task keeps the last 4 KiB (UTF-8) of its output.

A task can be killed: a queued one is dropped, a running one has its whole
process group ended and what it left under its ISO name is removed. At start,
tasks the journal shows running are marked ``interrupted`` and queued ones are
queued again (or cancelled, when ``requeue`` is off or their name is busy). An
interrupted task's command may still run (a daemon killed with SIGKILL leaves its
children running, in their own process group): the group the journal recorded for
it is ended first, if it still looks like the same one
(:func:`sysadmd.backends.end_left_over_group`), and then its remains are removed.

A verified task (:attr:`FetchTask.verify`) first gets its expected digest (reading a
checksum file if it names one; a kill or a stop cancels that), then hashes its download
while it arrives (:class:`~sysadmd.tasks._checksum.DigestFollower`); a mismatch fails it
and removes the ISO, a match is kept in :attr:`FetchQueue.digests` and the journal.

Free space: :meth:`FetchQueue.ensure_room` refuses (507) a fetch whose announced size does
not fit in the ISO store less what queued and running fetches still claim; when a download
starts and its size is known, it is checked again against the running ones' claims, and a
task that no longer fits is stopped and ends ``failed``.

Resumed fetches: the size request also records the source's validators (``ETag``,
``Last-Modified``) and whether it announced ``Accept-Ranges: bytes``. A download interrupted
by a network failure or a kill of its process from outside (its command ended unsuccessfully
without the queue asking it to stop) goes back to ``queued`` with :attr:`FetchTask.resume`
set, after a back-off of ``retry_backoff`` seconds doubled at each attempt, at most
``retries`` times; so does a download the daemon's stop ended (for the next start, without
counting an attempt) and one a crashed daemon left running (at the next start). A resumed
attempt asks again: when the source still announces ranges with the same validator and a
partial file is there, the backend continues it with fetch(1)'s ``-r``
(:meth:`~sysadmd.backends.VMBackend.resume_fetch`); otherwise the partial file is removed and
the download starts again. A kill by a user, a timeout, a refusal for room or a checksum
mismatch are never resumed.

At stop, no new task is taken; running ones get ``grace`` seconds, then they are
ended and queued again to be resumed at the next start; the journal is closed after its
last write.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredQueue,
    ensureDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.api import ApiError, conflict
from sysadmd.backends import ProcessResult, RunningProcess, VMBackend, describe_failure
from sysadmd.shared import TaskState, redact_urls, settled, tail
from sysadmd.tasks._checksum import (
    ChecksumError,
    Digest,
    DigestFollower,
    InThread,
    auto_checksum_urls,
    digests_in,
    fetch_checksum_file,
    parse_checksum,
)
from sysadmd.tasks._journal import Journal, TaskRecord
from sysadmd.tasks._progress import (
    Progress,
    ProgressMeter,
    RemoteInfo,
    dispatcher_event,
    remote_info,
    remote_size,
)
from sysadmd.tasks._upload import (
    INTERRUPTED_UPLOAD,
    UPLOAD_URL_PREFIX,
    IsoUpload,
    remove_left_overs,
)

#: How an upload that became its ISO just before the daemon died ends at the next start.
STORED_BEFORE_THE_STOP = "stored before the daemon stopped; its end was not recorded"

__all__ = ["EndLeftOvers", "FetchQueue", "FetchTask", "Publish", "TaskState", "local_time"]

Publish = Callable[[str, Mapping[str, object]], object]

#: Ends a process group left by a previous daemon: (group, leader's start time, ISO name)
#: to the pids ended. See :func:`sysadmd.backends.end_left_over_group`.
EndLeftOvers = Callable[[int, float | None, str], Deferred[list[int]]]


@dataclass
class FetchTask:
    """One queued ``iohyve fetch``."""

    id: str
    url: str
    name: str
    created: float
    user: str | None = None
    state: TaskState = TaskState.QUEUED
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    message: str | None = None
    output: str = ""
    unsent_output: str = ""
    progress: Progress | None = None
    size: int | None = None
    arrived: bool = False
    process_group: int | None = None
    process_started: float | None = None
    #: What the ISO must hash to: ``sha256:<hex>``/``sha512:<hex>``, ``url:<checksum file>``
    #: or ``auto``; ``None`` for an unverified fetch.
    verify: str | None = None
    #: The digest computed (``<algorithm>:<hex>``), once the download ended.
    digest: str | None = None
    process: RunningProcess | None = field(default=None, repr=False)
    meter: ProgressMeter | None = field(default=None, repr=False)
    follower: DigestFollower | None = field(default=None, repr=False)
    #: ``verifying`` while a verified download's digest is being completed and compared.
    stage: str | None = None
    #: The size the source announced when the task was queued (its claim on free space).
    announced: int | None = None
    #: Why the daemon itself stopped the running command (it then ends ``failed``).
    stopped_because: str | None = None
    #: While a verified task reads its checksum file, before its command starts.
    preparing: Deferred[Digest | None] | None = field(default=None, repr=False)
    #: Set when a kill or a stop cancels :attr:`preparing`.
    preparing_ended: bool = field(default=False, repr=False)
    #: An upload (``PUT /iso/<name>``) rather than a download. Journalled, but its body
    #: cannot be asked for again: a restart ends it ``failed``.
    upload: bool = False
    #: Ends an upload while its body arrives (a kill then has no process to stop).
    on_kill: Callable[[], object] | None = field(default=None, repr=False)
    #: Ends an upload while its body arrives because the daemon stops.
    on_stop: Callable[[], Deferred[None]] | None = field(default=None, repr=False)
    #: When the last progress event of an upload was sent.
    last_event: float = field(default=0.0, repr=False)
    #: Fired when the task ends (an upload's request waits for its ISO to be stored).
    waiters: list[Deferred[None]] = field(default_factory=list, repr=False)
    #: The source's validators and range support, as its size request found them.
    etag: str | None = None
    last_modified: str | None = None
    ranges: bool | None = None
    #: Whether the source answered the size request of the current attempt.
    source_found: bool = field(default=False, repr=False)
    #: How many times the download was started again after an interruption.
    attempts: int = 0
    #: Whether the queued task continues what an interrupted attempt left.
    resume: bool = False
    #: Bytes on disk when the current attempt started (what it did not transfer itself).
    resumed_from: int | None = None
    #: The back-off before a resumed attempt is queued again.
    retry: IDelayedCall | None = field(default=None, repr=False)
    #: Set when a kill ends a task that waits to be resumed (its partial file goes).
    killed: bool = field(default=False, repr=False)

    @property
    def validator(self) -> str | None:
        """The recorded validator: ``ETag`` if there was one, else ``Last-Modified``."""
        return RemoteInfo(etag=self.etag, last_modified=self.last_modified).validator

    @property
    def command(self) -> str:
        """The command as sysadm's reply shows it, credentials in the URL redacted."""
        if self.upload:
            return f"upload {self.name}"
        return redact_urls(f"iohyve fetch {self.url}")

    def record(self) -> TaskRecord:
        """What the journal keeps of this task (the journal redacts and cuts it itself)."""
        return TaskRecord(
            id=self.id,
            command=self.command,
            url=self.url,
            name=self.name,
            user=self.user,
            state=self.state,
            created=self.created,
            started=self.started,
            finished=self.finished,
            return_code=self.exit_code,
            output_tail=self.output,
            bytes_fetched=self.progress.done if self.progress else None,
            size=self.size,
            message=self.message,
            process_group=self.process_group,
            process_started=self.process_started,
            verify=self.verify,
            digest=self.digest,
            etag=self.etag,
            last_modified=self.last_modified,
            ranges=self.ranges,
            attempts=self.attempts,
            resume=self.resume,
            resumed_from=self.resumed_from,
        )

    @classmethod
    def from_record(cls, record: TaskRecord) -> FetchTask:
        """A task as the journal kept it."""
        return cls(
            id=record.id,
            url=record.url,
            name=record.name,
            created=record.created,
            user=record.user,
            state=record.state,
            started=record.started,
            finished=record.finished,
            exit_code=record.return_code,
            message=record.message,
            output=record.output_tail,
            size=record.size,
            process_group=record.process_group,
            process_started=record.process_started,
            verify=record.verify,
            digest=record.digest,
            etag=record.etag,
            last_modified=record.last_modified,
            ranges=record.ranges,
            attempts=record.attempts,
            resume=record.resume,
            resumed_from=record.resumed_from,
            upload=record.url.startswith(UPLOAD_URL_PREFIX),
        )


def free_space(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``directory``, or of
    its nearest existing parent (an ISO's own directory does not exist before its fetch);
    ``None`` if no parent can be asked. Blocking: call it in a thread."""
    for path in (directory, *directory.parents):
        try:
            info = os.statvfs(path)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return info.f_bavail * info.f_frsize
    return None


def _last_fetch_error(task: FetchTask) -> str | None:
    """fetch(1)'s last ``fetch: ...`` line in the task's output, if any."""
    errors = [line for line in task.output.splitlines() if line.startswith("fetch: ")]
    return errors[-1] if errors else None


def _lost_the_source(task: FetchTask) -> bool:
    """Whether fetch(1)'s last error is about the transfer rather than the local file: it
    names the URL (``fetch: <URL>: <reason>``: a read error, a refused connection) or says
    the data stopped early (``appears to be truncated``, ``may be truncated``, ``transfer
    timed out``). Errors naming the local path (a full disk, ``open()``, ``rename()``) are
    not the network's."""
    last = _last_fetch_error(task)
    if last is None:
        return False
    if last.startswith(f"fetch: {task.url}: ") and "size of remote file is not known" not in last:
        return True
    return " appears to be truncated: " in last or last.endswith(
        (" may be truncated", "transfer timed out")
    )


def braced_uuid() -> str:
    """A task id in the form of the API page's example: ``{<uuid4>}``."""
    return "{" + str(uuid.uuid4()) + "}"


def local_time(seconds: float | None) -> str | None:
    """sysadm's event time format: local ISO time without a zone."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%dT%H:%M:%S")


class FetchQueue(Service):
    """The queue of fetch tasks, their workers, events and journal."""

    log = Logger()

    def __init__(
        self,
        iohyve: VMBackend,
        clock: IReactorTime,
        *,
        concurrency: int = 1,
        max_queued: int = 16,
        timeout: float = 6 * 3600.0,
        history: int = 100,
        grace: float = 30.0,
        journal: Journal | None = None,
        publish: Publish | None = None,
        http_reactor: object = None,
        requeue: bool = True,
        new_id: Callable[[], str] = braced_uuid,
        end_left_overs: EndLeftOvers | None = None,
        in_thread: InThread = deferToThread,
        free_space: Callable[[Path], int | None] = free_space,
        retries: int = 3,
        retry_backoff: float = 5.0,
    ) -> None:
        if concurrency < 1 or max_queued < 1:
            raise ValueError("concurrency and max_queued must be at least 1")
        if retries < 0 or retry_backoff < 0:
            raise ValueError("retries and retry_backoff must not be negative")
        self._iohyve = iohyve
        self._clock = clock
        self._concurrency = concurrency
        self._max_queued = max_queued
        self._timeout = timeout
        self._history = history
        self._grace = grace
        self._journal = journal
        self._publish = publish
        self._http_reactor = http_reactor or clock
        self._requeue = requeue
        self._new_id = new_id
        self._end_left_overs = end_left_overs
        self._in_thread = in_thread
        self._free_space = free_space
        self._retries = retries
        self._retry_backoff = retry_backoff
        #: ISO name to (digest ``<algorithm>:<hex>``, size, when verified) of each ISO a
        #: verified fetch stored; journalled.
        self.digests: dict[str, tuple[str, int, float]] = {}
        self._queue: DeferredQueue[FetchTask] = DeferredQueue()
        self._workers: list[Deferred[None]] = []
        self._waiting: list[Deferred[FetchTask]] = []
        self._stopping = False
        self.tasks: dict[str, FetchTask] = {}
        self._owners: dict[str, FetchTask] = {}
        # Fires once the journal is open (or given up); writes asked for before wait here,
        # in order, and are handed to the journal then.
        self._journal_tail: Deferred[None] = Deferred()
        self._before_open: list[Callable[[], None]] = []
        self._journal_ready = False
        #: Settles once the last journal write asked for has (the journal commits in order).
        self._last_write: Deferred[None] = self._journal_tail
        self._started: Deferred[None] = succeed(None)
        #: Told how many more bytes a running fetch has on disk at each sample.
        self.on_bytes: Callable[[int], object] | None = None

    # Queries

    def busy(self, name: str) -> bool:
        """Whether a queued or running task owns ISO ``name``."""
        return name in self._owners

    def ensure_free(self, name: str) -> None:
        """Raise 409 if a queued or running task owns ISO ``name``."""
        if self.busy(name):
            raise conflict(f"ISO '{name}' is already being fetched")

    def listing(self) -> list[FetchTask]:
        """Every task kept: queued, running and recently finished, oldest first."""
        return sorted(self.tasks.values(), key=lambda t: t.created)

    @property
    def queued(self) -> int:
        """How many tasks wait."""
        return sum(1 for t in self.tasks.values() if t.state is TaskState.QUEUED)

    @property
    def full(self) -> bool:
        """Whether a new fetch would be refused because ``max_queued`` tasks wait."""
        return self.queued >= self._max_queued

    @property
    def journalled(self) -> bool:
        """Whether the journal opened and state changes are being written to it."""
        return self._journal is not None and self._journal_tail.called and not self._stopping

    # Changes

    def claimed(self, *, running_only: bool = False, besides: FetchTask | None = None) -> int:
        """Bytes that queued and running fetches (or only the running ones, ``besides`` one
        left out) are still expected to write."""
        total = 0
        for task in self.tasks.values():
            if task.state.final or task.announced is None or task is besides:
                continue
            if running_only and task.state is not TaskState.RUNNING:
                continue
            done = task.progress.done if task.progress else 0
            total += max(0, task.announced - done)
        return total

    async def ensure_room(self, url: str, name: str) -> int | None:
        """Raise 507 if the size ``url`` announces does not fit in the ISO store.

        The free space is that of the file system holding ISO ``name``'s directory, less
        what queued and running fetches are still expected to write. Return the announced
        size (``None`` when the source announces none: then nothing can be checked).
        """
        size = await remote_size(url, self._http_reactor)
        if size is None:
            return None
        free = await self._in_thread(self._free_space, self._iohyve.iso_directory(name))
        if free is None:
            return size
        room = free - self.claimed()
        if size > room:
            raise ApiError(
                507,
                f"ISO '{name}' is {size} bytes; the ISO store has {max(room, 0)} bytes free for it",
            )
        return size

    def submit(
        self,
        url: str,
        name: str,
        user: str | None = None,
        *,
        verify: str | None = None,
        announced: int | None = None,
    ) -> FetchTask:
        """Queue a fetch of ``url`` into ISO ``name``; 409 if busy, 503 if full or stopping.

        ``verify`` is what the ISO must hash to (see :attr:`FetchTask.verify`).
        """
        self.ensure_free(name)
        if self._stopping:
            raise ApiError(503, "the daemon is shutting down; no new fetches are taken")
        if self.queued >= self._max_queued:
            raise ApiError(
                503, "the fetch queue is full; try again when a queued fetch has finished"
            )
        task = FetchTask(
            self._new_id(),
            url,
            name,
            self._clock.seconds(),
            user,
            verify=verify,
            announced=announced,
        )
        self._enqueue(task)
        self.log.info("Queued fetch {task_id} of {name}", task_id=task.id, name=name)
        return task

    async def begin_upload(
        self, name: str, size: int, user: str | None, checksum: str | None, limit: int
    ) -> IsoUpload:
        """Start an upload of ``size`` bytes into ISO ``name``, decided from the size alone.

        409 if a task owns the name or the ISO exists; 507 if ``size`` exceeds ``limit``
        or the ISO store's free space (less what other tasks claim); 503 while stopping.
        Only then does the backend prepare the ISO's place and the temporary file is
        created in it (see :mod:`sysadmd.tasks._upload`); the task is journalled before
        this returns, so a restart finds it.
        """
        await settled(self._started)
        self.ensure_free(name)
        if self._stopping:
            raise ApiError(503, "the daemon is shutting down; no new uploads are taken")
        if size > limit:
            raise ApiError(
                507, f"ISO '{name}' is {size} bytes; uploads may be at most {limit} bytes"
            )
        await self._iohyve.check_iso_absent(name)
        free = await self._in_thread(self._free_space, self._iohyve.iso_directory(name))
        if free is not None:
            room = free - self.claimed()
            if size > room:
                raise ApiError(
                    507,
                    f"ISO '{name}' is {size} bytes; the ISO store has {max(room, 0)} bytes free",
                )
        # Checked again: the name may have been taken while the checks above ran.
        self.ensure_free(name)
        expected = parse_checksum(checksum) if checksum is not None else None
        task = FetchTask(
            self._new_id(),
            f"{UPLOAD_URL_PREFIX}{name}",
            name,
            self._clock.seconds(),
            user,
            state=TaskState.RUNNING,
            started=self._clock.seconds(),
            announced=size,
            size=size,
            verify=str(expected) if expected is not None else None,
            stage="uploading",
            upload=True,
        )
        # The task owns the name while the backend prepares its place.
        self._owners[name] = task
        try:
            directory = await self._iohyve.prepare_upload(name)
        except BaseException:
            del self._owners[name]
            raise
        try:
            upload = IsoUpload(
                self,
                task,
                directory=directory,
                size=size,
                algorithm=expected.algorithm if expected is not None else "sha256",
                expected=expected,
                now=self._clock.seconds,
                in_thread=self._in_thread,
                backend=self._iohyve,
            )
        except OSError as e:
            try:
                await self._iohyve.discard_partial(name)
            finally:
                del self._owners[name]
            raise ApiError(500, f"the upload could not be started: {e.strerror}") from None
        task.progress = Progress(0, size, 0.0)
        task.on_kill = lambda: upload.abort("killed")
        task.on_stop = lambda: upload.abort(INTERRUPTED_UPLOAD, TaskState.FAILED)
        self.tasks[task.id] = task
        self._changed(task)
        self.log.info("Upload {task_id} of {name} started", task_id=task.id, name=name)
        # Journalled before any byte is taken: a restart then ends it and removes its file.
        await self.written()
        return upload

    def upload_progress(self, task: FetchTask) -> None:
        """Tell the subscribers how far an upload is, at most once a second."""
        now = self._clock.seconds()
        if now - task.last_event >= 1.0:
            task.last_event = now
            self._emit(task)

    def upload_storing(self, task: FetchTask) -> None:
        """An upload has arrived whole and is being given its ISO's name."""
        task.on_kill = task.on_stop = None
        task.stage = "storing"
        self._changed(task)  # the journal keeps its digest, should the daemon die now

    def upload_stored(self, task: FetchTask, digest: Digest, size: int) -> None:
        """An upload is the ISO now: record its digest, end its task succeeded."""
        task.arrived = True
        task.size = size
        task.digest = str(digest)
        task.stage = None
        self._record_digest(task.name, task.digest, size)
        self._finish(task, TaskState.SUCCEEDED, None)

    def end_upload(self, task: FetchTask, state: TaskState, message: str) -> None:
        """End an upload that did not become the ISO."""
        task.on_kill = task.on_stop = None
        task.stage = None
        self._finish(task, state, message)

    def written(self) -> Deferred[None]:
        """Fires once every journal write asked for so far has been committed (or failed).

        ``fetchiso`` waits for this before it replies, so a task whose ``queueid`` a
        client has seen survives a crash. Without a journal it fires at once.
        """
        if self._journal is None:
            return succeed(None)
        return settled(self._last_write)

    def _enqueue(self, task: FetchTask) -> None:
        self.tasks[task.id] = task
        self._owners[task.name] = task
        self._changed(task)
        self._queue.put(task)

    def kill(self, ids: Iterable[str]) -> list[str]:
        """End the tasks named: drop queued ones, stop running ones. Returns those found."""
        killed = []
        for task_id in ids:
            task = self.tasks.get(task_id)
            if task is None or task.state.final:
                continue
            killed.append(task_id)
            if task.killed:
                continue  # already being ended
            if task.state is TaskState.QUEUED and task.resume:
                self._drop_resumable(task, "killed before it was resumed")
            elif task.state is TaskState.QUEUED:
                self._finish(task, TaskState.CANCELLED, "killed before it started")
            elif task.process is not None:
                task.message = "killed"
                task.process.stop()
            elif task.preparing is not None:
                task.message = "killed"
                task.preparing_ended = True
                task.preparing.cancel()
            elif task.on_kill is not None:
                task.on_kill()
            elif not task.upload:
                # Between its steps (asking the source, gathering its partial file): the
                # attempt ends itself when the step returns.
                task.message = "killed"
                task.killed = True
        return killed

    def _drop_resumable(self, task: FetchTask, message: str) -> None:
        """End a task that waits to be resumed: its partial file goes, then it is cancelled
        (the name stays owned until the file is gone)."""
        task.killed = True
        if task.retry is not None and task.retry.active():
            task.retry.cancel()
        task.retry = None

        async def drop() -> None:
            try:
                await self._iohyve.discard_partial(task.name)
            finally:
                self._finish(task, TaskState.CANCELLED, message)

        ensureDeferred(drop()).addErrback(
            lambda f: self.log.failure("Fetch {task_id}: could not end it", f, task_id=task.id)
        )

    # Life cycle

    def startService(self) -> None:
        """Open the journal and recover from it, then start the workers."""
        super().startService()
        self._stopping = False
        self._started = ensureDeferred(self._start())

    async def _start(self) -> None:
        if self._journal is not None:
            try:
                await self._journal.open()
                self.digests.update(await self._journal.digests())
                # What the previous run left, read before this run's first save can land:
                # a fetch asked for while the queue starts is not mistaken for one of them.
                left = await self._journal.recent()
                interrupted, queued = await self._journal.recover(self._clock.seconds())
                self._opened_journal()
                await self._recover(left, interrupted, queued)
            except Exception:
                self.log.failure("The task journal cannot be used; fetches are not journalled")
                self._journal = None
                if not self._journal_tail.called:
                    self._opened_journal()
        # What uploads left that no task removed (their tasks' were removed above).
        await remove_left_overs(self._iohyve, self._in_thread, self.busy)
        self._workers = [ensureDeferred(self._work()) for _ in range(self._concurrency)]

    async def _recover(
        self, left: list[TaskRecord], interrupted: list[TaskRecord], queued: list[TaskRecord]
    ) -> None:
        for record in left:
            if record.state.final:
                self.tasks.setdefault(record.id, FetchTask.from_record(record))
        for record in interrupted:
            await self._recover_interrupted(record)
        for record in queued:
            task = FetchTask.from_record(record)
            if not self._requeue or self.busy(task.name):
                if task.resume and not self.busy(task.name):
                    self._owners[task.name] = task
                    try:
                        await self._iohyve.discard_partial(task.name)
                    finally:
                        del self._owners[task.name]
                self._finish(task, TaskState.CANCELLED, "not queued again after a restart")
                self.tasks[task.id] = task
                continue
            self._enqueue(task)
        self._forget_old()

    async def _recover_interrupted(self, record: TaskRecord) -> None:
        """A task the previous run left running: resume it, or end it and remove its file."""
        task = self.tasks[record.id] = FetchTask.from_record(record)
        if task.upload:
            if await self._stored_before_the_stop(task):
                return
            # Its body cannot be asked for again: it failed (its file goes below).
            self._finish(task, TaskState.FAILED, INTERRUPTED_UPLOAD)
        self.log.info("Fetch {task_id} was interrupted by a stop", task_id=record.id)
        resumable = not task.upload and self._requeue and task.attempts < self._retries
        # The name stays owned (409 to fetchiso, renameiso and rmiso) until what the
        # task left is gone or queued again: the daemon answers requests meanwhile.
        self._owners.setdefault(record.name, task)
        try:
            await self._end_left_over(record)
            if not resumable:
                await self._iohyve.discard_partial(record.name)
        finally:
            if self._owners.get(record.name) is task:
                del self._owners[record.name]
        if resumable:
            task.attempts += 1
            task.state, task.finished, task.resume = TaskState.QUEUED, None, True
            task.message = "the daemon stopped while it ran; to be resumed"
            task.process_group = task.process_started = None
            self._enqueue(task)

    async def _stored_before_the_stop(self, task: FetchTask) -> bool:
        """Whether an upload the previous run did not see end had already become its ISO.

        An upload takes its ISO's name only once it is whole, on disk and verified, and
        it owned that name from its start: a file under the name with the announced size is
        that upload, renamed just before the daemon died. It ends succeeded and is kept
        (its temporary, if the crash came between link and unlink, goes with the others).
        """
        size = await self._in_thread(self._iohyve.iso_size, task.name)
        if size is None or size != task.size:
            return False
        if task.digest is not None:
            self._record_digest(task.name, task.digest, size)
        self._finish(task, TaskState.SUCCEEDED, STORED_BEFORE_THE_STOP)
        self.log.info(
            "Upload {task_id} of {name} was stored before the stop", task_id=task.id, name=task.name
        )
        return True

    async def _end_left_over(self, record: TaskRecord) -> None:
        """End what the previous daemon left running of ``record``'s command, if anything."""
        if self._end_left_overs is None or record.process_group is None:
            return
        try:
            await self._end_left_overs(record.process_group, record.process_started, record.name)
        except Exception:
            self.log.failure(
                "Could not end the process group {group} of fetch {task_id}",
                group=record.process_group,
                task_id=record.id,
            )

    def stopService(self) -> Deferred[Any]:
        """Stop taking tasks; give running ones ``grace`` seconds, then end them."""
        super().stopService()
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        await self._started
        # An upload's body cannot be asked for again: it fails, and what it wrote goes.
        await DeferredList(
            [t.on_stop() for t in list(self.tasks.values()) if t.on_stop is not None],
            consumeErrors=True,
        )
        for waiting in list(self._waiting):
            waiting.cancel()
        for task in self.tasks.values():
            # Waiting to be resumed: the journal keeps them queued for the next start.
            if task.retry is not None and task.retry.active():
                task.retry.cancel()
            task.retry = None
        running = [t for t in self.tasks.values() if t.process is not None]
        if running:
            self.log.info(
                "Waiting up to {grace} s for {count} running fetch(es)",
                grace=self._grace,
                count=len(running),
            )
        deadline = self._clock.callLater(self._grace, self._end_running)
        workers, self._workers = self._workers, []
        await DeferredList(workers, consumeErrors=True)
        if deadline.active():
            deadline.cancel()
        if self._journal is not None:
            await self.written()
            await self._journal.close()

    def _end_running(self) -> None:
        for task in self.tasks.values():
            if task.process is not None:
                task.message = "the daemon stopped while it ran"
                task.process.stop()
            elif task.preparing is not None:
                task.preparing_ended = True
                task.preparing.cancel()

    async def _work(self) -> None:
        while not self._stopping:
            waiting = self._queue.get()
            self._waiting.append(waiting)
            try:
                task = await waiting
            except CancelledError:
                return
            finally:
                self._waiting.remove(waiting)
            if task.state is TaskState.QUEUED and not task.killed:
                await self._run(task)

    async def _run(self, task: FetchTask) -> None:
        task.state = TaskState.RUNNING
        task.started = task.started or self._clock.seconds()
        task.meter = ProgressMeter(self._clock, self._iohyve.iso_directory(task.name))
        ticker = LoopingCall(self._tick, task)
        ticker.clock = self._clock
        recorded = task.validator
        task.source_found = False
        sizing = remote_info(task.url, self._http_reactor)
        sizing.addCallback(self._sized, task)
        ready, expected = await self._prepare(task)
        if not ready:
            sizing.cancel()
            return
        if expected is not None:
            task.follower = DigestFollower(
                self._iohyve.iso_directory(task.name),
                task.name,
                expected.algorithm,
                self._in_thread,
            )
        try:
            resumed: RunningProcess | None = None
            if task.resume:
                # Resuming depends on what the source says now: its answer comes first.
                await settled(sizing)
                resumed = await self._resume_or_restart(task, recorded)
                if resumed is None:
                    return
            try:
                task.process = resumed or self._iohyve.start_fetch(
                    task.url,
                    timeout=self._timeout,
                    on_output=lambda _, data: self._output(task, data),
                )
            finally:
                # Journalled with its process group, so that a daemon started after a
                # crash can end the command this one leaves running.
                if task.process is not None:
                    task.process_group = task.process.pid
                    task.process_started = task.process.started
                self._changed(task)
            self.log.info("Fetch {task_id} started: {name}", task_id=task.id, name=task.name)
            sizing.addCallback(lambda _: self._check_room(task)).addErrback(
                lambda f: self.log.failure(
                    "Fetch {task_id}: could not check the free space", f, task_id=task.id
                )
            )
            ticker.start(1.0, now=False)
            result = await task.process.when_ended()
            await self._ended(task, result, expected)
        except Exception as e:
            self.log.failure("Fetch {task_id} could not run", task_id=task.id)
            await self._iohyve.discard_partial(task.name)
            self._finish(task, TaskState.FAILED, str(e))
        finally:
            if ticker.running:
                ticker.stop()
            if not sizing.called:
                sizing.cancel()
            if task.follower is not None:
                task.follower.close()
                task.follower = None

    async def _resume_or_restart(
        self, task: FetchTask, recorded: str | None
    ) -> RunningProcess | None:
        """Start a resumed attempt: ``fetch -r`` on the partial file when the source still
        announces ranges with the validator recorded before, else the download afresh
        (the partial file removed). ``None`` when a kill or a stop came meanwhile (the task
        has then been dealt with)."""
        partial = await self._iohyve.gather_partial(task.name)
        if self._halted(task):
            await self._between_steps(task)
            return None
        on_output: Callable[[str, bytes], None] = lambda _, data: self._output(task, data)  # noqa: E731
        if (
            partial > 0
            and task.source_found
            and task.ranges
            and recorded is not None
            and task.validator == recorded
            and (task.announced is None or partial <= task.announced)
        ):
            task.resumed_from = partial
            self.log.info(
                "Fetch {task_id}: resuming {name} from byte {offset}",
                task_id=task.id,
                name=task.name,
                offset=partial,
            )
            return self._iohyve.resume_fetch(
                task.url, task.name, timeout=self._timeout, on_output=on_output
            )
        if partial > 0:
            why = (
                "the source did not answer"
                if not task.source_found
                else "the source announces no ranges"
                if not task.ranges
                else "the source has no validator"
                if task.validator is None
                else "no validator was recorded"
                if recorded is None
                else "the source's file changed"
            )
            self.log.info(
                "Fetch {task_id}: {name} starts again ({why})",
                task_id=task.id,
                name=task.name,
                why=why,
            )
        await self._iohyve.discard_partial(task.name)
        if self._halted(task):
            await self._between_steps(task)
            return None
        task.resumed_from = 0
        return self._iohyve.start_fetch(task.url, timeout=self._timeout, on_output=on_output)

    def _halted(self, task: FetchTask) -> bool:
        """Whether a kill or a stop came for ``task`` while it waited for a step."""
        return task.killed or self._stopping

    async def _between_steps(self, task: FetchTask) -> None:
        """A kill or a stop reached an attempt between its steps, before its command."""
        if task.killed:
            await self._iohyve.discard_partial(task.name)
            self._finish(task, TaskState.CANCELLED, task.message or "killed")
        else:
            self._keep_for_next_start(task)

    async def _prepare(self, task: FetchTask) -> tuple[bool, Digest | None]:
        """Get what ``task``'s ISO must hash to; on failure finish the task, return False."""
        task.preparing = ensureDeferred(self._expected(task))
        try:
            return True, await task.preparing
        except Exception as e:
            if task.preparing_ended:
                # Cancelled by a kill or a stop, whatever error that surfaced as.
                if self._stopping:
                    self._finish(task, TaskState.INTERRUPTED, "the daemon stopped while it ran")
                else:
                    self._finish(task, TaskState.CANCELLED, task.message or "killed")
            else:
                if not isinstance(e, ChecksumError):
                    self.log.failure("Fetch {task_id} could not get its checksum", task_id=task.id)
                self._finish(task, TaskState.FAILED, f"cannot verify the download: {e}")
        finally:
            task.preparing = None
        return False, None

    async def _expected(self, task: FetchTask) -> Digest | None:
        """What ``task``'s ISO must hash to, reading a checksum file if it names one."""
        if task.verify is None:
            return None
        given = parse_checksum(task.verify)
        if given is not None:
            return given
        if task.verify == "auto":
            urls = auto_checksum_urls(task.url)
        elif task.verify.startswith("url:"):
            urls = [task.verify[len("url:") :]]
        else:
            raise ChecksumError(f"unknown verification {redact_urls(task.verify)!r}")
        problems = []
        for url in urls:
            try:
                text = await fetch_checksum_file(url, self._http_reactor)
            except ChecksumError as e:
                problems.append(f"{redact_urls(url)}: {e}")
                continue
            found = digests_in(text, task.name)
            if found:
                return found[0]
            problems.append(f"{redact_urls(url)} has no line for {task.name}")
        raise ChecksumError("; ".join(problems))

    def _sized(self, info: RemoteInfo, task: FetchTask) -> None:
        task.source_found = info.found
        if info.found:
            task.etag, task.last_modified, task.ranges = info.etag, info.last_modified, info.ranges
            if task.process is not None:
                # Journalled now: a daemon that crashes before the next change of state
                # must find what to compare when it resumes the download.
                self._save(task)
        total = info.size
        if total is None:
            return
        if task.meter is not None:
            task.meter.total = total
        task.announced = total

    def _check_room(self, task: FetchTask) -> Deferred[None] | None:
        """Once the command runs and the size is known: is there still room for it?"""
        if task.announced is None or task.process is None:
            return None
        # Checked again as the download starts: the space may have gone since it was queued.
        checking: Deferred[int | None] = self._in_thread(
            self._free_space, self._iohyve.iso_directory(task.name)
        )
        return checking.addCallback(self._room_at_start, task)

    def _room_at_start(self, free: int | None, task: FetchTask) -> None:
        if free is None or task.process is None or task.announced is None:
            return
        # Fetches that were queued behind this one wait for it: only running ones count.
        room = free - self.claimed(running_only=True, besides=task)
        if task.announced - self._on_disk(task) > room:
            task.stopped_because = (
                f"ISO '{task.name}' is {task.announced} bytes; the ISO store has"
                f" {max(room, 0)} bytes free for it"
            )
            task.process.stop()

    @staticmethod
    def _on_disk(task: FetchTask) -> int:
        return task.progress.done if task.progress else 0

    def _output(self, task: FetchTask, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        task.output = tail(task.output + text)
        task.unsent_output = tail(task.unsent_output + text)

    def _tick(self, task: FetchTask) -> None:
        if task.meter is not None and task.state is TaskState.RUNNING:
            self._measure(task, task.meter)
            self._emit(task)
        if task.follower is not None:
            task.follower.step().addErrback(
                lambda f: self.log.failure("Fetch {task_id}: hashing failed", f, task_id=task.id)
            )

    def _measure(self, task: FetchTask, meter: ProgressMeter) -> None:
        before = task.progress.done if task.progress else 0
        task.progress = meter.sample()
        if self.on_bytes is not None and task.progress.done > before:
            self.on_bytes(task.progress.done - before)

    async def _ended(
        self, task: FetchTask, result: ProcessResult, expected: Digest | None = None
    ) -> None:
        task.exit_code = result.exit_code
        if task.meter is not None:
            self._measure(task, task.meter)
        downloaded = result.ok
        # Verified before the backend finishes the job: the bytes are still where they
        # were written (a backend may then move or unpack them, as vm-bhyve's does).
        if downloaded and task.follower is not None and expected is not None:
            task.stage = "verifying"
            self._emit(task)
            computed = await task.follower.finish()
            task.digest = str(computed)
            task.stage = None
            if computed != expected:
                await self._iohyve.discard_partial(task.name)
                self._finish(
                    task,
                    TaskState.FAILED,
                    f"checksum mismatch: expected {expected}, the download's is {computed}",
                )
                return
        arrived = downloaded and await self._iohyve.fetched(task.name)
        if arrived:
            task.arrived = True
            task.size = self._iohyve.iso_size(task.name)
            if task.digest is not None and task.size is not None:
                self._record_digest(task.name, task.digest, task.size)
            else:
                self._forget_digest(task.name)
            self._finish(task, TaskState.SUCCEEDED, None)
            return
        if not downloaded and self._keep_for_resumption(task, result):
            return
        # The name was free when the task was queued and the task has owned it since,
        # so whatever iohyve left under it (an empty dataset, a partial file) is removed.
        await self._iohyve.discard_partial(task.name)
        if task.stopped_because is not None:
            self._finish(task, TaskState.FAILED, task.stopped_because)
        elif result.cancelled and self._stopping:
            self._finish(task, TaskState.INTERRUPTED, "the daemon stopped while it ran")
        elif result.cancelled:
            self._finish(task, TaskState.CANCELLED, task.message or "killed")
        else:
            self._finish(task, TaskState.FAILED, describe_failure(result))

    def _keep_for_resumption(self, task: FetchTask, result: ProcessResult) -> bool:
        """After an unsuccessful attempt: queue the task again to be resumed, if it may be.

        A stop of the daemon keeps it for the next start; a network failure or a kill of
        the command from outside queues it again after the back-off, ``retries`` times at
        most: a signal ended the command, or the source answered its size request (a
        missing file is not retried) and fetch(1) ended on the transfer, not on the local
        file (a full disk is not retried). A kill by a user, a timeout and a refusal for
        room end it.
        """
        if task.upload or task.stopped_because is not None or result.timed_out:
            return False
        if result.cancelled and not self._stopping:
            return False  # killed by a user
        if self._stopping:
            return self._keep_for_next_start(task)
        if task.attempts >= self._retries:
            return False
        if result.signal is None and not (task.source_found and _lost_the_source(task)):
            return False
        task.attempts += 1
        delay = self._retry_backoff * 2 ** (task.attempts - 1)
        reason = (_last_fetch_error(task) if result.signal is None else None) or describe_failure(
            result
        )
        self._requeued(
            task,
            f"{reason}; to be resumed in {delay:g} s (attempt {task.attempts} of {self._retries})",
        )
        task.retry = self._clock.callLater(delay, self._resume_now, task)
        self.log.info(
            "Fetch {task_id} of {name} interrupted; resumed in {delay} s",
            task_id=task.id,
            name=task.name,
            delay=delay,
        )
        return True

    def _keep_for_next_start(self, task: FetchTask) -> bool:
        """The daemon stops: the task is journalled queued, to be resumed at the next start
        (without a journal nothing would remember it, and it ends ``interrupted``)."""
        if self._journal is None or task.upload:
            return False
        self._requeued(task, "the daemon stopped while it ran; to be resumed at the next start")
        return True

    def _requeued(self, task: FetchTask, message: str) -> None:
        task.state = TaskState.QUEUED
        task.resume = True
        task.message = redact_urls(message)
        task.process = None
        task.process_group = task.process_started = None
        self._changed(task)

    def _resume_now(self, task: FetchTask) -> None:
        task.retry = None
        if task.state is TaskState.QUEUED and not task.killed and not self._stopping:
            self._queue.put(task)

    def _record_digest(self, name: str, digest: str, size: int) -> None:
        when = self._clock.seconds()
        self.digests[name] = (digest, size, when)
        if self._journal is not None:
            journal = self._journal
            self._journal_write(
                lambda: journal.save_digest(name, digest, size, when),
                lambda f: self.log.failure("Could not journal the digest", f),
            )

    def _forget_digest(self, name: str) -> None:
        if self.digests.pop(name, None) is not None and self._journal is not None:
            journal = self._journal
            self._journal_write(
                lambda: journal.forget_digest(name),
                lambda f: self.log.failure("Could not journal the digest", f),
            )

    def _finish(self, task: FetchTask, state: TaskState, message: str | None) -> None:
        task.state = state
        task.message = message
        task.finished = self._clock.seconds()
        task.process = None
        if self._owners.get(task.name) is task:
            del self._owners[task.name]
        self._changed(task)
        waiters, task.waiters = task.waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self.log.info(
            "Fetch {task_id} of {name} {state}{detail}",
            task_id=task.id,
            name=task.name,
            state=state.value,
            detail=f": {message}" if message else "",
        )
        self._forget_old()

    def _changed(self, task: FetchTask) -> None:
        """Journal the task's state and tell the subscribers."""
        self._save(task)
        self._emit(task)

    def _save(self, task: FetchTask) -> None:
        """Journal the task as it is now."""
        if self._journal is not None:
            journal, record = self._journal, task.record()

            def failed(failure: Failure) -> None:
                self.log.failure("Could not journal fetch {task_id}", failure, task_id=record.id)

            self._journal_write(lambda: journal.save(record), failed)

    def _journal_write(
        self, write: Callable[[], Deferred[None]], failed: Callable[[Failure], None]
    ) -> None:
        """Hand a write to the journal now, or once it is open; :meth:`written` waits for it.

        Writes are not chained one after the other: the journal keeps their order and
        commits those asked for together at once (one fsync for a burst of fetches)."""
        done: Deferred[None] = Deferred()

        def hand_over() -> None:
            write().addErrback(failed).addBoth(lambda _: done.callback(None))

        if self._journal_ready:
            hand_over()
        else:
            self._before_open.append(hand_over)
        self._last_write = done

    def _opened_journal(self) -> None:
        """The journal is open (or given up): hand it the writes asked for meanwhile."""
        self._journal_ready = True
        waiting, self._before_open = self._before_open, []
        for hand_over in waiting:
            hand_over()
        self._journal_tail.callback(None)

    def _emit(self, task: FetchTask) -> None:
        if self._publish is None:
            task.unsent_output = ""
            return
        new_output, task.unsent_output = task.unsent_output, ""
        self._publish(
            "dispatcher",
            dispatcher_event(
                task_id=task.id,
                command=task.command,
                state=task.state.value,
                started=local_time(task.started),
                finished=local_time(task.finished),
                progress=task.progress,
                filename=task.name,
                new_output=new_output,
                return_code=task.exit_code if task.state.final else None,
                extra=self._extra(task),
            ),
        )

    @staticmethod
    def _extra(task: FetchTask) -> dict[str, object] | None:
        """sysadmd's keys of a verified fetch's events, and a finished one's outcome."""
        extra: dict[str, object] = {}
        if (task.verify is not None or task.upload) and not task.state.final:
            extra["stage"] = task.stage or (
                "downloading" if task.state is TaskState.RUNNING else "queued"
            )
        if task.state.final:
            extra.update(arrived=task.arrived, size=task.size)
            if task.verify is not None:
                extra["digest"] = task.digest
                extra["verified"] = task.state is TaskState.SUCCEEDED
        if task.resume or task.attempts:
            # A resumed fetch: which attempt, and what this one did not transfer itself.
            extra["resume"] = task.resume
            extra["attempts"] = task.attempts
            if task.resumed_from is not None and task.state is not TaskState.QUEUED:
                extra["resumed_from"] = task.resumed_from
            if task.state is TaskState.QUEUED and task.message:
                extra["message"] = task.message
        return extra or None

    def _forget_old(self) -> None:
        finished = sorted(
            (t for t in self.tasks.values() if t.state.final), key=lambda t: t.finished or 0.0
        )
        for task in finished[: max(0, len(finished) - self._history)]:
            del self.tasks[task.id]
