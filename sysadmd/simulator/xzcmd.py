"""xz(1)'s decompression: ``iohyve-sim [--root DIR] xz -d [-fkq] FILE ...``.

Each ``FILE.xz`` (or ``FILE.txz``) of the simulated host (a path below the root) is decompressed
with Python's :mod:`lzma` into ``FILE`` (``FILE.tar``), which takes the source's mode and times;
the source is then removed (kept with ``-k``). As xz prints them, on stderr:

* ``xz: <file>: <reason>`` and status 1 for an error (``No such file or directory``, ``File
  exists`` for a target that exists without ``-f``, ``File format not recognized``,
  ``Compressed data is corrupt``, ``Unexpected end of input``); the source stays and a
  partial target is removed;
* ``xz: <file>: Filename has an unknown suffix, skipping`` and status 2 (a warning) for a
  name without ``.xz``; ``-q`` leaves warnings out;
* the other files are still done; the status is the worst.

Compression, standard input and xz's other options are not simulated: they print a line
starting ``iohyve-sim:`` and exit 2.
"""

from __future__ import annotations

import os

from sysadmd.simulator.context import SIMULATOR_ERROR, Context
from sysadmd.simulator.getopt import OptionReader
from sysadmd.simulator.vmhost import host_path

_OPTSTRING = "cC:defF:hHlkM:qQrS:tT:vVz0123456789"
_SUFFIXES = ((".txz", ".tar"), (".xz", ""))
_ERROR = 1
_WARNING = 2
_CHUNK = 1 << 20
#: lzma's reasons in xz's words.
_REASONS = {
    "Input format not supported by decoder": "File format not recognized",
    "Corrupt input data": "Compressed data is corrupt",
}


class _Failed(Exception):
    """A file could not be done; ``str()`` is xz's reason."""


def cmd_xz(ctx: Context, args: list[str]) -> int:
    """Run ``xz <args>`` and return its status."""
    flags = ""
    reader = OptionReader(args, _OPTSTRING)
    for letter, _value, problem in reader:
        if problem == "illegal":
            ctx.output.err(f"xz: illegal option -- {letter}")
            ctx.output.err("xz: Try `xz --help' for more information.")
            return _ERROR
        if letter not in "dfkq":
            ctx.output.err(f"iohyve-sim: xz option '-{letter}' not provided by the simulator")
            return SIMULATOR_ERROR
        flags += letter
    files = reader.operands
    if "d" not in flags or not files or "-" in files:
        ctx.output.err("iohyve-sim: xz decompresses named files (-d FILE ...) here")
        return SIMULATOR_ERROR
    status = 0
    for name in files:
        status = max(status, _decompress(ctx, name, flags))
    return status


def _decompress(ctx: Context, name: str, flags: str) -> int:  # noqa: PLR0911 - xz's checks in order
    if not name.startswith("/"):
        ctx.output.err("iohyve-sim: xz takes absolute paths here")
        return SIMULATOR_ERROR
    source = host_path(ctx.root, name)
    target_name = next(
        (name[: -len(suffix)] + new for suffix, new in _SUFFIXES if name.endswith(suffix)), None
    )
    if not os.path.lexists(source):
        ctx.output.err(f"xz: {name}: No such file or directory")
        return _ERROR
    if os.path.isdir(source):
        if "q" not in flags:
            ctx.output.err(f"xz: {name}: Is a directory, skipping")
        return _WARNING
    if target_name is None or target_name == name[: name.rfind("/") + 1]:
        if "q" not in flags:
            ctx.output.err(f"xz: {name}: Filename has an unknown suffix, skipping")
        return _WARNING
    target = host_path(ctx.root, target_name)
    if os.path.lexists(target):
        if "f" not in flags:
            ctx.output.err(f"xz: {target_name}: File exists")
            return _ERROR
        os.unlink(target)
    try:
        _unpack(source, target, name, target_name)
    except _Failed as failed:
        ctx.output.err(f"xz: {failed}")
        return _ERROR
    if "k" not in flags:
        os.unlink(source)
    return 0


def _unpack(source: str, target: str, name: str, target_name: str) -> None:
    """Decompress ``source`` into the new file ``target``; on failure nothing of ``target``
    stays. Raise :class:`_Failed` with ``<file>: <reason>``."""
    import lzma  # noqa: PLC0415 - only xz needs it

    try:
        stat = os.stat(source)
        reader = lzma.LZMAFile(source, format=lzma.FORMAT_XZ)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _Failed(f"{name}: {exc.strerror}") from exc
    try:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise _Failed(f"{target_name}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as sink:
                while chunk := reader.read(_CHUNK):
                    sink.write(chunk)
            os.chmod(target, stat.st_mode & 0o7777)
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        except lzma.LZMAError as exc:
            os.unlink(target)
            raise _Failed(
                f"{name}: {_REASONS.get(str(exc), 'Compressed data is corrupt')}"
            ) from exc
        except EOFError as exc:
            os.unlink(target)
            raise _Failed(f"{name}: Unexpected end of input") from exc
        except OSError as exc:
            os.unlink(target)
            raise _Failed(f"{target_name}: {exc.strerror}") from exc
    finally:
        reader.close()
