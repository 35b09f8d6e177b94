"""Group commit for the SQLite queue: many callers, one transaction, one fsync.

Statements run on the event loop thread itself. A caller's statement joins a pending batch and a
flush is scheduled for the next turn of the loop; the flush runs the whole batch in one transaction
and commits once (`synchronous=FULL`: the WAL is fsynced before COMMIT returns), then settles every
caller's future. While a commit is on disk, new requests pile up in the sockets, so the next batch is
bigger exactly when load is higher. At rest a single enqueue pays one commit.

Why not a writer thread: a thread that touches Python objects between SQLite calls fights the event
loop for the GIL, and each hand-over can wait for the interpreter's 5 ms switch interval; measured,
that capped ingest at a fifth of what the inline commit reaches (see bench/ingest.py). The price of
inline commits is that the loop is blocked for the length of one commit (well under a millisecond on
local disk); a lock held by another process is waited for at most `BUSY_TIMEOUT_MS`, then the batch
fails with `QueueUnavailable` (the receiver answers 503 and the vendor retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processors.queue.base import Enqueued, QueueUnavailable

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
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, updated_at);
"""

_INSERT = (
    "INSERT INTO deliveries (id, dedupe_key, source, vendor, job_id, payload, status, attempts, visible_at,"
    " received_at, updated_at) VALUES (?,?,?,?,?,?,'queued',0,?,?,?)"
)


class _Enqueue:
    """An enqueue waiting for the writer: the row to insert, its dedupe key, its caller's future."""

    __slots__ = ("future", "key", "row")

    def __init__(self, row: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.row = row
        self.key: str = row[1]
        self.future = future


class _Op:
    """Any other statement(s): a function of the connection, run inside its own savepoint."""

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
    """Batches statements from concurrent callers into shared transactions on the event loop."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._pending: list[_Enqueue | _Op] = []
        self._scheduled: asyncio.Handle | None = None

    def enqueue(self, row: tuple[Any, ...]) -> asyncio.Future[Enqueued]:
        """Insert a delivery row unless its dedupe key exists; the future says which."""
        future: asyncio.Future[Enqueued] = asyncio.get_running_loop().create_future()
        self._add(_Enqueue(row, future))
        return future

    def run(self, fn: Op) -> asyncio.Future[Any]:
        """Run ``fn(conn)`` inside the next batch (in its own savepoint); the future holds its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._add(_Op(fn, future))
        return future

    def _add(self, item: _Enqueue | _Op) -> None:
        self._pending.append(item)
        if self._scheduled is None:
            self._scheduled = item.future.get_loop().call_soon(self._flush)

    def _flush(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], None
        _settle_all(self._run_batch(self.conn, batch))

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._flush()
        self.conn.close()

    @classmethod
    def _run_batch(cls, conn: sqlite3.Connection, batch: list[_Enqueue | _Op]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            enqueues = [item for item in batch if isinstance(item, _Enqueue)]
            if enqueues:
                outcomes.extend(cls._insert(conn, enqueues))
            for item in batch:
                if isinstance(item, _Op):
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
            error = QueueUnavailable(f"sqlite: {exc}")
            outcomes = [(item.future, False, error) for item in batch]
        return outcomes

    @staticmethod
    def _insert(conn: sqlite3.Connection, enqueues: list[_Enqueue]) -> list[Outcome]:
        """Insert a batch of deliveries with two statements, reporting duplicates of existing keys.

        We hold the write lock (BEGIN IMMEDIATE), so no other process can insert a key between the
        SELECT and the INSERT; duplicates inside the batch are resolved here, first one wins.
        """
        keys = list({item.key for item in enqueues})
        seen: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            placeholders = ",".join("?" * len(chunk))
            seen.update(
                conn.execute(
                    f"SELECT dedupe_key, id FROM deliveries WHERE dedupe_key IN ({placeholders})",
                    chunk,
                ).fetchall()
            )
        rows = []
        outcomes: list[Outcome] = []
        for item in enqueues:
            existing = seen.get(item.key)
            if existing is None:
                seen[item.key] = item.row[0]
                rows.append(item.row)
                outcomes.append((item.future, True, Enqueued(item.row[0], duplicate=False)))
            else:
                outcomes.append((item.future, True, Enqueued(existing, duplicate=True)))
        conn.executemany(_INSERT, rows)
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
