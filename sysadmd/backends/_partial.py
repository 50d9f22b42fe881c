"""What an interrupted download left, made ready for ``fetch -r``.

fetch(1) writes straight into its target when no file is there, so a first attempt that is
cut short, killed or timed out leaves its bytes under the ISO's own name; only a transfer
over an existing file goes into a temporary ``.fetch.XXXXXX.<name>`` beside it (and a
killed one leaves that behind). :func:`gather_partial` keeps the largest of these files
under the ISO's name, where ``fetch -r -o <name>`` continues it, and removes the others.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

__all__ = ["gather_partial"]


def gather_partial(directory: Path, name: str) -> int:
    """Keep the largest partial download of ``name`` in ``directory`` as ``name``; return
    its size (0 when there is none). Symbolic links and other non-regular files are never
    followed nor kept. Blocking: call it in a thread."""
    own = re.compile(rf"(?:\.fetch\.[A-Za-z0-9]{{6}}\.)?{re.escape(name)}")
    found: list[tuple[int, str]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if own.fullmatch(entry.name) is None:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append((info.st_size, entry.name))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    if not found:
        return 0
    # The largest; on a tie the ISO's own name, which needs no rename.
    size, kept = max(found, key=lambda f: (f[0], f[1] == name))
    for _, other in found:
        if other != kept:
            os.unlink(directory / other)
    if kept != name:
        os.replace(directory / kept, directory / name)
    return size
