"""Validation of the names and URLs that reach iohyve.

iohyve expands its arguments unquoted in ``/bin/sh``, hands them to ``zfs`` and
``mv`` as dataset and file names, and derives an ISO's name from the last path
segment of a fetch URL. Every name and URL is therefore checked here, at the edge,
against one strict rule, before any process is spawned. Values are rejected, never
"cleaned", and error messages do not echo the rejected value.

Every pattern here is written without ``^``/``$`` anchors and applied with
``fullmatch``: Python's ``$`` also matches before a final newline, so an anchored
pattern applied with ``match`` lets a name followed by a newline through. JSON
Schema documents get the same patterns through :func:`schema_pattern`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

from sysadmd.api._errors import bad_request

#: Guest and ISO names: ASCII letters, digits, dot, underscore and hyphen, starting
#: with a letter or digit (so never an option such as ``-rf``), at most 128 characters,
#: and never containing ``..``.
_NAME_CHARACTERS: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
NAME_PATTERN: Final = rf"(?!.*\.\.){_NAME_CHARACTERS}"
_NAME_RE: Final = re.compile(_NAME_CHARACTERS, re.ASCII)

#: Control characters: C0 (tab, newline, carriage return, NUL...), DEL and C1.
CONTROL_CHARACTERS: Final = r"\x00-\x1f\x7f-\x9f"
#: Text without control characters (as a pattern, for :func:`re.fullmatch`).
NO_CONTROL_PATTERN: Final = f"[^{CONTROL_CHARACTERS}]*"
_CONTROL_RE: Final = re.compile(f"[{CONTROL_CHARACTERS}]")


def schema_pattern(pattern: str) -> str:
    """``pattern`` as a JSON Schema ``pattern``, which must match the whole string.

    JSON Schema patterns are ECMA-262 regular expressions that match anywhere in the
    string; anchored at both ends (where ``$`` is the very end of the input) they
    accept exactly what ``re.fullmatch(pattern, ...)`` accepts.
    """
    return f"^(?:{pattern})$"


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (C0, DEL or C1)."""
    return _CONTROL_RE.search(value) is not None


#: Schemes iohyve's ``fetch(1)`` understands and the daemon accepts.
URL_SCHEMES: Final = ("http", "https", "ftp", "file")
MAX_URL_LENGTH: Final = 2048
#: iohyve expands the URL unquoted in ``/bin/sh``, which splits it on white space and
#: expands ``*``, ``?`` and ``[``: a URL may hold only printable ASCII without white
#: space, and its path only characters with no such meaning.
URL_TEXT_PATTERN: Final = r"[!-~]{1,2048}"
_URL_TEXT_RE: Final = re.compile(URL_TEXT_PATTERN)
_URL_PATH: Final = re.compile(r"[A-Za-z0-9._~/%+,=:@!-]*")
_URL_HOST: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+|\[[0-9A-Fa-f:.]+\]"
)


def name_problem(value: str) -> str | None:
    """Say what is wrong with a guest or ISO name, or return None if it is valid."""
    if not value:
        return "must not be empty"
    if len(value) > 128:
        return "must be at most 128 characters long"
    if not _NAME_RE.fullmatch(value):
        return (
            "may hold only ASCII letters, digits, '.', '_' and '-', "
            "and must start with a letter or digit"
        )
    if ".." in value:
        return "must not contain '..'"
    return None


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is a valid name, else raise a 400 naming ``what``."""
    problem = name_problem(value)
    if problem is not None:
        raise bad_request(f"{what} {problem}")
    return value


def check_url_text(url: str, what: str) -> str:
    """Return ``url`` if it is non-empty printable ASCII of at most 2048 characters
    without white space (:data:`URL_TEXT_PATTERN`), else raise a 400 naming ``what``."""
    if len(url) > MAX_URL_LENGTH:
        raise bad_request(f"{what} must be at most {MAX_URL_LENGTH} characters long")
    if not _URL_TEXT_RE.fullmatch(url):
        raise bad_request(
            f"{what} must be a non-empty URL without whitespace, control or non-ASCII characters"
        )
    return url


def iso_name_from_url(url: str, what: str = "url", file_roots: Sequence[Path] = ()) -> str:
    """Validate a fetch URL and return the ISO name iohyve will derive from it.

    iohyve names the ISO after ``basename`` of the URL, so the URL must end in a
    path segment that is itself a valid name; query strings, fragments and user
    information are refused because they would end up in that name or in logs.
    ``file://`` URLs are accepted only for regular files below one of
    ``file_roots`` (none by default): root's ``fetch`` would otherwise copy any
    file of the host, such as a password database, into an ISO.
    """
    check_url_text(url, what)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise bad_request(f"{what} must start with http://, https://, ftp:// or file://")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise bad_request(f"{what} must not have a query string or fragment")
    if "@" in parts.netloc:
        raise bad_request(f"{what} must not contain a user name or password")
    if not _URL_PATH.fullmatch(parts.path):
        raise bad_request(
            f"{what} may hold in its path only letters, digits and the characters ._~/%+,=:@!-"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise bad_request(f"{what}: file:// URLs must name a local file")
    elif not _host_ok(parts.netloc, parts.port if _port_ok(parts) else -1):
        raise bad_request(f"{what} must name a host (and optionally a port)")
    segment = parts.path.rsplit("/", 1)[-1]
    if "%" in segment:
        raise bad_request(f"{what} must not percent-encode its file name")
    problem = name_problem(segment)
    if problem is not None:
        raise bad_request(f"{what} must end in a valid ISO file name: the file name {problem}")
    if scheme == "file":
        _check_local_file(unquote(parts.path), what, file_roots)
    return segment


def _port_ok(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


def _host_ok(netloc: str, port: int | None) -> bool:
    host = netloc if netloc.endswith("]") else netloc.rsplit(":", 1)[0]
    return bool(host) and port != -1 and _URL_HOST.fullmatch(host) is not None


def _check_local_file(path: str, what: str, roots: Sequence[Path]) -> None:
    """Allow a ``file://`` path only if it is a regular file below a configured root."""
    if not roots:
        raise bad_request(f"{what}: file:// URLs are not allowed on this server")
    # realpath resolves symbolic links, so a link inside a root cannot point outside it.
    real = Path(os.path.realpath(path))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real.is_relative_to(real_root) and real != real_root:
            break
    else:
        raise bad_request(f"{what}: file:// URLs must name a file below an allowed directory")
    if not real.is_file():
        raise bad_request(f"{what}: file:// URL does not name an existing regular file")
