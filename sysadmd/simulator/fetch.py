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
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

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
    """An open transfer: its announced size (-1 if unknown), mtime and a chunk reader."""

    __slots__ = ("_close", "_read", "mtime", "size")

    def __init__(
        self,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        size: int,
        mtime: float | None,
    ) -> None:
        self._read = read
        self._close = close
        #: Size announced by the server or found by stat(2); -1 if unknown.
        self.size = size
        #: Modification time of the remote file (seconds since the epoch), if known.
        self.mtime = mtime

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


def _open_file(url: str, path: str) -> Source:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed through Source.close
    except OSError as exc:
        raise FetchError(f"{url}: {_os_reason(exc)}") from exc
    stat = os.fstat(handle.fileno())
    return Source(handle.read, handle.close, stat.st_size, stat.st_mtime)


def _open_url(url: str) -> Source:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(url, headers={"User-Agent": "fetch libfetch/2.0"})  # noqa: S310
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchError(f"{url}: {_http_reason(exc.code)}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = _os_reason(reason) if isinstance(reason, BaseException) else str(reason)
        raise FetchError(f"{url}: {text}") from exc
    except (OSError, ValueError) as exc:
        raise FetchError(f"{url}: {_os_reason(exc)}") from exc
    headers = response.headers
    size = -1
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit():
        size = int(length)
    mtime: float | None = None
    modified = headers.get("Last-Modified")
    if modified:
        from email.utils import parsedate_to_datetime  # noqa: PLC0415

        try:
            mtime = parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            mtime = None
    # read1: what has arrived (one receive at most), as fetch(1) writes what it gets; read
    # would wait for a whole chunk, and a stalled server would show no progress at all.
    return Source(getattr(response, "read1", response.read), response.close, size, mtime)


def open_source(url: str) -> Source:
    """Open ``url`` as fetch(1) would; raise :class:`FetchError` with fetch's reason.

    Without a scheme, a path (``/x``, ``./x``, or a word with neither ``/`` nor ``:``) is a local
    file, and a host starting with ``ftp.``/``www.`` gets ``ftp://``/``http://``.
    """
    if not url:
        raise FetchError("empty URL")
    scheme, separator, rest = url.partition("://")
    if not separator:
        if url.startswith(("/", ".")) or ("/" not in url and ":" not in url):
            return _open_file(url, url)
        host = url.split("/", 1)[0].lower()
        if host.startswith("ftp."):
            return _open_url("ftp://" + url)
        if host.startswith("www."):
            return _open_url("http://" + url)
        raise FetchError(f"{url}: Invalid URL scheme")
    scheme = scheme.lower()
    if scheme == "file":
        from urllib.parse import unquote  # noqa: PLC0415

        slash = rest.find("/")
        return _open_file(url, unquote(rest[slash:] if slash >= 0 else "/"))
    if scheme in ("http", "https", "ftp"):
        return _open_url(url)
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
    Raise :class:`FetchError` (after the final statistics line, as fetch does) if the data
    cannot be read or written or ends early. On SIGTERM (:class:`Interrupted`) nothing more is
    printed, as fetch is killed; on SIGINT fetch prints its statistics first.
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
    if source.size != -1 and received < source.size:
        raise FetchError(f"{display_path} appears to be truncated: {received}/{source.size} bytes")


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


def download(url: str, destination: str, shown: str, output: Output) -> tuple[int, int | None]:
    """Download ``url`` to ``destination`` as fetch(1) does: into a temporary
    ``.fetch.XXXXXX.<name>`` beside it (:func:`temp_file`), renamed into place once
    complete and removed otherwise. ``shown`` is the path printed. Return fetch's status
    (0, or 1 after its error line) and the signal (SIGTERM, SIGINT) that ended the
    transfer, if one did."""
    directory, name = os.path.split(destination)
    temp = ""
    with SignalGuard() as guard:
        try:
            try:
                source = open_source(url)
            except FetchError as exc:
                output.err(f"fetch: {exc}")
                return 1, None
            try:
                try:
                    temp, fd = temp_file(directory, name)
                except OSError as exc:
                    output.err(f"fetch: {shown}: open(): {_os_reason(exc)}")
                    return 1, None
                try:
                    transfer(source, fd, url, shown, output)
                finally:
                    os.close(fd)
            except FetchError as exc:
                output.err(f"fetch: {exc}")
                return 1, None
            finally:
                source.close()
            guard.committing = True
            os.replace(temp, destination)
        except Interrupted as interrupted:
            guard.pending = interrupted.signum
        finally:
            guard.committing = True
            if temp and os.path.lexists(temp):
                os.unlink(temp)
    if guard.pending is not None:
        if guard.pending == signal.SIGINT:
            output.err("fetch: transfer interrupted")
        return 1, guard.pending
    return 0, None


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
