"""The default queue: one SQLite file in WAL mode, an intake journal beside it, leases, group commit.

Enqueue (the receiver's ack path) appends the delivery to the intake journal (`journal.py`): one
durable (`O_DSYNC`) write per batch of concurrent callers, and the caller returns only after its
batch is on disk. Readers of the queue — the worker's claim first of all, but also depth, listings and
replay — index the journal into the `deliveries` table before they look, in large transactions on
their own side. So the expensive part of SQLite (B-tree, unique dedupe index, WAL, checkpoints) is
paid off the ack path, and a worker's long transaction can never stall an acknowledgement.

Dedupe stays exact where it matters: the table's unique key admits one row per ``dedupe_key``, so a
key is processed once however often it arrives. The answer at ack time (``duplicate=True``) comes from
a window of this process's newest keys (`RECENT_KEYS`, seeded from the table when the process starts)
with no SQLite read per request; a repeat outside it — older than the window, or written by another
process and not yet indexed — is journalled again and dropped when indexed (answered 202, processed
once).

Nothing here blocks the event loop: statements are batched by `GroupCommit` onto its commit thread,
the journal is written by its writer thread, and file housekeeping goes through `asyncio.to_thread`.
Leases mirror SQS: a claim makes a row invisible until ``visible_at``; a receipt token per claim makes
an expired holder's ack a no-op.

Disk stays bounded (`prune`, run by claimers every `PRUNE_SECONDS` and by `labelhook prune`): finished
deliveries lose their bodies after ``Retention.bodies_seconds`` and their rows after
``Retention.rows_seconds`` — the dedupe horizon; indexed journal segments are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from processors.delivery import Delivery
from processors.queue import journal
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
from processors.queue.group_commit import GroupCommit, connect

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
log = logging.getLogger("labelhook.queue")

_RECORD_COLUMNS = "id, source, vendor, job_id, status, attempts, received_at, updated_at, last_error"
_INSERT = (
    "INSERT OR IGNORE INTO deliveries (id, dedupe_key, source, vendor, job_id, payload, status, attempts,"
    " visible_at, received_at, updated_at) VALUES (?,?,?,?,?,?,'queued',0,?,?,?)"
)
#: Journal records indexed per transaction: big enough to amortise the commit, small enough that one
#: indexing step holds the event loop for a few milliseconds (the worker shares it under `run`).
INDEX_BATCH = 256
#: How often a caught-up reader looks for segments a writer abandoned mid-creation (`journal.abandoned`).
SWEEP_SECONDS = 60.0
#: Dedupe keys this process remembers for its ack-time answer (~200 bytes each): the window in which a
#: repeat is answered "duplicate" without touching SQLite. Older repeats are dropped when indexed.
RECENT_KEYS = 65_536
#: How often a claimer applies the retention (at most; a shorter body retention prunes more often).
PRUNE_SECONDS = 600.0
#: Rows touched per prune transaction: the commit thread holds the write lock for one chunk at a time.
PRUNE_CHUNK = 2000


def _record(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(*row)


def _row(record: bytes, now: float) -> tuple[Any, ...]:
    """The `deliveries` row for one journal record (`Delivery.to_record`; the payload is stored as is)."""
    head = json.loads(record.partition(b"\n")[0])
    return (
        head["id"],
        head["dedupe_key"],
        head["source"],
        head["vendor"],
        head["job_id"],
        record,
        head["received_at"],  # visible from arrival: claims follow arrival order
        head["received_at"],
        now,
    )


class SQLiteQueue(Queue):
    """Queue in one SQLite file plus its journal; safe for several processes on one host."""

    def __init__(
        self,
        path: str,
        policy: RetryPolicy | None = None,
        *,
        poll_seconds: float = 0.2,
        recent_keys: int = RECENT_KEYS,
        retention: Retention | None = None,
        journal_disk: journal.Disk | None = None,
        durable_timeout: float = journal.DURABLE_TIMEOUT,
    ) -> None:
        super().__init__(policy)
        self._scratch: str | None = None
        if path == ":memory:":
            # The journal needs a directory and readers a shared file: a private temporary database
            # keeps `sqlite://:memory:` what it promises (nothing outlives the process).
            self._scratch = tempfile.mkdtemp(prefix="labelhook-queue-")
            path = os.path.join(self._scratch, "queue.db")
        self.path = path
        self.journal_dir = Path(path + "-intake")  # not "-journal": that name is SQLite's own
        self.poll_seconds = poll_seconds
        try:
            self._commits = GroupCommit(connect(path))
            # The enqueue side reads through its own connection: the writer's may be mid-COMMIT on
            # the commit thread, and an ack must never wait for that fsync.
            self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._journal = journal.JournalWriter(
                self.journal_dir, disk=journal_disk, durable_timeout=durable_timeout
            )
        except (OSError, sqlite3.Error) as exc:
            raise QueueUnavailable(f"cannot open {path}: {exc}") from exc
        # dedupe key → (delivery id, journal batch) for this process's newest deliveries; loaded from
        # the table at the first enqueue (a worker-only process never pays for it).
        self._recent: dict[str, tuple[str, int]] | None = None
        self._recent_order: deque[str] = deque()
        self._recent_keys = recent_keys
        self._recent_loading: asyncio.Future[None] | None = None
        self._reader_lock = threading.Lock()  # the reader connection is used from worker threads
        self.retention = retention or Retention()
        self._pruned_at = time.monotonic()  # a claimer prunes once `_prune_every` has passed
        self._swept_at = -SWEEP_SECONDS  # monotonic time of the last sweep: the first reader sweeps
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    @staticmethod
    def path_of(url: str) -> str:
        """The database path of `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or
        ``:memory:`` for `sqlite://:memory:`."""
        rest = url[len("sqlite://") :]
        return (rest[1:] if rest.startswith("/") else rest) or ":memory:"

    @classmethod
    def from_url(
        cls, url: str, policy: RetryPolicy | None = None, *, retention: Retention | None = None
    ) -> SQLiteQueue:
        return cls(cls.path_of(url), policy, retention=retention)

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise QueueUnavailable("queue is closed")
        result: T = await self._commits.run(op)
        return result

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, delivery: Delivery) -> Enqueued:
        recent = self._recent
        if recent is None:
            recent = await self._load_recent()
        key = delivery.dedupe_key
        known = recent.get(key)
        if known is not None:
            first_id, batch = known
            try:
                await self._journal.wait(batch)  # a repeat is acknowledged no earlier than the first
            except journal.JournalError as exc:
                raise QueueUnavailable(str(exc)) from exc
            return Enqueued(first_id, duplicate=True)
        if self._closed:
            raise QueueUnavailable("queue is closed")
        try:
            batch, written = self._journal.append(delivery.to_record())
        except journal.JournalError as exc:  # a write is stalled past its deadline: fail fast
            raise QueueUnavailable(str(exc)) from exc
        # Remember the key (no future kept: nothing here for the GC to chase); the oldest leaves the
        # window — indexed by then in all likelihood, and if not, indexing still drops a repeat.
        recent[key] = (delivery.id, batch)
        order = self._recent_order
        order.append(key)
        if len(order) > self._recent_keys:
            recent.pop(order.popleft(), None)
        try:
            await written
        except journal.JournalError as exc:
            if recent.get(key) == (delivery.id, batch):
                del recent[key]  # not stored: a retry of this key must be written afresh
            raise QueueUnavailable(str(exc)) from exc
        self._notify()
        return Enqueued(delivery.id, duplicate=False)

    async def _load_recent(self) -> dict[str, tuple[str, int]]:
        """Seed the window of recent keys from the newest indexed rows (they are durable: batch -1),
        so a vendor retrying across a restart still hears "duplicate". Read once, off the loop; the
        first callers all wait for that one read."""
        if self._closed:
            raise QueueUnavailable("queue is closed")
        if self._recent_loading is None:
            self._recent_loading = asyncio.ensure_future(self._read_recent())
        try:
            await asyncio.shield(self._recent_loading)
        except QueueUnavailable:
            self._recent_loading = None  # the next caller tries again
            raise
        assert self._recent is not None
        return self._recent

    async def _read_recent(self) -> None:
        def read() -> list[tuple[str, str]]:
            with self._reader_lock:
                rows: list[tuple[str, str]] = self._reader.execute(
                    "SELECT dedupe_key, id FROM deliveries ORDER BY rowid DESC LIMIT ?", (self._recent_keys,)
                ).fetchall()
            return rows

        try:
            rows = await asyncio.to_thread(read)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"sqlite: {exc}") from exc
        rows.reverse()  # oldest first, so the oldest leave the window first
        self._recent_order.extend(key for key, _ in rows)
        self._recent = {key: (delivery_id, -1) for key, delivery_id in rows}

    # -- indexing the journal ------------------------------------------------------------------------

    def _index(self, conn: sqlite3.Connection, max_records: int) -> tuple[int, list[Path]]:
        """Index up to ``max_records`` journal records into `deliveries` (inside the caller's
        transaction). Returns how many were read and the segments that are finished: delete those
        once this transaction has committed."""
        offsets: dict[str, int] = dict(conn.execute("SELECT segment, offset FROM journal").fetchall())
        present = journal.segments(self.journal_dir)
        names = {path.name for path in present}
        for name in [n for n, offset in offsets.items() if offset < 0 and n not in names]:
            conn.execute("DELETE FROM journal WHERE segment = ?", (name,))  # deleted by an earlier pass
        read, finished, now = 0, [], time.time()
        for path in present:
            if read >= max_records:
                break
            offset = offsets.get(path.name, 0)
            if offset < 0:
                finished.append(path)  # indexed and committed; its deletion was interrupted
                continue
            chunk = journal.read_segment(path, offset, max_records - read)
            rows = []
            for record in chunk.records:
                if not record:
                    continue  # a health probe (`JournalWriter.probe`): no delivery
                try:
                    rows.append(_row(record, now))
                except (ValueError, KeyError, TypeError, RecursionError) as exc:  # CRC-valid yet unreadable
                    extra = {"segment": path.name, "error": str(exc)}
                    log.error("unreadable journal record skipped", extra=extra)
            conn.executemany(_INSERT, rows)
            read += len(chunk.records)
            if chunk.finished:
                if chunk.discarded:
                    log.warning(
                        "journal segment ended in a torn frame (never acknowledged); dropped",
                        extra={"segment": path.name, "bytes": chunk.discarded},
                    )
                finished.append(path)
            indexed_to = -1 if chunk.finished else chunk.end
            if indexed_to != offset:
                conn.execute(
                    "INSERT INTO journal (segment, offset) VALUES (?, ?)"
                    " ON CONFLICT (segment) DO UPDATE SET offset = excluded.offset",
                    (path.name, indexed_to),
                )
        return read, finished

    async def _indexed(self, op: Callable[[sqlite3.Connection], T]) -> tuple[int, T]:
        """Index the next journal chunk and run ``op`` in the same transaction (so it sees the new
        rows); returns how many records were indexed and what ``op`` returned."""

        def both(conn: sqlite3.Connection) -> tuple[int, list[Path], T]:
            read, finished = self._index(conn, INDEX_BATCH)
            return read, finished, op(conn)

        read, finished, result = await self._run(both)
        # Caught up: sweep what writers killed mid-creation left (never acknowledged), now and then.
        sweep = read == 0 and time.monotonic() - self._swept_at > SWEEP_SECONDS
        if sweep:
            self._swept_at = time.monotonic()
        if finished or sweep:
            await asyncio.to_thread(self._delete_segments, finished, sweep)
        return read, result

    def _delete_segments(self, finished: list[Path], sweep: bool) -> None:
        """Off the loop: delete indexed segments (only after the commit: their records are in the
        table for good) and, when ``sweep``, the abandoned ones."""
        for path in finished + (journal.abandoned(self.journal_dir) if sweep else []):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def index(self) -> int:
        """Index everything the journal holds now, chunk by chunk (a backlog never holds the event
        loop for long); returns how many records were read."""
        total = 0
        while True:
            read, _ = await self._indexed(lambda conn: None)
            total += read
            if read < INDEX_BATCH:
                return total

    async def claim(self, max_messages: int, lease_seconds: float, wait_seconds: float) -> list[Lease]:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        deadline = time.monotonic() + wait_seconds
        while True:
            self._wakeup.clear()
            read, leases = await self._indexed(lambda conn: self._claim(conn, max_messages, lease_seconds))
            if read == INDEX_BATCH:
                self._notify()  # more of the journal to index: the next claim should not sleep first
            elif time.monotonic() - self._pruned_at > self._prune_every:
                await self.prune()
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
            " AND visible_at <= ? ORDER BY visible_at LIMIT ?) RETURNING id, payload, attempts",
            (now + lease_seconds, receipt, now, now, max_messages),
        ).fetchall()
        leases = []
        for row_id, payload, attempts in rows:
            try:
                leases.append(Lease(Delivery.from_bytes(payload), receipt, attempts))
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                # A record no worker can read must not stop the others (or come back forever): it
                # becomes a dead letter with the reason, like any delivery that cannot be processed.
                reason = f"unreadable record: {type(exc).__name__}: {str(exc)[:200]}"
                conn.execute(
                    "UPDATE deliveries SET status = 'dead', receipt = NULL, last_error = ?, updated_at = ?"
                    " WHERE id = ? AND receipt = ?",
                    (reason, now, row_id, receipt),
                )
                log.error("unreadable record dead-lettered", extra={"error": reason})
        return leases

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
        await self.index()

        def op(conn: sqlite3.Connection) -> list[DeliveryRecord]:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE status = 'dead'"
                " ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._run(op)

    async def recent(self, limit: int = 100) -> list[DeliveryRecord]:
        await self.index()

        def op(conn: sqlite3.Connection) -> list[DeliveryRecord]:
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            return [_record(r) for r in rows]

        return await self._run(op)

    async def replay(self, ids: Sequence[str] | None) -> int:
        await self.index()

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
        """Counts by status, exact: the journal is indexed first (an acknowledged delivery counts as
        queued, indexed yet or not). `gauges` is the cheap read for scrapes."""
        await self.index()
        return await self._run(_counts)

    async def gauges(self) -> Gauges:
        """Counts of indexed rows and disk use, read without a write lock and off the loop; if the
        journal is unhealthy, a probe write first (its way back to healthy)."""
        if self._closed:
            return Gauges({}, problem="queue is closed")
        await self._journal.probe()
        problem = None if self._journal.healthy else f"journal: {self._journal.last_error}"

        def read() -> Gauges:
            with self._reader_lock:
                self._reader.execute("BEGIN")  # one snapshot for all three counts
                try:
                    counts = _counts(self._reader)
                finally:
                    self._reader.execute("ROLLBACK")
            unwritable = [str(p) for p in (self.path, self.journal_dir) if not os.access(p, os.W_OK)]
            return Gauges(
                counts,
                self.disk_bytes(),
                problem or (f"{unwritable[0]} is not writable" if unwritable else None),
            )

        try:
            return await asyncio.to_thread(read)
        except sqlite3.Error as exc:
            return Gauges({}, problem=f"sqlite: {exc}")

    def disk_bytes(self) -> int:
        """Blocking: bytes of the database, its WAL and the intake journal."""
        total = 0
        for path in (Path(self.path), Path(self.path + "-wal"), Path(self.path + "-shm")):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.journal_dir):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
        return total

    @property
    def _prune_every(self) -> float:
        return min(PRUNE_SECONDS, self.retention.bodies_seconds / 4)

    async def prune(self, now: float | None = None) -> Pruned:
        """Drop the bodies of deliveries finished more than ``bodies_seconds`` ago, then the rows of
        those finished more than ``rows_seconds`` ago, a chunk per transaction."""
        self._pruned_at = time.monotonic()
        now = time.time() if now is None else now
        bodies_before = now - self.retention.bodies_seconds
        rows_before = now - self.retention.rows_seconds
        bodies = rows = 0
        while True:
            count = await self._run(lambda conn: _strip_bodies(conn, bodies_before, PRUNE_CHUNK))
            bodies += count
            if count < PRUNE_CHUNK:
                break
        while True:
            count = await self._run(lambda conn: _delete_rows(conn, rows_before, PRUNE_CHUNK))
            rows += count
            if count < PRUNE_CHUNK:
                break
        if bodies or rows:
            log.info("queue pruned", extra={"bodies": bodies, "rows": rows})
        return Pruned(bodies, rows)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        for path in (self.path, self.journal_dir):
            if not await asyncio.to_thread(os.access, path, os.W_OK):
                raise QueueUnavailable(f"{path} is not writable")
        if not self._journal.healthy:
            raise QueueUnavailable(f"journal: {self._journal.last_error}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._journal.aclose()
        await self._commits.aclose()
        await asyncio.to_thread(self._close_files)

    def _close_files(self) -> None:
        with self._reader_lock:
            self._reader.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Counts by status from the indexes alone (this runs at every depth read): the work set through
    the partial ready index, dead letters and finished ones through theirs."""
    counts = {"queued": 0, "in_flight": 0, "done": 0, "dead": 0}
    for status, count in conn.execute(
        "SELECT status, COUNT(*) FROM deliveries INDEXED BY deliveries_ready"
        " WHERE status IN ('queued', 'leased') AND visible_at > -1 GROUP BY status"
    ):
        counts["in_flight" if status == "leased" else "queued"] = count
    counts["dead"] = conn.execute(
        "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_dead WHERE status = 'dead'"
    ).fetchone()[0]
    counts["done"] = conn.execute(
        "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_done WHERE status = 'done'"
    ).fetchone()[0]
    return counts


def _strip_bodies(conn: sqlite3.Connection, before: float, limit: int) -> int:
    # length() of a blob reads no content; stripped rows keep id, dedupe key and status.
    return conn.execute(
        "UPDATE deliveries SET payload = x'' WHERE rowid IN (SELECT rowid FROM deliveries"
        " INDEXED BY deliveries_done WHERE status = 'done' AND updated_at < ? AND length(payload) > 0"
        " LIMIT ?)",
        (before, limit),
    ).rowcount


def _delete_rows(conn: sqlite3.Connection, before: float, limit: int) -> int:
    return conn.execute(
        "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries INDEXED BY deliveries_done"
        " WHERE status = 'done' AND updated_at < ? LIMIT ?)",
        (before, limit),
    ).rowcount
