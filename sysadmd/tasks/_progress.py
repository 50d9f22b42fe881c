"""Download progress of ``iohyve fetch``, measured by the daemon, and sysadm's dispatcher events.

sysadm scraped fetch(1)'s ``"% of "`` lines from the command output, but under a daemon fetch(1)
has no terminal and prints no progress at all (protocol reference §6.3), so the old server's
``percent_done``/``download_rate`` were nearly always absent. sysadmd measures instead:

* **done** is the size of the largest regular file directly in the ISO's dataset directory
  ``/iohyve/ISO/<name>/`` (:func:`bytes_on_disk`). fetch(1) writes ``<name>`` itself, or a
  temporary ``.fetch.XXXXXX.<name>`` renamed to ``<name>`` at the end when a file of that name
  was there (iohyve's simulated fetch always does the latter), so the largest file covers the
  transfer before and after a rename.
* **total** comes from the source (:func:`remote_size`): the ``Content-Length`` of an HTTP(S)
  ``HEAD``, the ``stat(2)`` size of a ``file://`` URL, unknown for ``ftp://`` and on any failure.
  The same request gives what a resumed fetch compares (:func:`remote_info`): the ``ETag``,
  the ``Last-Modified`` and whether ``Accept-Ranges: bytes`` was announced.
* **rate** is a sliding-window average (:class:`ProgressMeter`): bytes gained since the most
  recent sample taken at least ``window`` seconds ago (by default 5 s), divided by the time
  between the two samples.

:func:`dispatcher_event` builds the ``args`` of an ``events``/``dispatcher`` message in the shape
of sysadm's ``sysadm/iohyve`` subsystem events, with sysadmd's numeric progress fields next to
sysadm's strings. Everything here except :func:`remote_size` is synchronous and cheap enough for
the reactor thread.
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import Agent, RedirectAgent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from sysadmd.shared import SYSADM_STATES, TaskState

__all__ = [
    "EVENT_SYSTEM",
    "MAX_REDIRECTS",
    "Progress",
    "ProgressMeter",
    "RefusedURL",
    "RemoteInfo",
    "bytes_on_disk",
    "dispatcher_event",
    "format_percent",
    "format_rate",
    "remote_info",
    "remote_size",
    "result_of",
    "sysadm_state",
]

#: ``event_system`` of every iohyve dispatcher event.
EVENT_SYSTEM: Final = "sysadm/iohyve"
#: Redirects :func:`remote_size` follows (libfetch follows up to 5 as well).
MAX_REDIRECTS: Final = 5
#: Largest ``Content-Length`` accepted as sane (the largest ``off_t``).
_MAX_LENGTH: Final = 2**63 - 1
#: Upper bound on the samples a meter keeps, whatever the sampling frequency.
_MAX_SAMPLES: Final = 256
_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
#: What every request of :func:`remote_size` must go to (the host is checked apart).
_WEB_URL: Final = re.compile(r"https?://[\x21-\x7e]+", re.IGNORECASE)
#: fetch(1)'s ``stat_bytes`` prefixes.
_PREFIXES: Final = " kMGTP"

#: Our task states and sysadm's own three names, mapped to sysadm's process-log states.
_SYSADM_STATES: Final[Mapping[str, str]] = {
    **{state.value: state.sysadm for state in TaskState},
    **{name: name for name in SYSADM_STATES},
}
#: ``process_details`` keys a command text must not overwrite.
_RESERVED_DETAILS: Final = frozenset(
    {"cmd_list", "process_id", "state", "time_started", "time_finished", "current_cmd"}
)


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Progress:
    """One measurement of a download.

    ``done`` is the number of bytes on disk, ``total`` the expected size (``None`` if unknown)
    and ``rate`` the transfer rate in bytes per second over the meter's recent window.
    """

    done: int
    total: int | None
    rate: float

    @property
    def percent(self) -> float | None:
        """Return ``done`` as a percentage of ``total``, clamped to 0..100; ``None`` if unknown.

        A known total of 0 counts as complete (100).
        """
        if self.total is None or self.total < 0:
            return None
        if self.total == 0:
            return 100.0
        return min(100.0, max(0.0, self.done * 100.0 / self.total))


def _largest_file(fd: int) -> tuple[int, bool]:
    """Scan the open directory ``fd``; return (largest regular file size, an entry vanished)."""
    largest = 0
    vanished = False
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                size = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                vanished = True
                continue
            largest = max(largest, size)
    return largest, vanished


def bytes_on_disk(directory: Path) -> int:
    """Return the size of the largest regular file directly in ``directory``.

    Return 0 if there is none or ``directory`` is missing, unreadable or not a directory.
    Symbolic links are never followed: neither ``directory`` itself (it is opened with
    ``O_NOFOLLOW``) nor entries in it (a link is not a regular file here). Subdirectories are
    not descended into. The cost is one ``open``, one ``scandir`` and one ``lstat`` per entry
    (a dataset holds one or two files), so it may run on the reactor thread.

    If a file disappears between listing and ``lstat`` (fetch(1) renaming its temporary file to
    the final name), the directory is scanned once more so that the rename does not read as 0.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(directory, flags)
    except OSError:
        return 0
    try:
        largest, vanished = _largest_file(fd)
        if vanished:
            largest, _ = _largest_file(fd)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return largest


class ProgressMeter:
    """Measures one download: the bytes on disk, and the rate over a sliding window.

    Each :meth:`sample` reads :func:`bytes_on_disk` and the time from ``clock``. The rate is the
    growth since the most recent earlier sample that is at least ``window`` seconds old (or the
    oldest sample while the meter is younger than the window), divided by the time between them:
    a sliding-window average, not an exponential one. With one sample a second and the default
    5 s window it is the average over the last 5 seconds. When the size shrinks (a failed attempt
    removed its file) or the clock goes backwards, the history restarts.

    ``total`` may be set at any time, e.g. once :func:`remote_size` has answered.
    """

    def __init__(
        self,
        clock: IReactorTime,
        directory: Path,
        *,
        total: int | None = None,
        window: float = 5.0,
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive, not {window!r}")
        #: Where the time comes from.
        self.clock = clock
        #: The ISO's dataset directory.
        self.directory = directory
        #: Expected size in bytes, ``None`` while unknown.
        self.total = total
        #: Length of the rate window, in seconds.
        self.window = window
        #: The most recent measurement, ``None`` before the first.
        self.last: Progress | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=_MAX_SAMPLES)

    def sample(self) -> Progress:
        """Read the bytes on disk now and return the updated measurement."""
        return self.record(bytes_on_disk(self.directory))

    def record(self, done: int) -> Progress:
        """Record ``done`` bytes at the clock's current time and return the measurement."""
        now = self.clock.seconds()
        samples = self._samples
        if samples and (done < samples[-1][1] or now < samples[-1][0]):
            samples.clear()
        samples.append((now, done))
        horizon = now - self.window
        while len(samples) > 1 and samples[1][0] <= horizon:
            samples.popleft()
        first_time, first_done = samples[0]
        elapsed = now - first_time
        rate = (done - first_done) / elapsed if elapsed > 0 else 0.0
        self.last = Progress(done=done, total=self.total, rate=max(0.0, rate))
        return self.last


# --------------------------------------------------------------------------------------------
# The expected size


def _sane_length(values: list[bytes] | None) -> int | None:
    """Parse ``Content-Length`` header values: all must be the same decimal number."""
    if not values:
        return None
    lengths: set[int] = set()
    for value in values:
        for part in value.split(b","):
            text = part.strip()
            if not text.isdigit() or len(text) > 19:
                return None
            lengths.add(int(text))
    if len(lengths) != 1:
        return None
    length = lengths.pop()
    return length if length <= _MAX_LENGTH else None


@dataclass(frozen=True)
class RemoteInfo:
    """What the source says of a download before it starts.

    ``size`` is the whole file's size (``None`` if unknown); ``etag`` and ``last_modified``
    are the validators as the server sent them (``None`` when absent), and ``ranges`` is
    whether it announced ``Accept-Ranges: bytes``. A ``file://`` source is its ``stat(2)``:
    ranges always, its mtime as ``Last-Modified``.
    """

    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    ranges: bool = False
    #: Whether the source answered at all (a 200 to the ``HEAD``, a regular local file).
    found: bool = False

    @property
    def validator(self) -> str | None:
        """What tells one version of the file from another: the ``ETag`` if there is one
        (a weak one included: the bytes are compared again by the digest of a verified
        fetch), else ``Last-Modified``; ``None`` when the source sent neither."""
        if self.etag is not None:
            return f"etag:{self.etag}"
        if self.last_modified is not None:
            return f"modified:{self.last_modified}"
        return None


_VALIDATOR_TEXT: Final = re.compile(r"[\x20-\x7e]{1,512}")


def _header(values: list[bytes] | None) -> str | None:
    """One printable ASCII header value, or ``None`` if absent, repeated or unusable."""
    if not values or len(values) != 1:
        return None
    try:
        text = values[0].decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if _VALIDATOR_TEXT.fullmatch(text) else None


def _announces_ranges(values: list[bytes] | None) -> bool:
    for value in values or []:
        for part in value.split(b","):
            if part.strip().lower() == b"bytes":
                return True
    return False


def _file_info(path: str) -> RemoteInfo:
    """``stat(2)`` of a local file (symlinks followed, as fetch(1) does); regular only."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return RemoteInfo()
    if not stat.S_ISREG(info.st_mode):
        return RemoteInfo()
    modified = formatdate(int(info.st_mtime), usegmt=True)
    return RemoteInfo(info.st_size, None, modified, ranges=True, found=True)


def _file_size(path: str) -> int | None:
    """``stat(2)`` size of a local file (symlinks followed, as fetch(1) does); regular only."""
    return _file_info(path).size


def _classify(url: str) -> tuple[str, str]:
    """Return ``(kind, target)``: ``("file", path)``, ``("http", url)`` or ``("other", url)``.

    Like fetch(1), a URL without a scheme is a local path when it starts with ``/`` or ``.`` or
    has neither ``/`` nor ``:``; a host starting with ``www.`` means ``http://``.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        if url.startswith(("/", ".")) or ("/" not in url and ":" not in url):
            return "file", url
        if url.split("/", 1)[0].lower().startswith("www."):
            return "http", "http://" + url
        return "other", url
    scheme = scheme.lower()
    if scheme == "file":
        slash = rest.find("/")
        return "file", unquote(rest[slash:] if slash >= 0 else "/")
    if scheme in ("http", "https"):
        return "http", url
    return "other", url


class _SameMethodRedirects(RedirectAgent):
    """Twisted's :class:`~twisted.web.client.RedirectAgent`, following 303 like the others.

    Plain ``RedirectAgent`` turns the request after a 303 into a ``GET``, which would start
    downloading the ISO; here every redirect code repeats the request's own method, so a
    ``HEAD`` stays a ``HEAD`` on every hop. A relative ``Location`` is resolved against the
    URL of the response that carries it, as the hand-written loop did, not against the
    first URL.
    """

    _redirectResponses = sorted(_REDIRECT_CODES)
    _seeOtherResponses: list[int] = []  # noqa: RUF012 - overrides RedirectAgent's list

    def _handleRedirect(
        self, response: IResponse, method: bytes, uri: bytes, headers: Any, redirectCount: int
    ) -> Deferred[IResponse]:
        # RedirectAgent resolves every Location against the first URL; a relative one after a
        # hop to another host must be resolved against the URL that answered it.
        current: bytes = response.request.absoluteURI or uri
        result: Deferred[IResponse] = super()._handleRedirect(
            response, method, current, headers, redirectCount
        )
        return result


class RefusedURL(Exception):
    """A request of :func:`remote_size` went to a URL it does not send requests to."""


def _web_url(uri: bytes) -> bool:
    """Whether ``uri`` is an ``http``/``https`` URL of printable ASCII with a host."""
    try:
        text = uri.decode("ascii")
    except UnicodeDecodeError:
        return False
    if _WEB_URL.fullmatch(text) is None:
        return False
    try:
        return bool(urlsplit(text).hostname)
    except ValueError:
        return False


@implementer(IAgent)
class _WebOnlyAgent:
    """Sends a request only to a URL that :func:`_web_url` accepts; fails it otherwise.

    The redirect agent sends every hop through this one, so the target of each redirect
    passes the same check as the first URL.
    """

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        if not _web_url(uri):
            return fail(RefusedURL(f"not an http or https URL: {uri!r}"))
        return self._agent.request(method, uri, headers, bodyProducer)


def _head_agent(reactor: Any, agent: IAgent | None) -> IAgent:
    """The agent of the size request: redirects followed, each hop checked."""
    # Agent's own pool is not persistent: each request's connection closes after it.
    base = agent if agent is not None else Agent(reactor)
    return _SameMethodRedirects(_WebOnlyAgent(base), redirectLimit=MAX_REDIRECTS)


async def _head(url: str, reactor: Any, agent: IAgent | None) -> RemoteInfo:
    """``HEAD`` ``url``, following at most :data:`MAX_REDIRECTS` redirects (always as ``HEAD``)."""
    response = await _head_agent(reactor, agent).request(b"HEAD", url.encode("ascii"))
    if response.code != 200:
        return RemoteInfo()
    headers = response.headers
    return RemoteInfo(
        _sane_length(headers.getRawHeaders(b"content-length")),
        _header(headers.getRawHeaders(b"etag")),
        _header(headers.getRawHeaders(b"last-modified")),
        _announces_ranges(headers.getRawHeaders(b"accept-ranges")),
        found=True,
    )


def remote_size(
    url: str,
    reactor: object,
    *,
    timeout: float = 10.0,
    agent: IAgent | None = None,
) -> Deferred[int | None]:
    """Find the size of the download at ``url``; fire with ``None`` when it cannot be known.

    The ``size`` of :func:`remote_info`, which says how it is found.
    """
    return remote_info(url, reactor, timeout=timeout, agent=agent).addCallback(
        lambda info: info.size
    )


def remote_info(
    url: str,
    reactor: object,
    *,
    timeout: float = 10.0,
    agent: IAgent | None = None,
) -> Deferred[RemoteInfo]:
    """Find what the source says of the download at ``url`` (:class:`RemoteInfo`); every
    field is unknown when it cannot be asked.

    * ``http``/``https``: a ``HEAD`` request through Twisted's ``Agent`` wrapped in its
      ``RedirectAgent``: redirects (301, 302, 303, 307, 308) are followed, at most
      :data:`MAX_REDIRECTS`, always with ``HEAD``. Every request, the first and each
      redirect's target alike, goes through one check (:class:`_WebOnlyAgent`): an
      ``http``/``https`` URL of printable ASCII with a host; any other target ends the
      exchange. The answer is the ``Content-Length`` of the final 200 response if it is
      one decimal number (repeated values must agree). The whole exchange, redirects
      included, must finish within ``timeout`` seconds or it is cancelled. The validators
      are the final response's ``ETag`` and ``Last-Modified`` (one printable value each),
      and ranges are announced by an ``Accept-Ranges`` that lists ``bytes``.
    * ``file``: ``stat(2)`` of the path (nothing is read); only a regular file has a size.
    * ``ftp`` and anything else: nothing known.

    ``reactor`` must provide ``IReactorTime`` and ``IReactorTCP`` (and SSL for https). ``agent``
    replaces the default ``Agent`` (which verifies https certificates), e.g. one whose
    resolver pins an address the caller has validated; redirects and the check still wrap it.
    The returned Deferred never fails; any error gives nothing known. Cancelling it cancels
    the request.
    """
    try:
        kind, target = _classify(url)
        if kind == "file":
            return succeed(_file_info(target))
        if kind != "http" or not IReactorTime.providedBy(reactor):
            return succeed(RemoteInfo())
        request: Deferred[RemoteInfo] = ensureDeferred(_head(target, reactor, agent))
        request.addTimeout(timeout, reactor)
    except Exception:
        return succeed(RemoteInfo())

    def unknown(_failure: Failure) -> RemoteInfo:
        return RemoteInfo()

    return request.addErrback(unknown)


# --------------------------------------------------------------------------------------------
# Formatting and events


def format_rate(bytes_per_second: float) -> str:
    """Format a rate as fetch(1)'s ``stat_bps`` does, without its padding.

    fetch divides by 1024 while the number exceeds 9999 and prints an integer with a `` ``,
    ``k``, ``M``, ``G``, ``T`` or ``P`` prefix: ``"512 Bps"``, ``"9999 Bps"``, ``"9 kBps"``
    (10000 B/s), ``"12 kBps"``, ``"3 MBps"``. Negative and non-finite rates read ``"0 Bps"``.
    """
    if not bytes_per_second > 0 or bytes_per_second == float("inf"):
        count = 0
    else:
        count = int(bytes_per_second)
    index = 0
    while count > 9999 and index < len(_PREFIXES) - 1:
        count //= 1024
        index += 1
    prefix = _PREFIXES[index].strip()
    return f"{count} {prefix}Bps"


def format_percent(progress: Progress) -> str:
    """Return ``"<n>%"`` (whole percent, rounded down like fetch(1)) or ``""`` if unknown."""
    percent = progress.percent
    if percent is None:
        return ""
    return f"{int(percent)}%"


def sysadm_state(state: str) -> str:
    """Map a task state to sysadm's: ``queued`` → ``pending``, ``running`` → ``running``,
    any final state (``succeeded``, ``failed``, ``cancelled``, ``interrupted``) → ``finished``.

    sysadm's own three names map to themselves. Raise :class:`ValueError` for anything else.
    """
    try:
        return _SYSADM_STATES[str(state)]
    except KeyError:
        raise ValueError(f"unknown task state: {str(state)!r}") from None


def result_of(state: str, return_code: int | None) -> str | None:
    """Return the ``result`` of a finished task, ``None`` while it is pending or running.

    A final task state is its own result; sysadm's bare ``finished`` is ``succeeded`` for exit
    code 0 and ``failed`` otherwise.
    """
    state = str(state)
    if sysadm_state(state) != "finished":
        return None
    if state in TaskState.finals():
        return state
    return TaskState.SUCCEEDED.value if return_code == 0 else TaskState.FAILED.value


def dispatcher_event(
    *,
    task_id: str,
    command: str,
    state: str,
    started: str | None,
    finished: str | None,
    progress: Progress | None,
    filename: str,
    new_output: str,
    return_code: int | None,
    extra: Mapping[str, object] | None = None,
    arrived: bool | None = None,
    size: int | None = None,
) -> dict[str, object]:
    """Build the ``args`` of an ``events``/``dispatcher`` message for one fetch task.

    ``state`` is the task's state (``queued``, ``running``, ``succeeded``, ``failed``,
    ``cancelled``, ``interrupted``; sysadm's ``pending``/``finished`` are accepted too), mapped
    by :func:`sysadm_state`. ``started`` and ``finished`` are already formatted as sysadm's
    process logs write times (local time ``YYYY-MM-DDTHH:MM:SS``,
    :func:`sysadmd.tasks._queue.local_time`).

    sysadm's keys (protocol reference §6.3, §7.4):

    * ``event_system``: ``"sysadm/iohyve"``; ``state``: ``pending``/``running``/``finished``;
    * ``filename``: ``filename``; ``percent_done``: ``"<n>%"``, **absent** while the total is
      unknown (a source that announces no size: no ``Content-Length``, ``ftp://``), so that a
      missing percentage is never mistaken for one; ``download_rate``: fetch(1)-style, e.g.
      ``"1 MBps"`` (``""`` without progress);
    * ``process_details``, sysadm's process log:

      - pending: exactly ``cmd_list`` (``[command]``), ``process_id`` (``task_id``) and
        ``state``;
      - running: those, ``time_started``, ``current_cmd`` (``command``) and ``<command>``:
        ``new_output``, the output since the previous event;
      - finished: those without ``current_cmd``, plus ``return_codes/<command>``: the exit code
        as a string (``"-1"`` when there is none, as sysadm reports a command that could not
        start) and ``time_finished``. sysadm puts the whole output under ``<command>`` here; the
        caller chooses what to pass as ``new_output``.

      ``time_started``/``time_finished`` are left out when ``started``/``finished`` is ``None``
      (a task cancelled while queued never started).

    sysadmd's extensions, next to sysadm's keys (clients that do not know them ignore them):

    * ``bytes_done``: bytes on disk (0 without progress), always present; ``bytes_total``:
      expected size or ``null``; ``percent``: a number 0..100, absent exactly when
      ``percent_done`` is; ``rate``: bytes per second (a number), always present;
    * finished only: ``result`` (``succeeded``, ``failed``, ``cancelled`` or ``interrupted``,
      see :func:`result_of`), ``arrived`` (whether the ISO file is in place; by default whether
      the task succeeded) and ``size`` (the ISO file's size or ``null``; by default
      ``progress.done`` when it arrived).

    ``extra`` is merged in last and may override any top-level key. Raise :class:`ValueError`
    for an unknown state or a command that would collide with a process-log key.
    """
    sysadm = sysadm_state(state)
    if command in _RESERVED_DETAILS or command.startswith("return_codes/"):
        raise ValueError(f"command collides with a process log key: {command!r}")

    details: dict[str, object] = {"cmd_list": [command], "process_id": task_id, "state": sysadm}
    if sysadm != "pending":
        if started is not None:
            details["time_started"] = started
        if sysadm == "running":
            details["current_cmd"] = command
        details[command] = new_output
        if sysadm == "finished":
            code = "-1" if return_code is None else str(return_code)
            details["return_codes/" + command] = code
            if finished is not None:
                details["time_finished"] = finished

    event: dict[str, object] = {
        "event_system": EVENT_SYSTEM,
        "state": sysadm,
        "filename": filename,
        "download_rate": format_rate(progress.rate) if progress is not None else "",
        "process_details": details,
        "bytes_done": progress.done if progress is not None else 0,
        "bytes_total": progress.total if progress is not None else None,
        "rate": round(progress.rate, 1) if progress is not None else 0.0,
    }
    percent = progress.percent if progress is not None else None
    if progress is not None and percent is not None:
        event["percent_done"] = format_percent(progress)
        event["percent"] = round(percent, 2)
    if sysadm == "finished":
        result = result_of(state, return_code)
        if arrived is None:
            arrived = result == "succeeded"
        if size is None and arrived and progress is not None:
            size = progress.done
        event["result"] = result
        event["arrived"] = arrived
        event["size"] = size
    if extra:
        event.update(extra)
    return event
