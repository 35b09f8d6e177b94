"""The queue and store every command that touches jobs opens, from the one validated `Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from processors.config import Settings

if TYPE_CHECKING:
    from processors.queue import Queue
    from processors.store import Store


class NoQueue(Exception):
    """A command that reads the queue found none where the configuration points."""


def open_backends(settings: Settings, *, existing: bool = False) -> tuple[Queue, Store]:
    """The configured queue and store; the queue keeps large SQS payloads in that store.

    ``existing``: commands that only read the queue (`dead`) must not create an empty SQLite
    database where none was (a `dead list` in the wrong directory would otherwise answer "none"
    from a queue it just made); they raise `NoQueue` naming where they looked. SQS never creates.
    """
    from processors.queue import Retention, RetryPolicy, open_queue
    from processors.store import open_store

    if existing and settings.queue_url.startswith("sqlite:"):
        from processors.queue.sqlite import SQLiteQueue

        path = SQLiteQueue.path_of(settings.queue_url)
        if path != ":memory:" and not Path(path).is_file():
            raise NoQueue(
                f"no queue at {Path(path).absolute()} (LABELHOOK_QUEUE={settings.queue_url}); "
                "run this where `labelhook run` or `serve` runs, or set LABELHOOK_QUEUE"
            )
    policy = RetryPolicy(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
    retention = Retention(settings.body_retention_seconds, settings.row_retention_seconds)
    store = open_store(settings.store_url, endpoint_url=settings.aws_endpoint_url)
    # The store also holds SQS payloads too large for a message: web and worker must share it.
    queue = open_queue(
        settings.queue_url, policy, endpoint_url=settings.aws_endpoint_url, store=store, retention=retention
    )
    return queue, store
