"""Long work: the fetch queue, its durable journal, and download progress.

Private modules: ``_queue`` (fetches), ``_journal``, ``_progress`` and ``_checksum``
(verified downloads). Other packages use only
the names below.

May import: ``sysadmd.backends``, ``sysadmd.api``, ``sysadmd.config``, ``sysadmd.shared``.
"""

from sysadmd.tasks._checksum import CHECKSUM_PATTERN, ChecksumError, auto_checksum_urls
from sysadmd.tasks._journal import Journal
from sysadmd.tasks._queue import EndLeftOvers, FetchQueue, FetchTask, local_time

__all__ = [
    "CHECKSUM_PATTERN",
    "ChecksumError",
    "EndLeftOvers",
    "FetchQueue",
    "FetchTask",
    "Journal",
    "auto_checksum_urls",
    "local_time",
]
