"""Pure parsers for iohyve's text output: text in, typed values out.

iohyve draws its tables with FreeBSD's ``column -t``: every column starts at the
same offset on every line, the header row included, and the last column (the
guest description) is the rest of the line, spaces and all. So rows are cut at
the offsets of the header's words, never split on whitespace.
"""

from __future__ import annotations

from typing import Final

from sysadmd.backends._interface import GuestSummary

#: The first line of ``iohyve isolist``.
ISOLIST_TITLE: Final = "Listing ISO's..."
#: The header words of ``iohyve list``; 0.7 spelt the third ``Running?``.
_LIST_HEADERS: Final = (
    ("Guest", "VMM?", "Running", "rcboot?", "Description"),
    ("Guest", "VMM?", "Running?", "rcboot?", "Description"),
)


class ParseError(ValueError):
    """iohyve printed something these parsers do not understand."""


#: One row of ``iohyve list``: sysadm's four fields (iohyve's list has no others).
Guest = GuestSummary


def _lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _column_offsets(header: str) -> list[int] | None:
    words = header.split()
    if tuple(words) not in _LIST_HEADERS:
        return None
    offsets: list[int] = []
    position = 0
    for word in words:
        position = header.index(word, position)
        offsets.append(position)
        position += len(word)
    return offsets


def parse_list(text: str) -> dict[str, Guest]:
    """Parse ``iohyve list`` into ``{guest: {description, rcboot, running, vmm}}``.

    The first non-empty line must be the header; every following non-empty line is
    one guest. Values stay iohyve's ``YES``/``NO`` strings. No guests (only the
    header, or no output at all) gives ``{}``.
    """
    lines = [line for line in _lines(text) if line.strip()]
    if not lines:
        return {}
    offsets = _column_offsets(lines[0])
    if offsets is None:
        raise ParseError("iohyve list printed no table header")
    guests: dict[str, Guest] = {}
    for line in lines[1:]:
        cells = _cut(line, offsets)
        name, vmm, running, rcboot, description = cells
        if not name or name in guests:
            raise ParseError("iohyve list printed a row without a unique guest name")
        guests[name] = Guest(description=description, rcboot=rcboot, running=running, vmm=vmm)
    return guests


def _cut(line: str, offsets: list[int]) -> list[str]:
    """Cut one ``column -t`` row at the header's offsets.

    Each column but the last must end in padding, so a row whose cells do not line
    up with the header is reported instead of being misread.
    """
    cells = []
    for i, start in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < len(offsets) else len(line)
        if start > 0 and line[start - 1 : start] not in (" ", ""):
            raise ParseError("an iohyve list row does not line up with its header")
        cell = line[start:end]
        cells.append(cell if i == len(offsets) - 1 else cell.rstrip(" "))
        if i < len(offsets) - 1 and (not cells[-1] or " " in cells[-1]):
            raise ParseError("an iohyve list row does not line up with its header")
    return cells


def parse_isolist(text: str) -> list[str]:
    """Parse ``iohyve isolist`` into the list of ISO names, in iohyve's order."""
    lines = _lines(text)
    if lines and lines[0] == ISOLIST_TITLE:
        lines = lines[1:]
    elif any(line.strip() for line in lines):
        raise ParseError("iohyve isolist printed no title line")
    return [line for line in lines if line.strip()]


def parse_version(text: str) -> str:
    """The one-line version string of ``iohyve version``, whitespace collapsed."""
    version = " ".join(text.split())
    if not version.startswith("iohyve v"):
        raise ParseError("iohyve version printed no version string")
    return version


def parse_getall(text: str) -> dict[str, str]:
    """Parse ``iohyve getall NAME`` in either format into ``{property: value}``.

    0.7.3 prints ``Getting NAME props...`` and ``column -t`` rows whose values were
    cut at the first space; 0.7.4+ prints ``Getting NAME iohyve properties...`` and
    rows whose values keep their spaces. Either way a row is the property name, then
    padding, then the value.
    """
    lines = [line for line in _lines(text) if line.strip()]
    if not lines or not lines[0].startswith("Getting "):
        raise ParseError("iohyve getall printed no title line")
    props: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(" ")
        if not name or name in props:
            raise ParseError("iohyve getall printed a row without a unique property name")
        props[name] = value.lstrip(" ")
    return props


def parse_disks(text: str) -> dict[str, str]:
    """Parse ``iohyve disks NAME`` into ``{"disk0": "20G", ...}``.

    The title and the ``diskN Size`` header go through ``column -t`` like the rows.
    iohyve finds the disks with a substring match, so another guest whose name
    contains NAME adds its disks under the same ``diskN`` names: such output is
    refused rather than misread.
    """
    lines = [line for line in _lines(text) if line.strip()]
    if not lines or lines[0].split()[0] != "Listing":
        raise ParseError("iohyve disks printed no title line")
    disks: dict[str, str] = {}
    for line in lines[1:]:
        fields = line.split()
        if fields == ["diskN", "Size"]:
            continue
        if len(fields) != 2 or not fields[0].startswith("disk") or not fields[0][4:].isdigit():
            raise ParseError("iohyve disks printed a row that is not a disk and its size")
        if fields[0] in disks:
            raise ParseError(
                "iohyve disks listed the same disk twice: another guest's name contains "
                "this one's, and iohyve cannot tell their disks apart"
            )
        disks[fields[0]] = fields[1]
    return disks
