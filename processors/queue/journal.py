"""The intake journal: append-only segment files that make an enqueue durable with one write per batch.

Why it exists: the receiver must acknowledge a callback only once it is on disk, and it must do so
fast. Inserting each delivery into SQLite at ack time costs ~20 µs of CPU per 2 KB row (the B-tree,
the unique dedupe index, WAL frames and their checkpoint), on the same core that answers HTTP. A
journal frame costs a memcpy and one write for a whole batch of callers. So the SQLite queue
acknowledges through this journal and indexes the journal into its table afterwards, in large
batches, on the reader's side (see `sqlite.py`).

On disk: a directory of segments, ``<ns-time>-<pid>-<random>.seg``. A segment's first block holds
`MAGIC`; then come frames, each starting on a block boundary: ``<u32 length><u32 crc32><records>``,
each record ``<u32 length><bytes>``, zero padding to the next block. A frame is one group commit,
written with a single `O_DSYNC` write (see `_Segment` for why into blocks zeroed in advance) before
any of its callers is answered. A length of 0 means zeroed blocks: nothing written there yet. A crash
mid-write leaves a torn last frame whose CRC fails: nobody was acknowledged for it, so readers drop it.

Who may read what: the writer holds an exclusive `flock` on its segment for as long as it appends;
a reader that can take the lock knows the segment is final (the writer rotated, closed or died), so
after indexing it the segment can be deleted. While the lock is held, a reader stops at the last
complete frame and comes back later. A writer never reopens a segment, so a finished one never
changes again. A new segment gets its lock before it is renamed into view, so no reader ever sees
an unlocked segment that is still being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import mmap
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from processors.queue.linux_aio import AioContext

MAGIC = b"LHJOURN2"
BLOCK = 4096  # frames start on block boundaries (O_DIRECT); the first block is the header
ZERO_CHUNK = 2 * 1024 * 1024  # blocks are zeroed ahead of the writes this much at a time
SEGMENT_BYTES = 64 * 1024 * 1024  # rotate after this much: a finished segment can be indexed and deleted
MAX_BATCH = 1024  # the frame target never exceeds this (a frame holds what piled up meanwhile)
MAX_WAIT = 0.002  # seconds a record may wait for company before its frame is written regardless
PEAK_HALF_LIFE = 0.1  # seconds: how fast the frame target forgets a burst
TARGET_FRACTION = 0.75  # of the callers seen waiting at once: a frame goes when it holds that many
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
_RECORD = struct.Struct("<I")
_MAX_FRAME = 1 << 30  # a length beyond this is garbage, not a frame


class JournalError(OSError):
    """The journal could not make a batch durable (disk full, I/O error, unwritable directory)."""


class ZeroFillError(OSError):
    """No room to prepare blocks for the next frame (disk full); nothing of the frame was written."""


def encode_frame(records: list[bytes]) -> bytes:
    """One frame holding ``records``, ready to be appended with a single write."""
    parts: list[bytes] = []
    for record in records:
        parts.append(_RECORD.pack(len(record)))
        parts.append(record)
    payload = b"".join(parts)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_frame(payload: bytes) -> list[bytes]:
    """The records of a frame's payload (whose CRC the caller checked)."""
    records: list[bytes] = []
    position, end = 0, len(payload)
    while position + _RECORD.size <= end:
        (size,) = _RECORD.unpack_from(payload, position)
        position += _RECORD.size
        records.append(payload[position : position + size])
        position += size
    return records


@dataclass(frozen=True)
class Chunk:
    """What `read_segment` found: records, the offset after them, and whether the segment is done."""

    records: list[bytes]
    end: int
    finished: bool  # the writer is gone and nothing readable follows: index these, then delete it
    discarded: int = 0  # length of a torn frame a finished segment ends with (never acknowledged)


def _files(directory: Path, suffix: str) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == suffix)
    except FileNotFoundError:
        return []


def segments(directory: Path) -> list[Path]:
    """The journal's segments, oldest first (names start with a nanosecond timestamp)."""
    return _files(directory, ".seg")


def abandoned(directory: Path, *, older_than: float = 60.0, now: float | None = None) -> list[Path]:
    """Segments whose writer died between creating them and renaming them into view (``*.new``).

    Such a file holds at most the header: nothing was ever acknowledged from it. A live writer holds
    its lock from right after creating it until long after the rename, so an unlocked one is garbage;
    the age rule covers the instant between `open` and `flock`, when a live writer's is unlocked too.
    """
    now = time.time() if now is None else now
    found = []
    for path in _files(directory, ".new"):
        try:
            if now - path.stat().st_mtime < older_than:
                continue
            with open(path, "rb") as file:
                fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (BlockingIOError, FileNotFoundError):
            continue  # still being created, or already gone
        found.append(path)
    return found


def read_segment(path: Path, offset: int, max_records: int) -> Chunk:
    """Whole frames of ``path`` from ``offset`` (0: the start), stopping after ``max_records``."""
    with open(path, "rb") as file:
        # Probe the writer's lock *before* reading: if it is free now, the file cannot grow after.
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
            writer_gone = True
        except BlockingIOError:
            writer_gone = False
        # Frames are written with O_DIRECT, past the page cache; drop whatever it holds of the range
        # about to be read, so a page cached while a write was landing can never hide that write.
        os.posix_fadvise(file.fileno(), offset, 0, os.POSIX_FADV_DONTNEED)
        if offset == 0:
            if file.read(len(MAGIC)) != MAGIC:
                # Segments are renamed into view only once their header is durable: this file is not
                # ours. Leave it alone rather than delete a stranger's file.
                return Chunk([], 0, finished=False)
            offset = BLOCK
        records: list[bytes] = []
        torn = 0
        while len(records) < max_records:
            file.seek(offset)
            head = file.read(_FRAME.size)
            if len(head) < _FRAME.size:
                break
            length, crc = _FRAME.unpack(head)
            if length == 0:
                break  # zeroed blocks: nothing written here yet
            payload = file.read(length) if length <= _MAX_FRAME else b""
            if len(payload) < length or zlib.crc32(payload) != crc:
                torn = length  # being written (writer alive) or torn by a crash (writer gone)
                break
            records.extend(decode_frame(payload))
            offset += _aligned(_FRAME.size + length)
        else:
            return Chunk(records, offset, finished=False)  # budget spent: more may follow
        return Chunk(records, offset, finished=writer_gone, discarded=torn if writer_gone else 0)


class JournalWriter:
    """Appends batches of records to this process's current segment: one durable write per batch.

    Used from one event loop. Batches are numbered; `append` says which batch a record joined and
    returns a future settled once that batch is durable. Batches are pipelined like SQLite's group
    commit: while one frame is on its way to disk, new records pile up for the next frame, which goes
    when it is full enough (`_retarget`). Frames are written by kernel AIO submitted from the loop
    itself (`_AioFrames`) where the filesystem takes `O_DIRECT` and the kernel offers AIO, else by a
    writer thread (`_ThreadFrames`: tmpfs, other systems).
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        max_batch: int = MAX_BATCH,
        max_wait: float = MAX_WAIT,
        aio: Callable[[], AioContext] | None = AioContext,
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.aio = aio  # makes the kernel AIO context; None: always the writer thread
        directory.mkdir(parents=True, exist_ok=True)
        self._segment: _Segment | None = None
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
        self._frames: _AioFrames | _ThreadFrames | None = None  # chosen at the first frame
        self._outcomes: dict[int, JournalError | None] = {}  # a frame's result, until `_written` reads it

    @property
    def mode(self) -> str:
        """How frames are written: ``"aio"``, ``"thread"``, or ``"idle"`` before the first one."""
        return "idle" if self._frames is None else self._frames.mode

    def append(self, record: bytes) -> tuple[int, asyncio.Future[None]]:
        """Queue ``record`` for the next frame: its batch number, and a future for its durability."""
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
        if self._frames is None:
            self._frames = self._start_frames(asyncio.get_running_loop())
        self._frames.submit(batch, encode_frame(records))

    def _start_frames(self, loop: asyncio.AbstractEventLoop) -> _AioFrames | _ThreadFrames:
        """AIO from the loop where the first segment takes `O_DIRECT` and the kernel has AIO; else a
        thread. (Buffered AIO would block the loop in `io_submit` for the whole write.)"""
        if self.aio is not None:
            with contextlib.suppress(OSError):  # the thread's first write reports a real failure
                segment = self._segment_for(0)
                if segment.direct:
                    return _AioFrames(self, loop, self.aio())
        return _ThreadFrames(self, loop)

    def _frame_done(self, batch: int, error: JournalError | None) -> None:
        """On the loop: ``batch``'s frame is durable (``error`` None) or has failed."""
        self._outcomes[batch] = error
        self._written(batch)

    def _written(self, batch: int) -> None:
        if batch <= self._durable:
            return  # settled already, by `close`
        self._writing_records = 0
        error = self._outcomes.pop(batch, None)
        waiters, self._in_flight = self._in_flight, []
        if self._pending:
            # Queue the next frame before waking this one's callers: the disk works on frame N+1
            # while the loop sends frame N's responses.
            loop = asyncio.get_running_loop()
            self._retarget(loop.time())
            self._schedule(loop)
        self._settle(batch, error, waiters)

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

    def _segment_for(self, size: int) -> _Segment:
        """The segment the next frame of ``size`` bytes goes to: rotated when the current one is full
        (a reader may then index and delete it), created when there is none."""
        segment = self._segment
        # A frame bigger than a whole segment goes alone into a fresh one (never rotate an empty one).
        if segment is not None and segment.offset > BLOCK and segment.offset + size > self.segment_bytes:
            self._close_segment()
            segment = None
        if segment is None:
            segment = self._segment = _Segment.create(self.directory)
        return segment

    def _write(self, frame: bytes) -> None:
        """Blocking: write one frame durably (the writer thread, and `close`)."""
        size = _aligned(len(frame))
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
            return JournalError(errno.EIO, f"journal write failed: {exc!r}")
        if not isinstance(exc, ZeroFillError):
            self._close_segment()
        return JournalError(exc.errno or errno.EIO, f"journal write failed: {exc.strerror or exc}")

    def _close_segment(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def close(self) -> None:
        """Write what is pending, close the segment and the frame writer (blocking)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._frames is not None:
            self._frames.drain()  # the frame in flight, if any, is written now; its outcome recorded
            self._frames = None
        if self._writing_records:
            self._writing_records = 0
            waiters, self._in_flight = self._in_flight, []
            self._settle(self._batch - 1, self._outcomes.pop(self._batch - 1, None), waiters)
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


class _ThreadFrames:
    """Frames written on a dedicated thread, one blocking write each, outcomes handed to the loop.

    A plain thread and queue rather than an executor, whose futures and locks cost more per frame.
    """

    mode = "thread"

    def __init__(self, writer: JournalWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.writer = writer
        self.loop = loop
        self._requests: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="labelhook-journal", daemon=True)
        self._thread.start()

    def submit(self, batch: int, frame: bytes) -> None:
        self._requests.put((batch, frame))

    def _run(self) -> None:
        writer = self.writer
        while (request := self._requests.get()) is not None:
            batch, frame = request
            error: JournalError | None = None
            try:
                writer._write(frame)
            except Exception as exc:  # a bug too must fail the batch, not kill the thread silently
                error = writer._failure(exc)
            writer._outcomes[batch] = error
            with contextlib.suppress(RuntimeError):  # the loop is gone (process exit): nobody waits
                self.loop.call_soon_threadsafe(writer._written, batch)

    def drain(self) -> None:
        self._requests.put(None)
        self._thread.join()


_ZERO_TAG = 0  # AIO tag of a zero-fill write; a frame's tag is its batch number + 1


class _AioFrames:
    """Frames written by kernel AIO submitted from the event loop: no thread, no hand-off.

    One frame is in flight at a time (as with the thread). Blocks are zeroed ahead of the frames by
    AIO writes too, into space reserved with `fallocate` first: an *extending* direct write would make
    `io_submit` wait for it. A frame that finds no zeroed room waits, parked, for the zero-fill.
    """

    mode = "aio"

    def __init__(self, writer: JournalWriter, loop: asyncio.AbstractEventLoop, aio: AioContext) -> None:
        self.writer = writer
        self.loop = loop
        self.aio = aio
        self._parked: tuple[int, bytes] | None = None  # a frame waiting for zeroed blocks
        self._frame: tuple[int, _Segment, int] | None = None  # batch, segment, size: on its way to disk
        self._zeroing: tuple[_Segment, int, int] | None = None  # segment, start, end: zeros on their way
        loop.add_reader(aio.fileno, self._completed)

    def submit(self, batch: int, frame: bytes) -> None:
        self._parked = (batch, frame)
        self._advance()

    def _advance(self) -> None:
        """Submit the parked frame if nothing is in flight and its blocks are zeroed."""
        if self._parked is None or self._frame is not None:
            return
        batch, frame = self._parked
        size = _aligned(len(frame))
        writer = self.writer
        try:
            segment = writer._segment_for(size)
            end = segment.offset + size
            if self._zeroing is None:
                # Zero ahead now, while no direct write is in flight: `fallocate` waits for those.
                if end > segment.zeroed:
                    self._zero(segment, end)
                elif segment.zeroed - end < ZERO_CHUNK // 2 and segment.zeroed < writer.segment_bytes:
                    with contextlib.suppress(OSError):  # early: a frame that needs the room reports it
                        self._zero(segment, segment.zeroed)
            if end > segment.zeroed:
                return  # `_completed` comes back here once the zeros are on disk
            self.aio.submit_write(segment.fd, segment.stage(frame, size), size, segment.offset, batch + 1)
        except Exception as exc:  # a bug too must fail the batch (503), not leave its callers waiting
            self._parked = None
            writer._frame_done(batch, writer._failure(exc))
            return
        self._parked = None
        self._frame = (batch, segment, size)
        segment.offset = end

    def _zero(self, segment: _Segment, end: int) -> None:
        """Start zeroing blocks from ``segment.zeroed`` towards ``end`` plus headroom (one write of at
        most `ZERO_CHUNK`; a frame bigger than that takes several rounds)."""
        start = segment.zeroed
        length = min(segment.zero_target(end) - start, ZERO_CHUNK)
        try:
            os.posix_fallocate(segment.fd, start, length)
            self.aio.submit_write(segment.fd, _ZEROS, length, start, _ZERO_TAG)
        except OSError as exc:
            raise ZeroFillError(exc.errno, exc.strerror) from exc
        self._zeroing = (segment, start, start + length)

    def _completed(self) -> None:
        """The eventfd is readable: settle what finished, then submit what waits."""
        for tag, result in self.aio.completions():
            self._finish(tag, result, notify=True)
        self._advance()

    def _finish(self, tag: int, result: int, *, notify: bool) -> None:
        writer = self.writer
        if tag == _ZERO_TAG:
            assert self._zeroing is not None
            segment, start, end = self._zeroing
            self._zeroing = None
            if result == end - start:
                segment.zeroed = end
            elif self._parked is not None and segment is writer._segment:
                # The parked frame needed that room: fail it; nothing was written, the segment stays.
                batch, _ = self._parked
                self._parked = None
                code = -result if result < 0 else errno.ENOSPC
                self._report(batch, writer._failure(ZeroFillError(code, os.strerror(code))), notify)
            return
        assert self._frame is not None
        batch, segment, size = self._frame
        self._frame = None
        error = None
        if result != size:
            code = -result if result < 0 else errno.EIO
            error = writer._failure(OSError(code, os.strerror(code) if result < 0 else "short write"))
        self._report(batch, error, notify)

    def _report(self, batch: int, error: JournalError | None, notify: bool) -> None:
        if notify:
            self.writer._frame_done(batch, error)
        else:
            self.writer._outcomes[batch] = error  # `close` settles it

    def drain(self) -> None:
        """Blocking: finish the writes in flight and write a parked frame; then release the context."""
        while self.aio.in_flight:
            for tag, result in self.aio.completions(wait_for=1):
                self._finish(tag, result, notify=False)
        if self._parked is not None:
            batch, frame = self._parked
            self._parked = None
            try:
                self.writer._write(frame)
                self.writer._outcomes[batch] = None
            except JournalError as exc:
                self.writer._outcomes[batch] = exc
        if not self.loop.is_closed():
            self.loop.remove_reader(self.aio.fileno)
        self.aio.close()


class _Segment:
    """The writer's open segment: durable, aligned frame writes into blocks zeroed in advance.

    Why zeroed blocks and `O_DIRECT | O_DSYNC`: appending and then fdatasync-ing makes the filesystem
    commit a metadata change (the file size, a new extent) at every batch; overwriting blocks that
    were already written — with zeros, ahead of time — is a pure data write, and `O_DSYNC` makes the
    write itself durable. Measured on the project's VM, one 80 KB batch costs 45 µs of CPU and 160 µs
    of wall time this way, against 115 µs and 350 µs for append + fdatasync. `O_DIRECT` needs
    block-aligned offsets, lengths and buffers, hence the padding and the mmap'd buffers; where the
    filesystem refuses it (tmpfs) the same writes go through the page cache, still `O_DSYNC`.
    """

    def __init__(self, fd: int, path: Path, direct: bool) -> None:
        self.fd = fd
        self.path = path
        self.direct = direct  # opened with O_DIRECT
        self.offset = BLOCK  # the first block holds the header
        self.zeroed = BLOCK
        self._buffer = mmap.mmap(-1, 64 * 1024)

    @classmethod
    def create(cls, directory: Path) -> _Segment:
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}"
        temp = directory / f"{name}.new"
        fd, direct = _open_direct(temp)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the segment is closed
            segment = cls(fd, directory / f"{name}.seg", direct)
            header = mmap.mmap(-1, BLOCK)
            header.write(MAGIC)
            os.pwrite(fd, header, 0)
            os.rename(temp, segment.path)
            _fsync_directory(directory)  # the new name survives a power cut before the first ack
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return segment

    def zero_target(self, end: int) -> int:
        """Where zeroing for a frame ending at ``end`` should stop: a little further when the disk has
        room — at most `ZERO_CHUNK`, at most a quarter of the free space."""
        with contextlib.suppress(OSError):
            stats = os.statvfs(self.fd)
            end += min(ZERO_CHUNK, stats.f_bavail * stats.f_frsize // 4) // BLOCK * BLOCK
        return end

    def zero_to(self, end: int) -> None:
        """Blocking: make sure blocks up to ``end`` (and headroom) are durably zeroed."""
        end = self.zero_target(end)
        while self.zeroed < end:
            piece = memoryview(_ZEROS)[: min(ZERO_CHUNK, end - self.zeroed)]
            written = os.pwrite(self.fd, piece, self.zeroed)
            self.zeroed += written - written % BLOCK

    def stage(self, frame: bytes, size: int) -> mmap.mmap:
        """The aligned buffer holding ``frame`` padded with zeros to ``size`` (never in flight twice)."""
        if len(self._buffer) < size:
            self._buffer.close()
            self._buffer = mmap.mmap(-1, size)
        buffer = self._buffer
        buffer[: len(frame)] = frame
        buffer[len(frame) : size] = bytes(size - len(frame))  # padding: zeros, as the block held
        return buffer

    def write(self, frame: bytes, size: int) -> None:
        """Blocking: write ``frame`` (padded to ``size``) at the end. Raises `ZeroFillError` when the
        blocks for it could not be prepared — the segment is intact then — and OSError when the write
        itself failed."""
        if self.offset + size > self.zeroed:
            try:
                self.zero_to(self.offset + size)
            except OSError as exc:
                raise ZeroFillError(exc.errno, exc.strerror) from exc
        buffer = self.stage(frame, size)
        if os.pwrite(self.fd, memoryview(buffer)[:size], self.offset) != size:
            raise OSError(errno.EIO, "short write")
        self.offset += size

    def close(self) -> None:
        self._buffer.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)  # releases the flock: readers may now finish and delete the segment


def _aligned(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


# Aligned and all zeros: an anonymous mmap starts zero-filled, and this one is never written to.
_ZEROS = mmap.mmap(-1, ZERO_CHUNK)


def _open_direct(path: Path) -> tuple[int, bool]:
    """Create ``path`` for durable writes: its fd, and whether it bypasses the page cache."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_DSYNC
    try:
        return os.open(path, flags | os.O_DIRECT, 0o600), True
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # some filesystems create the file before refusing the flag
        return os.open(path, flags, 0o600), False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
