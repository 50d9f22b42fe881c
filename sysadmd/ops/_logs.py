"""The daemon's own log file, and SIGHUP: reopen the log files after rotation.

twistd keeps its own log (stdout with ``--nodaemon``, or ``--logfile``). With
``log.file`` set the daemon also writes every log event to that file, as twistd's
readable text lines or as one Twisted JSON event per line (``log.format``), through
Twisted's ``twisted.python.logfile.LogFile`` and ``twisted.logger.FileLogObserver``.
The file is created with mode 0600, never followed through a symbolic link, and must be
a regular file (:class:`DaemonLogFile` says what it adds to Twisted's class).

Events logged while the daemon is being built (the TLS fingerprint, the listening
lines) are held in a small buffer from the moment the file is opened and written
to it when the service starts, so the file tells the whole start.

``log.level`` (default ``info``) is the least level written anywhere, twistd's log
included: while the service runs, every observer of the log publisher sits behind one
level filter. Events without a level pass. The per-process lines of the runner (one
``iohyve list`` every few seconds while a client listens to ``guests``) are debug lines,
so they are written only with ``log.level = "debug"``.

SIGHUP reopens the file and the audit log, so that newsyslog (or logrotate) can
move them away and signal the daemon. The signal handler only hands the work to
the reactor thread (``callFromThread``); nothing else happens in it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import IO, Any, BinaryIO, Final, cast

from twisted.application.service import Service
from twisted.logger import FileLogObserver as TwistedFileLogObserver
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    LogPublisher,
    PredicateResult,
    eventAsJSON,
    formatEventAsClassicLogText,
    globalLogPublisher,
)
from twisted.python import threadable
from twisted.python.logfile import LogFile
from zope.interface import implementer

from sysadmd.config import ConfigError
from sysadmd.shared import open_for_append

log = Logger()

FORMATS: Final = ("text", "json")
#: The values of ``log.level``, least first (Twisted's level names).
LEVELS: Final = tuple(level.name for level in LogLevel.iterconstants())
#: Events kept for the file between opening it and the service starting.
EARLY_EVENTS: Final = 500

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _json_line(event: LogEvent) -> str | None:
    return eventAsJSON(event) + "\n"


def _text_line(event: LogEvent) -> str | None:
    return formatEventAsClassicLogText(event)


class DaemonLogFile(LogFile):
    """Twisted's :class:`~twisted.python.logfile.LogFile`, opened as the daemon's files are.

    Rotation is left to newsyslog (``rotateLength=None``). What Twisted's class does not
    do, and this one adds:

    * the file is opened by :func:`~sysadmd.shared.open_for_append`: never through a
      symbolic link, nothing but a regular file, mode 0600 from the first byte (Twisted
      opens by name, follows links, and sets the mode by changing the process's umask);
    * :meth:`reopen` opens the new file before closing the old one, so a path that cannot
      be opened leaves the daemon writing to the old file (Twisted closes first);
    * text that UTF-8 cannot encode (lone surrogates from odd file names) is written with
      backslash escapes rather than failing;
    * writes after :meth:`close` are dropped.

    Writes, :meth:`reopen` and :meth:`close` hold the instance's lock
    (:func:`twisted.python.threadable.synchronize`), so any thread may log.
    """

    synchronized = ["write", "reopen", "close"]  # noqa: RUF012 - as in BaseLogFile

    def __init__(self, path: Path) -> None:
        super().__init__(path.name, str(path.parent), rotateLength=None, defaultMode=0o600)

    def _openFile(self) -> None:
        self._file = cast(BinaryIO, os.fdopen(open_for_append(Path(self.path)), "ab", 0))
        self.size = self._file.tell()
        self.closed = False

    def write(self, data: str | bytes) -> None:
        if self.closed:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "backslashreplace")
        super().write(data)

    def reopen(self) -> None:
        """Open the path again; the old file stays in use if that fails (``OSError``)."""
        old = None if self.closed else self._file
        self._openFile()
        if old is not None:
            old.close()

    def close(self) -> None:
        if not self.closed:
            super().close()


threadable.synchronize(DaemonLogFile)


class _EarlyEvents:
    """Keeps the first events until the file observer is added, each event once.

    twistd replays the events it buffered before logging began through the global
    publisher, so the same event objects can arrive twice; they are kept once.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._events: dict[int, LogEvent] = {}

    def __call__(self, event: LogEvent) -> None:
        if len(self._events) < self._size:
            self._events.setdefault(id(event), event)

    def replay_to(self, observer: ILogObserver) -> None:
        for event in self._events.values():
            observer(event)
        self._events.clear()


class FileLogObserver:
    """Writes each event to a :class:`DaemonLogFile` as a text or a JSON line.

    Twisted's :class:`twisted.logger.FileLogObserver` does the writing; the file under it
    is reopened in place, so the observer keeps its place among the publisher's observers.
    """

    def __init__(self, path: Path, format: str) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown log format {format!r}")
        self.path = path
        self.file = DaemonLogFile(path)
        formatter = _json_line if format == "json" else _text_line
        self._observer = TwistedFileLogObserver(cast(IO[Any], self.file), formatter)

    def __call__(self, event: LogEvent) -> None:
        self._observer(event)

    def reopen(self) -> None:
        """Open the path again; if that fails, keep writing to the old file and say so."""
        try:
            self.file.reopen()
        except OSError as e:
            log.error(
                "Cannot reopen log file {path}, still writing to the old file: {error}",
                path=str(self.path),
                error=e.strerror or str(e),
            )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (and no :meth:`reopen` since)."""
        return bool(self.file.closed)

    def close(self) -> None:
        """Close the file; later events are dropped."""
        self.file.close()


@implementer(ILogFilterPredicate)
class _Below:
    """Drops the events of the given levels; the others, and those without one, pass."""

    def __init__(self, dropped: set[object]) -> None:
        self._dropped = dropped

    def __call__(self, event: LogEvent) -> object:  # a PredicateResult
        verdict: object = (
            PredicateResult.no if event.get("log_level") in self._dropped else PredicateResult.maybe
        )
        return verdict


class LevelGate:
    """Puts a publisher's observers behind one level filter, and takes them out again.

    :meth:`close` puts the observers back as they were. Observers added to the publisher
    meanwhile are not filtered; :meth:`add` puts one behind the filter.
    """

    def __init__(self, publisher: LogPublisher, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}")
        self._publisher = publisher
        least = LEVELS.index(level)
        self._predicate = _Below(
            {lv for lv in LogLevel.iterconstants() if LEVELS.index(lv.name) < least}
        )
        # LogPublisher has no public way to list its observers; it has kept them in
        # _observers since twisted.logger began (15.2).
        self._moved: list[ILogObserver] = list(getattr(publisher, "_observers", []))
        self._behind = LogPublisher(*self._moved)
        self._gate = cast(ILogObserver, FilteringLogObserver(self._behind, [self._predicate]))
        for observer in self._moved:
            publisher.removeObserver(observer)
        publisher.addObserver(self._gate)

    def add(self, observer: ILogObserver) -> None:
        """Give ``observer`` the events that pass the filter."""
        self._behind.addObserver(observer)

    def remove(self, observer: ILogObserver) -> None:
        """Stop giving ``observer`` events (one given to :meth:`add`)."""
        self._behind.removeObserver(observer)

    def filtered(self, observer: ILogObserver) -> ILogObserver:
        """``observer`` behind this gate's filter, for events that are not published."""
        return cast(ILogObserver, FilteringLogObserver(observer, [self._predicate]))

    def close(self) -> None:
        """Put the observers that were moved back on the publisher."""
        self._publisher.removeObserver(self._gate)
        for observer in self._moved:
            self._publisher.addObserver(observer)


class LogFiles(Service):
    """Adds the log file observer while running, filters every log by ``level``, and
    reopens log files on SIGHUP.

    ``path`` None means no log file of its own; SIGHUP still runs ``reopen``
    (the audit log's). Opening the file happens here, at once, so that a path that
    cannot be written stops the start with a :class:`ConfigError` naming the key.
    """

    def __init__(
        self,
        path: Path | None,
        format: str,
        reactor: Any,
        *,
        reopen: Iterable[Callable[[], object]] = (),
        publisher: LogPublisher = globalLogPublisher,
        level: str = "info",
    ) -> None:
        if format not in FORMATS:
            raise ConfigError(f"log.format: must be one of {', '.join(map(repr, FORMATS))}")
        if level not in LEVELS:
            raise ConfigError(f"log.level: must be one of {', '.join(map(repr, LEVELS))}")
        self._level = level
        self._gate: LevelGate | None = None
        self._reactor = reactor
        self._publisher = publisher
        #: Called on SIGHUP after the log file is reopened (the audit log's ``reopen``).
        self.reopeners: list[Callable[[], object]] = list(reopen)
        self._previous_handler: _Handler = None
        self.observer: FileLogObserver | None = None
        self._early: _EarlyEvents | None = None
        if path is not None:
            try:
                self.observer = FileLogObserver(path, format)
            except OSError as e:
                raise ConfigError(f"log.file: {path} cannot be opened: {e.strerror or e}") from None
            self._early = _EarlyEvents(EARLY_EVENTS)
            publisher.addObserver(cast(ILogObserver, self._early))

    def startService(self) -> None:
        super().startService()
        if self._early is not None:
            self._publisher.removeObserver(cast(ILogObserver, self._early))
        gate = self._gate = LevelGate(self._publisher, self._level)
        if self.observer is not None:
            observer = cast(ILogObserver, self.observer)
            if self.observer.closed:
                self.observer.reopen()
            if self._early is not None:
                self._early.replay_to(gate.filtered(observer))
                self._early = None
            gate.add(observer)
        self._previous_handler = signal.signal(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        # In a signal handler: only hand the work to the reactor thread.
        self._reactor.callFromThread(self.reopen)

    def reopen(self) -> None:
        """Reopen the log file and everything else registered (after rotation)."""
        if self.observer is not None:
            self.observer.reopen()
        for reopen in self.reopeners:
            try:
                reopen()
            except Exception:
                log.failure("Reopening a log file failed")
        log.info("Reopened the log files (SIGHUP)")

    def stopService(self) -> None:
        super().stopService()
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        if self._gate is not None:
            if self.observer is not None:
                self._gate.remove(cast(ILogObserver, self.observer))
            self._gate.close()
            self._gate = None
        if self.observer is not None:
            self.observer.close()
