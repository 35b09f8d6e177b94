"""`Metrics`: every Prometheus metric of a labelhook process, in one registry.

Two kinds live here. The callback intake is the hot path, and prometheus-client takes a lock on every
`inc()`/`observe()`, so the intake keeps plain ints (`IntakeCounters`: it only runs on the event loop
thread, so `+=` needs no lock) that a collector turns into metric families at scrape time. The worker
is not hot (one delivery is a fetch and a decode), so it uses prometheus-client objects directly.

Label values are bounded and never attacker-controlled: ``source`` is a configured source name (or
``_unknown``), ``reason`` an error code of our own, ``status`` a queue status. No secret is a label.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

#: The classic exposition format, which every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_SOURCE = "_unknown"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROCESSING_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_REASONS = 64  # a safety net: reasons are our own error codes, a few dozen at most


class IntakeCounters:
    """Counts kept by `receiver.intake.Intake`: received, verified, rejected by reason, ack latency."""

    def __init__(self, sources: Iterable[str]) -> None:
        names = list(sources)
        self.received = dict.fromkeys([*names, UNKNOWN_SOURCE], 0)
        self.verified = dict.fromkeys(names, 0)
        self.rejected: dict[tuple[str, str], int] = {}
        self.ack_buckets = [0] * (len(ACK_BUCKETS) + 1)
        self.ack_sum = 0.0

    def source(self, name: str) -> str:
        """``name`` if it is a configured source, else ``_unknown`` (the URL is the caller's)."""
        return name if name in self.received else UNKNOWN_SOURCE

    def reject(self, name: str, reason: str) -> None:
        reasons = {r for _, r in self.rejected}
        if not _REASON.match(reason) or (reason not in reasons and len(reasons) >= _MAX_REASONS):
            reason = "other"
        key = (self.source(name), reason)
        self.rejected[key] = self.rejected.get(key, 0) + 1

    def observe_ack(self, seconds: float) -> None:
        self.ack_buckets[bisect_left(ACK_BUCKETS, seconds)] += 1
        self.ack_sum += seconds


class _IntakeCollector(Collector):
    def __init__(self, counters: IntakeCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        received = CounterMetricFamily(
            "labelhook_deliveries_received", "Callbacks received on /hooks/{source}", labels=["source"]
        )
        for source, value in list(c.received.items()):
            received.add_metric([source], value)
        verified = CounterMetricFamily(
            "labelhook_deliveries_verified", "Callbacks that passed verification", labels=["source"]
        )
        for source, value in list(c.verified.items()):
            verified.add_metric([source], value)
        rejected = CounterMetricFamily(
            "labelhook_deliveries_rejected",
            "Callbacks answered with an error, by error code",
            labels=["source", "reason"],
        )
        for (source, reason), value in sorted(c.rejected.items()):
            rejected.add_metric([source, reason], value)
        buckets, total = [], 0
        for bound, count in zip([*map(str, ACK_BUCKETS), "+Inf"], list(c.ack_buckets), strict=True):
            total += count
            buckets.append((bound, float(total)))
        ack = HistogramMetricFamily(
            "labelhook_ack_seconds", "Time from callback arrival to the 2xx answer (durable)"
        )
        ack.add_metric([], buckets, c.ack_sum)
        yield from (received, verified, rejected, ack)


class Metrics:
    """The registry of one process; the worker and the intake report into it, `/metrics` renders it."""

    def __init__(self, sources: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.sources = frozenset(sources)
        self.intake = IntakeCounters(self.sources)
        self.registry.register(_IntakeCollector(self.intake))
        r = self.registry
        self.processed = Counter(
            "labelhook_deliveries_processed", "Deliveries processed and acked", ["source"], registry=r
        )
        self.retried = Counter(
            "labelhook_deliveries_retried", "Failed attempts scheduled for a retry", ["source"], registry=r
        )
        self.dead = Counter(
            "labelhook_deliveries_dead", "Deliveries moved to the dead letters", ["source"], registry=r
        )
        self.in_flight = Gauge("labelhook_in_flight", "Deliveries being processed now", registry=r)
        self.processing_seconds = Histogram(
            "labelhook_processing_seconds",
            "Time a processor spent on one attempt",
            ["source"],
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "labelhook_delivery_latency_seconds",
            "Time from callback arrival to the processed ack",
            ["source"],
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.bytes_stored = Counter(
            "labelhook_bytes_stored", "Bytes of output files written to the store", ["source"], registry=r
        )
        self.queue_depth = Gauge(
            "labelhook_queue_depth",
            "Deliveries in the queue by status (refreshed every second)",
            ["status"],
            registry=r,
        )
        self.queue_disk_bytes = Gauge(
            "labelhook_queue_disk_bytes",
            "Bytes the queue holds on local disk: database, WAL and intake journal",
            registry=r,
        )

    def source(self, name: str) -> str:
        return name if name in self.sources else UNKNOWN_SOURCE

    def render(self, depth: Mapping[str, int] | None = None, disk_bytes: int | None = None) -> bytes:
        """The exposition text; ``depth`` and ``disk_bytes`` are the queue's latest figures
        (`Queue.gauges`, None: unknown or unreachable)."""
        if depth is not None:
            for status, count in depth.items():
                self.queue_depth.labels(status=status).set(count)
        if disk_bytes is not None:
            self.queue_disk_bytes.set(disk_bytes)
        return generate_latest(self.registry)
