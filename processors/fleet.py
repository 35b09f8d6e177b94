"""Worker reports: each worker's counters, published to the shared store, read back by the web.

`labelhook serve` and `labelhook work` are separate processes (the Procfile), often on separate
machines; the only things they share are the queue and the store. So every worker keeps its books
in a `WorkerStats` and writes them as ``_workers/<worker id>.json`` every few seconds (and on stop).
A task of the web app reads those reports (`Fleet`) every ``REFRESH_SECONDS``; `/metrics` and
the dashboard export what it read last, labelled by worker: on SQLite + ``file://`` and on SQS + S3
alike, a counter change is visible from the web within ``PUBLISH_SECONDS + REFRESH_SECONDS`` (10 s).

Counters in a report only ever grow for the life of one worker process, so they are Prometheus
counters as they are; a restarted worker has a new id (host + pid), which Prometheus sees as a new
series. Reports older than ``STALE_SECONDS`` are left out of `/metrics`: a worker gone for an hour is
gone, and a scrape should not carry its ghosts forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from processors.store import Store, StoreError, dump_json

log = logging.getLogger("labelhook.worker")

PREFIX = "_workers/"
PUBLISH_SECONDS = 5.0  # a changed report is written at most this often
IDLE_PUBLISH_SECONDS = 30.0  # an idle worker still writes its heartbeat this often
REFRESH_SECONDS = 5.0  # the web re-reads the reports at most this often
STALE_SECONDS = 3600.0  # reports older than this are left out of /metrics
#: What became of a claimed delivery. ``progress`` is a progress-only callback (a vendor state that
#: is not final: recorded, nothing fetched); ``duplicate`` another delivery of a job already owned;
#: ``batch`` a callback naming several jobs, expanded; ``released`` given back unfinished at shutdown.
OUTCOMES = ("processed", "duplicate", "progress", "batch", "retried", "dead", "released")
PROCESSING_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def worker_id(hostname: str | None = None, pid: int | None = None) -> str:
    """``<host>-<pid>``: unique per live process, readable on a dashboard, a bounded label value."""
    host = _UNSAFE.sub("-", hostname if hostname is not None else socket.gethostname()).strip("-")
    return f"{host[:48] or 'host'}-{pid if pid is not None else os.getpid()}"


class Histogram:
    """Counts per bucket (not cumulative) plus the sum: what a histogram family needs, as JSON."""

    def __init__(self, counts: list[int] | None = None, total: float = 0.0) -> None:
        self.counts = counts if counts is not None else [0] * (len(PROCESSING_BUCKETS) + 1)
        self.sum = total

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(PROCESSING_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, running = [], 0
        for bound, count in zip([*map(str, PROCESSING_BUCKETS), "+Inf"], self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets


class WorkerStats:
    """The books of one worker process: outcomes by source, timings, bytes stored, heartbeat.

    Updated on the worker's event loop only, so plain ints need no lock.
    """

    def __init__(self, worker: str, *, clock: Callable[[], float] = time.time) -> None:
        self.worker = worker
        self.clock = clock
        self.started_at = clock()
        self.heartbeat_at = self.started_at
        self.stopped_at: float | None = None
        self.in_flight = 0
        self.outcomes: dict[tuple[str, str], int] = {}
        self.processing: dict[str, Histogram] = {}
        self.latency: dict[str, Histogram] = {}
        self.bytes_stored: dict[str, int] = {}

    def count(self, source: str, outcome: str) -> None:
        key = (source, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.outcomes.items() if o == outcome)

    def observe_processing(self, source: str, seconds: float) -> None:
        self.processing.setdefault(source, Histogram()).observe(seconds)

    def observe_latency(self, source: str, seconds: float) -> None:
        self.latency.setdefault(source, Histogram()).observe(seconds)

    def stored(self, source: str, size: int) -> None:
        self.bytes_stored[source] = self.bytes_stored.get(source, 0) + size

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "stopped_at": self.stopped_at,
            "in_flight": self.in_flight,
            "outcomes": [[s, o, n] for (s, o), n in sorted(self.outcomes.items())],
            "processing": {s: [h.counts, h.sum] for s, h in self.processing.items()},
            "latency": {s: [h.counts, h.sum] for s, h in self.latency.items()},
            "bytes_stored": dict(self.bytes_stored),
        }

    @classmethod
    def from_json(cls, data: Any) -> WorkerStats:
        """A report read back from the store; `ValueError` if it is not one (the store is shared)."""
        try:
            stats = cls(str(data["worker"]))
            stats.started_at = float(data["started_at"])
            stats.heartbeat_at = float(data["heartbeat_at"])
            stopped = data.get("stopped_at")
            stats.stopped_at = None if stopped is None else float(stopped)
            stats.in_flight = int(data["in_flight"])
            stats.outcomes = {(str(s), str(o)): int(n) for s, o, n in data["outcomes"] if o in OUTCOMES}
            width = len(PROCESSING_BUCKETS) + 1
            for field in ("processing", "latency"):
                hists = {}
                for source, (counts, total) in data[field].items():
                    if len(counts) != width:
                        raise ValueError(f"{field} histogram of {source!r} has {len(counts)} buckets")
                    hists[str(source)] = Histogram([int(c) for c in counts], float(total))
                setattr(stats, field, hists)
            stats.bytes_stored = {str(s): int(n) for s, n in data["bytes_stored"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a worker report: {exc!r}") from exc
        if _UNSAFE.search(stats.worker) or not stats.worker:
            raise ValueError("worker id has characters outside [A-Za-z0-9._-]")
        return stats


class Publisher:
    """Writes one worker's report to the store: when it changed (at most every ``PUBLISH_SECONDS``),
    when idle every ``IDLE_PUBLISH_SECONDS`` (the heartbeat), and once more on stop."""

    def __init__(self, stats: WorkerStats, store: Store) -> None:
        self.stats = stats
        self.store = store
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0

    async def publish(self, *, force: bool = False) -> None:
        now = self.stats.clock()
        snapshot = self.stats.to_json()
        unchanged = {**snapshot, "heartbeat_at": None} == self._last
        if not force and unchanged and now - self._last_at < IDLE_PUBLISH_SECONDS:
            return
        self.stats.heartbeat_at = now
        snapshot["heartbeat_at"] = now
        try:
            await asyncio.to_thread(
                self.store.put, f"{PREFIX}{self.stats.worker}.json", dump_json(snapshot), "application/json"
            )
        except StoreError as exc:
            # Metrics must never stop the work: the next round tries again.
            log.warning("worker report not written", extra={"error": exc.reason})
            return
        self._last, self._last_at = {**snapshot, "heartbeat_at": None}, now

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            await self.publish()
            await asyncio.sleep(PUBLISH_SECONDS)


def read_reports(store: Store) -> list[WorkerStats]:
    """Every readable report under ``_workers/``, newest heartbeat first (blocking: store reads)."""
    reports = []
    for key in store.list(PREFIX):
        try:
            reports.append(WorkerStats.from_json(json.loads(store.get(key))))
        except (KeyError, ValueError):
            continue  # vanished since the listing, or not ours: the store is shared
    return sorted(reports, key=lambda r: r.heartbeat_at, reverse=True)


class Fleet:
    """The web's view of the workers: the reports in the store, plus the in-process worker (`run`)."""

    def __init__(
        self, store: Store, local: WorkerStats | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.local = local
        self.clock = clock
        self._reports: list[WorkerStats] = []
        self._read_at = float("-inf")

    async def refresh(self) -> None:
        """Re-read the reports (off the event loop, with a deadline: a slow store never stalls)."""
        try:
            self._reports = await asyncio.wait_for(
                asyncio.to_thread(read_reports, self.store), REFRESH_SECONDS
            )
        except StoreError as exc:
            log.warning("worker reports unreadable", extra={"error": exc.reason})
        except TimeoutError:
            log.warning("worker reports unreadable", extra={"error": f"no answer in {REFRESH_SECONDS} s"})
        self._read_at = self.clock()

    async def run(self) -> None:
        """Refresh every ``REFRESH_SECONDS`` until cancelled (a task of the web app's lifespan), so
        `/metrics` and the dashboard only ever read figures already in memory."""
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_SECONDS)

    def workers(self, *, max_age: float | None = None) -> list[WorkerStats]:
        """The local worker (live) and the others' latest reports, newest heartbeat first."""
        now = self.clock()
        local = [self.local] if self.local is not None else []
        others = [
            r
            for r in self._reports
            if (self.local is None or r.worker != self.local.worker)
            and (max_age is None or now - r.heartbeat_at <= max_age)
        ]
        return local + others
