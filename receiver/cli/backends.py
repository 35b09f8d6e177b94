"""The queue and store every command that touches jobs opens, from the one validated `Settings`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processors.config import Settings

if TYPE_CHECKING:
    from processors.queue import Queue
    from processors.store import Store


def open_backends(settings: Settings) -> tuple[Queue, Store]:
    """The configured queue and store; the queue keeps large SQS payloads in that store."""
    from processors.queue import Retention, RetryPolicy, open_queue
    from processors.store import open_store

    policy = RetryPolicy(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
    retention = Retention(settings.body_retention_seconds, settings.row_retention_seconds)
    store = open_store(settings.store_url, endpoint_url=settings.aws_endpoint_url)
    # The store also holds SQS payloads too large for a message: web and worker must share it.
    queue = open_queue(
        settings.queue_url, policy, endpoint_url=settings.aws_endpoint_url, store=store, retention=retention
    )
    return queue, store
