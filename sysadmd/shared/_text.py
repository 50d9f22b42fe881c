"""Text that leaves the daemon for a log, a journal or an event: redaction and cutting.

:func:`redact_urls` hides the user information of URLs; :func:`tail` keeps the end of a
command's output within a size in UTF-8 bytes; :func:`shorten` keeps the start of a value
within a number of characters. Each is written once here and used by the audit log, the
task journal and the fetch queue. The module imports nothing else from the daemon, so any
layer may use it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["OUTPUT_TAIL", "REDACTED", "redact_urls", "shorten", "tail"]

#: What replaces a secret.
REDACTED: Final = "<redacted>"

#: The bytes (UTF-8) of a command's output that tasks, events and the journal keep: its end.
OUTPUT_TAIL: Final = 4096

_SPACE: Final = re.compile(r"\s")


def redact_urls(text: str) -> str:
    """Replace the user information of URL-looking parts of ``text`` by ``<redacted>``.

    Whatever precedes ``://``, everything after it up to the last ``@`` before the next white
    space is replaced. Runs in time linear in ``len(text)`` whatever the input.
    """
    if "://" not in text or "@" not in text:
        return text
    out: list[str] = []
    copied = 0  # text[:copied] is in out already
    searched = 0  # text[:searched] needs no more redaction
    start = text.find("://")
    while start != -1:
        after = start + 3
        if after > searched:
            space = _SPACE.search(text, after)
            end = len(text) if space is None else space.start()
            at = text.rfind("@", after, end)
            if at != -1:
                out.append(text[copied:after])
                out.append(REDACTED)
                copied = at
            searched = end
        start = text.find("://", after)
    out.append(text[copied:])
    return "".join(out)


def tail(text: str, limit: int = OUTPUT_TAIL) -> str:
    """The end of ``text`` that fits in ``limit`` bytes of UTF-8.

    A cut through a multi-byte character drops what is left of that character, so the
    result is always whole characters. Redact before cutting: a cut can start inside a
    URL's user information, where :func:`redact_urls` would no longer recognise it.
    """
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    # A cut inside a multi-byte character leaves continuation bytes at the start: drop them.
    return data[len(data) - limit :].decode("utf-8", "ignore")


def shorten(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and ``…`` in as many."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
