"""The default queue: one SQLite file in WAL mode, leases by visibility deadline, group commit.

Every statement runs on one writer thread that owns the connection. The thread takes whatever
operations are waiting, runs them in one transaction and commits once (`synchronous=FULL`: the WAL is
fsynced before the commit returns), then wakes each caller. Under load, hundreds of concurrent
`enqueue` calls share one fsync instead of queueing for the write lock one by one; at rest a single
enqueue pays exactly one commit. Nothing is acknowledged to a caller before its commit returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue as stdlib_queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
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

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id          TEXT PRIMARY KEY,
    dedupe_key  TEXT NOT NULL UNIQUE,
    source      TEXT NOT NULL,
    vendor      TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    payload     BLOB NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    visible_at  REAL NOT NULL,
    receipt     TEXT,
    last_error  TEXT,
    received_at REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_ready ON deliveries (visible_at)
    WHERE status IN ('queued', 'leased');
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, updated_at);
"""

_RECORD_COLUMNS = "id, source, vendor, job_id, status, attempts, received_at, updated_at, last_error"
_MAX_BATCH = 1024


def _record(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(*row)


class _Writer(threading.Thread):
    """Owns the connection; runs queued operations in shared transactions (group commit)."""

    def __init__(self, path: str) -> None:
        super().__init__(name="labelhook-sqlite-writer", daemon=True)
        self.path = path
        self.ops: stdlib_queue.SimpleQueue[tuple[Op, asyncio.Future[Any]] | None] = stdlib_queue.SimpleQueue()
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so an acked delivery survives power loss too.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(_SCHEMA)
        return conn

    def run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to the opener, which raises it
            self.startup_error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            while True:
                first = self.ops.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self.ops.get_nowait()
                    except stdlib_queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, _ in batch:
                # A savepoint per operation: one failing operation must not undo its neighbours.
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = QueueUnavailable(f"sqlite: {exc}")
            outcomes = [(False, error)] * len(batch)
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            future.get_loop().call_soon_threadsafe(_settle, future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    elif isinstance(value, sqlite3.Error):
        future.set_exception(QueueUnavailable(f"sqlite: {value}"))
    else:
        future.set_exception(value)


class SQLiteQueue(Queue):
    """Queue in one SQLite file; safe for several processes on one host (web + worker)."""

    def __init__(self, path: str, policy: RetryPolicy | None = None, *, poll_seconds: float = 0.2) -> None:
        super().__init__(policy)
        self.path = path
        self.poll_seconds = poll_seconds
        self._writer = _Writer(path)
        self._writer.start()
        self._writer.ready.wait()
        if self._writer.startup_error is not None:
            raise QueueUnavailable(f"cannot open {path}: {self._writer.startup_error}")
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
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.ops.put((op, future))
        return await future

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, delivery: Delivery) -> Enqueued:
        payload = delivery.to_json()

        def op(conn: sqlite3.Connection) -> Enqueued:
            now = time.time()
            cur = conn.execute(
                "INSERT OR IGNORE INTO deliveries (id, dedupe_key, source, vendor, job_id, payload, status,"
                " attempts, visible_at, received_at, updated_at) VALUES (?,?,?,?,?,?,'queued',0,?,?,?)",
                (
                    delivery.id,
                    delivery.dedupe_key,
                    delivery.source,
                    delivery.vendor,
                    delivery.job_id,
                    payload,
                    now,
                    delivery.received_at,
                    now,
                ),
            )
            if cur.rowcount == 0:
                row = conn.execute(
                    "SELECT id FROM deliveries WHERE dedupe_key = ?", (delivery.dedupe_key,)
                ).fetchone()
                return Enqueued(row[0], duplicate=True)
            return Enqueued(delivery.id, duplicate=False)

        result = await self._run(op)
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
            rows = conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
            counts = {"queued": 0, "in_flight": 0, "done": 0, "dead": 0}
            for status, count in rows:
                counts["in_flight" if status == "leased" else status] = count
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
        self._writer.ops.put(None)
        await asyncio.to_thread(self._writer.join, 10.0)
