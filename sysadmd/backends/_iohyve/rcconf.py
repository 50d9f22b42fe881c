"""Reading and writing ``iohyve_flags`` in rc.conf, as sysadm's setup did.

The file is rewritten atomically (a temporary file in the same directory, synced,
then renamed over it), keeping its mode, every other line and every comment. These
functions block; the daemon runs them in a thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from sysadmd.shared import write_atomically

_FLAGS_LINE: Final = re.compile(r"\s*iohyve_flags=(.*)")


def read_flags(path: Path) -> str | None:
    """The value of the first ``iohyve_flags=`` line that is not a comment, unquoted."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        match = _FLAGS_LINE.fullmatch(line)
        if match:
            value = match.group(1).split("#", 1)[0].strip()
            return value.strip("\"'") or None
    return None


def write_flags(path: Path, flags: str) -> None:
    """Set ``iohyve_flags="<flags>"``: replace every such line, or append one."""
    if '"' in flags or "\n" in flags:
        raise ValueError("iohyve_flags must not contain quotes or newlines")
    try:
        lines = path.read_text().splitlines()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        lines, mode = [], 0o644
    wanted = f'iohyve_flags="{flags}"'
    replaced = [wanted if _FLAGS_LINE.fullmatch(line) else line for line in lines]
    if wanted not in replaced:
        replaced.append(wanted)
    write_atomically(path, ("\n".join(replaced) + "\n").encode(), mode)
