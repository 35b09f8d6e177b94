"""Batch deliveries: a vendor callback that names a batch of jobs, not a job (super.AI v2).

The batch itself is recorded in the job book (``batch:<id>``, a terminal state so the poller never
asks the vendor about it). When the vendor reports the batch ingested, its jobs are looked up, each
recorded as an open job of the source, and polled once at once: the finished ones are enqueued under
their own completion key — the key their own callbacks and the poller use — so each job's output set
is written exactly once whichever arrives first. Jobs still open are left to their own callbacks and
to the poller. Re-running a batch delivery is harmless: recorded jobs are updated, enqueued jobs
skipped, and the queue (or the worker's claim) deduplicates on the completion key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from processors.config import Settings
from processors.delivery import Delivery
from processors.errors import Retryable
from processors.jobs import JobBook
from processors.polling import poll_source
from processors.queue import Queue
from processors.vendors.base import Processor

#: Batch states after which the batch's jobs exist at the vendor (all, or some of them).
INGESTED_STATES = frozenset({"completed", "partial_failure"})


def batch_record_id(batch_id: str) -> str:
    """The job-book id of a batch: prefixed, so it never collides with a job id."""
    return f"batch:{batch_id}"


async def expand_batch(
    settings: Settings, delivery: Delivery, processor: Processor, queue: Queue, book: JobBook
) -> dict[str, Any]:
    """Record the batch, and for an ingested batch record and poll its jobs; returns a summary.

    Raises `Retryable` when the vendor throttled or failed while its jobs were being polled (the
    delivery comes back later and carries on where it stopped), `Permanent` from the lookup.
    """
    batch_id = str(delivery.meta.get("batch_id") or delivery.job_id)
    batch_state = str(delivery.meta.get("batch_state") or delivery.state or "")
    record = batch_record_id(batch_id)

    async def note(job_id: str, state: str, meta: dict[str, Any], **extra: Any) -> None:
        # Every job-book entry of this delivery names the same source, vendor, project and time.
        await asyncio.to_thread(
            book.note,
            source=delivery.source,
            vendor=delivery.vendor,
            job_id=job_id,
            project=delivery.project,
            state=state,
            meta=meta,
            at=delivery.received_at,
            **extra,
        )

    if batch_state.lower() not in INGESTED_STATES:
        await note(
            record,
            "failed",
            {"batch": batch_id},
            vendor_state=batch_state,
            delivery_id=delivery.id,
            reason=f"batch {batch_state}",
        )
        return {"batch": batch_id, "state": batch_state, "jobs": 0}
    job_ids = await asyncio.to_thread(processor.batch_jobs, delivery)
    for job_id in job_ids:
        existing = await asyncio.to_thread(book.get, delivery.source, job_id)
        if existing is None:
            await note(job_id, "open", {"batch": batch_id})
    summary = await poll_source(settings, delivery.source, processor, queue, book, only=job_ids)
    if summary.retry_after is not None:
        raise Retryable(
            f"batch {batch_id}: the vendor is throttling or failing ({'; '.join(summary.errors)[:300]})",
            retry_after=summary.retry_after,
        )
    await note(
        record,
        "completed",
        {"batch": batch_id, "jobs": job_ids},
        vendor_state=batch_state,
        delivery_id=delivery.id,
    )
    return {
        "batch": batch_id,
        "state": batch_state,
        "jobs": len(job_ids),
        "enqueued": summary.enqueued,
        "failed": summary.failed,
        "open": summary.still_open,
        "errors": summary.errors,
    }
