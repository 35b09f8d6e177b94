"""The intake journal's writer: append-only segments that make an enqueue durable with one write per batch.

Why it exists: the receiver must acknowledge a callback only once it is on disk, and it must do so
fast. Inserting each delivery into SQLite at ack time costs ~20 µs of CPU per 2 KB row (the B-tree,
the unique dedupe index, WAL frames and their checkpoint), on the same core that answers HTTP. A
journal frame costs a memcpy and one write for a whole batch of callers. So the SQLite queue
acknowledges through this journal and indexes the journal into its table afterwards, in large
batches, on the reader's side (see `sqlite.py`). The on-disk format, reading and the locking rules
are in `segment.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import queue
import threading
import time
from pathlib import Path

from processors.queue.segment import (
    BLOCK,
    MAGIC,
    Chunk,
    Disk,
    Segment,
    ZeroFillError,
    abandoned,
    aligned,
    decode_frame,
    encode_frame,
    read_segment,
    segments,
)

__all__ = [
    "BLOCK",
    "MAGIC",
    "Chunk",
    "Disk",
    "JournalError",
    "JournalWriter",
    "abandoned",
    "decode_frame",
    "encode_frame",
    "read_segment",
    "segments",
]

SEGMENT_BYTES = 64 * 1024 * 1024  # rotate after this much: a finished segment can be indexed and deleted
# ...or after this long: a reader deletes only finished segments, so at a trickle (one 4 KiB block per
# lone record) the disk held is about this many seconds of traffic, not a whole segment's worth.
SEGMENT_SECONDS = 10.0
MAX_BATCH = 1024  # the frame target never exceeds this (a frame holds what piled up meanwhile)
MAX_WAIT = 0.002  # seconds a record may wait for company before its frame is written regardless
DURABLE_TIMEOUT = 5.0  # seconds a frame may take on its way to disk before its callers get 503
PEAK_HALF_LIFE = 0.1  # seconds: how fast the frame target forgets a burst
TARGET_FRACTION = 0.75  # of the callers seen waiting at once: a frame goes when it holds that many


class JournalError(OSError):
    """The journal could not make a batch durable (disk full, I/O error, unwritable directory)."""


class JournalWriter:
    """Appends batches of records to this process's current segment: one durable write per batch.

    Used from one event loop, which only collects records; one writer thread does every blocking
    call (creating and rotating segments, zeroing blocks, the durable write). Batches are numbered;
    `append` says which batch a record joined and returns a future settled once that batch is
    durable. Batches are pipelined like SQLite's group commit: while one frame is on its way to disk,
    new records pile up for the next frame, which goes when it is full enough (`_retarget`).

    Fails closed: a frame that fails fails its callers, and one that is not on disk within
    ``durable_timeout`` seconds fails them too (and every caller waiting behind it); until that write
    returns, `append` raises at once. `healthy` is False from a failure until a write succeeds again.
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        segment_seconds: float = SEGMENT_SECONDS,
        max_batch: int = MAX_BATCH,
        max_wait: float = MAX_WAIT,
        durable_timeout: float = DURABLE_TIMEOUT,
        disk: Disk | None = None,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segment_seconds = segment_seconds
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.durable_timeout = durable_timeout
        self.disk = disk or Disk()
        directory.mkdir(parents=True, exist_ok=True)
        self.healthy = True  # False from a failed or timed-out write until a write succeeds
        self.last_error: str | None = None
        self._segment: Segment | None = None  # the writer thread's; the loop never touches it
        self._direct: bool | None = None  # whether the newest segment bypasses the page cache
        self._pending: list[bytes] = []
        self._first_pending_at = 0.0  # loop time of the oldest pending record
        self._writing_records = 0  # records in the frame on its way to disk (0: no frame in flight)
        self._peak = 0.0  # most records outstanding at once lately (decaying)
        self._peak_at = 0.0
        self._target = 1  # a frame is written as soon as it holds this many (see `_retarget`)
        self._batch = 0  # the number of the batch now collecting records
        self._durable = -1  # every batch up to this one has been written (or has failed)
        self._failed: dict[int, JournalError] = {}  # the last few batches that could not be written
        self._collecting: list[asyncio.Future[None]] = []  # callers of the batch now collecting
        self._in_flight: list[asyncio.Future[None]] = []  # callers of the batch being written
        self._scheduled: asyncio.Handle | None = None
        self._expiry: asyncio.TimerHandle | None = None  # the in-flight frame's durable deadline
        self._stuck = False  # the in-flight frame outlived its deadline and has not returned yet
        self._outcomes: dict[int, JournalError | None] = {}  # a frame's result, until `_written` reads it
        self._requests: queue.SimpleQueue[tuple[int, list[bytes]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def mode(self) -> str:
        """How frames reach disk: ``"thread+direct"`` (O_DIRECT), ``"thread+buffered"`` (through the
        page cache), or ``"idle"`` before the first segment exists."""
        if self._direct is None:
            return "idle"
        return "thread+direct" if self._direct else "thread+buffered"

    def append(self, record: bytes) -> tuple[int, asyncio.Future[None]]:
        """Queue ``record`` for the next frame: its batch number, and a future for its durability.

        Raises `JournalError` at once while a frame is stuck past its deadline (fail fast, not queue
        behind a disk that does not answer)."""
        if self._stuck:
            raise JournalError(errno.ETIMEDOUT, f"journal write stalled: {self.last_error}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        pending = self._pending
        pending.append(record)
        self._collecting.append(future)
        outstanding = len(pending) + self._writing_records
        if outstanding > self._peak:
            self._peak = outstanding
        batch = self._batch
        if len(pending) == 1:
            self._first_pending_at = loop.time()
            self._retarget(self._first_pending_at)
        if not self._writing_records:
            self._schedule(loop)
        return batch, future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """With no frame in flight: write the pending records now if they reach the target, else
        once the oldest has waited `max_wait`."""
        if len(self._pending) >= self._target:
            self._flush()
        elif self._scheduled is None:
            self._scheduled = loop.call_at(self._first_pending_at + self.max_wait, self._flush)

    def _retarget(self, now: float) -> None:
        """Set the frame target: three quarters of the most callers seen waiting at once lately.

        A durable write costs the same CPU whatever it carries, so fuller frames leave more of it to
        the HTTP work; but a frame that waited for *every* caller would leave the CPU idle while it is
        on disk. With three quarters on their way to disk, the last quarter keeps the CPU busy
        (bench/ingest.py). The peak halves every `PEAK_HALF_LIFE` seconds, so after a burst the target
        falls back to 1: at rest, a lone record is written at once. `max_wait` bounds the wait.
        """
        elapsed = now - self._peak_at
        if elapsed > 0:
            outstanding = len(self._pending) + self._writing_records
            self._peak = max(float(outstanding), self._peak * 0.5 ** (elapsed / PEAK_HALF_LIFE))
            self._peak_at = now
        self._target = max(1, min(self.max_batch, int(self._peak * TARGET_FRACTION)))

    def wait(self, batch: int) -> asyncio.Future[None]:
        """A new future settled when ``batch`` is durable (at once if it already is), or has failed.

        Each caller gets its own future, so cancelling one waiter never cancels another's.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if batch == self._batch:
            self._collecting.append(future)
        elif batch > self._durable:
            self._in_flight.append(future)
        elif batch in self._failed:
            future.set_exception(self._failed[batch])
        else:
            future.set_result(None)
        return future

    async def probe(self) -> None:
        """Write an empty record when the journal is unhealthy and idle: the way back to healthy when
        no caller writes (a load balancer stops sending once readiness fails). Readers skip it."""
        if self.healthy or self._stuck or self._writing_records or self._pending:
            return
        with contextlib.suppress(JournalError):
            await self.append(b"")[1]

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._writing_records or not self._pending:
            return
        records, batch = self._pending, self._batch
        self._writing_records = len(records)
        self._pending, self._batch = [], batch + 1
        self._in_flight, self._collecting = self._collecting, []
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(loop,), name="labelhook-journal", daemon=True
            )
            self._thread.start()
        self._expiry = loop.call_later(self.durable_timeout, self._expired, batch)
        self._requests.put((batch, records))

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: one durable frame per request, its outcome handed to the loop."""
        while (request := self._requests.get()) is not None:
            batch, records = request
            error: JournalError | None = None
            try:
                self._write(encode_frame(records))
            except Exception as exc:  # a bug too must fail the batch, not kill the thread silently
                error = self._failure(exc)
            self._outcomes[batch] = error
            with contextlib.suppress(RuntimeError):  # the loop is gone (process exit): nobody waits
                loop.call_soon_threadsafe(self._written, batch)

    def _expired(self, batch: int) -> None:
        """On the loop: frame ``batch`` is not on disk after `durable_timeout`. Fail its callers and
        those collecting behind it (their records are dropped: nobody is acknowledged for them); new
        appends fail at once until the write returns. The bytes may still land: at-least-once."""
        self._expiry = None
        self._stuck = True
        error = JournalError(errno.ETIMEDOUT, f"journal write not durable within {self.durable_timeout:g} s")
        self._mark(error)
        waiters, self._in_flight = self._in_flight, []
        self._settle(batch, error, waiters)
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        collecting, self._collecting = self._collecting, []
        self._pending = []
        self._batch += 1
        self._settle(self._batch - 1, error, collecting)

    def _written(self, batch: int) -> None:
        """On the loop: the writer thread finished frame ``batch`` (its outcome in `_outcomes`)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._stuck = False
        self._writing_records = 0
        error = self._outcomes.pop(batch, None)
        self._mark(error)
        if batch <= self._durable:
            return  # settled already: by `_expired` (callers got 503) or by `close`
        waiters, self._in_flight = self._in_flight, []
        if self._pending:
            # Queue the next frame before waking this one's callers: the disk works on frame N+1
            # while the loop sends frame N's responses.
            loop = asyncio.get_running_loop()
            self._retarget(loop.time())
            self._schedule(loop)
        self._settle(batch, error, waiters)

    def _mark(self, error: JournalError | None) -> None:
        self.healthy = error is None
        self.last_error = None if error is None else str(error)

    def _settle(self, batch: int, error: JournalError | None, waiters: list[asyncio.Future[None]]) -> None:
        self._durable = batch
        if error is not None:
            self._failed[batch] = error
            if len(self._failed) > 64:
                del self._failed[min(self._failed)]
        for future in waiters:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _segment_for(self, size: int) -> Segment:
        """The segment the next frame of ``size`` bytes goes to: rotated when the current one is full
        (a reader may then index and delete it) or old, created when there is none."""
        segment = self._segment
        # A frame bigger than a whole segment goes alone into a fresh one (never rotate an empty one).
        if (
            segment is not None
            and segment.offset > BLOCK
            and (
                segment.offset + size > self.segment_bytes
                or time.monotonic() - segment.created > self.segment_seconds
            )
        ):
            self._close_segment()
            segment = None
        if segment is None:
            segment = self._segment = Segment.create(self.directory, self.disk)
            self._direct = segment.direct
        return segment

    def _write(self, frame: bytes) -> None:
        """Blocking: write one frame durably (the writer thread, and `close`)."""
        size = aligned(len(frame))
        try:
            self._segment_for(size).write(frame, size)
        except OSError as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> JournalError:
        """The `JournalError` for a frame that failed with ``exc``. After a failed write the file's
        state is unknown ("fsyncgate"): the segment is abandoned, and a torn frame at its end fails its
        CRC, so readers drop it. A `ZeroFillError` wrote nothing: the segment stays. Anything that is
        not an OSError is a bug: it too fails the batch (503) rather than leave its callers waiting."""
        if isinstance(exc, JournalError):
            return exc  # already translated (by `_write`)
        if not isinstance(exc, OSError):
            self._close_segment()
            return JournalError(errno.EIO, f"journal write failed: {exc!r}")
        if not isinstance(exc, ZeroFillError):
            self._close_segment()
        return JournalError(exc.errno or errno.EIO, f"journal write failed: {exc.strerror or exc}")

    def _close_segment(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    async def aclose(self) -> None:
        """Write what is pending, wait (at most `durable_timeout`) for it, then stop the writer thread
        off the loop and close."""
        if self._scheduled is not None:
            self._flush()
        deadline = time.monotonic() + self.durable_timeout
        while (self._writing_records or self._pending) and not self._stuck and time.monotonic() < deadline:
            if self._pending and not self._writing_records:
                self._flush()
            await asyncio.sleep(0.001)
        await asyncio.to_thread(self._stop_thread)
        if self._thread is not None:
            return  # stuck in a write past the deadline: its callers have had their 503, leave it
        self.close()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._requests.put(None)
            # A thread stuck in a write that never returns is left behind (daemon): its callers
            # have had their 503 already.
            self._thread.join(self.durable_timeout)
            if not self._thread.is_alive():
                self._thread = None

    def close(self) -> None:
        """Blocking: write what is pending, close the segment and stop the writer thread."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._stop_thread()
        if self._thread is not None:
            return  # stuck in a write: the segment is still the thread's
        if self._writing_records:
            self._writing_records = 0
            batch = self._batch - 1
            waiters, self._in_flight = self._in_flight, []
            if batch > self._durable:
                self._settle(batch, self._outcomes.pop(batch, None), waiters)
        if self._pending:
            records, batch = self._pending, self._batch
            self._pending, self._batch = [], batch + 1
            waiters, self._collecting = self._collecting, []
            try:
                self._write(encode_frame(records))
                self._settle(batch, None, waiters)
            except JournalError as exc:
                self._settle(batch, exc, waiters)
        self._close_segment()
