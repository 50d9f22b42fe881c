"""Watching the daemon: health checks, Prometheus metrics, the log file.

Private modules: ``_health`` (``/livez``, ``/readyz``), ``_metrics`` and ``_logs``. These
observe every other layer (the task queue, the connection counters, the authenticator), so
they sit just below the app, the only user of the names below.

May import: every layer but ``sysadmd.app``.
"""

from sysadmd.ops._health import Check, Guard, Livez, OperationsRoot, Readyz, daemon_checks
from sysadmd.ops._logs import LogFiles
from sysadmd.ops._metrics import Metrics, MetricsResource

__all__ = [
    "Check",
    "Guard",
    "Livez",
    "LogFiles",
    "Metrics",
    "MetricsResource",
    "OperationsRoot",
    "Readyz",
    "daemon_checks",
]
