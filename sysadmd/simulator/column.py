"""A re-implementation of FreeBSD ``column -t``, the only table formatter iohyve uses.

iohyve never pads its tables itself: it pipes text through ``column -t`` (``-s^`` for ``list``).
The rules reproduced here, from ``usr.bin/column/column.c``:

* lines that are empty or contain only whitespace are dropped;
* every remaining line is split with ``wcstok`` semantics: a run of separator characters counts as
  one separator, leading and trailing separators produce nothing, so empty fields disappear and the
  fields after them move one column to the left;
* every field except a row's last one is followed by spaces up to the widest entry of its column
  plus two; the last field of a row is printed without padding;
* widths are display widths (``wcwidth``): wide characters count two, combining and control
  characters count nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The separators ``column -t`` uses without ``-s``.
DEFAULT_SEPARATORS = " \t"

# The characters Python's str.isspace() accepts are a superset of what iswspace() accepts in the
# C locale, but both agree on everything iohyve produces.
_WHITESPACE = " \t\n\r\f\v"


def display_width(text: str) -> int:
    """Return the number of terminal cells ``text`` occupies, as ``wcwidth`` sums it."""
    if text.isascii():
        return sum(1 for char in text if char.isprintable())
    import unicodedata  # noqa: PLC0415 - only needed for non-ASCII text

    width = 0
    for char in text:
        if not char.isprintable() or unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def split_fields(line: str, separators: str) -> list[str]:
    """Split ``line`` like ``wcstok``: separator runs count once and empty fields vanish."""
    fields: list[str] = []
    current: list[str] = []
    for char in line:
        if char in separators:
            if current:
                fields.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        fields.append("".join(current))
    return fields


def column_t(lines: Iterable[str], separators: str = DEFAULT_SEPARATORS) -> list[str]:
    """Format ``lines`` as ``column -t -s<separators>`` does and return the output lines.

    Input lines may end with a newline; output lines carry none. A line made only of separators
    (not whitespace) is kept as an empty row, where FreeBSD's ``column`` reads uninitialised
    memory.
    """
    rows: list[list[str]] = []
    for raw in lines:
        line = raw.split("\n", 1)[0]
        if not line.strip(_WHITESPACE):
            continue
        rows.append(split_fields(line, separators))

    widths: list[int] = []
    for fields in rows:
        for index, field in enumerate(fields):
            width = display_width(field)
            if index == len(widths):
                widths.append(width)
            elif width > widths[index]:
                widths[index] = width

    output: list[str] = []
    for fields in rows:
        parts: list[str] = []
        for index, field in enumerate(fields[:-1]):
            parts.append(field)
            parts.append(" " * (widths[index] - display_width(field) + 2))
        if fields:
            parts.append(fields[-1])
        output.append("".join(parts))
    return output
