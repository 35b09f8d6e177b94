"""Polling: ask the vendor about open jobs and enqueue the finished ones, exactly once.

The only path for vendors without callbacks (seed 001) and a safety net for missed callbacks
elsewhere. A finished job becomes a delivery whose dedupe key is `<source>:<job>:completed`, so a job
seen as finished by two polls (or by a poll and a late callback carrying the same key) is processed
once; the job record also remembers that it was enqueued, so later polls skip it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from processors.config import Settings
from processors.delivery import Delivery, new_delivery_id
from processors.errors import ProcessingError, Retryable
from processors.jobs import JobBook, JobRecord
from processors.queue import Queue
from processors.vendors.base import Processor

log = logging.getLogger("labelhook.poll")


def completion_key(source: str, job_id: str) -> str:
    """The dedupe key of a job's completion, shared by callbacks and polls of the same vendor."""
    return f"{source}:{job_id}:completed"


@dataclass
class PollSummary:
    checked: int = 0
    still_open: int = 0
    enqueued: int = 0
    failed: int = 0
    stuck: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retry_after: float | None = None


async def poll_source(
    settings: Settings,
    source_name: str,
    processor: Processor,
    queue: Queue,
    book: JobBook,
    *,
    on_job: Callable[[JobRecord], None] | None = None,
    clock: Callable[[], float] = time.time,
    only: Collection[str] | None = None,
) -> PollSummary:
    """One pass over the open jobs of ``source_name`` (or of those among ``only``, e.g. one batch's)."""
    source = settings.sources[source_name]
    deadline = source.deadline_seconds
    summary = PollSummary()
    if only is None:
        records = await asyncio.to_thread(book.list, source_name)
    else:  # read just those records: a batch is small, the book may hold every job ever submitted
        found = [await asyncio.to_thread(book.get, source_name, job_id) for job_id in only]
        records = [record for record in found if record is not None]
    jobs = [j for j in records if j.open and not j.enqueued]
    for job in jobs:
        summary.checked += 1
        try:
            result = await asyncio.to_thread(processor.poll, job)
        except ProcessingError as exc:
            summary.errors.append(f"{job.job_id}: {exc.reason}")
            if isinstance(exc, Retryable):
                # The vendor is throttling or down: stop this pass, come back after its Retry-After.
                summary.retry_after = exc.retry_after or settings.poll_interval_seconds
                break
            continue
        finally:
            if on_job is not None:
                on_job(job)
        now = clock()
        note = functools.partial(
            book.note,
            source=source_name,
            vendor=source.vendor,
            job_id=job.job_id,
            project=job.project,
            vendor_state=result.vendor_state,
            at=now,
        )
        if result.state == "completed":
            delivery = Delivery(
                id=new_delivery_id(),
                source=source_name,
                vendor=source.vendor,
                dedupe_key=completion_key(source_name, job.job_id),
                job_id=job.job_id,
                project=job.project,
                body=result.body,
                received_at=now,
                state="completed",
                kind="poll",
            )
            enqueued = await queue.enqueue(delivery)
            await asyncio.to_thread(note, state="completed", enqueued=True, delivery_id=enqueued.delivery_id)
            summary.enqueued += 0 if enqueued.duplicate else 1
        elif result.state == "failed":
            await asyncio.to_thread(note, state="failed", reason=result.reason or result.vendor_state)
            summary.failed += 1
            log.warning(
                "job failed at vendor",
                extra={"source": source_name, "job": job.job_id, "reason": result.reason},
            )
        else:
            summary.still_open += 1
            stuck = now - job.created_at > deadline
            if stuck:
                summary.stuck.append(job.job_id)
                log.warning(
                    "job past its deadline",
                    extra={"source": source_name, "job": job.job_id, "age_s": round(now - job.created_at)},
                )
            await asyncio.to_thread(note, state="open", reason="past deadline" if stuck else None)
    return summary


async def poll_forever(
    settings: Settings,
    source_name: str,
    processor: Processor,
    queue: Queue,
    book: JobBook,
    stopping: Callable[[], bool],
) -> None:
    """The poller inside `work`/`run`: one pass per interval, jittered, backing off on 429/5xx."""
    base = settings.sources[source_name].poll_interval_seconds
    delay = base
    while not stopping():
        summary: PollSummary | None = None
        try:
            summary = await poll_source(settings, source_name, processor, queue, book)
            delay = (
                max(base, summary.retry_after or 0)
                if summary.retry_after is None
                else min(max(delay * 2, summary.retry_after), 3600)
            )
        except Exception:  # the poller must outlive any one bad pass
            log.exception("poll pass failed", extra={"source": source_name})
            delay = min(delay * 2, 3600)
        # Jitter so that many sources (or many workers) do not poll the vendor in lockstep, but never
        # below the vendor's Retry-After: jitter must not turn a backoff into an early retry.
        wait = delay * random.uniform(0.8, 1.2)
        if summary is not None and summary.retry_after is not None:
            wait = max(wait, summary.retry_after)
        end = time.monotonic() + wait
        while not stopping() and time.monotonic() < end:
            await asyncio.sleep(min(0.5, end - time.monotonic()))
