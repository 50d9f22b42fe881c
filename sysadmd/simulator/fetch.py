"""A real download that reports like FreeBSD fetch(1) without a terminal.

iohyve runs ``fetch <URL> -o /iohyve/ISO/<name>``. fetch(1) supports ``http``, ``https``, ``ftp``
and ``file`` URLs (and guesses for scheme-less ones); it writes only to stderr. With stderr not a
terminal (the daemon's case) it prints, from ``usr.bin/fetch/fetch.c``:

* once the transfer has started, the destination path cut to 63 bytes and padded to 46,
  without a newline;
* at the end, on the same line, 8 spaces, the size as ``%4d <prefix>B`` and the rate as
  ``<size>ps`` (``   1 MBps``), or ``?? Bps`` for an instant transfer;
* errors as ``fetch: <URL>: <reason>`` (``Not Found`` for HTTP 404).

Here the data is streamed in chunks to a temporary file that the caller renames into place, so a
partial file never carries the final name. The rate printed is the average over the whole
transfer. ``IOHYVE_SIM_FETCH_BPS`` (bytes per second) slows the transfer down so that progress can
be watched.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from sysadmd.simulator.output import Output

#: fetch(1)'s ``struct xferstat`` keeps the file name in a 64-byte buffer.
NAME_BUFFER = 63
#: fetch(1) pads the file name to this width.
NAME_WIDTH = 46
#: Bytes read per iteration when not throttled (1 MiB: with 64 KiB a local 1 GiB download
#: spent its time in 16,384 small write and read calls, and ran a third slower than curl).
CHUNK_SIZE = 1024 * 1024
#: fetch(1)'s default timeout for HTTP and FTP (seconds).
TIMEOUT = 120.0
#: Environment variable limiting the transfer rate, in bytes per second.
RATE_LIMIT_ENV = "IOHYVE_SIM_FETCH_BPS"
_PREFIXES = " kMGTP"


class FetchError(Exception):
    """The transfer failed; ``str()`` is the text fetch prints after ``fetch: ``."""


class Truncated(FetchError):
    """Fewer bytes arrived than announced: fetch(1) keeps what it wrote (``failure_keep``)."""


class Interrupted(BaseException):
    """A SIGTERM or SIGINT arrived during the transfer.

    Like KeyboardInterrupt it derives from BaseException, so no ``except Exception`` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        #: The signal number.
        self.signum = signum


def output_file_name(url: str) -> str:
    """Return the file name fetch(1) derives from ``url`` (``fetch.out`` if it ends in ``/``)."""
    name = url.rsplit("/", 1)[-1]
    return name or "fetch.out"


def stat_bytes(count: int) -> str:
    """Format a byte count as fetch's ``stat_bytes`` does (``%4d`` and a k/M/G/T/P prefix)."""
    index = 0
    while count > 9999 and index < len(_PREFIXES) - 1:
        count //= 1024
        index += 1
    return f"{count:4d} {_PREFIXES[index]}B"


def stat_rate(count: int, seconds: float) -> str:
    """Format a transfer rate as fetch's ``stat_bps`` does."""
    if seconds <= 0:
        return "?? Bps"
    return stat_bytes(int(count / seconds)) + "ps"


def stat_name(path: str) -> str:
    """Return the file name as fetch prints it first: cut to 63 bytes, padded to 46 bytes."""
    raw = path.encode("utf-8", "surrogateescape")[:NAME_BUFFER]
    raw = raw.ljust(NAME_WIDTH, b" ")
    return raw.decode("utf-8", "surrogateescape")


class Source:
    """An open transfer: the whole file's size (-1 if unknown), its mtime, the offset its
    data starts at (libfetch's ``url->offset`` after the request) and a chunk reader."""

    __slots__ = ("_close", "_read", "mtime", "offset", "size")

    def __init__(
        self,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        size: int,
        mtime: float | None,
        offset: int = 0,
    ) -> None:
        self._read = read
        self._close = close
        #: Size of the whole remote file, announced by the server or found by stat(2); -1 if
        #: unknown.
        self.size = size
        #: Modification time of the remote file (seconds since the epoch), if known.
        self.mtime = mtime
        #: Where the data read starts in the remote file: the start of a 206's
        #: ``Content-Range``, 0 for a 200 (a server that ignored the range).
        self.offset = offset

    def read(self, size: int) -> bytes:
        """Return up to ``size`` bytes; ``b""`` at the end of the data."""
        return self._read(size)

    def close(self) -> None:
        """Release the connection or file."""
        self._close()


def _os_reason(exc: BaseException) -> str:
    import socket  # noqa: PLC0415 - the network stack is only loaded by fetch

    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_NONAME:
            return "No address record"
        if exc.errno == socket.EAI_AGAIN:
            return "Transient resolver failure"
        return "Host not found"
    if isinstance(exc, TimeoutError):
        return "Operation timed out"  # FreeBSD's strerror(ETIMEDOUT)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text or type(exc).__name__


def _http_reason(code: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown HTTP error"


def _open_file(url: str, path: str, offset: int = 0) -> Source:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed through Source.close
    except OSError as exc:
        raise FetchError(f"{url}: {_os_reason(exc)}") from exc
    stat = os.fstat(handle.fileno())
    # libfetch's file scheme seeks to the offset asked for (fseeko).
    if offset:
        handle.seek(offset)
    return Source(handle.read, handle.close, stat.st_size, stat.st_mtime, offset)


def _content_range(value: str | None) -> tuple[int, int, int] | None:
    """``bytes FIRST-LAST/SIZE`` (or ``bytes */SIZE``, first and last -1), as libfetch's
    ``http_parse_range`` reads it; ``None`` if absent or malformed."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+)\s*", value)
    if match is None:
        return None
    size = int(match.group(3))
    if match.group(1) is None:
        return -1, -1, size
    first, last = int(match.group(1)), int(match.group(2))
    if last < first:
        return None
    return first, last, size


def _mtime(value: str | None) -> float | None:
    if not value:
        return None
    from email.utils import parsedate_to_datetime  # noqa: PLC0415

    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _open_url(url: str, offset: int = 0) -> Source:
    """GET ``url``; from ``offset`` on with ``Range: bytes=<offset>-`` when it is not 0, and
    the answer read as libfetch's ``http_request`` reads it: a 206 starts where its
    ``Content-Range`` says, a 200 at 0 (the server ignored the range), a 416 whose size is
    the offset is an empty success (the file is complete), any disagreement between the
    lengths a ``Protocol error``."""
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    headers = {"User-Agent": "fetch libfetch/2.0"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310
    except urllib.error.HTTPError as exc:
        code, answered = exc.code, exc.headers
        exc.close()
        if code == 416 and offset > 0:
            found = _content_range(answered.get("Content-Range") if answered else None)
            if found is not None and found[2] == offset:
                # "asked for 0 bytes; fake it"
                mtime = _mtime(answered.get("Last-Modified") if answered else None)
                return Source(lambda _size: b"", lambda: None, offset, mtime, offset)
        raise FetchError(f"{url}: {_http_reason(code)}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = _os_reason(reason) if isinstance(reason, BaseException) else str(reason)
        raise FetchError(f"{url}: {text}") from exc
    except (OSError, ValueError) as exc:
        raise FetchError(f"{url}: {_os_reason(exc)}") from exc
    return _answer(url, offset, response)


def _answer(url: str, offset: int, response: Any) -> Source:
    """The :class:`Source` of a 200 or 206 answer, with libfetch's consistency checks of
    ``Content-Length``, ``Content-Range`` and the offset asked for, in its order."""
    headers = response.headers
    clength = -1
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit():
        clength = int(length)
    start, size, part = 0, -1, -1
    if getattr(response, "status", 200) == 206:
        found = _content_range(headers.get("Content-Range"))
        if found is not None and found[0] >= 0:
            start, part, size = found[0], found[1] - found[0] + 1, found[2]
    if clength == -1:
        clength = part
    whole = start + clength if clength != -1 else -1
    if size == -1:
        size = whole
    if (part not in (-1, clength)) or (whole not in (-1, size)) or (offset > 0 and start > offset):
        response.close()
        raise FetchError(f"{url}: Protocol error")
    mtime = _mtime(headers.get("Last-Modified"))
    # read1: what has arrived (one receive at most), as fetch(1) writes what it gets; read
    # would wait for a whole chunk, and a stalled server would show no progress at all.
    return Source(getattr(response, "read1", response.read), response.close, size, mtime, start)


def open_source(url: str, offset: int = 0) -> Source:
    """Open ``url`` as fetch(1) would, from byte ``offset`` on (a range request, which the
    server may ignore: see :attr:`Source.offset`); raise :class:`FetchError` with fetch's
    reason.

    Without a scheme, a path (``/x``, ``./x``, or a word with neither ``/`` nor ``:``) is a local
    file, and a host starting with ``ftp.``/``www.`` gets ``ftp://``/``http://``.
    """
    if not url:
        raise FetchError("empty URL")
    scheme, separator, rest = url.partition("://")
    if not separator:
        if url.startswith(("/", ".")) or ("/" not in url and ":" not in url):
            return _open_file(url, url, offset)
        host = url.split("/", 1)[0].lower()
        if host.startswith("ftp."):
            return _open_url("ftp://" + url, offset)
        if host.startswith("www."):
            return _open_url("http://" + url, offset)
        raise FetchError(f"{url}: Invalid URL scheme")
    scheme = scheme.lower()
    if scheme == "file":
        from urllib.parse import unquote  # noqa: PLC0415

        slash = rest.find("/")
        return _open_file(url, unquote(rest[slash:] if slash >= 0 else "/"), offset)
    if scheme in ("http", "https", "ftp"):
        return _open_url(url, offset)
    raise FetchError(f"{url}: Invalid URL scheme")


def rate_limit() -> int:
    """Return the ``IOHYVE_SIM_FETCH_BPS`` limit in bytes per second (0 for none)."""
    value = os.environ.get(RATE_LIMIT_ENV, "").strip()
    return int(value) if value.isdigit() else 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def transfer(source: Source, fd: int, url: str, display_path: str, output: Output) -> None:
    """Copy ``source`` to the file descriptor ``fd`` and print fetch's stderr lines.

    Every chunk is written straight to the file, so its size on disk follows the progress.
    The count starts at :attr:`Source.offset` (fetch's ``count = url->offset``), so a
    resumed transfer's rate counts only the new bytes and its truncation check the whole
    file. Raise :class:`FetchError` (after the final statistics line, as fetch does) if the
    data cannot be read or written, :class:`Truncated` if it ends early. On SIGTERM
    (:class:`Interrupted`) nothing more is printed, as fetch is killed; on SIGINT fetch
    prints its statistics first.
    """
    from http.client import HTTPException  # noqa: PLC0415

    if source.size == -1:
        output.err(f"fetch: {url}: size of remote file is not known")
    output.err_partial(stat_name(display_path))
    limit = rate_limit()
    chunk = CHUNK_SIZE if not limit else max(1, min(CHUNK_SIZE, limit // 20))
    started = time.monotonic()
    received = 0
    failure: FetchError | None = None

    def statistics() -> None:
        elapsed = time.monotonic() - started
        output.err(f"{' ' * 8}{stat_bytes(source.size)} {stat_rate(received, elapsed)}")

    def count() -> int:
        return source.offset + received

    try:
        while True:
            try:
                data = source.read(chunk)
            except (OSError, HTTPException, ValueError) as exc:
                failure = FetchError(f"{url}: {_os_reason(exc)}")
                break
            if not data:
                break
            try:
                _write_all(fd, data)
            except OSError as exc:
                failure = FetchError(f"{display_path}: {_os_reason(exc)}")
                break
            received += len(data)
            if limit:
                delay = started + received / limit - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except Interrupted as interrupted:
        if interrupted.signum == signal.SIGINT:
            statistics()
        raise
    statistics()
    if failure is not None:
        raise failure
    if source.size != -1 and count() < source.size:
        raise Truncated(f"{display_path} appears to be truncated: {count()}/{source.size} bytes")


class SignalGuard:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` while a download runs.

    Set :attr:`committing` before the final rename: a signal arriving then is only recorded in
    :attr:`pending`, so the rename is never cut in half. Handlers are installed only in the main
    thread (Python allows no other); elsewhere the guard does nothing.
    """

    __slots__ = ("_previous", "committing", "pending")

    def __init__(self) -> None:
        self._previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
        #: Whether the final phase runs and signals must wait.
        self.committing = False
        #: A signal that arrived while committing.
        self.pending: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.committing:
            self.pending = signum
            return
        raise Interrupted(signum)

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def _mtime_of(path: str) -> tuple[int, int] | None:
    """``(size, whole-second mtime)`` of a regular file at ``path``; ``None`` if there is
    none (fetch's ``sb.st_size = -1``)."""
    import stat  # noqa: PLC0415

    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, int(info.st_mtime)


class _Failed(Exception):
    """fetch's ``goto failure`` (``keep``: ``failure_keep``), after its message."""

    def __init__(self, *, keep: bool = False) -> None:
        super().__init__()
        self.keep = keep


class _Download:
    """One run of fetch's ``fetch()``: the file it writes and how it ends."""

    def __init__(
        self,
        url: str,
        destination: str,
        shown: str,
        output: Output,
        *,
        resume: bool,
        check_mtime: bool = True,
    ) -> None:
        self.url = url
        self.check_mtime = check_mtime
        self.destination = destination
        self.shown = shown
        self.output = output
        self.resume = resume
        #: The regular file at the destination before the run: (size, mtime in seconds).
        self.local = _mtime_of(destination)
        self.source: Source | None = None
        #: The file the data goes into (fetch's ``of``), once open, and its descriptor.
        self.written = ""
        self.fd = -1
        self.temp = ""

    def fail(self, text: str, *, keep: bool = False) -> _Failed:
        self.output.err(f"fetch: {text}")
        return _Failed(keep=keep)

    def open(self) -> Source | None:
        """Request the data and open the output; None when there is nothing to do."""
        asked = self.local[0] if self.resume and self.local is not None else 0
        try:
            self.source = source = open_source(self.url, asked)
        except FetchError as exc:
            raise self.fail(str(exc)) from exc
        if self.resume and self.local is not None:
            size, mtime = self.local
            if self.check_mtime and source.mtime is not None and mtime != int(source.mtime):
                pass  # no match: fetched again below
            elif source.offset > size:
                self.output.err(f"fetch: {self.url}: gap in resume mode")
            elif source.size != -1:
                if source.size == size:
                    return None  # nothing to do
                if size > source.size:
                    raise self.fail(
                        f"{self.shown}: local file ({size} bytes) is longer than remote file"
                        f" ({source.size} bytes)"
                    )
                self.fd = os.open(self.destination, os.O_RDWR)
                os.lseek(self.fd, source.offset, os.SEEK_SET)
                self.written = self.destination
        if self.fd < 0:
            self._open_anew(source)
        return self.source

    def _open_anew(self, source: Source) -> None:
        if source.offset > 0:
            # The resumption was given up: the whole file, from the start.
            source.close()
            self.source = None
            try:
                self.source = open_source(self.url, 0)
            except FetchError as exc:
                raise self.fail(str(exc)) from exc
        if self.local is not None:
            directory, name = os.path.split(self.destination)
            try:
                self.temp, self.fd = temp_file(directory, name)
            except OSError as exc:
                raise self.fail(f"{self.shown}: mkstemps(): {_os_reason(exc)}") from exc
            self.written = self.temp
            return
        try:
            self.fd = os.open(self.destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as exc:
            raise self.fail(f"{self.shown}: open(): {_os_reason(exc)}") from exc
        self.written = self.destination

    def receive(self, source: Source) -> None:
        """The transfer; the file's mtime is set after it, whatever its outcome but a kill."""
        try:
            transfer(source, self.fd, self.url, self.shown, self.output)
        except Interrupted as interrupted:
            if interrupted.signum == signal.SIGINT:
                _set_mtime(self.fd, source)
            raise
        except FetchError as exc:
            _set_mtime(self.fd, source)
            raise self.fail(str(exc), keep=isinstance(exc, Truncated)) from exc
        _set_mtime(self.fd, source)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.source is not None:
            self.source.close()
            self.source = None

    def commit(self) -> None:
        if self.temp:
            try:
                os.replace(self.temp, self.destination)
            except OSError as exc:
                raise self.fail(f"{self.shown}: rename(): {_os_reason(exc)}", keep=True) from exc

    def discard(self) -> None:
        """fetch's ``failure``: the file it wrote is removed, unless ``-r``."""
        if not self.resume and self.written and os.path.lexists(self.written):
            os.unlink(self.written)


def download(
    url: str,
    destination: str,
    shown: str,
    output: Output,
    *,
    resume: bool = False,
    check_mtime: bool = True,
) -> tuple[int, int | None]:
    """Download ``url`` to ``destination`` as fetch(1)'s ``fetch()`` does (``usr.bin/fetch/
    fetch.c``); ``resume`` is its ``-r`` and ``check_mtime=False`` its ``-F``. ``shown`` is
    the path printed. Return fetch's
    status (0, or 1 after its error line) and the signal (SIGTERM, SIGINT) that ended the
    transfer, if one did.

    * The data goes straight into ``destination`` when no regular file is there; over an
      existing file it goes into a temporary ``.fetch.XXXXXX.<name>`` beside it
      (:func:`temp_file`), renamed into place once complete.
    * ``resume`` with a regular file at ``destination`` asks for the rest
      (``Range: bytes=<its size>-``). The partial file is continued where the answer
      starts (a 206 at its ``Content-Range``; a 200 from the first byte, over the old
      bytes) unless the remote ``Last-Modified`` differs from the file's mtime (not checked
      with ``-F``), the answer
      starts past its end (``gap in resume mode``) or the size is unknown: then the whole
      file is fetched again into a temporary file. A file as large as the remote one is
      complete (nothing is transferred); a larger one is an error.
    * The file's mtime is set from ``Last-Modified`` once the transfer ended, even after an
      interruption, so that a later ``-r`` can compare it; a killed fetch sets none, so
      only ``-F -r`` continues its file.
    * A transfer that ends short of the announced size keeps what it wrote (``appears to be
      truncated``); other failures and SIGINT remove it, unless ``resume``. SIGTERM ends the
      command as it ends fetch, which leaves its file where it was.
    """
    run = _Download(url, destination, shown, output, resume=resume, check_mtime=check_mtime)
    with SignalGuard() as guard:
        try:
            try:
                source = run.open()
                if source is not None:
                    run.receive(source)
            finally:
                run.close()
            guard.committing = True
            run.commit()
        except _Failed as failed:
            guard.committing = True
            if not failed.keep:
                run.discard()
            return 1, None
        except Interrupted as interrupted:
            guard.committing = True
            guard.pending = interrupted.signum
            if interrupted.signum == signal.SIGINT:
                run.discard()
    if guard.pending is not None:
        if guard.pending == signal.SIGINT:
            output.err("fetch: transfer interrupted")
        return 1, guard.pending
    return 0, None


def _set_mtime(fd: int, source: Source) -> None:
    """fetch's ``utimes`` after a transfer: the remote mtime, when the server sent one."""
    if source.mtime is not None:
        os.utime(fd, (int(source.mtime), int(source.mtime)))


def temp_file(directory: str, file_name: str) -> tuple[str, int]:
    """Create ``.fetch.XXXXXX.<file>`` in ``directory``, as fetch(1) names its temporary
    files (mkstemps); return its path and a descriptor open for writing."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        token = "".join(alphabet[byte % len(alphabet)] for byte in os.urandom(6))
        path = os.path.join(directory, f".fetch.{token}.{file_name}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return path, fd
