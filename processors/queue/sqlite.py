"""The default queue: one SQLite file in WAL mode, leases by visibility deadline, group commit.

Statements are batched by `GroupCommit` (see its module for why they run on the event loop): a burst
of concurrent enqueues shares one transaction and one fsync, and nothing is acknowledged before its
commit returned. Leases mirror SQS: a claim makes a row invisible until ``visible_at``; a receipt
token per claim makes an expired holder's ack a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from processors.delivery import Delivery
from processors.queue.base import (
    DeliveryRecord,
    Enqueued,
    Lease,
    Queue,
    QueueUnavailable,
    RetryPolicy,
)
from processors.queue.group_commit import GroupCommit, connect

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]


_RECORD_COLUMNS = "id, source, vendor, job_id, status, attempts, received_at, updated_at, last_error"
_MAX_BATCH = 1024


def _record(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(*row)


class SQLiteQueue(Queue):
    """Queue in one SQLite file; safe for several processes on one host (web + worker)."""

    def __init__(self, path: str, policy: RetryPolicy | None = None, *, poll_seconds: float = 0.2) -> None:
        super().__init__(policy)
        self.path = path
        self.poll_seconds = poll_seconds
        try:
            self._commits = GroupCommit(connect(path))
        except (OSError, sqlite3.Error) as exc:
            raise QueueUnavailable(f"cannot open {path}: {exc}") from exc
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, policy: RetryPolicy | None = None) -> SQLiteQueue:
        # sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite://:memory:
        rest = url[len("sqlite://") :]
        path = rest[1:] if rest.startswith("/") else rest
        return cls(path or ":memory:", policy)

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise QueueUnavailable("queue is closed")
        result: T = await self._commits.run(op)
        return result

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, delivery: Delivery) -> Enqueued:
        if self._closed:
            raise QueueUnavailable("queue is closed")
        now = time.time()
        row = (
            delivery.id,
            delivery.dedupe_key,
            delivery.source,
            delivery.vendor,
            delivery.job_id,
            delivery.to_json(),
            now,
            delivery.received_at,
            now,
        )
        result = await self._commits.enqueue(row)
        if not result.duplicate:
            self._notify()
        return result

    async def claim(self, max_messages: int, lease_seconds: float, wait_seconds: float) -> list[Lease]:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        deadline = time.monotonic() + wait_seconds
        while True:
            self._wakeup.clear()
            leases = await self._run(lambda conn: self._claim(conn, max_messages, lease_seconds))
            remaining = deadline - time.monotonic()
            if leases or remaining <= 0:
                return leases
            # Woken at once by an enqueue in this process; other processes are seen by polling.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), min(self.poll_seconds, remaining))

    @staticmethod
    def _claim(conn: sqlite3.Connection, max_messages: int, lease_seconds: float) -> list[Lease]:
        now = time.time()
        receipt = uuid.uuid4().hex
        rows = conn.execute(
            "UPDATE deliveries SET status = 'leased', attempts = attempts + 1, visible_at = ?, receipt = ?,"
            " updated_at = ? WHERE id IN (SELECT id FROM deliveries WHERE status IN ('queued', 'leased')"
            " AND visible_at <= ? ORDER BY visible_at LIMIT ?) RETURNING payload, attempts",
            (now + lease_seconds, receipt, now, now, max_messages),
        ).fetchall()
        return [Lease(Delivery.from_json(payload), receipt, attempts) for payload, attempts in rows]

    async def _update_lease(self, lease: Lease, assignments: str, *params: Any) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE deliveries SET {assignments}, updated_at = ? WHERE id = ? AND receipt = ?"
                " AND status = 'leased'",
                (*params, time.time(), lease.delivery.id, lease.receipt),
            )

        await self._run(op)

    async def ack(self, lease: Lease) -> None:
        await self._update_lease(lease, "status = 'done', receipt = NULL, last_error = NULL")

    async def extend(self, lease: Lease, lease_seconds: float) -> None:
        await self._update_lease(lease, "visible_at = ?", time.time() + lease_seconds)

    async def release(self, lease: Lease) -> None:
        # Not an attempt: the worker stopped before finishing, the delivery did nothing wrong.
        await self._update_lease(
            lease,
            "status = 'queued', receipt = NULL, attempts = MAX(attempts - 1, 0), visible_at = ?",
            time.time(),
        )
        self._notify()

    async def _retry(self, lease: Lease, delay: float, reason: str) -> None:
        await self._update_lease(
            lease,
            "status = 'queued', receipt = NULL, visible_at = ?, last_error = ?",
            time.time() + delay,
            reason,
        )

    async def _dead(self, lease: Lease, reason: str) -> None:
        await self._update_lease(lease, "status = 'dead', receipt = NULL, last_error = ?", reason)

    async def dead_letters(self, limit: int = 100) -> list[DeliveryRecord]:
        def op(conn: sqlite3.Connection) -> list[DeliveryRecord]:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE status = 'dead'"
                " ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._run(op)

    async def recent(self, limit: int = 100) -> list[DeliveryRecord]:
        def op(conn: sqlite3.Connection) -> list[DeliveryRecord]:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._run(op)

    async def replay(self, ids: Sequence[str] | None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            now = time.time()
            sql = "UPDATE deliveries SET status = 'queued', attempts = 0, visible_at = ?, updated_at = ?"
            sql += " WHERE status = 'dead'"
            if ids is None:
                return conn.execute(sql, (now, now)).rowcount
            return sum(conn.execute(sql + " AND id = ?", (now, now, i)).rowcount for i in ids)

        count = await self._run(op)
        self._notify()
        return count

    async def depth(self) -> dict[str, int]:
        def op(conn: sqlite3.Connection) -> dict[str, int]:
            # Index-only counts (this runs on every /readyz and metrics scrape): the work set through
            # the partial ready index, dead letters through theirs, and the rest from the rowid, which
            # counts every delivery ever stored because rows are never deleted.
            counts = {"queued": 0, "in_flight": 0, "done": 0, "dead": 0}
            for status, count in conn.execute(
                "SELECT status, COUNT(*) FROM deliveries INDEXED BY deliveries_ready"
                " WHERE status IN ('queued', 'leased') AND visible_at > -1 GROUP BY status"
            ):
                counts["in_flight" if status == "leased" else "queued"] = count
            counts["dead"] = conn.execute(
                "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_dead WHERE status = 'dead'"
            ).fetchone()[0]
            total = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM deliveries").fetchone()[0]
            counts["done"] = max(0, total - counts["queued"] - counts["in_flight"] - counts["dead"])
            return counts

        return await self._run(op)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        if self.path != ":memory:" and not os.access(self.path, os.W_OK):
            raise QueueUnavailable(f"{self.path} is not writable")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._commits.close()
