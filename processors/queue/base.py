"""The queue interface and the delivery policy every backend shares.

Backends only persist; the policy lives here (saq's shape): how many attempts, how long to back off,
when a failure becomes a dead letter. The interface is the honest intersection of SQLite and SQS:
messages become invisible for a lease when claimed, reappear when the lease runs out, carry a receive
count, can be claimed in batches and acknowledged or released individually.

Guarantees a backend must give:
- `enqueue` returns only once the delivery is durable (the receiver acks after it), and is idempotent
  per ``dedupe_key``: the second enqueue of a key returns ``duplicate=True`` and stores nothing.
- A claimed delivery is invisible to other claimers until its lease expires, is acked, or is released.
- An ack or retry with a stale lease (one that expired and was claimed again) changes nothing.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from processors.delivery import Delivery
from processors.errors import Permanent, ProcessingError, Retryable


class QueueUnavailable(Exception):
    """The queue cannot take or give work right now (disk full, database locked, network down)."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    delivery_id: str
    duplicate: bool


@dataclass(frozen=True)
class Lease:
    """A claimed delivery. ``receipt`` identifies this claim; ``attempts`` counts claims so far."""

    delivery: Delivery
    receipt: str
    attempts: int


@dataclass(frozen=True)
class DeliveryRecord:
    """One row of the delivery log, for `labelhook dead list` and the dashboard."""

    id: str
    source: str
    vendor: str
    job_id: str
    status: str
    attempts: int
    received_at: float
    updated_at: float
    last_error: str | None


@dataclass(frozen=True)
class Retention:
    """How long finished deliveries keep their bodies, and their rows (the dedupe horizon).

    A repeat of a dedupe key is recognised for as long as its row exists: ``rows_seconds`` after the
    delivery finished. Dead letters are kept, with their bodies, until replayed.
    """

    bodies_seconds: float = 7 * 86400.0
    rows_seconds: float = 30 * 86400.0


@dataclass(frozen=True)
class Pruned:
    """What one `Queue.prune` removed."""

    bodies: int = 0
    rows: int = 0


@dataclass(frozen=True)
class Gauges:
    """Figures cheap enough to read every second for `/readyz` and `/metrics`: never a write lock.

    ``depth`` counts deliveries the backend has indexed (for SQLite: not yet those still only in the
    intake journal); ``disk_bytes`` is what the queue holds on local disk (None: not local);
    ``problem`` says why the queue cannot take work right now (None: it can).
    """

    depth: dict[str, int]
    disk_bytes: int | None = None
    problem: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; `max_attempts` claims before a dead letter."""

    max_attempts: int = 8
    base_seconds: float = 2.0
    max_seconds: float = 600.0

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        # Full jitter spreads a burst of failures so they do not retry in lockstep.
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_seconds))
        return delay


class Queue(ABC):
    """A durable, at-least-once delivery queue with leases, retries and dead letters."""

    #: True when `enqueue` itself rejects a second delivery with the same dedupe key (SQLite's unique
    #: index). When False (SQS), the worker claims each dedupe key in the store before processing.
    dedupes_on_enqueue = True

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()

    @abstractmethod
    async def enqueue(self, delivery: Delivery) -> Enqueued:
        """Store ``delivery`` durably (or report it as a duplicate of its ``dedupe_key``)."""

    @abstractmethod
    async def claim(self, max_messages: int, lease_seconds: float, wait_seconds: float) -> list[Lease]:
        """Claim up to ``max_messages`` visible deliveries, waiting up to ``wait_seconds`` for one."""

    @abstractmethod
    async def ack(self, lease: Lease) -> None:
        """The delivery is processed: remove it from the work set."""

    @abstractmethod
    async def extend(self, lease: Lease, lease_seconds: float) -> None:
        """Push the lease deadline ``lease_seconds`` from now (heartbeat for long jobs)."""

    @abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give the delivery back unprocessed (shutdown): visible again at once."""

    @abstractmethod
    async def _retry(self, lease: Lease, delay: float, reason: str) -> None:
        """Make the delivery visible again after ``delay`` seconds, recording ``reason``."""

    @abstractmethod
    async def _dead(self, lease: Lease, reason: str) -> None:
        """Move the delivery to the dead letters with ``reason``."""

    @abstractmethod
    async def dead_letters(self, limit: int = 100) -> list[DeliveryRecord]:
        """Dead letters, newest first."""

    @abstractmethod
    async def replay(self, ids: Sequence[str] | None) -> int:
        """Re-queue the given dead letters (all when ``ids`` is None) with a fresh attempt count."""

    @abstractmethod
    async def recent(self, limit: int = 100) -> list[DeliveryRecord]:
        """The delivery log, newest first."""

    @abstractmethod
    async def depth(self) -> dict[str, int]:
        """Counts by status (at least ``queued``, ``in_flight``, ``dead``)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `QueueUnavailable` unless the queue can take work."""

    async def gauges(self) -> Gauges:
        """Cheap figures for readiness and metrics (default: `depth`, and `ping` for the problem)."""
        try:
            await self.ping()
        except QueueUnavailable as exc:
            return Gauges({}, problem=str(exc))
        return Gauges(await self.depth())

    async def stored(self, delivery_id: str) -> Delivery | None:
        """The delivery as enqueued (head and body) while the queue still keeps it, else None: for the
        dashboard's delivery page. A backend that cannot look messages up by id (SQS) answers None."""
        return None

    async def prune(self, now: float | None = None) -> Pruned:
        """Apply the retention: drop bodies, then rows, of deliveries finished long enough ago. A
        backend whose store expires messages itself (SQS) has nothing to do."""
        return Pruned()

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    async def fail(self, lease: Lease, error: BaseException) -> str:
        """Apply the retry policy to a failed attempt; return ``"retry"`` or ``"dead"``."""
        reason = error.reason if isinstance(error, ProcessingError) else f"{type(error).__name__}: {error}"
        if isinstance(error, Permanent):
            await self._dead(lease, reason)
            return "dead"
        if lease.attempts >= self.policy.max_attempts:
            await self._dead(lease, f"gave up after {lease.attempts} attempts: {reason}")
            return "dead"
        retry_after = error.retry_after if isinstance(error, Retryable) else None
        await self._retry(lease, self.policy.delay(lease.attempts, retry_after), reason)
        return "retry"

    async def check_attempts(self, lease: Lease) -> bool:
        """Dead-letter a delivery claimed more often than allowed without an outcome.

        A delivery that crashes its worker (OOM, SIGKILL) never reaches `fail`; its lease just expires.
        Counting claims catches such poison deliveries. Returns True when the lease may be processed.
        """
        if lease.attempts > self.policy.max_attempts:
            await self._dead(lease, f"claimed {lease.attempts - 1} times without finishing (worker crashed?)")
            return False
        return True
