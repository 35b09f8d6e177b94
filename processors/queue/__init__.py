"""`open_queue(url)`: pick a queue backend by URL scheme; optional backends are imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processors.queue.base import (
    DeliveryRecord,
    Enqueued,
    Gauges,
    Lease,
    Pruned,
    Queue,
    QueueUnavailable,
    Retention,
    RetryPolicy,
)

if TYPE_CHECKING:
    from processors.store.base import Store

__all__ = [
    "DeliveryRecord",
    "Enqueued",
    "Gauges",
    "Lease",
    "Pruned",
    "Queue",
    "QueueUnavailable",
    "Retention",
    "RetryPolicy",
    "open_queue",
]


def open_queue(
    url: str,
    policy: RetryPolicy | None = None,
    *,
    endpoint_url: str | None = None,
    store: Store | None = None,
    retention: Retention | None = None,
) -> Queue:
    """`sqlite:///relative/or//absolute/path.db` (or `sqlite://:memory:`), `sqs://NAME`, `sqs+https://…`.

    For SQS, ``endpoint_url`` is passed to boto3 (moto in tests) and ``store`` receives bodies too large
    for an SQS message; web and worker must be given the same store. ``retention`` applies to SQLite
    (SQS expires messages itself).
    """
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from processors.queue.sqlite import SQLiteQueue

        return SQLiteQueue.from_url(url, policy, retention=retention)
    if scheme in ("sqs", "sqs+https", "sqs+http"):
        from processors.queue.sqs import SQSQueue

        return SQSQueue.from_url(url, policy, endpoint_url=endpoint_url, store=store)
    raise ValueError(f"no queue backend for scheme {scheme!r}")
