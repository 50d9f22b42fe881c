"""ZFS dataset names and the error texts ``zfs`` prints for them.

These are pure functions: they decide what ``zfs`` would say about a dataset name, the simulator
prints it. The rules follow libzfs as shipped with FreeBSD 10 (``zfs_namecheck.c``
``dataset_namecheck``, ``libzfs_dataset.c`` ``zfs_validate_name`` and ``zfs_open``):

* opening a dataset with an invalid name always reports ``invalid dataset name``;
* creating or renaming to an invalid name reports the precise reason.

One rule is the simulator's own: a name that would leave the simulator's root directory (it
contains ``/`` or is ``.`` or ``..``) is refused for every operation. Real ZFS would accept
``a/b`` as a nested dataset and old libzfs even accepted ``.`` components; iohyve then hands the
same word to ``mv`` and ``fetch``, which is how it can write outside ``/iohyve``.
"""

from __future__ import annotations

#: ZFS rejects full names of this length or longer (MAXNAMELEN is 256 including the NUL).
MAX_NAME_LENGTH = 256

_VALID_EXTRA = "-_.: "

#: The message ``zfs`` prints when a dataset is missing.
DOES_NOT_EXIST = "dataset does not exist"
#: The message ``zfs`` prints when a dataset to be created already exists.
ALREADY_EXISTS = "dataset already exists"
#: The message printed when a dataset is in use (here: an ISO with a download in progress).
BUSY = "dataset is busy"


def _valid_char(char: str) -> bool:
    return (
        ("a" <= char <= "z")
        or ("A" <= char <= "Z")
        or ("0" <= char <= "9")
        or (char in _VALID_EXTRA)
    )


def unsafe_component(name: str) -> str | None:
    """Return why ``name`` may not be used as one path component, or None if it may.

    This is the simulator's guard against path traversal; the texts follow ZFS's wording.
    """
    if "/" in name:
        return "invalid character '/' in name"
    if name == ".":
        return "self reference, '.' is found in name"
    if name == "..":
        return "parent reference, '..' is found in name"
    return None


def _component_problem(component: str) -> str | None:
    for char in component:
        if not _valid_char(char) and char != "%":
            return f"invalid character '{char}' in name"
    return None


def _walk_components(path: str) -> str | None:
    # Components end at "/" or "@"; everything after the first "@" is the snapshot name.
    found_snapshot = False
    position = 0
    while True:
        end = position
        while end < len(path) and path[end] not in "/@":
            end += 1
        delimiter = path[end] if end < len(path) else ""
        if end == position:
            if not delimiter and path[end - 1] == "/":
                return "trailing slash in name"
            return (
                "multiple '@' delimiters in name"
                if delimiter == "@" and found_snapshot
                else "empty component in name"
            )
        problem = _component_problem(path[position:end])
        if problem is not None or not delimiter:
            return problem
        if found_snapshot:
            return (
                "multiple '@' delimiters in name" if delimiter == "@" else "trailing slash in name"
            )
        found_snapshot = delimiter == "@"
        position = end + 1


def namecheck(path: str) -> str | None:
    """Check a full dataset name as ``dataset_namecheck`` does; return the reason or None."""
    if len(path.encode("utf-8", "surrogateescape")) >= MAX_NAME_LENGTH:
        return "name is too long"
    if path.startswith("/"):
        return "leading slash in name"
    if not path:
        return "empty component in name"
    return _walk_components(path)


def validate_for_change(path: str) -> str | None:
    """Return why ``zfs create``/``zfs rename`` refuses ``path`` as a filesystem name, or None."""
    reason = namecheck(path)
    if reason is not None:
        return reason
    if "@" in path:
        return "snapshot delimiter '@' in filesystem name"
    if "%" in path:
        return "invalid character % in name"
    return None


def validate_for_open(path: str) -> str | None:
    """Return why ``zfs_open`` refuses ``path`` (always ``invalid dataset name``), or None."""
    return None if namecheck(path) is None else "invalid dataset name"


def name_error(verb: str, path: str, component: str, *, changing: bool) -> str | None:
    """Return the full ``zfs`` error line for using ``component`` within ``path``, or None.

    ``verb`` is the start of zfs's message (``create``, ``open``, ``rename to``); ``path`` is the
    full dataset name that contains ``component`` as its last part; ``changing`` selects the
    create/rename rules instead of the open rules.
    """
    reason = unsafe_component(component)
    if reason is None:
        reason = validate_for_change(path) if changing else validate_for_open(path)
    if reason is None:
        return None
    return f"cannot {verb} '{path}': {reason}"


def error(verb: str, path: str, reason: str) -> str:
    """Format a ``zfs`` error line such as ``cannot open 'tank/x': dataset does not exist``."""
    return f"cannot {verb} '{path}': {reason}"


def valid_user_property(name: str) -> bool:
    """Return whether ``name`` is a valid ZFS user property name (``module:property``)."""
    if ":" not in name or len(name) >= MAX_NAME_LENGTH:
        return False
    return all(("a" <= c <= "z") or ("0" <= c <= "9") or c in "-_.:" for c in name)


# -- options --------------------------------------------------------------------------------------


def unknown_option(argv: list[str], optstring: str) -> str | None:
    """Return the first option character ``getopt(3)`` with ``optstring`` refuses in ``argv``.

    The FreeBSD tools parse their options with getopt, which knows only single letters:
    a GNU-style long option such as ``--help`` or ``--recursive`` is read as the letters
    ``-``, ``h``, ``e``... and the first one, ``-``, is refused (``invalid option '-'``
    from zfs and zpool, ``illegal option -- -`` from the base system's tools). Scanning stops
    at the first word that is not an option, at ``-`` and after ``--``, as getopt does
    (FreeBSD's getopt does not reorder arguments). A letter followed by ``:`` in
    ``optstring`` takes a value (the rest of its word, or the next word).
    """
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--" or not word.startswith("-") or word == "-":
            return None
        for position, letter in enumerate(word[1:], start=2):
            where = optstring.find(letter)
            if letter == ":" or where < 0:
                return letter
            if optstring[where + 1 : where + 2] == ":":
                if position == len(word):
                    index += 1
                break
    return None


# -- sizes ----------------------------------------------------------------------------------------

#: The default ``volblocksize`` of a zvol; ``volsize`` must be a multiple of it.
VOLBLOCKSIZE = 8192
_SUFFIXES = "BKMGTPEZ"
_NICE_UNITS = " KMGTPE"
_UINT64_MAX = 2**64 - 1


class SizeError(ValueError):
    """A size ``zfs`` cannot parse; ``str()`` is libzfs's reason (``bad numeric value '...'``)."""


def _shift(suffix: str) -> int:
    """Return the power of two a size suffix stands for (libzfs ``str2shift``)."""
    if not suffix:
        return 0
    index = _SUFFIXES.find(suffix[0].upper())
    if index < 0:
        raise SizeError(f"invalid numeric suffix '{suffix}'")
    # "GB" and "Mb" are accepted, "BB" is not.
    if len(suffix) == 1 or (
        len(suffix) == 2 and suffix[1].upper() == "B" and suffix[0].upper() != "B"
    ):
        return 10 * index
    raise SizeError(f"invalid numeric suffix '{suffix}'")


def parse_size(text: str) -> int:
    """Convert a size such as ``8G``, ``1.5T`` or ``512`` to bytes as ``zfs_nicestrtonum`` does.

    Raise :class:`SizeError` with libzfs's reason when ``zfs`` would refuse the text.
    """
    if not text or not (text[0].isascii() and (text[0].isdigit() or text[0] == ".")):
        raise SizeError(f"bad numeric value '{text}'")
    end = 0
    while end < len(text) and text[end].isascii() and text[end].isdigit():
        end += 1
    if end < len(text) and text[end] == ".":
        # strtod takes the fractional part (and an exponent, which iohyve never sees).
        fraction_end = end + 1
        while (
            fraction_end < len(text)
            and text[fraction_end].isascii()
            and text[fraction_end].isdigit()
        ):
            fraction_end += 1
        number = text[:fraction_end]
        value = float(number) if number != "." else 0.0
        scaled = value * 2 ** _shift(text[fraction_end:])
        if scaled > _UINT64_MAX:
            raise SizeError("numeric value is too large")
        return int(scaled)
    whole = int(text[:end])
    if whole > _UINT64_MAX:
        raise SizeError("numeric value is too large")
    shift = _shift(text[end:])
    if shift >= 64 or (whole << shift) > _UINT64_MAX:
        raise SizeError("numeric value is too large")
    return whole << shift


def nicenum(number: int) -> str:
    """Format ``number`` as ``zfs_nicenum`` does for ``zfs list`` (``8G``, ``1.50G``, ``512``)."""
    index = 0
    value = number
    while value >= 1024 and index < len(_NICE_UNITS) - 1:
        value //= 1024
        index += 1
    if index == 0:
        return str(value)
    unit = _NICE_UNITS[index]
    if number % (1 << (10 * index)) == 0:
        return f"{value}{unit}"
    exact = number / (1 << (10 * index))
    text = ""
    for precision in (2, 1, 0):
        text = f"{exact:.{precision}f}{unit}"
        if len(text) <= 5:
            break
    return text


def volume_size_problem(size: int) -> str | None:
    """Return why ``zfs create -V`` refuses a volume of ``size`` bytes, or None."""
    if size == 0:
        return "volume size cannot be zero"
    if size % VOLBLOCKSIZE:
        return "volume size must be a multiple of volume block size"
    return None
