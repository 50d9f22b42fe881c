"""How a finished command is described when it failed: one line, in the tool's words."""

from __future__ import annotations

from sysadmd.backends._runner import ProcessResult


def text(data: bytes) -> str:
    """A command's output as text; bytes that are not UTF-8 are replaced."""
    return data.decode("utf-8", errors="replace")


def first_message(stdout: str, stderr: str) -> str:
    """The most useful line of a failed command's output, for an error reply.

    Tools print their errors on stderr (and iohyve its own messages on stdout, with the
    errors of ``zfs``, ``mv`` and ``fetch`` on stderr): the first non-empty stderr line
    is usually the cause.
    """
    for output in (stderr, stdout):
        for line in output.split("\n"):
            if line.strip():
                return line.strip()
    return "no output"


def describe_failure(result: ProcessResult) -> str:
    """A one-line account of why a command failed, in the tool's own words if it had any."""
    if result.timed_out:
        return "it did not finish in time and was stopped"
    if result.cancelled:
        return "it was cancelled"
    if result.truncated:
        return "it printed more output than the daemon accepts"
    message = first_message(text(result.stdout), text(result.stderr))
    if result.signal is not None:
        return f"it was ended by signal {result.signal} ({message})"
    return message
