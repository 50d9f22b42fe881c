"""Small files, kept safely: whole, durable, never too readable, shared between processes.

This module depends on the standard library only, so the daemon and the client both use it
(the client imports nothing else of the daemon's). :func:`write_atomically` replaces a file;
:class:`FileStore` is the one way a document kept in a file (the account database, the
registered SSL keys, the client's saved session and known hosts) is read and changed;
:func:`json_document` reads a versioned JSON document; :func:`open_for_append` opens a log
file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar, cast


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never part.

    The data goes to a temporary file in the same directory, created with ``mode``
    (made exact whatever the umask, before any byte is written, so a secret is never
    readable by others even briefly), synced, and renamed over ``path``; the
    directory is then synced so the rename survives a crash. Raises ``OSError``.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; best effort, as not every system can."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def open_for_append(path: Path) -> int:
    """Open ``path`` for appending, mode 0600 (made so if it was not), refusing a symbolic
    link or anything but a regular file (``O_NONBLOCK``: a FIFO cannot hang the open)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------------------------------------------
# One small document in one file, shared by every process that opens it

_T = TypeVar("_T")

#: What tells a changed file from the one last read: a rewrite, an edit or a chmod.
_Signature = tuple[int, int, int, int, int, int]


def _signature(status: os.stat_result) -> _Signature:
    return (
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
        status.st_mode,
    )


class NotRegularFile(OSError):
    """The store's path names something other than a regular file (a directory, a FIFO)."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))


@dataclass(frozen=True)
class Snapshot(Generic[_T]):
    """What :meth:`FileStore.snapshot` found in the file."""

    #: The parsed document (``empty()`` for a missing file); ``None`` when ``error`` is set
    #: (or when ``None`` is the document).
    value: _T | None
    #: Why the file's content was refused (raised by ``parse`` or ``check``), else ``None``.
    error: Exception | None
    #: The file's permission bits; 0 when there is no file.
    mode: int
    #: Whether the file was read now, rather than the copy kept from an earlier read.
    fresh: bool


class FileStore(Generic[_T]):
    """One document kept in one file, read and changed by any number of processes.

    The rule every store of the project follows:

    * **Reading** (:meth:`read`, :meth:`snapshot`) takes no lock. The file is ``stat``-ed and
      read again only when it has changed since the last read (device, inode, size,
      modification and change times, mode); otherwise the parsed copy is returned. A missing
      file is ``empty()``. The path must name a regular file (:class:`NotRegularFile`).
      The value returned is shared: treat it as read-only and copy it before changing it.
    * **Changing** happens inside :meth:`locked`, which holds an exclusive ``flock`` on
      ``<file>.lock`` beside the file (created mode 0600 with the directory, mode 0700, if
      needed). Every process and every thread takes the same lock, so a read-modify-write is
      never lost to another's stale copy. Inside it, :meth:`write` replaces the file
      atomically with :func:`write_atomically` and ``mode``; :meth:`remove` deletes it.
    * **Bad content** (``parse`` or ``check`` raising one of ``invalid``) is never
      overwritten by accident: :meth:`read` raises that error, the same one until the file
      changes, and the owner decides.

    ``parse`` turns the file's bytes into the document and ``serialize`` the reverse;
    ``check`` may refuse a file by its status before it is read (a file others may write).
    Reading and writing raise ``OSError`` for the file system's own failures.
    """

    def __init__(
        self,
        path: Path,
        *,
        parse: Callable[[bytes], _T],
        serialize: Callable[[_T], bytes],
        empty: Callable[[], _T],
        invalid: type[Exception] | tuple[type[Exception], ...] = ValueError,
        check: Callable[[os.stat_result], None] | None = None,
        mode: int = 0o600,
        directory_mode: int = 0o700,
    ) -> None:
        self.path = Path(path)
        self._parse = parse
        self._serialize = serialize
        self._empty = empty
        self._invalid = invalid
        self._check = check
        self._mode = mode
        self._directory_mode = directory_mode
        # Guards the cache, which threads of one process share.
        self._guard = threading.Lock()
        self._cached: tuple[_Signature | None, Snapshot[_T]] | None = None
        # The threads that hold the file lock now (write and remove need it).
        self._holders: set[int] = set()

    @property
    def lock_path(self) -> Path:
        """The file whose ``flock`` every change holds."""
        return self.path.with_name(self.path.name + ".lock")

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> _T:
        """The document as the file holds it now; raises its error if the file is refused."""
        snapshot = self.snapshot()
        if snapshot.error is not None:
            raise snapshot.error
        return cast(_T, snapshot.value)

    def snapshot(self) -> Snapshot[_T]:
        """The document, or why it was refused, reading the file only if it changed.

        Raises ``OSError`` when the file exists but cannot be read (not a regular file,
        no permission); that is not cached.
        """
        try:
            status: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            status = None
        signature = None if status is None else _signature(status)
        with self._guard:
            if self._cached is not None and self._cached[0] == signature:
                return replace(self._cached[1], fresh=False)
        if status is None:
            snapshot: Snapshot[_T] = Snapshot(self._empty(), None, 0, fresh=True)
        else:
            signature, snapshot = self._load()
        with self._guard:
            self._cached = (signature, snapshot)
        return snapshot

    def _load(self) -> tuple[_Signature | None, Snapshot[_T]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, Snapshot(self._empty(), None, 0, fresh=True)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise NotRegularFile(self.path)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as file:
            mode = stat.S_IMODE(status.st_mode)
            try:
                if self._check is not None:
                    self._check(status)
                value = self._parse(file.read())
            except self._invalid as e:
                return _signature(status), Snapshot(None, e, mode, fresh=True)
        return _signature(status), Snapshot(value, None, mode, fresh=True)

    # -- changing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, failed: Callable[[OSError], Exception] | None = None) -> Iterator[None]:
        """Hold the exclusive lock every change of this file takes (blocks until it is free).

        An ``OSError`` taking the lock is raised as ``failed(error)`` if given (the store's
        owner names the file its own way); errors inside the block pass through unchanged.
        """
        try:
            fd = self._take_lock()
        except OSError as e:
            if failed is None:
                raise
            raise failed(e) from e
        try:
            me = threading.get_ident()
            self._holders.add(me)
            try:
                yield
            finally:
                self._holders.discard(me)
        finally:
            os.close(fd)

    def _take_lock(self) -> int:
        """Open the lock file (and its directory) and wait for its ``flock``; its descriptor."""
        make_directory(self.path.parent, self._directory_mode)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write(self, value: _T) -> None:
        """Replace the file with ``value`` (inside :meth:`locked`) and keep it as the copy."""
        self._require_lock()
        write_atomically(self.path, self._serialize(value), self._mode)
        status = os.stat(self.path)
        snapshot = Snapshot(value, None, stat.S_IMODE(status.st_mode), fresh=False)
        with self._guard:
            self._cached = (_signature(status), snapshot)

    def remove(self) -> bool:
        """Delete the file (inside :meth:`locked`); whether there was one."""
        self._require_lock()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        finally:
            with self._guard:
                self._cached = None
        return True

    def _require_lock(self) -> None:
        if threading.get_ident() not in self._holders:
            raise RuntimeError(f"{self.path}: changed without holding its lock")


def json_document(data: bytes, *, kind: str, version: int) -> dict[str, Any]:
    """The JSON object in ``data``, whose ``"version"`` must be ``version``.

    Raises ``ValueError`` with a one-line message saying what is wrong: not JSON (or nested
    too deeply to read), not an object (``not a sysadmd <kind>``), or another version.
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    if not isinstance(document, dict):
        raise ValueError(f"not a sysadmd {kind}")
    found = document.get("version")
    if found != version or isinstance(found, bool):
        raise ValueError(f"not a sysadmd {kind} of version {version} (its version is {found!r})")
    return document


def make_directory(directory: Path, mode: int = 0o700) -> None:
    """Create ``directory`` and its parents if missing; a new one gets exactly ``mode``."""
    if directory.is_dir():
        return
    directory.parent.mkdir(mode=mode, parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=mode)
    except FileExistsError:
        return
    # mkdir's mode is filtered by the umask.
    os.chmod(directory, mode)
