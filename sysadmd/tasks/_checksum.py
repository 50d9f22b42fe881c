"""Verified downloads: expected digests, checksum files, and a digest that follows the bytes.

A fetch may name what its ISO must hash to in one of three ways (``fetchiso``'s arguments):

* ``checksum``: ``"sha256:<64 hex digits>"`` or ``"sha512:<128 hex digits>"``
  (:func:`parse_checksum`, full match, hex in either case);
* ``checksum_url``: an ``http``/``https`` checksum file; lines in the BSD tag format of
  FreeBSD's ``sha256``/``sha512`` (``SHA256 (name) = hex``) and GNU's ``hex  name`` (or
  ``hex *name``) are understood (:func:`digests_in`); the line for the ISO's file name is used,
  the strongest algorithm first;
* ``verify: "auto"``: FreeBSD's release layout, where ``CHECKSUM.SHA512-<release>`` and
  ``CHECKSUM.SHA256-<release>`` lie beside the image (:func:`auto_checksum_urls`).

A checksum file is read with the same checks as the size request of
:func:`~sysadmd.tasks._progress.remote_size` (every hop an ``http``/``https`` URL, at most
:data:`~sysadmd.tasks._progress.MAX_REDIRECTS` redirects), at most :data:`MAX_CHECKSUM_FILE`
bytes, within a timeout.

:class:`DigestFollower` computes the digest while the download writes: at each progress tick
it reads, in a thread, what was appended to the download's file since the previous tick.
fetch(1) writes a temporary file and renames it at the end; the open descriptor follows the
file through the rename, so the finished file is not read a second time. Only if the file
that ended up under the ISO's name is not the one followed (another inode, or a size that
differs from what was hashed) is it hashed from its start.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.iweb import IAgent, IResponse

from sysadmd.tasks._progress import _head_agent

__all__ = [
    "ALGORITHMS",
    "CHECKSUM_PATTERN",
    "MAX_CHECKSUM_FILE",
    "ChecksumError",
    "Digest",
    "DigestFollower",
    "auto_checksum_urls",
    "digests_in",
    "fetch_checksum_file",
    "parse_checksum",
]

#: Algorithms accepted, with their digest length in hex digits, strongest first.
ALGORITHMS: Final[Mapping[str, int]] = {"sha512": 128, "sha256": 64}
#: The ``checksum`` argument, matched in full.
CHECKSUM_PATTERN: Final = r"sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128}"
_CHECKSUM_RE: Final = re.compile(CHECKSUM_PATTERN)
#: The largest checksum file read (FreeBSD's are a few KiB).
MAX_CHECKSUM_FILE: Final = 1024 * 1024
#: Bytes read from the download's file at a time.
_CHUNK: Final = 1024 * 1024
_BSD_LINE: Final = re.compile(r"(SHA256|SHA512) \((.+)\) = ([0-9a-fA-F]+)")
_GNU_LINE: Final = re.compile(r"([0-9a-fA-F]+) [ *](.+)")
#: A FreeBSD installation image: ``<release>-<kind>.<iso|img>[.xz]``, ``<release>`` being
#: ``FreeBSD-<version>-<branch>[-<snapshot>]-<arch>[-<arch>]``.
_FREEBSD_IMAGE: Final = re.compile(
    r"(FreeBSD-[0-9]+\.[0-9]+-[A-Z0-9]+(?:-[0-9A-Za-z]+)*?)"
    r"-(?:disc1|dvd1|bootonly|memstick|mini-memstick)\.(?:iso|img)(?:\.xz)?"
)

_T = TypeVar("_T")
InThread = Callable[..., Deferred[Any]]


class ChecksumError(Exception):
    """No usable expected digest: the message says why, in one line."""


@dataclass(frozen=True)
class Digest:
    """A digest: ``algorithm`` (``sha256``/``sha512``) and lower-case ``hex``."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_checksum(text: str) -> Digest | None:
    """``"sha256:<hex>"``/``"sha512:<hex>"`` as a :class:`Digest`; ``None`` if it is not one."""
    if _CHECKSUM_RE.fullmatch(text) is None:
        return None
    algorithm, _, digits = text.partition(":")
    return Digest(algorithm, digits.lower())


def digests_in(text: str, name: str) -> list[Digest]:
    """The digests a checksum file gives for file ``name``, strongest algorithm first.

    BSD lines (``SHA512 (name) = hex``) and GNU lines (``hex  name``, ``hex *name``; the
    algorithm follows from the length) are read; other lines are ignored, as is a digest
    whose length does not fit its algorithm. Two different digests for one algorithm make
    the file unusable (:class:`ChecksumError`).
    """
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        bsd = _BSD_LINE.fullmatch(line)
        if bsd is not None:
            algorithm, file, digits = bsd.group(1).lower(), bsd.group(2), bsd.group(3)
        else:
            gnu = _GNU_LINE.fullmatch(line)
            if gnu is None:
                continue
            digits, file = gnu.group(1), gnu.group(2)
            algorithm = next((a for a, n in ALGORITHMS.items() if n == len(digits)), "")
        if file != name or len(digits) != ALGORITHMS.get(algorithm):
            continue
        digits = digits.lower()
        if found.setdefault(algorithm, digits) != digits:
            raise ChecksumError(f"the checksum file gives two different {algorithm} for {name}")
    return [Digest(a, found[a]) for a in ALGORITHMS if a in found]


def auto_checksum_urls(url: str) -> list[str]:
    """The checksum files FreeBSD publishes beside image ``url``, SHA512's first.

    ``…/FreeBSD-14.3-RELEASE-amd64-disc1.iso`` gives ``…/CHECKSUM.SHA512-FreeBSD-14.3-
    RELEASE-amd64`` and ``…/CHECKSUM.SHA256-FreeBSD-14.3-RELEASE-amd64``. Raise
    :class:`ChecksumError` if the URL is not ``http``/``https`` or its file name is not a
    FreeBSD image's.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ChecksumError("verify 'auto' needs an http:// or https:// URL")
    directory, _, file = parts.path.rpartition("/")
    image = _FREEBSD_IMAGE.fullmatch(file)
    if image is None:
        raise ChecksumError(
            f"verify 'auto' knows FreeBSD's release layout only; {file!r} is not a FreeBSD"
            " image name such as FreeBSD-14.3-RELEASE-amd64-disc1.iso"
        )
    release = image.group(1)
    return [
        urlunsplit((parts.scheme, parts.netloc, f"{directory}/CHECKSUM.{kind}-{release}", "", ""))
        for kind in ("SHA512", "SHA256")
    ]


class _Limited(Protocol):
    """Collects a response body up to ``limit`` bytes; more ends the transfer."""

    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done.errback(ChecksumError(f"larger than {self._limit} bytes"))
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]
        if self._done.called:
            return
        if reason.check(ResponseDone):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(ChecksumError(f"the transfer broke: {reason.getErrorMessage()}"))


async def _get(url: str, reactor: Any, agent: IAgent | None) -> bytes:
    response: IResponse = await _head_agent(reactor, agent).request(b"GET", url.encode("ascii"))
    if response.code != 200:
        response.deliverBody(Protocol())  # discard it
        raise ChecksumError(f"HTTP {response.code}")
    body: Deferred[bytes] = Deferred()
    response.deliverBody(_Limited(MAX_CHECKSUM_FILE, body))
    return await body


def fetch_checksum_file(
    url: str, reactor: Any, *, timeout: float = 30.0, agent: IAgent | None = None
) -> Deferred[str]:
    """Read the checksum file at ``url`` (``http``/``https``); fails with :class:`ChecksumError`.

    The text is decoded as UTF-8 (bad bytes replaced: only ASCII lines can match).
    """

    async def run() -> str:
        try:
            getting: Deferred[bytes] = ensureDeferred(_get(url, reactor, agent))
            getting.addTimeout(timeout, reactor)
            data = await getting
        except (ChecksumError, CancelledError):
            raise
        except Exception as error:
            raise ChecksumError(str(error) or type(error).__name__) from error
        return data.decode("utf-8", errors="replace")

    return ensureDeferred(run())


class DigestFollower:
    """Hashes the file a download writes into ``directory`` for ISO ``name``, as it grows.

    The followed file is ``name`` itself or fetch(1)'s temporary file
    ``.fetch.XXXXXX.<name>``, the largest of them (other ISOs may share the directory).
    ``in_thread`` runs a blocking call off the reactor thread and returns a Deferred of its result
    (``twisted.internet.threads.deferToThread``); every file access goes through it, one
    call at a time.
    """

    def __init__(self, directory: Path, name: str, algorithm: str, in_thread: InThread) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        self.directory = directory
        self.name = name
        self.algorithm = algorithm
        self._in_thread = in_thread
        self._hash = hashlib.new(algorithm)
        self._own = re.compile(rf"(?:\.fetch\.[A-Za-z0-9]{{6}}\.)?{re.escape(name)}")
        self._fd: int | None = None
        #: Bytes hashed so far.
        self.hashed = 0
        #: Whether the finished file had to be read again (it was not the followed one).
        self.reread = False
        self._busy: Deferred[None] | None = None

    def step(self) -> Deferred[None]:
        """Hash what was appended since the last step; skipped while one still reads."""
        if self._busy is not None:
            return succeed(None)
        busy = self._busy = self._in_thread(self._read_new)

        def idle(result: object) -> object:
            self._busy = None
            return result

        return busy.addBoth(idle)

    def finish(self) -> Deferred[Digest]:
        """Once the download ended: hash the rest and return the digest of file ``name``."""

        async def run() -> Digest:
            while self._busy is not None:
                await self._busy
            digits: str = await self._in_thread(self._final)
            return Digest(self.algorithm, digits)

        return ensureDeferred(run())

    def close(self) -> None:
        """Release the followed file, once a step that is reading has ended."""
        if self._busy is not None:

            def then(result: object) -> object:
                self.close()
                return result

            self._busy.addBoth(then)
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # In the thread

    def _candidate(self) -> Path | None:
        best: tuple[int, Path] | None = None
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if self._own.fullmatch(entry.name) is None:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        size = entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
                    if best is None or size > best[0]:
                        best = (size, Path(entry.path))
        except OSError:
            return None
        return best[1] if best else None

    def _open(self) -> None:
        candidate = self._candidate()
        if candidate is None:
            return
        try:
            self._fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            self._fd = None

    def _read_new(self) -> None:
        if self._fd is None:
            self._open()
        if self._fd is None:
            return
        while True:
            data = os.pread(self._fd, _CHUNK, self.hashed)
            if not data:
                return
            self._hash.update(data)
            self.hashed += len(data)

    def _final(self) -> str:
        self._read_new()
        final = self.directory / self.name
        try:
            info = os.stat(final, follow_symlinks=False)
            same = (
                self._fd is not None
                and os.path.samestat(info, os.fstat(self._fd))
                and info.st_size == self.hashed
            )
        except OSError:
            same = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if same:
            return self._hash.hexdigest()
        # Not the file followed: hash the finished one from its start.
        self.reread = True
        self._hash = hashlib.new(self.algorithm)
        self.hashed = 0
        fd = os.open(final, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self._fd = fd
            self._read_new()
        finally:
            self._fd = None
            os.close(fd)
        return self._hash.hexdigest()
