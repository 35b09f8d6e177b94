"""Group commit for the SQLite queue: many callers, one transaction, one fsync.

A caller's statement joins a pending batch; a flush runs the batch's statements on the event loop
thread and hands only the COMMIT (`synchronous=FULL`: the WAL is fsynced before it returns) to one
commit thread. While that commit is on disk, new operations pile up for the next batch, which starts
the moment the commit returns — so batches grow with load and the loop never waits for the disk. Each
caller's future is settled only after its own commit succeeded.

Callback ingest does not come through here: the receiver acknowledges through the intake journal
(`journal.py`), whose records the queue indexes into the table below in large batches. This carries
the worker's traffic — index + claim, ack, retry, heartbeats — and the dashboard's and CLI's.

Why not run everything on a writer thread: a thread that touches Python objects between SQLite calls
fights the event loop for the GIL at every statement; measured, that capped throughput at a fifth of
this design (bench/ingest.py, when enqueues still came this way). Here the commit thread takes the
GIL twice per batch. A lock held by another process is waited for at most `BUSY_TIMEOUT_MS` inside
BEGIN on the loop, then the batch fails with `QueueUnavailable`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processors.queue.base import QueueUnavailable

Op = Callable[[sqlite3.Connection], Any]
Outcome = tuple["asyncio.Future[Any]", bool, Any]
BUSY_TIMEOUT_MS = 2000

SCHEMA = """
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
-- Only dead letters need an index by status: a full (status, …) index costs every insert ~20% more
-- (bench) for a listing that only ever asks for the dead ones.
DROP INDEX IF EXISTS deliveries_status;
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (updated_at) WHERE status = 'dead';
-- How far each intake-journal segment has been indexed into `deliveries` (bytes; -1: all of it).
CREATE TABLE IF NOT EXISTS journal (
    segment TEXT PRIMARY KEY,
    offset  INTEGER NOT NULL
);
"""


class _Op:
    """Statement(s) of one caller: a function of the connection, run inside its own savepoint."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Op, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


def connect(path: str) -> sqlite3.Connection:
    """Open (and create) the queue database: WAL, fsync at every commit, the schema in place."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acked delivery survives power loss too.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.executescript(SCHEMA)
    return conn


class GroupCommit:
    """Batches statements from concurrent callers into shared transactions, pipelined with the fsync.

    The statements of a batch run on the event loop (cheap CPU work, no GIL hand-offs); only the
    COMMIT — the fsync, which releases the GIL — runs on a dedicated thread. While it is on disk the
    loop keeps verifying and collecting the next batch, which starts as soon as the commit returns.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._pending: list[_Op] = []
        self._scheduled: asyncio.Handle | None = None
        self._committing: concurrent.futures.Future[None] | None = None
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="labelhook-commit")

    def run(self, fn: Op) -> asyncio.Future[Any]:
        """Run ``fn(conn)`` inside the next batch (in its own savepoint); the future holds its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._add(_Op(fn, future))
        return future

    def _add(self, item: _Op) -> None:
        self._pending.append(item)
        if self._scheduled is None and self._committing is None:
            self._scheduled = item.future.get_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        if self._committing is not None or not self._pending:
            return
        batch, self._pending = self._pending, []
        outcomes = self._execute(self.conn, batch)
        if outcomes is None:  # the batch failed before COMMIT; every caller has its error already
            self._kick(batch[0].future.get_loop())
            return
        loop = batch[0].future.get_loop()
        self._committing = self._committer.submit(self._commit)

        def back_on_loop(done: concurrent.futures.Future[None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone (process exit): nobody is waiting
                loop.call_soon_threadsafe(self._committed, done, batch, outcomes, loop)

        self._committing.add_done_callback(back_on_loop)

    def _commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise

    def _committed(
        self,
        done: concurrent.futures.Future[None],
        batch: list[_Op],
        outcomes: list[Outcome],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._committing = None
        error = done.exception()
        if error is not None:
            failure = QueueUnavailable(f"sqlite: {error}")
            outcomes = [(item.future, False, failure) for item in batch]
        # Start the next commit before waking this batch's callers: the disk works on batch N+1 while
        # the loop sends batch N's responses.
        if self._pending and self._scheduled is None:
            self._flush()
        _settle_all(outcomes)
        self._kick(loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending and self._scheduled is None and self._committing is None:
            self._scheduled = loop.call_soon(self._flush)

    def close(self) -> None:
        """Finish the commit in flight and whatever is pending, then close (blocking)."""
        if self._committing is not None:
            self._committing.result()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._pending:
            batch, self._pending = self._pending, []
            outcomes = self._execute(self.conn, batch)
            if outcomes is not None:
                try:
                    self._commit()
                except sqlite3.Error as exc:
                    failure = QueueUnavailable(f"sqlite: {exc}")
                    outcomes = [(item.future, False, failure) for item in batch]
                _settle_all(outcomes)
        self._committer.shutdown(wait=True)
        self.conn.close()

    @classmethod
    def _execute(cls, conn: sqlite3.Connection, batch: list[_Op]) -> list[Outcome] | None:
        """BEGIN and run the batch's statements (no COMMIT). On a database error, roll back, fail every
        caller and return None."""
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                # A savepoint per operation: one failing operation must not undo its neighbours.
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((item.future, True, item.fn(conn)))
                    conn.execute("RELEASE op")
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((item.future, False, exc))
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = QueueUnavailable(f"sqlite: {exc}")
            _settle_all([(item.future, False, failure) for item in batch])
            return None
        return outcomes


def _settle_all(outcomes: list[Outcome]) -> None:
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        elif isinstance(value, sqlite3.Error):
            future.set_exception(QueueUnavailable(f"sqlite: {value}"))
        else:
            future.set_exception(value)
