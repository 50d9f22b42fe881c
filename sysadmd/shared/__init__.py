"""Small helpers that import nothing from the rest of sysadmd.

The daemon and the client (``sysadmd.client``) may both use them: durable files and the one
JSON-file store (``_files``), the one-shot waiter (``_observer``), the redaction of URL
credentials and the cut of long output (``_text``), and the task states on the wire
(``_taskstate``). The modules are private; other packages use only the names below.
"""

from sysadmd.shared._files import (
    FileStore,
    json_document,
    make_directory,
    open_for_append,
    write_atomically,
)
from sysadmd.shared._observer import OneShotObserver, settled
from sysadmd.shared._taskstate import SYSADM_STATES, TaskState
from sysadmd.shared._text import OUTPUT_TAIL, REDACTED, redact_urls, shorten, tail

__all__ = [
    "OUTPUT_TAIL",
    "REDACTED",
    "SYSADM_STATES",
    "FileStore",
    "OneShotObserver",
    "TaskState",
    "json_document",
    "make_directory",
    "open_for_append",
    "redact_urls",
    "settled",
    "shorten",
    "tail",
    "write_atomically",
]
