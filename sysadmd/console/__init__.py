"""Guest serial consoles: one reader per running guest, its history, and its viewers.

Private modules: ``_device`` (the device on the reactor), ``_history`` (the ring and the
rotated log) and ``_service`` (which guests run, and who watches and types). Other packages
use only the names below.

May import: ``sysadmd.backends`` and every layer below it.
"""

from sysadmd.console._service import (
    ConsoleLimits,
    ConsoleService,
    GuestConsole,
    Output,
    Viewer,
)

__all__ = [
    "ConsoleLimits",
    "ConsoleService",
    "GuestConsole",
    "Output",
    "Viewer",
]
