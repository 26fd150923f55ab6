"""Prometheus metrics of waiters (the ``metrics`` extra: ``prometheus_client``).

Every name starts ``qianfan_export_wait_``; labels take a handful of fixed values, never
an export id. Counters and histograms are kept once per registry, so any number of
waiters in a process share them; gauges are read from the waiters bound to a registry
when it is scraped (summed; the estimated limit and the outage's length: the largest).
The names are listed in docs/operations.md.

``prometheus_client`` is imported where it is used (making an observer, a scrape), so
importing this module costs nothing; the library makes one only when the package is
installed (``integrations.default_observers``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING

from .models import ExportId
from .observe import OUTCOME_KINDS, Observer, PollEvent, RequestKind

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from .waiting.outcomes import ExportOutcome, WaiterStats
    from .waiting.waiter import ExportWaiter

__all__ = ["METRIC_PREFIX", "PrometheusObserver", "serve_metrics"]

METRIC_PREFIX = "qianfan_export_wait_"

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
_DOWNLOAD_RESULTS = ("fetched", "kept", "error")


class _Gauges:
    """The gauges, read from the bound waiters at each scrape (a collector)."""

    def __init__(self) -> None:
        self.waiters: weakref.WeakSet[ExportWaiter] = weakref.WeakSet()

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        waiters = [w for w in list(self.waiters) if not w.closed]
        stats = [(w, _stats_of(w)) for w in waiters]

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(METRIC_PREFIX + name, documentation, value=value)

        yield gauge(
            "pending_exports",
            "Exports some caller is waiting for",
            sum(s.pending for _, s in stats),
        )
        yield gauge("callers", "Callers waiting now", sum(s.callers for _, s in stats))
        yield gauge(
            "requests_in_flight",
            "Status requests sent and not yet answered",
            sum(s.in_flight for _, s in stats),
        )
        yield gauge(
            "downloads_in_progress",
            "Files being fetched now",
            sum(s.downloading for _, s in stats),
        )
        yield gauge(
            "rate_limit_requests_per_second",
            "Requests per second the rate limiter allows now",
            sum(s.rate for _, s in stats),
        )
        yield gauge(
            "request_rate_requests_per_second",
            "Requests per second sent lately",
            sum(s.request_rate for _, s in stats),
        )
        ceilings = [getattr(w.limiter, "ceiling", None) for w in waiters]
        known = [float(c) for c in ceilings if isinstance(c, (int, float))]
        if known:
            yield gauge(
                "estimated_limit_requests_per_second",
                "The server's rate limit as estimated from its throttles",
                max(known),
            )
        outages = [s.unavailable_for for _, s in stats if s.unavailable_for is not None]
        yield gauge("outage", "1 while the service is not answering, else 0", 1 if outages else 0)
        yield gauge(
            "unavailable_seconds",
            "Seconds the service has not been answering (0 while it answers)",
            max(outages, default=0.0),
        )


def _stats_of(waiter: ExportWaiter) -> WaiterStats:
    """``waiter.stats``, read from any thread: a scrape served by a thread of its own
    (``prometheus_client.start_http_server``) may meet the loop changing a table, which
    then raises; a few tries see it settled."""
    for _ in range(4):
        try:
            return waiter.stats
        except RuntimeError:  # "changed size during iteration"
            continue
    return waiter.stats


class _Metrics:
    """The counters, histograms and gauges of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            METRIC_PREFIX + "requests",
            "Status requests by how they ended",
            ["outcome"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            METRIC_PREFIX + "request_duration_seconds",
            "Seconds from sending a status request to its answer",
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.outcomes = Counter(
            METRIC_PREFIX + "outcomes",
            "Callers' outcomes by kind (one per caller and export)",
            ["kind"],
            registry=registry,
        )
        self.wait_seconds = Histogram(
            METRIC_PREFIX + "wait_duration_seconds",
            "Seconds from a caller's first wait to an export's outcome",
            ["kind"],
            registry=registry,
            buckets=_WAIT_BUCKETS,
        )
        self.downloads = Counter(
            METRIC_PREFIX + "downloads",
            "Files of Done exports, by result (fetched, kept: already on disk, error)",
            ["result"],
            registry=registry,
        )
        self.download_bytes = Counter(
            METRIC_PREFIX + "download_bytes",
            "Bytes of files fetched",
            registry=registry,
        )
        # Every series exists from the start, at 0, so that rates and alerts see them.
        self.by_request = {kind: self.requests.labels(kind.value) for kind in RequestKind}
        # Keyed by the kinds' values: an OutcomeKind (a str enum) finds its entry.
        self.by_kind = {kind: self.outcomes.labels(kind) for kind in OUTCOME_KINDS}
        self.seconds_by_kind = {kind: self.wait_seconds.labels(kind) for kind in OUTCOME_KINDS}
        self.by_download = {result: self.downloads.labels(result) for result in _DOWNLOAD_RESULTS}
        self.gauges = _Gauges()
        registry.register(self.gauges)  # a collector: it has collect()


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = _Metrics(registry)
    return metrics


class _WaitMetrics:
    """A caller's outcomes, counted and timed."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: _Metrics) -> None:
        self._metrics = metrics

    def outcome(self, outcome: ExportOutcome) -> None:
        metrics = self._metrics
        metrics.by_kind[outcome.kind].inc()
        metrics.seconds_by_kind[outcome.kind].observe(outcome.elapsed)

    def end(self, error: BaseException | None = None) -> None:
        return None


class PrometheusObserver(Observer):
    """Counts a waiter's requests, outcomes and downloads on ``registry`` (default:
    ``prometheus_client.REGISTRY``), and shows its state as gauges when scraped."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = REGISTRY if registry is None else registry
        self._metrics = _metrics_for(self.registry)
        self._scope = _WaitMetrics(self._metrics)

    def bind(self, waiter: ExportWaiter) -> None:
        self._metrics.gauges.waiters.add(waiter)

    def request(self, event: PollEvent) -> None:
        metrics = self._metrics
        metrics.by_request[event.kind].inc()
        metrics.request_seconds.observe(event.latency)

    def wait(self, how: str, export_ids: Sequence[ExportId]) -> _WaitMetrics:
        return self._scope

    def finished(self, outcome: ExportOutcome) -> None:
        metrics = self._metrics
        if outcome.download_error is not None:
            metrics.by_download["error"].inc()
        elif outcome.file is not None:
            if outcome.file.fetched:
                metrics.by_download["fetched"].inc()
                metrics.download_bytes.inc(outcome.file.bytes)
            else:
                metrics.by_download["kept"].inc()


@contextlib.asynccontextmanager
async def serve_metrics(
    port: int, *, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> AsyncIterator[int]:
    """Serve ``registry`` (default: the default one) at ``http://host:port/metrics`` on
    the running loop for the duration of the block; yield the port (``0``: any free)."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    chosen = REGISTRY if registry is None else registry

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(chosen)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        yield int(sockets[0].getsockname()[1]) if sockets else port
    finally:
        await runner.cleanup()
