"""Group commit for the SQLite queue: many callers, one transaction, one fsync, all off the loop.

A caller's statement joins a pending batch; one commit thread runs the batch — BEGIN IMMEDIATE, each
caller's statements in its own savepoint, COMMIT (`synchronous=FULL`: the WAL is fsynced before it
returns). While that batch runs, new operations pile up for the next one, which starts the moment it
returns — so batches grow with load. The event loop only hands batches over and settles futures: a
lock held by another process (waited for up to `BUSY_TIMEOUT_MS`), a checkpoint, or a large index
step never stalls an acknowledgement. Each caller's future is settled only after its own commit
succeeded.

Callback ingest does not come through here: the receiver acknowledges through the intake journal
(`journal.py`), whose records the queue indexes into the table below in large batches. This carries
the worker's traffic — index + claim, ack, retry, heartbeats, pruning — and the dashboard's and CLI's.
(An earlier design ran the statements on the loop to spare GIL hand-offs, when every enqueue came
through here; with enqueues in the journal, the hand-off is a few per batch.)
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
-- Retention (`SQLiteQueue.prune`) walks finished deliveries oldest first.
CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries (updated_at) WHERE status = 'done';
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
    """Batches statements from concurrent callers into shared transactions on one commit thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._pending: list[_Op] = []
        self._running: asyncio.Future[None] | None = None  # settled when the batch in the thread returns
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="labelhook-commit")

    def run(self, fn: Op) -> asyncio.Future[Any]:
        """Run ``fn(conn)`` (on the commit thread) inside the next batch, in its own savepoint; the
        future holds its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Op(fn, future))
        if self._running is None:
            self._start(loop)
        return future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        self._running = loop.create_future()
        done = self._committer.submit(self._transaction, self.conn, batch)

        def back_on_loop(_: concurrent.futures.Future[list[Outcome]]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone (process exit): nobody is waiting
                loop.call_soon_threadsafe(self._finished, done, loop)

        done.add_done_callback(back_on_loop)

    def _finished(
        self, done: concurrent.futures.Future[list[Outcome]], loop: asyncio.AbstractEventLoop
    ) -> None:
        running, self._running = self._running, None
        # Start the next batch before waking this one's callers: the disk works on batch N+1 while
        # the loop answers batch N.
        if self._pending:
            self._start(loop)
        _settle_all(done.result())
        if running is not None and not running.done():
            running.set_result(None)

    async def aclose(self) -> None:
        """Let the batches in flight and pending finish, then close the connection off the loop."""
        while self._running is not None:
            await asyncio.shield(self._running)
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._committer.shutdown(wait=True)
        self.conn.close()

    @staticmethod
    def _transaction(conn: sqlite3.Connection, batch: list[_Op]) -> list[Outcome]:
        """On the commit thread: BEGIN, the batch's statements, COMMIT. Never raises: on a database
        error the transaction is rolled back and every caller gets `QueueUnavailable`."""
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
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = QueueUnavailable(f"sqlite: {exc}")
            return [(item.future, False, failure) for item in batch]
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
