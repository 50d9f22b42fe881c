"""The audit log: one JSON object per line for every security-relevant event.

Each record is a compact JSON object with sorted keys, pure ASCII (``ensure_ascii``), so that
one line is always exactly one record::

    {"event":"login","method":"password","outcome":"ok","peer":"192.0.2.7",...,
     "time":"2026-05-01T12:00:00.000Z","user":"joe"}

``time`` is the injected clock's time in ISO 8601 UTC with a ``Z`` and milliseconds; ``event``
names the kind of record. Both are set here and win over fields of the same name.

Events (:mod:`sysadmd.auth._authenticator` gives these; any field given is written)
    ``login``
        ``user`` (``null`` when the method names none: a token or key login that failed),
        ``peer`` (the client's IP address), ``method`` (``password``, ``token``, ``ssl`` or
        ``basic``), ``outcome`` (``ok``, ``failed``, ``blocked`` or ``busy``), ``role`` (on
        success) and ``retry_after`` (seconds, when blocked or busy).
    ``logout``
        ``user`` and ``peer``, when a connection ends its session (``rpc/auth_clear``).
    ``call``
        ``user``, ``role``, ``peer``, ``namespace``, ``name``, ``action``, ``args`` (the
        validated arguments) and ``outcome`` (``"ok"`` or the error code), for every call of
        an action that changes something.

Secrets never reach the file
    * A field whose name, at any depth of nested dicts, contains ``password``, ``passwd``,
      ``token``, ``secret``, ``authorization`` or ``encrypted_string`` (in any case) keeps its
      name but its value is replaced by ``"<redacted>"``.
    * In every string, the user information of anything that looks like a URL is replaced:
      ``scheme://user:pass@host`` becomes ``scheme://<redacted>@host``. Everything from
      ``://`` up to the *last* ``@`` before the next white space is redacted, so a
      malformed URL whose password holds ``/``, ``?`` or ``@`` is still covered (at the price
      of over-redacting the rare URL with an ``@`` in its path).
    * Redaction happens before truncation, so that cutting a string cannot expose a secret.
      Both are :mod:`sysadmd.shared._text`'s, shared with the task journal.

Bounds
    Every string (and dict key) is cut to 1024 characters, the last one becoming ``…``.
    Lists, tuples and sets (written as lists) keep 1000 items and end with ``"<N more>"``;
    dicts keep 1000 items and get ``"<more>": N``; anything nested deeper than 32 levels
    becomes ``"<truncated>"``. A record of 64 KiB or more (newline included) keeps ``time``
    and ``event``, gets ``"truncated": true``, and every other field becomes
    ``"<truncated>"`` (a field is left out only if even that does not fit); then, smallest
    first, fields get their value back while the line stays under the limit.
    Other values that JSON cannot represent are written as text: bytes and other objects as
    ``str()`` gives them, non-finite floats as ``"nan"``/``"inf"``, and an integer of more
    than 3000 bits as ``"<integer of N bits>"``.

The file
    Opened by :func:`sysadmd.shared.open_for_append` (``O_APPEND``, ``O_NOFOLLOW``,
    ``O_NONBLOCK`` so a FIFO cannot hang the open), mode 0600; an existing file with other
    permissions is changed to 0600, and anything but a regular file is refused.
    Each record is one ``write(2)`` (continued after a short write), so nothing waits in a
    buffer. :meth:`AuditLog.reopen` opens the path again after newsyslog moved the file;
    :meth:`AuditLog.close` closes it.
    A write that fails is reported through the Twisted log (without the record) and does not
    raise: auditing must not break the request that is being audited.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sysadmd.shared import REDACTED, open_for_append, redact_urls, shorten

__all__ = [
    "MAX_RECORD_BYTES",
    "MAX_STRING",
    "REDACTED",
    "SENSITIVE_NAMES",
    "AuditLog",
    "redact_urls",
    "sanitize",
]

log = Logger()

SENSITIVE_NAMES = ("password", "passwd", "token", "secret", "authorization", "encrypted_string")
"""A field whose lower-cased name contains one of these has its value redacted."""

TRUNCATED = "<truncated>"
MAX_STRING = 1024
MAX_ITEMS = 1000
MAX_DEPTH = 32
MAX_RECORD_BYTES = 64 * 1024
"""Bytes in one line, newline included."""
_MAX_INT_BITS = 3000  # about 900 decimal digits; Python refuses to print ints past 4300


def _cut(text: str) -> str:
    return shorten(text, MAX_STRING)


def _text(value: object) -> str:
    try:
        text = str(value)
    except Exception:  # any object's __str__ may fail; the record must still be written
        return f"<unprintable {type(value).__name__}>"
    return _cut(redact_urls(text))


def _sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_NAMES)


def sanitize(value: object, depth: int = 0) -> object:
    """A JSON-serialisable copy of ``value`` with secrets redacted and sizes bounded."""
    if isinstance(value, Mapping):
        return TRUNCATED if depth >= MAX_DEPTH else _sanitize_mapping(value, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return TRUNCATED if depth >= MAX_DEPTH else _sanitize_items(value, depth)
    return _sanitize_scalar(value)


def _sanitize_scalar(value: object) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        bits = value.bit_length()
        return int(value) if bits <= _MAX_INT_BITS else f"<integer of {bits} bits>"
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cut(redact_urls(str.__str__(value)))
    return _text(value)


def _sanitize_items(value: Collection[object], depth: int) -> list[object]:
    items: list[object] = []
    for index, item in enumerate(value):
        if index >= MAX_ITEMS:
            items.append(f"<{len(value) - MAX_ITEMS} more>")
            break
        items.append(sanitize(item, depth + 1))
    return items


def _sanitize_mapping(value: Mapping[Any, object], depth: int) -> dict[str, object]:
    result: dict[str, object] = {}
    for index, (key, item) in enumerate(value.items()):
        if index >= MAX_ITEMS:
            result["<more>"] = len(value) - MAX_ITEMS
            break
        name = str.__str__(key) if isinstance(key, str) else _text(key)
        result[_cut(redact_urls(name))] = (
            REDACTED if _sensitive(name) else sanitize(item, depth + 1)
        )
    return result


def _dumps(record: Mapping[str, object]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _fit(record: dict[str, object], fixed: Mapping[str, object]) -> str:
    """The JSON line of ``record``, its largest fields truncated if it exceeds the limit.

    Every field first gets a ``"<truncated>"`` placeholder (fields are left out only if even
    their placeholders do not fit); then, smallest first, fields get their value back while it
    fits.
    """
    line = _dumps(record)
    if len(line) < MAX_RECORD_BYTES:  # ASCII only, so characters are bytes; +1 for newline
        return line
    kept: dict[str, object] = {**fixed, "truncated": True}
    budget = MAX_RECORD_BYTES - 1 - len(_dumps(kept))
    # (size with its value, size with the placeholder, name); a field costs a comma too.
    sizes = sorted(
        (len(_dumps({name: value})) - 1, len(_dumps({name: TRUNCATED})) - 1, name)
        for name, value in record.items()
        if name not in kept
    )
    placed: list[tuple[int, int, str]] = []
    for full, short, name in sizes:
        if short <= budget:
            kept[name] = TRUNCATED
            budget -= short
            placed.append((full, short, name))
    for full, short, name in placed:
        if full - short <= budget:
            kept[name] = record[name]
            budget -= full - short
    return _dumps(kept)


class AuditLog:
    """An append-only JSON-lines audit file (see the module documentation)."""

    def __init__(self, path: Path | None, clock: IReactorTime) -> None:
        """Open ``path`` at once, or make a disabled log if it is None.

        :raises OSError: if the file cannot be opened or is not a regular file.
        """
        self._path = path
        self._clock = clock
        self._fd: int | None = None if path is None else open_for_append(path)

    def __repr__(self) -> str:
        state = "disabled" if self._path is None else "open" if self._fd is not None else "closed"
        return f"<AuditLog {self._path} {state}>"

    @property
    def path(self) -> Path | None:
        """The file written, or None when auditing is disabled."""
        return self._path

    def _now(self) -> str:
        moment = datetime.fromtimestamp(self._clock.seconds(), UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def record(self, event: str, **fields: object) -> None:
        """Append one record of ``event`` with ``fields``; nothing if disabled or closed."""
        if self._fd is None:
            return
        fixed = {"time": self._now(), "event": sanitize(event)}
        clean = _sanitize_mapping(fields, 0)
        clean.update(fixed)
        data = (_fit(clean, fixed) + "\n").encode("ascii")
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as error:
            log.error(
                "Cannot write {event} record to audit log {path}: {error}",
                event=fixed["event"],
                path=str(self._path),
                error=str(error),
            )

    def reopen(self) -> None:
        """Open the path again (after log rotation moved the file away).

        If the new file cannot be opened the old one stays in use and the error is logged.
        """
        if self._path is None:
            return
        try:
            fd = open_for_append(self._path)
        except OSError as error:
            log.error(
                "Cannot reopen audit log {path}, still writing to the old file: {error}",
                path=str(self._path),
                error=str(error),
            )
            return
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def close(self) -> None:
        """Close the file; later records are dropped. Closing twice is harmless."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
