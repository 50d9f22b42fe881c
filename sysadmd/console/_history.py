"""A guest's console history: a ring in memory and a size-capped, rotated log on disk."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.logger import Logger

log = Logger()


class Ring:
    """The last ``size`` bytes written to it."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("a console history needs room for at least one byte")
        self.size = size
        self._data = bytearray()

    def append(self, data: bytes) -> None:
        self._data += data
        excess = len(self._data) - self.size
        if excess > 0:
            del self._data[:excess]

    def tail(self, limit: int | None = None) -> bytes:
        """The last ``limit`` bytes kept (all of them without a limit)."""
        if limit is None or limit >= len(self._data):
            return bytes(self._data)
        return bytes(self._data[len(self._data) - limit :])

    def __len__(self) -> int:
        return len(self._data)


class ConsoleLog:
    """Guest output appended to ``<directory>/<guest>.log``; past ``max_bytes`` the file
    becomes ``<guest>.log.1`` (``.1`` becomes ``.2``, up to ``keep`` old files) and a new
    one starts. Writes are small appends to a descriptor opened with ``O_APPEND``: they do
    not wait on the disk the way a read of a slow device would."""

    def __init__(self, directory: Path, guest: str, *, max_bytes: int, keep: int) -> None:
        if max_bytes <= 0 or keep < 0:
            raise ValueError("a console log needs a positive size and a non-negative count")
        self.path = directory / f"{guest}.log"
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._size = 0
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def append(self, data: bytes) -> None:
        """Append ``data``, rotating first if it would pass the cap."""
        try:
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self.rotate()
            fd = self._open()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._size += len(data)
        except OSError as e:
            log.error("Cannot write the console log {path}: {error}", path=str(self.path), error=e)

    def rotate(self) -> None:
        self.close()
        for index in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if newer.exists():
                if index == self.keep:
                    older.unlink(missing_ok=True)
                newer.replace(older)
        if self.keep == 0:
            self.path.unlink(missing_ok=True)

    def tail(self, limit: int) -> bytes:
        """The last ``limit`` bytes logged, across the current file and the old ones."""
        parts: list[bytes] = []
        wanted = limit
        for path in [
            self.path,
            *(self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self.keep + 1)),
        ]:
            if wanted <= 0:
                break
            try:
                with path.open("rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(0, size - wanted))
                    chunk = f.read(wanted)
            except FileNotFoundError:
                continue
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(reversed(parts))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._size = 0
