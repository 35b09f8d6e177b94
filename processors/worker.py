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
from processors.fleet import Publisher, WorkerStats, worker_id
from processors.jobs import JobBook
from processors.metrics import Metrics
from processors.output_locks import OutputLocks
from processors.queue import Lease, Queue, QueueUnavailable
from processors.store import JobWriter, Store, StoreError, dump_json
from processors.vendors import VENDORS
from processors.vendors.base import Processor
from processors.version import VERSION

T = TypeVar("T")
log = logging.getLogger("labelhook.worker")


def _outcome(delivery: Delivery, manifest: dict[str, Any] | None) -> str:
    """What an acked delivery was: see `processors.fleet.OUTCOMES`."""
    if delivery.kind == "batch":
        return "batch"
    if delivery.kind == "state":
        return "progress"
    return "processed" if manifest is not None else "duplicate"


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
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.drain_seconds = drain_seconds
        self._processors: dict[str, Processor] = dict(processors or {})
        # Processors built here hold this worker's HTTP clients; injected ones are their owner's.
        self._built: list[Processor] = []
        self.jobs = JobBook(store)
        #: One delivery at a time per output set in this process (see docs/delivery.md for fleets).
        self.output_locks = OutputLocks()
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None
        #: Deliveries acked (processed, duplicates, progress reports, batches): for tests and the log.
        self.processed = 0
        #: This worker's books, published to the store for the web (`processors.fleet`).
        self.stats = WorkerStats(name or worker_id())
        self.publisher = Publisher(self.stats, store)
        # The registry `labelhook run` serves; `serve` + `work` export `stats` via the store instead.
        self.metrics = metrics if metrics is not None else Metrics(settings.sources)
        #: Why `run` ended without being asked to (an exception, or a return while not stopping);
        #: `/readyz` fails and the CLI exits non-zero on it, so the platform restarts the process.
        self.failure: str | None = None

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
            self._built.append(processor)
        return processor

    def close(self) -> None:
        """Close the processors (and so the HTTP clients) this worker built; `run` ends with it.

        Idempotent. A processor is built again on the next delivery for its source.
        """
        built, self._built = self._built, []
        for processor in built:
            if self._processors.get(processor.source.name) is processor:
                del self._processors[processor.source.name]
            try:
                processor.close()
            except Exception as exc:  # one bad close must not keep the others' sockets open
                log.warning(
                    "closing a processor failed", extra={"source": processor.source.name, "error": repr(exc)}
                )

    async def run(self) -> None:
        """Claim and process until stopped; then drain, release leftovers, close clients and return.

        Anything that escapes the loop (no single record can: unreadable or failing records become
        retries or dead letters) is recorded in `failure` and re-raised: a dead worker must be seen.
        """
        try:
            await self._run()
        except asyncio.CancelledError:
            if not self.stopping:
                self.failure = "worker task cancelled"
            raise
        except BaseException as exc:
            self.failure = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.critical("worker died", extra={"error": self.failure}, exc_info=True)
            raise
        finally:
            self.close()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # After a crash, temporaries of interrupted writes may be left in job folders: sweep them once.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.sweep_temporary)
        pollers = [asyncio.create_task(self._poll(name)) for name in self.polled_sources()]
        publisher = asyncio.create_task(self.publisher.run(lambda: self.stopping))
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
        publisher.cancel()
        self.stats.stopped_at = self.stats.clock()
        await self.publisher.publish(force=True)

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
        stats, source = self.stats, delivery.source
        started, started_at = time.monotonic(), time.time()

        def took() -> float:
            return round((time.monotonic() - started) * 1000, 1)

        if not await self.queue.check_attempts(lease):
            stats.count(source, "dead")
            log.warning("dead letter", extra={**fields, "outcome": "dead", "duration_ms": took()})
            await self._note_attempt(lease, started_at, "dead", "claimed too often without finishing")
            return
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        stats.in_flight += 1
        try:
            if delivery.kind == "batch":
                await self._batch(delivery)
                manifest = None
            else:
                async with self.output_locks.hold(delivery.output_prefix):
                    manifest = await run_in_daemon_thread(self.process, delivery)
        except asyncio.CancelledError:
            with contextlib.suppress(QueueUnavailable):
                await asyncio.shield(self.queue.release(lease))
            stats.count(source, "released")
            log.info("released", extra={**fields, "outcome": "released", "duration_ms": took()})
            raise
        except Exception as exc:
            failed = await self.queue.fail(lease, exc)
            stats.observe_processing(source, time.monotonic() - started)
            stats.count(source, "dead" if failed == "dead" else "retried")
            await self._note_attempt(lease, started_at, failed, getattr(exc, "reason", repr(exc)))
            log.warning(
                "processing failed",
                extra={
                    **fields,
                    "outcome": failed,
                    "reason": getattr(exc, "reason", repr(exc)),
                    "duration_ms": took(),
                },
            )
        else:
            await self.queue.ack(lease)
            self.processed += 1
            outcome = _outcome(delivery, manifest)
            stats.count(source, outcome)
            if outcome == "processed" and isinstance(manifest, dict):
                # Only real work goes into the timings: a duplicate's 2 ms would flatter them.
                stats.observe_processing(source, time.monotonic() - started)
                stats.observe_latency(source, max(0.0, time.time() - delivery.received_at))
                stats.stored(source, sum(int(f["size"]) for f in manifest.get("files", ())))
            log.info(outcome, extra={**fields, "outcome": outcome, "duration_ms": took()})
            # Ends a history of failures, if there is one (after retries, or a replayed dead letter).
            await self._note_attempt(lease, started_at, outcome, None, only_if_exists=True)
        finally:
            stats.in_flight -= 1
            heartbeat.cancel()

    async def _note_attempt(
        self,
        lease: Lease,
        started_at: float,
        outcome: str,
        reason: str | None,
        *,
        only_if_exists: bool = False,
    ) -> None:
        """Append this attempt to the delivery's history in the store (the dashboard's delivery page)."""
        from processors.history import record_attempt

        entry = {
            "attempt": lease.attempts,
            "started_at": started_at,
            "finished_at": time.time(),
            "outcome": outcome,
            "reason": reason,
            "worker": self.stats.worker,
        }
        try:
            await asyncio.to_thread(
                lambda: record_attempt(
                    self.store, lease.delivery.id, lease.delivery.body, entry, only_if_exists=only_if_exists
                )
            )
        except StoreError as exc:  # the history is for people; the work must go on without it
            log.warning(
                "attempt history not written", extra={"delivery_id": lease.delivery.id, "error": exc.reason}
            )

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
            "dedupe key owned by another delivery",
            extra={
                "delivery_id": delivery.id,
                "source": delivery.source,
                "job": delivery.job_id,
                "duplicate_of": owner,
            },
        )
        return False
