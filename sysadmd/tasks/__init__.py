"""Long work: the fetch queue, its durable journal, and download progress.

Private modules: ``_queue`` (fetches), ``_journal`` and ``_progress``. Other packages use only
the names below.

May import: ``sysadmd.backends``, ``sysadmd.api``, ``sysadmd.config``, ``sysadmd.shared``.
"""

from sysadmd.tasks._journal import Journal
from sysadmd.tasks._queue import EndLeftOvers, FetchQueue, FetchTask, local_time

__all__ = ["EndLeftOvers", "FetchQueue", "FetchTask", "Journal", "local_time"]
