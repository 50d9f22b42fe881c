"""The durable task journal, on real SQLite files in tmp_path and the global reactor."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import stat
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from support import async_fixture, async_test
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from sysadmd.shared import OUTPUT_TAIL as MAX_OUTPUT_TAIL
from sysadmd.shared import TaskState
from sysadmd.tasks._journal import _SCHEMA as JOURNAL_SCHEMA
from sysadmd.tasks._journal import (
    INTERRUPTED_MESSAGE,
    PRUNE_EVERY,
    SCHEMA_VERSION,
    Journal,
    JournalError,
    TaskRecord,
)

NOW = 1_800_000_000.0


def record(number: int, state: str = "queued", **changes: Any) -> TaskRecord:
    """A task record; ``number`` makes the id and the creation time."""
    url = f"https://mirror.example/iso/image{number}.iso"
    fields: dict[str, Any] = {
        "id": f"{{00000000-0000-4000-8000-{number:012d}}}",
        "command": f"iohyve fetch {url}",
        "url": url,
        "name": f"image{number}.iso",
        "user": "root",
        "state": state,
        "created": NOW + number,
    }
    if state != "queued":
        fields["started"] = NOW + number + 0.5
    if state in TaskState.finals():
        fields["finished"] = NOW + number + 0.75
    fields.update(changes)
    return TaskRecord(**fields)


class Journals:
    """Makes journals on files in one directory and closes every one of them afterwards."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: list[Journal] = []

    @property
    def path(self) -> Path:
        """The default database file."""
        return self.directory / "journal.db"

    def make(self, path: Path | None = None, **options: Any) -> Journal:
        """A journal that is not open yet."""
        journal = Journal(self.path if path is None else path, reactor, **options)
        self.made.append(journal)
        return journal

    async def open(self, path: Path | None = None, **options: Any) -> Journal:
        """An open journal."""
        journal = self.make(path, **options)
        await journal.open()
        return journal


@async_fixture()
async def journals(tmp_path: Path) -> AsyncIterator[Journals]:
    """A :class:`Journals` in a 0700 directory; closes its journals (and their threads)."""
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    made = Journals(directory)
    yield made
    for journal in made.made:
        await journal.close()


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most permissive umask, so that only explicit modes protect the files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


async def open_failure(journal: Journal) -> JournalError:
    """The JournalError with which ``journal.open()`` fails."""
    try:
        await journal.open()
    except JournalError as error:
        return error
    raise AssertionError("open() succeeded")


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


# -- contents -----------------------------------------------------------------------------


@async_test
async def test_a_record_comes_back_as_saved(journals: Journals) -> None:
    journal = await journals.open()
    saved = record(
        1,
        "failed",
        return_code=1,
        output_tail="fetch: transfer interrupted\n",
        bytes_fetched=1234,
        size=99999,
        message="iohyve fetch exited with 1",
        user=None,
    )
    await journal.save(saved)
    assert await journal.recent() == [saved]

    other = await journals.open()
    assert await other.recent() == [saved]


@async_test
async def test_recent_lists_newest_first(journals: Journals) -> None:
    journal = await journals.open()
    for number in (2, 1, 3):
        await journal.save(record(number))
    assert [task.id for task in await journal.recent()] == [
        record(3).id,
        record(2).id,
        record(1).id,
    ]


@async_test
async def test_save_takes_a_snapshot_of_the_record(journals: Journals) -> None:
    journal = await journals.open()
    task = record(1)
    saved = journal.save(task)
    task.state = TaskState.RUNNING
    task.started = NOW + 5
    await saved
    assert await journal.recent() == [record(1)]


@async_test
async def test_every_state_can_be_saved_and_others_are_refused(journals: Journals) -> None:
    journal = await journals.open()
    for number, state in enumerate(TaskState):
        await journal.save(record(number, state))
    assert {task.state for task in await journal.recent()} == set(TaskState)
    assert all(type(task.state) is TaskState for task in await journal.recent())
    with pytest.raises(ValueError, match="unknown task state"):
        await journal.save(record(99, "exploded"))


@async_test
async def test_a_save_replaces_what_was_saved_of_the_task(journals: Journals) -> None:
    journal = await journals.open()
    task = record(1)
    await journal.save(task)
    task.state, task.started = TaskState.RUNNING, NOW + 10
    for fetched in (100, 200, 300):
        task.bytes_fetched = fetched
        await journal.save(task)
    task.state, task.finished, task.return_code = TaskState.SUCCEEDED, NOW + 20, 0
    await journal.save(task)
    assert await journal.recent() == [task]


# -- restart ------------------------------------------------------------------------------


@async_test
async def test_recover_interrupts_running_tasks_and_returns_the_queued(
    journals: Journals,
) -> None:
    journal = await journals.open()
    queued_late, queued_early = record(5), record(2)
    running = record(3, "running", bytes_fetched=10)
    finished = record(1, "succeeded", return_code=0)
    for task in (queued_late, running, finished, queued_early):
        await journal.save(task)

    interrupted, queued = await journal.recover(NOW + 100)

    expected = dataclasses.replace(
        running, state=TaskState.INTERRUPTED, finished=NOW + 100, message=INTERRUPTED_MESSAGE
    )
    assert interrupted == [expected]
    assert queued == [queued_early, queued_late]

    # Persisted: a second journal on the file sees the change.
    again = await journals.open()
    assert await again.recent() == [queued_late, expected, queued_early, finished]
    # Nothing is running any more.
    assert await again.recover(NOW + 200) == ([], [queued_early, queued_late])


@async_test
async def test_nothing_saved_is_lost_when_the_daemon_dies_without_closing(
    journals: Journals,
) -> None:
    first = await journals.open()
    tasks = [record(number) for number in range(10)]
    for task in tasks:
        await first.save(task)
    tasks[3].state, tasks[3].started = TaskState.RUNNING, NOW + 50
    await first.save(tasks[3])
    # Like kill -9: the first journal is neither closed nor flushed, just no longer used.
    second = await journals.open()
    assert await second.recent() == list(reversed(tasks))


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from twisted.internet import defer, task
    from sysadmd.tasks._journal import Journal, TaskRecord

    async def main(reactor):
        journal = Journal(Path(sys.argv[1]), reactor)
        await journal.open()
        for number in range(20):
            state = "running" if number == 19 else "queued"
            await journal.save(TaskRecord(
                id=str(number), command="iohyve fetch u", url="u", name=f"{number}.iso",
                user=None, state=state, created=float(number),
            ))
        print("saved", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    """
)


class _Child(ProcessProtocol):
    """Collects a child's output and how it ended."""

    def __init__(self) -> None:
        self.output = b""
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


@async_test
async def test_a_daemon_killed_with_sigkill_keeps_every_fired_save(journals: Journals) -> None:
    child = _Child()
    IReactorProcess(reactor).spawnProcess(
        child,
        sys.executable,
        [sys.executable, "-c", CHILD, str(journals.path)],
        env=dict(os.environ),
    )
    await child.ended
    reason = child.reason
    assert reason is not None
    assert isinstance(reason.value, ProcessTerminated), child.output
    assert not isinstance(reason.value, ProcessDone)
    assert reason.value.signal == signal.SIGKILL, child.output
    assert child.output == b"saved\n"

    journal = await journals.open()
    interrupted, queued = await journal.recover(NOW)
    assert [task.id for task in interrupted] == ["19"]
    assert [task.id for task in queued] == [str(number) for number in range(19)]


# -- pruning ------------------------------------------------------------------------------


@async_test
async def test_pruning_keeps_the_newest_finished_tasks(journals: Journals) -> None:
    journal = await journals.open(keep_finished=2)
    finished = [record(number, "succeeded", return_code=0) for number in range(5)]
    # Finished in another order than created: pruning goes by `finished`.
    finished[0].finished = NOW + 1000
    for task in finished:
        await journal.save(task)
    unfinished = [record(10), record(11, "running")]
    for task in unfinished:
        await journal.save(task)

    assert len(await journal.recent()) == 7  # nothing pruned before PRUNE_EVERY saves

    again = await journals.open(keep_finished=2)
    assert await again.recent() == [unfinished[1], unfinished[0], finished[4], finished[0]]


@async_test
async def test_pruning_drops_tasks_finished_too_long_ago(journals: Journals) -> None:
    journal = await journals.open(keep_seconds=3600)
    now = time.time()
    old = record(1, "failed", finished=now - 7200)
    fresh = record(2, "cancelled", finished=now - 60)
    stuck = record(3, "queued", created=now - 10 * 86400)  # never pruned while unfinished
    for task in (old, fresh, stuck):
        await journal.save(task)
    again = await journals.open(keep_seconds=3600)
    assert await again.recent() == [fresh, stuck]


@async_test
async def test_open_prunes(journals: Journals) -> None:
    journal = await journals.open()
    for number in range(4):
        await journal.save(record(number, "succeeded"))
    await journal.save(record(9, "interrupted", finished=time.time() - 8 * 86400))

    smaller = await journals.open(keep_finished=1)
    assert [task.id for task in await smaller.recent()] == [record(3).id]


@async_test
async def test_saves_prune_from_time_to_time(journals: Journals) -> None:
    journal = await journals.open(keep_finished=3)
    for number in range(1, PRUNE_EVERY):
        await journal.save(record(number, "succeeded"))
    assert len(await journal.recent()) == PRUNE_EVERY - 1
    await journal.save(record(PRUNE_EVERY, "succeeded"))
    assert [task.id for task in await journal.recent()] == [
        record(number).id for number in (PRUNE_EVERY, PRUNE_EVERY - 1, PRUNE_EVERY - 2)
    ]


# -- sizes and secrets --------------------------------------------------------------------


@async_test
async def test_the_output_tail_keeps_its_last_4_kib(journals: Journals) -> None:
    journal = await journals.open()
    output = "".join(f"line {number}\n" for number in range(2000))
    await journal.save(record(1, "failed", output_tail=output))
    [saved] = await journal.recent()
    assert saved.output_tail == output[-MAX_OUTPUT_TAIL:]

    # Bytes, not characters: a cut through a multi-byte character drops what is left of it.
    await journal.save(record(2, "failed", output_tail="é" * 3000))
    assert (await journal.recent())[0].output_tail == "é" * (MAX_OUTPUT_TAIL // 2)
    await journal.save(record(3, "failed", output_tail="x" + "é" * 3000))
    assert (await journal.recent())[0].output_tail == "é" * (MAX_OUTPUT_TAIL // 2)
    small = "fetch: done\n"
    await journal.save(record(4, "succeeded", output_tail=small))
    assert (await journal.recent())[0].output_tail == small


@async_test
async def test_credentials_are_redacted_before_the_tail_is_cut(journals: Journals) -> None:
    journal = await journals.open()
    secret_url = "https://alice:s3cret-pw@mirror.example/iso/a.iso"
    # Output in which the last 4 KiB start inside the user information of the URL.
    line = f"fetch: {secret_url}: Not Found\n"
    padding = MAX_OUTPUT_TAIL - (len(line) - line.index("s3cret"))
    output = line + "y" * padding
    assert output[-MAX_OUTPUT_TAIL:].startswith("s3cret-pw@")
    task = record(
        1,
        "failed",
        url=secret_url,
        command=f"iohyve fetch {secret_url}",
        message=f"fetching {secret_url} failed",
        output_tail=output,
    )
    await journal.save(task)
    [saved] = await journal.recent()
    assert saved.url == "https://<redacted>@mirror.example/iso/a.iso"
    assert saved.command == f"iohyve fetch {saved.url}"
    assert saved.message == f"fetching {saved.url} failed"
    assert saved.output_tail.endswith("@mirror.example/iso/a.iso: Not Found\n" + "y" * padding)
    assert "cret" not in saved.output_tail
    assert "pw@" not in saved.output_tail
    assert task.url == secret_url  # the caller's object is left alone
    assert b"s3cret" not in journals.path.read_bytes()
    wal = Path(f"{journals.path}-wal")
    assert b"s3cret" not in (wal.read_bytes() if wal.exists() else b"")


# -- order and threads --------------------------------------------------------------------


@async_test
async def test_saves_issued_without_waiting_are_written_in_call_order(
    journals: Journals,
) -> None:
    journal = await journals.open()
    task = record(1)
    pending = [journal.save(dataclasses.replace(task))]
    task.state, task.started = TaskState.RUNNING, NOW + 2
    for fetched in range(0, 30_000, 1000):
        task.bytes_fetched = fetched
        pending.append(journal.save(dataclasses.replace(task)))
    task.state, task.finished, task.return_code = TaskState.SUCCEEDED, NOW + 3, 0
    pending.append(journal.save(task))
    await gatherResults(pending)

    assert await journal.recent() == [task]


@async_test
async def test_no_sqlite_call_runs_on_the_reactor_thread(
    journals: Journals, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        threads.append(threading.get_ident())
        connection: sqlite3.Connection = connect(*args, **kwargs)
        connection.set_trace_callback(lambda _: threads.append(threading.get_ident()))
        return connection

    monkeypatch.setattr(sqlite3, "connect", traced_connect)
    journal = await journals.open()
    await journal.save(record(1, "running"))
    await journal.recover(NOW)
    await journal.recent()
    await journal.close()
    assert len(threads) > 5
    assert threading.get_ident() not in threads


@async_test
async def test_close_waits_for_pending_writes_and_stops_the_thread(journals: Journals) -> None:
    threads_before = threading.active_count()
    journal = await journals.open()
    pending = [journal.save(record(number)) for number in range(20)]
    await journal.close()
    assert all(saved.called for saved in pending)
    await gatherResults(pending)
    assert threading.active_count() == threads_before
    await journal.close()  # twice is fine

    with pytest.raises(JournalError, match="closed"):
        await journal.save(record(99))
    with pytest.raises(JournalError, match="already opened"):
        await journal.open()
    again = await journals.open()
    assert len(await again.recent()) == 20


@async_test
async def test_the_journal_must_be_opened_first(journals: Journals) -> None:
    journal = journals.make()
    with pytest.raises(JournalError, match="not open"):
        await journal.recent()
    with pytest.raises(TypeError):
        Journal(journals.path, object())


# -- files --------------------------------------------------------------------------------


@pytest.mark.usefixtures("umask_zero")
@async_test
async def test_the_files_are_0600_whatever_the_umask(journals: Journals) -> None:
    journal = await journals.open()
    await journal.save(record(1))
    wal, shm = Path(f"{journals.path}-wal"), Path(f"{journals.path}-shm")
    assert mode(journals.path) == 0o600
    assert mode(wal) == 0o600
    assert mode(shm) == 0o600
    await journal.close()
    assert mode(journals.path) == 0o600


@async_test
async def test_existing_files_are_made_0600(journals: Journals) -> None:
    crashed = await journals.open()
    await crashed.save(record(1))
    # Left behind by a crash (the journal is not closed), with other modes. SQLite itself
    # only fixes the mode of an *empty* -wal or -shm file.
    wal, shm = Path(f"{journals.path}-wal"), Path(f"{journals.path}-shm")
    assert wal.stat().st_size > 0
    for path in (journals.path, wal, shm):
        path.chmod(0o644)

    again = await journals.open()
    assert await again.recent() == [record(1)]
    assert mode(journals.path) == 0o600
    assert mode(wal) == 0o600
    assert mode(shm) == 0o600


@async_test
async def test_a_path_with_uri_characters_is_used_as_it_is(journals: Journals) -> None:
    directory = journals.directory / "odd ?#%41 dir"
    directory.mkdir(mode=0o700)
    path = directory / "jour nal?.db"
    journal = await journals.open(path)
    await journal.save(record(1))
    assert sorted(item.name for item in directory.iterdir())[0] == "jour nal?.db"
    assert mode(path) == 0o600
    assert not (journals.directory / "odd ").exists()


@async_test
async def test_a_garbage_file_is_refused_with_a_one_line_error(journals: Journals) -> None:
    threads_before = threading.active_count()
    journals.path.write_bytes(b"this is not SQLite\n" * 500)
    error = await open_failure(journals.make())
    assert str(journals.path) in str(error)
    assert "not a database" in str(error)
    assert "\n" not in str(error)
    assert threading.active_count() == threads_before  # the pool was stopped


@async_test
async def test_a_damaged_page_is_refused(journals: Journals) -> None:
    journal = await journals.open()
    for number in range(50):
        await journal.save(record(number, output_tail="x" * 2000))
    await journal.close()
    data = bytearray(journals.path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page + 8 : page + 200] = b"\xff" * 192  # the b-tree header of page 2
    journals.path.write_bytes(bytes(data))

    error = await open_failure(journals.make())
    assert str(journals.path) in str(error)
    assert "\n" not in str(error)


@async_test
async def test_a_foreign_or_newer_database_is_refused(journals: Journals) -> None:
    foreign = journals.directory / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, colour TEXT)")
    connection.close()
    error = await open_failure(journals.make(foreign))
    assert str(foreign) in str(error)
    assert "no such column" in str(error)

    newer = journals.directory / "newer.db"
    with sqlite3.connect(newer) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    error = await open_failure(journals.make(newer))
    assert str(newer) in str(error)
    assert "newer" in str(error)


@async_test
async def test_unusable_paths_are_refused(journals: Journals) -> None:
    missing = journals.directory / "missing" / "journal.db"
    error = await open_failure(journals.make(missing))
    assert str(missing) in str(error)
    assert "does not exist" in str(error)

    target = journals.directory / "elsewhere.db"
    link = journals.directory / "link.db"
    link.symlink_to(target)
    error = await open_failure(journals.make(link))
    assert str(link) in str(error)
    assert not target.exists()

    directory = journals.directory / "dir.db"
    directory.mkdir()
    error = await open_failure(journals.make(directory))
    assert str(directory) in str(error)

    wal_link = journals.directory / "walled.db-wal"
    wal_link.symlink_to(target)
    error = await open_failure(journals.make(journals.directory / "walled.db"))
    assert "walled.db-wal" in str(error)
    assert "symbolic link" in str(error)
    assert not target.exists()


# -- process groups ---------------------------------------------------------------------------

_VERSION_1_TASKS = """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY NOT NULL, command TEXT NOT NULL, url TEXT NOT NULL,
        name TEXT NOT NULL, "user" TEXT,
        state TEXT NOT NULL CHECK (state IN
            ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
        created REAL NOT NULL, started REAL, finished REAL, return_code INTEGER,
        output_tail TEXT NOT NULL DEFAULT '', bytes_fetched INTEGER, size INTEGER, message TEXT
    )
"""


@async_test
async def test_a_running_task_keeps_its_process_group(journals: Journals) -> None:
    """The group and its leader's start time come back from recover(), which a daemon
    started after a crash needs to end what the previous one left running."""
    journal = await journals.open()
    await journal.save(record(1, "running", process_group=4242, process_started=NOW + 1.25))
    interrupted, _ = await journal.recover(NOW + 10)
    assert [(r.process_group, r.process_started) for r in interrupted] == [(4242, NOW + 1.25)]


@async_test
async def test_a_version_1_journal_is_brought_up_to_date(journals: Journals) -> None:
    """A journal written before the process group was recorded opens, keeps its tasks
    (without a group) and records groups from then on."""
    old = journals.directory / "old.db"
    with closing(sqlite3.connect(old)) as connection:
        connection.execute(_VERSION_1_TASKS)
        connection.execute(
            "CREATE TABLE transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,"
            " state TEXT NOT NULL, time REAL NOT NULL)"
        )
        connection.execute(
            "INSERT INTO tasks (id, command, url, name, state, created, started)"
            " VALUES ('{old}', 'iohyve fetch u', 'u', 'old.iso', 'running', 1.0, 2.0)"
        )
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
    journal = await journals.open(old)
    await journal.save(record(2, "running", process_group=77, process_started=NOW))
    interrupted, _ = await journal.recover(NOW + 10)
    assert {(r.id, r.process_group) for r in interrupted} == {("{old}", None), (record(2).id, 77)}
    with closing(sqlite3.connect(old)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert tables(connection) == {"tasks", "iso_digests"}


def tables(connection: sqlite3.Connection) -> set[str]:
    """The tables of a database (SQLite's own left out)."""
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(name) for (name,) in rows} - {"sqlite_sequence"}


@async_test
async def test_a_version_2_journal_loses_its_transitions_and_keeps_its_tasks(
    journals: Journals,
) -> None:
    """Versions 1 and 2 appended every change of state to a table nothing read; opening
    such a file drops it and keeps every task."""
    old = journals.directory / "old.db"
    with closing(sqlite3.connect(old)) as connection:
        connection.execute(_VERSION_1_TASKS)
        connection.execute("ALTER TABLE tasks ADD COLUMN process_group INTEGER")
        connection.execute("ALTER TABLE tasks ADD COLUMN process_started REAL")
        connection.execute(
            "CREATE TABLE transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,"
            " state TEXT NOT NULL, time REAL NOT NULL)"
        )
        connection.execute("CREATE INDEX transitions_by_task ON transitions (task_id, seq)")
        connection.execute(
            "INSERT INTO tasks (id, command, url, name, state, created, started, finished,"
            " process_group) VALUES ('{old}', 'iohyve fetch u', 'u', 'old.iso', 'succeeded',"
            " 1.0, 2.0, 3.0, 55)"
        )
        connection.execute(
            "INSERT INTO transitions (task_id, state, time) VALUES ('{old}', 'queued', 1.0)"
        )
        connection.execute("PRAGMA user_version = 2")
        connection.commit()
    journal = await journals.open(old, keep_seconds=4e9)
    [kept] = await journal.recent()
    assert (kept.id, kept.state, kept.process_group) == ("{old}", TaskState.SUCCEEDED, 55)
    await journal.save(record(2))
    await journal.close()
    with closing(sqlite3.connect(old)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert tables(connection) == {"tasks", "iso_digests"}
        indexes = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        assert "transitions_by_task" not in {str(name) for (name,) in indexes}


def test_the_state_constraint_is_written_from_the_enum(tmp_path: Path) -> None:
    """The table refuses a state that TaskState does not have, and takes every one it has."""
    with closing(sqlite3.connect(tmp_path / "j.db")) as connection:
        for statement in JOURNAL_SCHEMA:
            connection.execute(statement)
        for number, state in enumerate(TaskState):
            connection.execute(
                "INSERT INTO tasks (id, command, url, name, state, created)"
                " VALUES (?, 'c', 'u', 'n', ?, 1.0)",
                (str(number), state.value),
            )
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            connection.execute(
                "INSERT INTO tasks (id, command, url, name, state, created)"
                " VALUES ('x', 'c', 'u', 'n', 'pending', 1.0)"
            )


# -- resumed fetches --------------------------------------------------------------------------


@async_test
async def test_a_resumable_task_keeps_its_validators_and_attempts(journals: Journals) -> None:
    """What a resumed fetch compares (ETag, Last-Modified, ranges) and how far its attempts
    got come back from the journal as they were saved, booleans as booleans."""
    journal = await journals.open()
    saved = record(
        1,
        "queued",
        etag='"abc"',
        last_modified="Fri, 08 Jan 2016 20:15:33 GMT",
        ranges=True,
        attempts=2,
        resume=True,
        resumed_from=4096,
    )
    await journal.save(saved)
    await journal.save(record(2, "running", ranges=False))
    interrupted, queued = await journal.recover(NOW + 10)
    assert queued == [saved]
    assert (interrupted[0].ranges, interrupted[0].resume, interrupted[0].attempts) == (
        False,
        False,
        0,
    )


@async_test
async def test_a_version_4_journal_gains_the_resumption_columns(journals: Journals) -> None:
    """A journal written before fetches were resumed opens with its tasks, which read as
    never resumed."""
    old = journals.directory / "old.db"
    with closing(sqlite3.connect(old)) as connection:
        connection.execute(_VERSION_1_TASKS)
        for column in ("process_group INTEGER", "process_started REAL", "verify TEXT"):
            connection.execute(f"ALTER TABLE tasks ADD COLUMN {column}")
        connection.execute("ALTER TABLE tasks ADD COLUMN digest TEXT")
        connection.execute(
            "CREATE TABLE iso_digests (name TEXT PRIMARY KEY NOT NULL, digest TEXT NOT NULL,"
            " size INTEGER NOT NULL, verified REAL NOT NULL)"
        )
        connection.execute(
            "INSERT INTO tasks (id, command, url, name, state, created)"
            " VALUES ('{old}', 'iohyve fetch u', 'u', 'old.iso', 'queued', 1.0)"
        )
        connection.execute("PRAGMA user_version = 4")
        connection.commit()
    journal = await journals.open(old)
    _, [kept] = await journal.recover(NOW)
    assert (kept.id, kept.attempts, kept.resume, kept.ranges, kept.etag) == (
        "{old}",
        0,
        False,
        None,
        None,
    )


# -- group commit ---------------------------------------------------------------------------


def count_commits(journal: Journal) -> list[str]:
    """The statements the journal's connection runs from now on (SQLite's trace: a commit
    is one ``COMMIT``, which with ``synchronous=FULL`` in WAL mode is one fsync)."""
    statements: list[str] = []
    pool = journal._pool
    assert pool is not None
    for connection in pool.connections.values():
        connection.set_trace_callback(statements.append)
    return statements


def committed_ids(path: Path) -> set[str]:
    """The task ids another connection reads from the file: what is committed."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as reader:
        return {str(row[0]) for row in reader.execute("SELECT id FROM tasks")}


@async_test
async def test_saves_asked_for_together_commit_once(journals: Journals) -> None:
    """Twenty saves asked for in one turn are one transaction with one commit (one fsync),
    and each caller hears of its save only once another connection can read it."""
    journal = await journals.open()
    await journal.save(record(0))  # the connection is made
    statements = count_commits(journal)
    heard: list[tuple[str, bool]] = []
    saves = []
    for number in range(1, 21):
        saved = record(number)

        def on_disk(_: None, task_id: str = saved.id) -> None:
            heard.append((task_id, task_id in committed_ids(journals.path)))

        saves.append(journal.save(saved).addCallback(on_disk))
    await gatherResults(saves)
    assert statements.count("COMMIT") == 1
    assert len(heard) == 20 and all(readable for _, readable in heard)
    assert [task_id for task_id, _ in heard] == [record(n).id for n in range(1, 21)]


@async_test
async def test_saves_asked_for_while_a_commit_runs_are_the_next_group(
    journals: Journals,
) -> None:
    """While one group commits, the saves asked for meanwhile gather into one more."""
    journal = await journals.open()
    await journal.save(record(0))
    statements = count_commits(journal)
    pool = journal._pool
    assert pool is not None
    held = threading.Event()
    pool.threadpool.callInThread(held.wait, 10)  # the pool's thread waits for the test
    try:
        first = journal.save(record(1))
        while not journal._committing:  # the first group is handed to the pool
            await deferLater(reactor, 0.001, lambda: None)
        later = [journal.save(record(n)) for n in range(2, 12)]
    finally:
        held.set()
    await gatherResults([first, *later])
    assert statements.count("COMMIT") == 2
    assert {record(n).id for n in range(12)} == committed_ids(journals.path)


@async_test
async def test_a_save_that_fails_in_a_group_fails_alone(journals: Journals) -> None:
    """Each save of a group runs in a savepoint: one that the database refuses is undone
    and fails with a JournalError; the others of its group are committed."""
    journal = await journals.open()
    outcomes: list[object] = []
    saves = [
        journal.save(record(1)),
        journal.save(record(2, name=None)),  # NOT NULL: refused by SQLite
        journal.save(record(3)),
    ]
    for save in saves:
        save.addBoth(outcomes.append)
    await gatherResults(saves, consumeErrors=True).addErrback(lambda _: None)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Failure) and outcomes[1].check(JournalError)
    assert committed_ids(journals.path) == {record(1).id, record(3).id}


@async_test
async def test_a_read_sees_the_writes_asked_for_before_it(journals: Journals) -> None:
    """A read asked for in the same turn as saves comes after them, not before."""
    journal = await journals.open()
    for number in range(1, 6):
        journal.save(record(number))
    journal.save_digest("image1.iso", "sha256:" + "0" * 64, 10, NOW)
    assert {r.id for r in await journal.recent()} == {record(n).id for n in range(1, 6)}
    assert "image1.iso" in await journal.digests()
