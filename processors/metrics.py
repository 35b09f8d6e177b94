"""`Metrics`: every Prometheus metric of a labelhook process, in one registry.

Two kinds live here. The callback intake is the hot path, and prometheus-client takes a lock on every
`inc()`/`observe()`, so the intake keeps plain ints (`IntakeCounters`: it only runs on the event loop
thread, so `+=` needs no lock) that a collector turns into metric families at scrape time. The
workers' books are `processors.fleet.WorkerStats`, in this process (`labelhook run`) or published
through the store by `labelhook work` processes; a second collector exports them labelled by worker.

Label values are bounded and never attacker-controlled: ``source`` is a configured source name (or
``_unknown``), ``reason`` an error code of our own, ``status`` a queue status, ``worker``
host-pid restricted to ``[A-Za-z0-9._-]``. No secret is a label.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from processors.fleet import OUTCOMES, STALE_SECONDS, Fleet

#: The classic exposition format, which every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_SOURCE = "_unknown"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
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


_OUTCOME_HELP = {
    "processed": "Deliveries processed: outputs written and the delivery acked",
    "duplicate": "Deliveries acked unprocessed: another delivery of the same job owns its output",
    "progress": "Progress-only deliveries (a vendor state that is not final): recorded, nothing fetched",
    "batch": "Callbacks naming a batch of jobs, expanded into the jobs' own deliveries",
    "retried": "Failed attempts scheduled for a retry",
    "dead": "Deliveries moved to the dead letters",
    "released": "Deliveries given back unfinished at shutdown (processed again by another claim)",
}
_OUTCOME_NAME = {o: f"labelhook_deliveries_{o}" for o in OUTCOMES} | {
    "progress": "labelhook_deliveries_progress_only"
}


class _FleetCollector(Collector):
    """The workers' books, labelled by worker: the in-process one and those reporting via the store."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        fleet = self.metrics.fleet
        workers = fleet.workers(max_age=STALE_SECONDS) if fleet is not None else []
        outcomes = {
            o: CounterMetricFamily(_OUTCOME_NAME[o], _OUTCOME_HELP[o], labels=["source", "worker"])
            for o in OUTCOMES
        }
        in_flight = GaugeMetricFamily(
            "labelhook_in_flight", "Deliveries being processed now", labels=["worker"]
        )
        heartbeat = GaugeMetricFamily(
            "labelhook_worker_heartbeat_timestamp_seconds",
            "When the worker last reported (Unix time)",
            labels=["worker"],
        )
        processing = HistogramMetricFamily(
            "labelhook_processing_seconds",
            "Time a processor spent on one attempt",
            labels=["source", "worker"],
        )
        latency = HistogramMetricFamily(
            "labelhook_delivery_latency_seconds",
            "Time from callback arrival to the processed ack",
            labels=["source", "worker"],
        )
        stored = CounterMetricFamily(
            "labelhook_bytes_stored",
            "Bytes of output files written to the store",
            labels=["source", "worker"],
        )
        for w in workers:
            in_flight.add_metric([w.worker], w.in_flight)
            heartbeat.add_metric([w.worker], w.heartbeat_at)
            for (source, outcome), value in sorted(w.outcomes.items()):
                outcomes[outcome].add_metric([self.metrics.source(source), w.worker], value)
            for family, hists in ((processing, w.processing), (latency, w.latency)):
                for source, hist in sorted(hists.items()):
                    family.add_metric([self.metrics.source(source), w.worker], hist.cumulative(), hist.sum)
            for source, size in sorted(w.bytes_stored.items()):
                stored.add_metric([self.metrics.source(source), w.worker], size)
        yield from outcomes.values()
        yield from (in_flight, heartbeat, processing, latency, stored)


class Metrics:
    """The registry of one process; the intake and the workers' reports (`fleet`) feed it."""

    def __init__(self, sources: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.sources = frozenset(sources)
        self.intake = IntakeCounters(self.sources)
        #: Set by the web app: the in-process worker (`labelhook run`) and the others' store reports.
        self.fleet: Fleet | None = None
        self.registry.register(_IntakeCollector(self.intake))
        self.registry.register(_FleetCollector(self))
        self.queue_depth = Gauge(
            "labelhook_queue_depth",
            "Deliveries in the queue by status (refreshed every second)",
            ["status"],
            registry=self.registry,
        )
        self.queue_disk_bytes = Gauge(
            "labelhook_queue_disk_bytes",
            "Bytes the queue holds on local disk: database, WAL and intake journal",
            registry=self.registry,
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
