"""The small shell tools iohyve pipes its words through, as pure functions.

iohyve is a ``/bin/sh`` script; much of its observable behaviour comes from unquoted expansions,
``cut``, ``basename``, ``sort -V`` and ``grep``. These helpers reproduce exactly the parts the
simulated commands depend on.
"""

from __future__ import annotations

import re


def words(text: str) -> list[str]:
    """Split ``text`` like an unquoted shell expansion with the default IFS (no globbing)."""
    return text.split()


def echo_unquoted(text: str) -> str:
    """Return what ``echo $text`` prints (without the newline): words joined by one space."""
    return " ".join(words(text))


def cut_field(line: str, delimiter: str, field: int) -> str:
    """Return ``cut -d<delimiter> -f<field>`` of one line (all of it if it has no delimiter)."""
    if delimiter not in line:
        return line
    parts = line.split(delimiter)
    return parts[field - 1] if field <= len(parts) else ""


def cut_fields_from(line: str, delimiter: str, field: int) -> str:
    """Return ``cut -d<delimiter> -f<field>-`` of one line (the whole line without delimiter)."""
    if delimiter not in line:
        return line
    return delimiter.join(line.split(delimiter)[field - 1 :])


def cut_whitespace_fields(line: str, first: int, last: int) -> str:
    """Return FreeBSD ``cut -w -f<first>-<last>``: whitespace runs delimit, TAB joins the output."""
    return "\t".join(re.split(r"[ \t]+", line)[first - 1 : last])


def basename(path: str) -> str:
    """Return what basename(1) prints for a non-empty ``path``."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def _version_key(text: str) -> list[tuple[int, int | str]]:
    key: list[tuple[int, int | str]] = []
    for digits, other in re.findall(r"(\d+)|(\D+)", text):
        key.append((1, int(digits)) if digits else (0, other))
    return key


def version_sorted(values: list[str]) -> list[str]:
    """Return ``values`` in ``sort -V`` order (digit runs compare as numbers)."""
    return sorted(values, key=lambda value: (_version_key(value), value))


def grep_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a ``grep`` basic regular expression made of the characters guest names use.

    Only ``.`` is special among the characters the daemon allows in names; everything else is
    matched literally.
    """
    return re.compile(".".join(re.escape(part) for part in pattern.split(".")))


def grep(pattern: str, lines: list[str]) -> list[str]:
    """Return the lines ``grep <pattern>`` selects (an empty pattern selects nothing here).

    Real ``grep`` run with an unquoted empty word gets no pattern at all, prints its usage on
    stderr and selects nothing; the usage text is not reproduced.
    """
    if not pattern:
        return []
    compiled = grep_pattern(pattern)
    return [line for line in lines if compiled.search(line)]


def grep_joined(parts: list[str], lines: list[str]) -> list[str]:
    """Return the lines ``grep <part1>.*<part2>...`` selects (the parts as in :func:`grep`).

    An empty pattern as a whole selects nothing, like :func:`grep`.
    """
    if not "".join(parts):
        return []
    compiled = re.compile(".*".join(grep_pattern(part).pattern for part in parts))
    return [line for line in lines if compiled.search(line)]


def last_version(values: list[str], skip: int) -> str:
    """Return ``sort -V | cut -c<skip+1>- | tail -n1`` of ``values`` (``""`` for none)."""
    if not values:
        return ""
    return version_sorted(values)[-1][skip:]
