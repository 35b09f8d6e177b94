"""`open_queue(url)`: pick a queue backend by URL scheme; optional backends are imported lazily."""

from __future__ import annotations

from processors.queue.base import (
    DeliveryRecord,
    Enqueued,
    Lease,
    Queue,
    QueueUnavailable,
    RetryPolicy,
)

__all__ = ["DeliveryRecord", "Enqueued", "Lease", "Queue", "QueueUnavailable", "RetryPolicy", "open_queue"]


def open_queue(url: str, policy: RetryPolicy | None = None) -> Queue:
    """`sqlite:///relative/or//absolute/path.db` (or `sqlite://:memory:`), later `sqs://name`."""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from processors.queue.sqlite import SQLiteQueue

        return SQLiteQueue.from_url(url, policy)
    raise ValueError(f"no queue backend for scheme {scheme!r}")
