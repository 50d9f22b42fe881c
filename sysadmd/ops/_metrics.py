"""``/metrics``: the daemon's counters in Prometheus' text format.

Each daemon has its own :class:`~prometheus_client.CollectorRegistry` (never the
global one), fed at the one place each event happens:

``sysadmd_requests_total{namespace, name, action, code}``
    API calls answered, over REST and WebSocket alike (:meth:`sysadmd.api.Api.dispatch`),
    a refused login included. Labels name only the action the dispatch resolved, so clients
    cannot make up series: an unknown class is counted as ``unknown/unknown``, an unknown
    action as ``unknown``.
``sysadmd_request_duration_seconds{namespace, name, action}``
    A histogram of the time those calls took.
``sysadmd_failed_logins_total{method}``
    Failed logins by method (``password``, ``token``, ``ssl``, ``basic``).
``sysadmd_fetched_bytes_total``
    Bytes that fetches put on disk, as their progress is sampled.
``sysadmd_fetch_tasks{state}``
    Fetch tasks the queue keeps, by state (read when scraped).
``sysadmd_open_connections``
    Connections open now, over all listeners (read when scraped).

Only addresses in ``metrics.allow`` may read it without a login; anyone else
logs in as for REST, or gets 401.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator
from itertools import accumulate
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString
from twisted.web.iweb import IRequest

from sysadmd.api import ActionSpec, ApiError, ApiRequest, Unresolved
from sysadmd.ops._health import Guard, PlainResource, finish
from sysadmd.shared import TaskState
from sysadmd.tasks import FetchQueue
from sysadmd.transport import ConnectionCounter

UNKNOWN: Final = "unknown"
#: Latency buckets, in seconds: from a cached list to a slow iohyve command.
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Gauges:
    """Values read when scraped: tasks by state and open connections."""

    def __init__(self, fetches: FetchQueue | None, connections: ConnectionCounter | None) -> None:
        self._fetches = fetches
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        if self._fetches is not None:
            tasks = GaugeMetricFamily(
                "sysadmd_fetch_tasks", "Fetch tasks the queue keeps, by state", labels=["state"]
            )
            counts = Tally(task.state for task in self._fetches.tasks.values())
            for state in TaskState:
                tasks.add_metric([state.value], counts[state])
            yield tasks
        if self._connections is not None:
            yield GaugeMetricFamily(
                "sysadmd_open_connections",
                "Connections open now, over all listeners",
                value=self._connections.open,
            )


class _Latency:
    """One histogram's counts per bucket (the last one for slower than every bound)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class _Calls:
    """The answered calls, counted in plain integers on the reactor thread and turned into
    Prometheus families when scraped: every call is counted, so counting must cost less
    than the locked updates of prometheus_client's own Counter and Histogram."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.latency: dict[tuple[str, str, str], _Latency] = {}

    def count(self, labels: tuple[str, str, str], code: str, seconds: float) -> None:
        key = (*labels, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.latency.get(labels)
        if latency is None:
            latency = self.latency[labels] = _Latency()
        latency.counts[bisect_left(BUCKETS, seconds)] += 1
        latency.total += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "sysadmd_requests",
            "API calls answered, by class, action and reply code",
            labels=["namespace", "name", "action", "code"],
        )
        for key, count in self.requests.items():
            requests.add_metric(key, count)
        yield requests
        latency = HistogramMetricFamily(
            "sysadmd_request_duration_seconds",
            "Seconds API calls took, from request to reply",
            labels=["namespace", "name", "action"],
        )
        bounds = [floatToGoString(b) for b in (*BUCKETS, float("inf"))]
        for labels, histogram in self.latency.items():
            cumulative = zip(bounds, accumulate(histogram.counts), strict=True)
            latency.add_metric(labels, list(cumulative), histogram.total)
        yield latency


class Metrics:
    """The daemon's metrics, in a registry of their own."""

    def __init__(self) -> None:
        """Empty counters; the dispatch hands each call's action to :meth:`call_answered`."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls = _Calls()
        self.registry.register(self._calls)
        self.failed_logins = Counter(
            "sysadmd_failed_logins",
            "Failed logins, by method",
            ["method"],
            registry=self.registry,
        )
        self.fetched_bytes = Counter(
            "sysadmd_fetched_bytes", "Bytes fetches put on disk", registry=self.registry
        )

    def watch(
        self, fetches: FetchQueue | None = None, connections: ConnectionCounter | None = None
    ) -> None:
        """Report ``fetches``' tasks and ``connections``' count when scraped."""
        self.registry.register(_Gauges(fetches, connections))

    def call_answered(
        self, request: ApiRequest, action: ActionSpec | Unresolved, code: int, seconds: float
    ) -> None:
        """Count one answered call (the :attr:`sysadmd.api.Api.on_call` hook), under the
        action the dispatch resolved it to."""
        labels: tuple[str, str, str]
        if isinstance(action, ActionSpec):
            labels = (action.namespace, action.name, action.action or "")
        elif action is Unresolved.CLASS:
            labels = (UNKNOWN, UNKNOWN, "")
        else:
            labels = (request.namespace, request.name, UNKNOWN)
        self._calls.count(labels, str(code), seconds)

    def login_failed(self, method: str) -> None:
        """Count one failed login (the ``Authenticator.on_failed_login`` hook)."""
        self.failed_logins.labels(method).inc()

    def bytes_fetched(self, count: int) -> None:
        """Count bytes a fetch added (the ``FetchQueue.on_bytes`` hook)."""
        self.fetched_bytes.inc(count)


class MetricsResource(PlainResource):
    """``/metrics``: for allowed addresses, or with a login; otherwise 401."""

    def __init__(self, metrics: Metrics, guard: Guard) -> None:
        super().__init__()
        self._metrics = metrics
        self._guard = guard

    async def respond(self, request: IRequest) -> None:
        allowed = self._guard.allowed_address(request)
        if not allowed and await self._guard.login(request) is None:
            raise ApiError(401, "log in with Authorization: Basic or Bearer to read metrics")
        accept = request.getHeader(b"accept")
        encode, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        finish(request, 200, encode(self._metrics.registry), content_type.encode())
