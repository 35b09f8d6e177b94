"""The worker loop: claim deliveries, run their vendor's processor, ack, retry or dead-letter.

Processors are blocking code (numpy, boto3, httpx's sync client), so each delivery runs on its own
daemon thread while the event loop keeps the lease alive with heartbeats. `stop()` only sets a flag:
the loop stops claiming, waits up to ``drain_seconds`` for work in hand, then releases what is left
so another worker picks it up at once, and returns. Daemon threads mean a processor stuck in I/O can
never hold the process past the PaaS's SIGKILL deadline; its delivery is simply processed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from processors.config import Settings
from processors.delivery import Delivery
from processors.errors import Permanent, Retryable
from processors.jobs import JobBook
from processors.metrics import Metrics
from processors.queue import Lease, Queue, QueueUnavailable
from processors.store import JobWriter, Store, StoreError, dump_json
from processors.vendors import VENDORS
from processors.vendors.base import Processor
from processors.version import VERSION

T = TypeVar("T")
log = logging.getLogger("labelhook.worker")


async def run_in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a fresh daemon thread and await its result."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def target() -> None:
        try:
            result: Any = (True, fn(*args))
        except BaseException as exc:
            result = (False, exc)
        with contextlib.suppress(RuntimeError):  # the loop may be gone after a bounded shutdown
            loop.call_soon_threadsafe(settle, *result)

    threading.Thread(target=target, name="labelhook-job", daemon=True).start()
    return await future


class Worker:
    """Processes deliveries from ``queue`` into ``store`` until `stop()` is called."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        store: Store,
        *,
        processors: Mapping[str, Processor] | None = None,
        drain_seconds: float = 20.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.drain_seconds = drain_seconds
        self._processors: dict[str, Processor] = dict(processors or {})
        self.jobs = JobBook(store)
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None
        self.processed = 0
        self.metrics = metrics if metrics is not None else Metrics(settings.sources)

    def stop(self) -> None:
        """Ask the loop to stop claiming and drain; safe to call from a signal handler or any thread."""
        self._stopping.set()
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(wake.set)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def processor_for(self, source_name: str) -> Processor:
        processor = self._processors.get(source_name)
        if processor is None:
            source = self.settings.source(source_name)
            if source is None:
                raise Permanent(f"source {source_name!r} is no longer configured")
            processor = VENDORS[source.vendor].processor_class()(source, self.settings)
            self._processors[source_name] = processor
        return processor

    async def run(self) -> None:
        """Claim and process until stopped; then drain, release leftovers and return."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # After a crash, temporaries of interrupted writes may be left in job folders: sweep them once.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.sweep_temporary)
        pollers = [asyncio.create_task(self._poll(name)) for name in self.polled_sources()]
        in_flight: set[asyncio.Task[None]] = set()
        concurrency = self.settings.worker_concurrency
        while not self.stopping:
            free = concurrency - len(in_flight)
            if free <= 0:
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({*in_flight, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            try:
                leases = await self.queue.claim(free, self.settings.lease_seconds, wait_seconds=1.0)
            except QueueUnavailable as exc:
                log.warning("queue unavailable", extra={"error": str(exc)})
                await self._sleep(1.0)
                continue
            for lease in leases:
                if self.stopping:
                    await self.queue.release(lease)
                    continue
                task = asyncio.create_task(self._handle(lease))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        for poller in pollers:
            poller.cancel()
        await self._drain(in_flight)

    def polled_sources(self) -> list[str]:
        """Sources whose open jobs this worker polls: vendors without callbacks, or POLL=1."""
        return [name for name, source in self.settings.sources.items() if source.poll]

    async def _poll(self, source_name: str) -> None:
        from processors.polling import poll_forever

        await poll_forever(
            self.settings,
            source_name,
            self.processor_for(source_name),
            self.queue,
            self.jobs,
            stopping=lambda: self.stopping,
        )

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _drain(self, in_flight: set[asyncio.Task[None]]) -> None:
        if in_flight:
            log.info("draining", extra={"in_flight": len(in_flight), "deadline_s": self.drain_seconds})
            _, pending = await asyncio.wait(set(in_flight), timeout=self.drain_seconds)
            for task in pending:
                task.cancel()  # _handle releases the lease on cancellation
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        log.info("worker stopped", extra={"processed": self.processed})

    async def _heartbeat(self, lease: Lease) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(QueueUnavailable):
                await self.queue.extend(lease, self.settings.lease_seconds)

    async def _handle(self, lease: Lease) -> None:
        delivery = lease.delivery
        fields = {
            "delivery_id": delivery.id,
            "source": delivery.source,
            "job": delivery.job_id,
            "attempt": lease.attempts,
        }
        metrics, source = self.metrics, self.metrics.source(delivery.source)
        started = time.monotonic()

        def took() -> float:
            return round((time.monotonic() - started) * 1000, 1)

        if not await self.queue.check_attempts(lease):
            metrics.dead.labels(source).inc()
            log.warning("dead letter", extra={**fields, "outcome": "dead", "duration_ms": took()})
            return
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        metrics.in_flight.inc()
        try:
            if delivery.kind == "batch":
                await self._batch(delivery)
                manifest = None
            else:
                manifest = await run_in_daemon_thread(self.process, delivery)
        except asyncio.CancelledError:
            with contextlib.suppress(QueueUnavailable):
                await asyncio.shield(self.queue.release(lease))
            log.info("released", extra={**fields, "outcome": "released", "duration_ms": took()})
            raise
        except Exception as exc:
            outcome = await self.queue.fail(lease, exc)
            metrics.processing_seconds.labels(source).observe(time.monotonic() - started)
            (metrics.dead if outcome == "dead" else metrics.retried).labels(source).inc()
            log.warning(
                "processing failed",
                extra={
                    **fields,
                    "outcome": outcome,
                    "reason": getattr(exc, "reason", repr(exc)),
                    "duration_ms": took(),
                },
            )
        else:
            await self.queue.ack(lease)
            self.processed += 1
            metrics.processing_seconds.labels(source).observe(time.monotonic() - started)
            metrics.processed.labels(source).inc()
            metrics.latency_seconds.labels(source).observe(max(0.0, time.time() - delivery.received_at))
            if isinstance(manifest, dict):
                metrics.bytes_stored.labels(source).inc(sum(f["size"] for f in manifest.get("files", ())))
            log.info("processed", extra={**fields, "outcome": "processed", "duration_ms": took()})
        finally:
            metrics.in_flight.dec()
            heartbeat.cancel()

    async def _batch(self, delivery: Delivery) -> None:
        """A callback naming a batch of jobs: record it; poll its jobs once (`processors.batches`)."""
        from processors.batches import expand_batch

        summary = await expand_batch(
            self.settings, delivery, self.processor_for(delivery.source), self.queue, self.jobs
        )
        log.info("batch", extra={"delivery_id": delivery.id, "source": delivery.source, **summary})

    def process(self, delivery: Delivery) -> dict[str, Any] | None:
        """Run the processor for ``delivery`` and write its manifest; blocking, raises Retryable/Permanent.

        Returns the manifest, or None when nothing was written (a progress-only delivery, or a
        duplicate whose dedupe key another delivery already owns).
        """
        try:
            if delivery.kind == "state":
                # Progress report (a vendor state that is not final): record it, nothing to fetch.
                self._note_job(delivery, str(delivery.meta.get("job_state", "open")), output=None)
                return None
            if not self.queue.dedupes_on_enqueue and not self._claim(delivery):
                return None
            out = JobWriter(self.store, delivery.output_prefix)
            extra = self.processor_for(delivery.source).process(delivery, out)
            manifest = out.finish(
                {
                    "vendor": delivery.vendor,
                    "source": delivery.source,
                    "project": delivery.project,
                    "job": delivery.job_id,
                    "state": delivery.state,
                    "delivery_id": delivery.id,
                    "dedupe_key": delivery.dedupe_key,
                    "timings": {"received_at": delivery.received_at},
                    "labelhook_version": VERSION,
                    **extra,
                }
            )
            self._note_job(delivery, "completed", output=self.store.describe().rstrip("/") + "/" + out.prefix)
            return manifest
        except StoreError as exc:
            raise (Retryable(exc.reason) if exc.retryable else Permanent(exc.reason)) from exc

    def _note_job(self, delivery: Delivery, state: str, output: str | None) -> None:
        self.jobs.note(
            source=delivery.source,
            vendor=delivery.vendor,
            job_id=delivery.job_id,
            project=delivery.project,
            state=state,
            vendor_state=delivery.state,
            delivery_id=delivery.id,
            output=output,
            at=delivery.received_at,
        )

    def _claim(self, delivery: Delivery) -> bool:
        """Own ``delivery.dedupe_key`` in the store, or find the delivery that owns it.

        The queue cannot tell duplicates apart (SQS delivers at least once, and two callbacks for one
        job arrive as two messages), so the first delivery to create `_claims/<sha256(key)>` owns the
        job's output. Its own redeliveries (retry, lease expiry, replay) carry the same delivery id
        and go on; any other delivery with the key is a duplicate and is acknowledged unprocessed. A
        worker that dies after claiming loses nothing: the owner's message comes back (or sits in the
        dead letters, replayable) with the same id.
        """
        key = f"_claims/{hashlib.sha256(delivery.dedupe_key.encode()).hexdigest()}"
        marker = dump_json({"delivery_id": delivery.id, "dedupe_key": delivery.dedupe_key})
        if self.store.create_exclusive(key, marker):
            return True
        owner = json.loads(self.store.get(key)).get("delivery_id")
        if owner == delivery.id:
            return True
        log.info(
            "duplicate",
            extra={
                "delivery_id": delivery.id,
                "source": delivery.source,
                "job": delivery.job_id,
                "duplicate_of": owner,
                "outcome": "duplicate",
            },
        )
        return False
