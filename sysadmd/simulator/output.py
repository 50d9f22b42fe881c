"""Where the simulated tools write: iohyve on stdout, zfs/fetch/mv/kill on stderr.

Every write is flushed at once, so when a caller merges both streams into one pipe (as the sysadm
server does) the lines arrive in the order the real script would produce them.
"""

from __future__ import annotations

import sys

# Importing typing costs several milliseconds at every start; type checkers treat this name as
# true, the interpreter does not.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


def _write(stream: TextIO, text: str) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        # Write bytes so names that are not valid UTF-8 pass through unchanged.
        stream.flush()
        buffer.write(text.encode("utf-8", "surrogateescape"))
        buffer.flush()
    else:
        stream.write(text)
        stream.flush()


class Output:
    """The two output streams of one simulated command.

    The streams are looked up on :mod:`sys` at every write unless given explicitly, so pytest's
    capture fixtures see everything.
    """

    __slots__ = ("_stderr", "_stdout")

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self._stdout = stdout
        self._stderr = stderr

    def out(self, line: str) -> None:
        """Write one line of iohyve's own output to stdout."""
        _write(self._stdout or sys.stdout, line + "\n")

    def err(self, line: str) -> None:
        """Write one line of a helper tool's diagnostics to stderr."""
        _write(self._stderr or sys.stderr, line + "\n")

    def err_partial(self, text: str) -> None:
        """Write text without a newline to stderr (fetch's file name before the transfer)."""
        _write(self._stderr or sys.stderr, text)
