"""The durable task journal: every fetch task and its last saved state, in SQLite.

The daemon records a task when it is queued and again at every change (running, progress,
finished); each save replaces the task's row. After a restart, :meth:`Journal.recover`
marks what was running as ``interrupted`` and hands back what was still queued, so that the
daemon can clean the partial ISOs and queue the rest again; :meth:`Journal.recent` gives
the finished tasks back to clients that poll for results after reconnecting (security.md
§4, "Queue across restarts").

The database
    One table, ``tasks``: one row per task, keyed by its id, the last saved
    :class:`TaskRecord`, including the process group of a running task's command, so that
    a daemon started after a crash can end what the previous one left running. Its
    ``state`` column only takes the values of :class:`~sysadmd.shared.TaskState` (a
    ``CHECK`` constraint written from the enum). ``PRAGMA user_version`` holds the schema
    version; an older file is brought up to date when it is opened (version 1 lacked the
    process group columns; versions 1 and 2 also kept a ``transitions`` table that nothing
    read, which is dropped; version 3 lacked the ``verify`` and ``digest`` columns of
    verified fetches; version 4 lacked the validators, attempts and resumption columns of
    resumed fetches) and a file written by a newer schema is refused. A second table,
    ``iso_digests``, keeps the digest of each ISO a verified fetch stored (name, digest,
    size, when), which finished-task pruning does not touch.

Durability
    The connection runs with ``journal_mode=WAL`` and ``synchronous=FULL``: every save is
    one transaction whose commit is fsynced (the WAL) before the Deferred returned by
    :meth:`Journal.save` fires. Whatever fired survives ``kill -9`` or a power loss; a save
    that had not fired may or may not be there, but never half of it.

Group commit
    Writes (:meth:`Journal.save`, :meth:`Journal.save_digest`, :meth:`Journal.forget_digest`)
    asked for in the same turn of the reactor, or while an earlier group is being committed,
    are committed together: one transaction, one commit, one fsync. Each write runs in a
    savepoint of its own, so one that fails is undone alone and fails alone; each caller's
    Deferred still fires only once the commit that holds its write is on disk (or fails with
    it). At most one group is committed at a time: while its fsync runs, the next one gathers.

Threads and order
    Every SQLite call, and every file system call on the database, runs in the
    :class:`~twisted.enterprise.adbapi.ConnectionPool`'s single thread (``cp_min`` =
    ``cp_max`` = 1), never on the reactor thread. That thread takes its work first in,
    first out, and groups and reads are handed to it in call order, so writes happen in call
    order: saves issued without waiting for each other leave the last one in the file, and a
    read sees every write asked for before it. A save snapshots the record when it is called; the
    caller may change the object afterwards.

File modes
    The database is created by :meth:`Journal.open` itself, with
    ``os.open(O_CREAT | O_NOFOLLOW, 0o600)``, before SQLite opens it; SQLite is then
    opened with ``mode=rw`` so that it can never create the file itself (with its 0644
    default). An existing database with other permissions is changed to 0600, and
    anything but a regular file is refused. SQLite creates the ``-wal`` and ``-shm`` files
    with the permissions of the database file (and the same owner), so they are 0600 from
    their first byte too; ``open`` also changes left-over ones to 0600 and refuses them if
    they are not regular files. The directory must exist; it should be the daemon's state
    directory, owned by root and mode 0700 (a warning is logged otherwise), because
    whoever can write to it can replace these files.

Secrets and sizes
    Before they are written, ``url``, ``command``, ``message`` and ``output_tail`` have
    the user information of URLs replaced (``user:password@`` becomes ``<redacted>@``,
    :func:`sysadmd.shared.redact_urls`), and ``output_tail`` is cut to its last 4 KiB
    (UTF-8 bytes, :func:`sysadmd.shared.tail`), redaction first so that the cut cannot
    expose part of a password. The journal does this itself, whatever its caller did.

Pruning
    Finished tasks (the final states of :class:`~sysadmd.shared.TaskState`) are
    deleted when they finished more than ``keep_seconds`` ago or when more than
    ``keep_finished`` newer finished tasks exist. This happens at :meth:`Journal.open`
    and every :data:`PRUNE_EVERY` saves (inside that save's transaction). Queued and
    running tasks are never pruned.

Errors
    A database that cannot be opened, is not a database, fails ``PRAGMA quick_check`` or
    has an unknown schema makes :meth:`Journal.open` fail with :class:`JournalError`, whose
    message is one line naming the file. The daemon then logs it and runs on without a
    journal (fetches still work; ``/readyz`` reports not ready until the file is mended
    and the daemon restarted); the journal never deletes or renames a damaged file.
    Later SQLite or OS errors also become :class:`JournalError`.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import quote

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from sysadmd.shared import OUTPUT_TAIL, TaskState, redact_urls, settled, tail

__all__ = [
    "INTERRUPTED_MESSAGE",
    "PRUNE_EVERY",
    "SCHEMA_VERSION",
    "Journal",
    "JournalError",
    "TaskRecord",
]

log = Logger()

PRUNE_EVERY = 50
"""Every this many saves, the save also prunes old finished tasks."""

SCHEMA_VERSION = 5
"""The ``PRAGMA user_version`` of the schema below."""

#: Statements that bring a database of each older schema version up to the next one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE tasks ADD COLUMN process_group INTEGER",
        "ALTER TABLE tasks ADD COLUMN process_started REAL",
    ),
    # Versions 1 and 2 appended each change of state to a table that nothing read.
    2: ("DROP TABLE IF EXISTS transitions",),
    # Version 4 keeps what a verified fetch checks against and the digest it computed.
    3: (
        "ALTER TABLE tasks ADD COLUMN verify TEXT",
        "ALTER TABLE tasks ADD COLUMN digest TEXT",
    ),
    # Version 5 keeps what a resumed fetch compares and how far its attempts got.
    4: (
        "ALTER TABLE tasks ADD COLUMN etag TEXT",
        "ALTER TABLE tasks ADD COLUMN last_modified TEXT",
        "ALTER TABLE tasks ADD COLUMN ranges INTEGER",
        "ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN resume INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE tasks ADD COLUMN resumed_from INTEGER",
    ),
}


#: The CHECK constraint's list, written from the enum (constants, never input). A state
#: added to the enum needs a migration that rebuilds the table with the wider constraint.
_ALL_STATES = ", ".join(f"'{state.value}'" for state in TaskState)

INTERRUPTED_MESSAGE = "the daemon stopped while it ran"
"""The message of a task that :meth:`Journal.recover` found running."""

_FILE_MODE = 0o600

# Constant statements: every value goes through a ? or :name parameter (the table's CHECK
# constraint alone lists the states, from TaskState). The columns are listed in the order of
# the fields of TaskRecord.
_SELECT_ALL = """
    SELECT id, command, url, name, "user", state, created, started, finished, return_code,
           output_tail, bytes_fetched, size, message, process_group, process_started,
           verify, digest, etag, last_modified, ranges, attempts, resume, resumed_from
    FROM tasks ORDER BY created DESC, rowid DESC
"""
_SELECT_IN_STATE = """
    SELECT id, command, url, name, "user", state, created, started, finished, return_code,
           output_tail, bytes_fetched, size, message, process_group, process_started,
           verify, digest, etag, last_modified, ranges, attempts, resume, resumed_from
    FROM tasks WHERE state = ? ORDER BY created, rowid
"""
_CHECK_COLUMNS = """
    SELECT id, command, url, name, "user", state, created, started, finished, return_code,
           output_tail, bytes_fetched, size, message, process_group, process_started,
           verify, digest, etag, last_modified, ranges, attempts, resume, resumed_from
    FROM tasks LIMIT 0
"""
_UPSERT = """
    INSERT INTO tasks (id, command, url, name, "user", state, created, started, finished,
                       return_code, output_tail, bytes_fetched, size, message, process_group,
                       process_started, verify, digest, etag, last_modified, ranges, attempts,
                       resume, resumed_from)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET
        command = excluded.command, url = excluded.url, name = excluded.name,
        "user" = excluded."user", state = excluded.state, created = excluded.created,
        started = excluded.started, finished = excluded.finished,
        return_code = excluded.return_code, output_tail = excluded.output_tail,
        bytes_fetched = excluded.bytes_fetched, size = excluded.size, message = excluded.message,
        process_group = excluded.process_group, process_started = excluded.process_started,
        verify = excluded.verify, digest = excluded.digest, etag = excluded.etag,
        last_modified = excluded.last_modified, ranges = excluded.ranges,
        attempts = excluded.attempts, resume = excluded.resume,
        resumed_from = excluded.resumed_from
"""
_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY NOT NULL,
        command TEXT NOT NULL,
        url TEXT NOT NULL,
        name TEXT NOT NULL,
        "user" TEXT,
        state TEXT NOT NULL CHECK (state IN ({_ALL_STATES})),
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        return_code INTEGER,
        output_tail TEXT NOT NULL DEFAULT '',
        bytes_fetched INTEGER,
        size INTEGER,
        message TEXT,
        process_group INTEGER,
        process_started REAL,
        verify TEXT,
        digest TEXT,
        etag TEXT,
        last_modified TEXT,
        ranges INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        resume INTEGER NOT NULL DEFAULT 0,
        resumed_from INTEGER
    )
    """,
    "CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state, created)",
    """
    CREATE TABLE IF NOT EXISTS iso_digests (
        name TEXT PRIMARY KEY NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        verified REAL NOT NULL
    )
    """,
)
# Final: any state but these two (TaskState.final).
_PRUNE = """
    DELETE FROM tasks
    WHERE state NOT IN (:queued, :running)
      AND (
        COALESCE(finished, created) < :cutoff
        OR id NOT IN (
          SELECT id FROM tasks WHERE state NOT IN (:queued, :running)
          ORDER BY COALESCE(finished, created) DESC, rowid DESC
          LIMIT :keep
        )
      )
"""

_T = TypeVar("_T")
_P = ParamSpec("_P")


@dataclass
class TaskRecord:
    """What the journal keeps of one task; times are epoch seconds."""

    id: str
    """The task's (queue) id, e.g. ``{b3a8b980-...}``."""
    command: str
    """``iohyve fetch <url>``, credentials redacted."""
    url: str
    """The URL, credentials redacted (``user:password@`` becomes ``<redacted>@``)."""
    name: str
    """The ISO name."""
    user: str | None
    """Who asked for the task."""
    state: TaskState
    """Where the task is (a plain string with a state's value is taken too)."""
    created: float
    started: float | None = None
    finished: float | None = None
    return_code: int | None = None
    output_tail: str = ""
    """The end of the output; the journal keeps at most its last 4 KiB (UTF-8)."""
    bytes_fetched: int | None = None
    size: int | None = None
    """The total size, when known."""
    message: str | None = None
    process_group: int | None = None
    """The process group a running task's command was started in (its leader's pid)."""
    process_started: float | None = None
    """When that group's leader started (epoch seconds, as the system reports it), to tell
    it from a later process that got the same pid."""
    verify: str | None = None
    """What a verified fetch checks against: ``sha256:<hex>``/``sha512:<hex>``,
    ``url:<checksum file URL>`` or ``auto``; ``None`` for an unverified fetch."""
    digest: str | None = None
    """The digest the fetch computed (``<algorithm>:<hex>``), once it finished."""
    etag: str | None = None
    """The ``ETag`` the source announced when the download started."""
    last_modified: str | None = None
    """The ``Last-Modified`` the source announced when the download started."""
    ranges: bool | None = None
    """Whether the source announced ``Accept-Ranges: bytes`` (``None``: not asked yet)."""
    attempts: int = 0
    """How many times the download was started again after an interruption."""
    resume: bool = False
    """Whether the queued task continues the partial file an interruption left."""
    resumed_from: int | None = None
    """How many bytes were on disk when the current attempt started (``None``: none yet)."""


class JournalError(Exception):
    """The journal cannot be used; the message is one line naming the file."""


class _Write(NamedTuple):
    """One write waiting for its group's commit: what runs in the pool, and its caller."""

    work: Callable[..., None]
    args: tuple[object, ...]
    done: Deferred[None]


class _Cursor(Protocol):
    """What the interactions use of :class:`adbapi.Transaction` (a DB-API cursor)."""

    rowcount: int

    def execute(self, sql: str, parameters: Sequence[object] | dict[str, object] = ...) -> Any:
        """Run one statement."""

    def fetchone(self) -> Any:
        """The next row, or ``None``."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _redact(text: str | None) -> str | None:
    return None if text is None else redact_urls(text)


def _row(record: TaskRecord) -> tuple[object, ...]:
    """The column values of ``record``, secrets redacted and the output cut."""
    return (
        record.id,
        redact_urls(record.command),
        redact_urls(record.url),
        record.name,
        record.user,
        TaskState(record.state).value,
        record.created,
        record.started,
        record.finished,
        record.return_code,
        tail(redact_urls(record.output_tail), OUTPUT_TAIL),
        record.bytes_fetched,
        record.size,
        _redact(record.message),
        record.process_group,
        record.process_started,
        _redact(record.verify),
        record.digest,
        record.etag,
        record.last_modified,
        None if record.ranges is None else int(record.ranges),
        record.attempts,
        int(record.resume),
        record.resumed_from,
    )


def _record(row: Sequence[Any]) -> TaskRecord:
    record = TaskRecord(*row)
    record.state = TaskState(record.state)
    record.ranges = None if record.ranges is None else bool(record.ranges)
    record.resume = bool(record.resume)
    return record


def _restrict(path: str, *, create: bool) -> None:
    """Make ``path`` a 0600 regular file (creating it if ``create``); runs in the pool."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    if create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, _FILE_MODE)
    except FileNotFoundError:
        if create:
            raise
        return
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise JournalError(f"task journal {path}: is a symbolic link") from error
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JournalError(f"task journal {path}: not a regular file")
        if stat.S_IMODE(info.st_mode) != _FILE_MODE:
            os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)


def _configure(connection: sqlite3.Connection) -> None:
    """``cp_openfun``: WAL, fsync on every commit; runs in the pool."""
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.OperationalError("cannot switch the database to WAL mode")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA trusted_schema=OFF")
    except BaseException:
        connection.close()
        raise


class Journal:
    """The task journal in the SQLite database at ``path``; see the module documentation.

    Call :meth:`open` and wait for it before anything else, and :meth:`close` at the end.
    ``reactor`` must provide ``IReactorCore`` and ``IReactorFromThreads`` (it runs the
    pool); when it also provides ``IReactorTime`` its clock times pruning (otherwise the
    system clock does).
    """

    def __init__(
        self,
        path: Path,
        reactor: object,
        *,
        keep_finished: int = 100,
        keep_seconds: float = 7 * 86400,
    ) -> None:
        if not (IReactorCore.providedBy(reactor) and IReactorFromThreads.providedBy(reactor)):
            raise TypeError("the reactor must provide IReactorCore and IReactorFromThreads")
        if keep_finished < 0 or keep_seconds < 0:
            raise ValueError("keep_finished and keep_seconds must not be negative")
        self.path = path
        self._reactor = reactor
        self._from_threads = cast(IReactorFromThreads, reactor)
        self._seconds: Callable[[], float] = (
            cast(IReactorTime, reactor).seconds if IReactorTime.providedBy(reactor) else time.time
        )
        self._keep_finished = keep_finished
        self._keep_seconds = keep_seconds
        self._pool: adbapi.ConnectionPool | None = None
        self._opened = False
        self._closing: Deferred[None] | None = None
        self._saves = 0
        #: The writes gathered for the next group commit, in call order.
        self._gathering: list[_Write] = []
        #: Whether a flush of the gathering group is already scheduled.
        self._flush_scheduled = False
        #: How many groups the pool has been handed and not committed yet.
        self._committing = 0

    # -- life cycle ---------------------------------------------------------------------

    def open(self) -> Deferred[None]:
        """Create or open the database, check it, create the schema, prune.

        Fails with :class:`JournalError` if the file cannot be used.
        """
        if self._pool is not None or self._closing is not None:
            return fail(JournalError(f"task journal {self.path}: already opened"))
        path = str(self.path)
        pool = adbapi.ConnectionPool(
            "sqlite3",
            "file:" + quote(path) + "?mode=rw",
            uri=True,
            check_same_thread=False,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            timeout=5.0,
            cp_min=1,
            cp_max=1,
            cp_openfun=_configure,
            cp_reactor=self._reactor,
        )
        self._pool = pool
        now = self._seconds()

        def connect(_: None) -> Deferred[None]:
            # Queued only once the file is there, 0600: the pool's first connection opens it.
            opened: Deferred[None] = pool.runInteraction(self._open_schema, now)
            return opened

        def done(_: None) -> None:
            self._opened = True

        def failed(failure: Failure) -> Deferred[None]:
            def reraise(_: None) -> Failure:
                return self._as_journal_error(failure)

            return self._close_pool().addCallback(reraise)

        prepared = deferToThreadPool(self._from_threads, pool.threadpool, self._prepare)
        return prepared.addCallback(connect).addCallbacks(done, failed)

    def close(self) -> Deferred[None]:
        """Let pending writes finish, close the connection (in the pool), stop the pool."""
        if self._closing is None:
            self._flush()  # the gathered writes go to the pool before it closes
            self._opened = False
            self._closing = self._close_pool()
        return settled(self._closing)

    def _close_pool(self) -> Deferred[None]:
        pool, self._pool = self._pool, None
        if pool is None:
            return succeed(None)

        def disconnect() -> None:
            connection = pool.connections.get(pool.threadID())
            if connection is not None:
                pool.disconnect(connection)

        # Runs after every job queued before it, in the pool's only thread.
        closed = deferToThreadPool(self._from_threads, pool.threadpool, disconnect)

        def stop(result: Failure | None) -> None:
            pool.close()  # only joins the now idle thread
            if isinstance(result, Failure):
                log.failure("closing the task journal {path} failed", result, path=str(self.path))

        return closed.addBoth(stop)

    # -- operations ---------------------------------------------------------------------

    def save(self, record: TaskRecord) -> Deferred[None]:
        """Store ``record`` as it is now, in place of what was saved of it before.

        The Deferred fires once the change is committed and synced to disk.
        """
        try:
            snapshot = dataclasses.replace(record, state=TaskState(record.state))
        except ValueError:
            return fail(ValueError(f"unknown task state {record.state!r}"))
        self._saves += 1
        prune = self._saves % PRUNE_EVERY == 0
        return self._write(self._save, snapshot, self._seconds() if prune else None)

    def recover(self, now: float) -> Deferred[tuple[list[TaskRecord], list[TaskRecord]]]:
        """At start-up: running tasks become ``interrupted``; return them and the queued.

        The interrupted tasks get ``finished = now`` and :data:`INTERRUPTED_MESSAGE`; the
        queued ones come oldest first.
        """
        return self._interact(self._recover, now)

    def save_digest(self, name: str, digest: str, size: int, verified: float) -> Deferred[None]:
        """Record that ISO ``name`` (``size`` bytes) was verified to hash to ``digest``."""
        return self._write(self._save_digest, name, digest, size, verified)

    def forget_digest(self, name: str) -> Deferred[None]:
        """Forget the digest recorded for ISO ``name``, if any."""
        return self._write(self._forget_digest, name)

    def digests(self) -> Deferred[dict[str, tuple[str, int, float]]]:
        """Every recorded digest: name to (digest, size, when verified)."""
        return self._interact(self._digests)

    def recent(self) -> Deferred[list[TaskRecord]]:
        """Every task still in the journal, newest first."""
        return self._interact(self._recent)

    # -- in the pool thread ------------------------------------------------------------

    def _prepare(self) -> None:
        directory = self.path.parent
        try:
            _restrict(str(self.path), create=True)
            for suffix in ("-wal", "-shm"):
                _restrict(f"{self.path}{suffix}", create=False)
            info = directory.stat()
        except FileNotFoundError as error:
            if not directory.is_dir():
                raise JournalError(
                    f"task journal {self.path}: the directory {directory} does not exist"
                ) from error
            raise
        if info.st_mode & 0o077 or info.st_uid != os.geteuid():
            log.warn(
                "The task journal's directory {directory} is mode {mode:o}, owner {uid}:"
                " keep it 0700 and owned by the daemon's user",
                directory=str(directory),
                mode=stat.S_IMODE(info.st_mode),
                uid=info.st_uid,
            )

    def _open_schema(self, cursor: _Cursor, now: float) -> None:
        cursor.execute("PRAGMA quick_check")
        problems = [str(row[0]) for row in cursor.fetchall()]
        if problems != ["ok"]:
            raise JournalError(
                f"task journal {self.path}: damaged database ({_one_line(problems[0])})"
            )
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute("PRAGMA user_version")
        version = int(cursor.fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"task journal {self.path}: schema version {version} is newer than"
                f" this sysadmd's ({SCHEMA_VERSION})"
            )
        if version >= 1:
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    cursor.execute(statement)
        for statement in _SCHEMA:
            cursor.execute(statement)
        # Fails with "no such column" on a foreign database that has a tasks table.
        cursor.execute(_CHECK_COLUMNS)
        cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._prune_rows(cursor, now)
        for suffix in ("-wal", "-shm"):
            _restrict(f"{self.path}{suffix}", create=False)

    def _commit_group(self, cursor: _Cursor, writes: list[_Write]) -> list[Failure | None]:
        """Run ``writes`` in one transaction, each in a savepoint of its own: one that fails
        is undone alone. The interaction's commit (one fsync) follows. What each write came
        to: ``None`` or its failure."""
        cursor.execute("BEGIN IMMEDIATE")
        outcomes: list[Failure | None] = []
        for write in writes:
            cursor.execute("SAVEPOINT one_write")
            try:
                write.work(cursor, *write.args)
            except Exception:
                outcomes.append(Failure())
                cursor.execute("ROLLBACK TO one_write")
            else:
                outcomes.append(None)
            cursor.execute("RELEASE one_write")
        return outcomes

    def _save(self, cursor: _Cursor, record: TaskRecord, prune: float | None) -> None:
        cursor.execute(_UPSERT, _row(record))
        if prune is not None:
            self._prune_rows(cursor, prune)

    def _recover(self, cursor: _Cursor, now: float) -> tuple[list[TaskRecord], list[TaskRecord]]:
        cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(_SELECT_IN_STATE, (TaskState.RUNNING.value,))
        interrupted = [_record(row) for row in cursor.fetchall()]
        for record in interrupted:
            record.state = TaskState.INTERRUPTED
            record.finished = now
            record.message = INTERRUPTED_MESSAGE
            cursor.execute(
                "UPDATE tasks SET state = ?, finished = ?, message = ? WHERE id = ?",
                (record.state.value, now, record.message, record.id),
            )
        cursor.execute(_SELECT_IN_STATE, (TaskState.QUEUED.value,))
        queued = [_record(row) for row in cursor.fetchall()]
        return interrupted, queued

    def _save_digest(
        self, cursor: _Cursor, name: str, digest: str, size: int, verified: float
    ) -> None:
        cursor.execute(
            "INSERT OR REPLACE INTO iso_digests (name, digest, size, verified) VALUES (?, ?, ?, ?)",
            (name, digest, size, verified),
        )

    def _forget_digest(self, cursor: _Cursor, name: str) -> None:
        cursor.execute("DELETE FROM iso_digests WHERE name = ?", (name,))

    def _digests(self, cursor: _Cursor) -> dict[str, tuple[str, int, float]]:
        cursor.execute("SELECT name, digest, size, verified FROM iso_digests")
        return {str(r[0]): (str(r[1]), int(r[2]), float(r[3])) for r in cursor.fetchall()}

    def _recent(self, cursor: _Cursor) -> list[TaskRecord]:
        cursor.execute(_SELECT_ALL)
        return [_record(row) for row in cursor.fetchall()]

    def _prune_rows(self, cursor: _Cursor, now: float) -> int:
        cursor.execute(
            _PRUNE,
            {
                "cutoff": now - self._keep_seconds,
                "keep": self._keep_finished,
                "queued": TaskState.QUEUED.value,
                "running": TaskState.RUNNING.value,
            },
        )
        return max(cursor.rowcount, 0)

    # -- plumbing -----------------------------------------------------------------------

    def _write(self, work: Callable[..., None], *args: object) -> Deferred[None]:
        """Gather a write for the next group commit; fires once that commit is on disk."""
        if self._pool is None or not self._opened:
            state = "closed" if self._closing is not None else "not open"
            return fail(JournalError(f"task journal {self.path}: {state}"))
        done: Deferred[None] = Deferred()
        self._gathering.append(_Write(work, args, done))
        if not self._committing and not self._flush_scheduled:
            # At the end of this turn: every write asked for in it joins the group.
            self._flush_scheduled = True
            self._from_threads.callFromThread(self._scheduled_flush)
        return done

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self._committing:
            self._flush()

    def _flush(self) -> None:
        """Hand the gathered writes to the pool as one group (behind whatever it has)."""
        writes, self._gathering = self._gathering, []
        if not writes:
            return
        pool = self._pool
        if pool is None:
            error = JournalError(f"task journal {self.path}: closed")
            for write in writes:
                write.done.errback(Failure(error))
            return
        self._committing += 1
        committed: Deferred[list[Failure | None]] = pool.runInteraction(self._commit_group, writes)

        def delivered(outcomes: list[Failure | None] | Failure) -> None:
            self._committing -= 1
            for index, write in enumerate(writes):
                outcome = outcomes if isinstance(outcomes, Failure) else outcomes[index]
                if outcome is None:
                    write.done.callback(None)
                else:
                    write.done.errback(self._as_journal_error(outcome))
            if self._gathering and not self._committing and not self._flush_scheduled:
                self._flush()

        committed.addBoth(delivered)

    def _interact(
        self,
        interaction: Callable[Concatenate[_Cursor, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """Run ``interaction(cursor, *args, **kwargs)`` in one transaction in the pool, after
        the writes asked for before it."""
        pool = self._pool
        if pool is None or not self._opened:
            state = "closed" if self._closing is not None else "not open"
            return fail(JournalError(f"task journal {self.path}: {state}"))
        self._flush()
        result: Deferred[_T] = pool.runInteraction(interaction, *args, **kwargs)
        return result.addErrback(self._as_journal_error)

    def _as_journal_error(self, failure: Failure) -> Failure:
        """Turn a SQLite or OS error into a one-line :class:`JournalError`."""
        error = failure.value
        if isinstance(error, JournalError):
            return failure
        if isinstance(error, (sqlite3.Error, OSError)):
            converted = JournalError(f"task journal {self.path}: {_one_line(_describe(error))}")
            converted.__cause__ = error
            return Failure(converted)
        return failure
