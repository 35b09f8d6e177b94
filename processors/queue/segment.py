"""The intake journal on disk: the segment format, reading it, and the writer's portable file calls.

A journal is a directory of segments, ``<ns-time>-<pid>-<random>.seg``. A segment's first block holds
`MAGIC`; then come frames, each starting on a block boundary: ``<u32 length><u32 crc32><records>``,
each record ``<u32 length><bytes>``, zero padding to the next block. A length of 0 means zeroed
blocks: nothing written there yet. A crash mid-write leaves a torn last frame whose CRC fails: nobody
was acknowledged for it, so readers drop it.

Who may read what: the writer holds an exclusive `flock` on its segment for as long as it appends;
a reader that can take the lock knows the segment is final (the writer rotated, closed or died), so
after indexing it the segment can be deleted. While the lock is held, a reader stops at the last
complete frame and comes back later. A writer never reopens a segment, so a finished one never
changes again. A new segment gets its lock before it is renamed into view, so no reader ever sees
an unlocked segment that is still being written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"LHJOURN2"
BLOCK = 4096  # frames start on block boundaries (O_DIRECT); the first block is the header
ZERO_CHUNK = 2 * 1024 * 1024  # blocks are zeroed ahead of the writes this much at a time
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload
_RECORD = struct.Struct("<I")
_MAX_FRAME = 1 << 30  # a length beyond this is garbage, not a frame


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
        # Frames may be written with O_DIRECT, past the page cache; drop whatever it holds of the range
        # about to be read, so a page cached while a write was landing can never hide that write.
        # (Without posix_fadvise there is no O_DIRECT either: every write went through the cache.)
        if hasattr(os, "posix_fadvise"):
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
            offset += aligned(_FRAME.size + length)
        else:
            return Chunk(records, offset, finished=False)  # budget spent: more may follow
        return Chunk(records, offset, finished=writer_gone, discarded=torn if writer_gone else 0)


class Disk:
    """The writer thread's file calls, made through ``platform``: the `os` module, or a stand-in.

    Portable by construction: `O_DIRECT` is used where ``platform`` has it and the filesystem takes it
    (else writes go through the page cache), `O_DSYNC` where it exists (else each write is followed by
    `fsync`). Tests pass a stand-in for ``platform`` — one without `O_DIRECT`, or one whose calls
    fail or hang — to reach every branch without touching the real module.
    """

    def __init__(self, platform: Any = os) -> None:
        self.os = platform
        self.o_direct: int | None = getattr(platform, "O_DIRECT", None)
        self.o_dsync: int | None = getattr(platform, "O_DSYNC", None)

    def create(self, path: Path) -> tuple[int, bool]:
        """Create ``path`` for durable writes: its fd, and whether it bypasses the page cache."""
        flags = self.os.O_WRONLY | self.os.O_CREAT | self.os.O_EXCL | getattr(self.os, "O_CLOEXEC", 0)
        flags |= self.o_dsync or 0
        if self.o_direct is not None:
            try:
                return self.os.open(path, flags | self.o_direct, 0o600), True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                with contextlib.suppress(FileNotFoundError):
                    self.os.unlink(path)  # some filesystems create the file before refusing the flag
        return self.os.open(path, flags, 0o600), False

    def write(self, fd: int, data: Any, offset: int) -> int:
        """Write ``data`` at ``offset``; durable when this returns."""
        written: int = self.os.pwrite(fd, data, offset)
        if self.o_dsync is None:
            self.os.fsync(fd)
        return written

    def free_bytes(self, fd: int) -> int | None:
        """Bytes free for an unprivileged writer on ``fd``'s filesystem (None: unknown)."""
        try:
            stats = self.os.statvfs(fd)
        except (OSError, AttributeError, TypeError):
            return None
        return int(stats.f_bavail * stats.f_frsize)

    def rename(self, source: Path, target: Path) -> None:
        self.os.rename(source, target)

    def unlink(self, path: Path) -> None:
        self.os.unlink(path)

    def close(self, fd: int) -> None:
        self.os.close(fd)

    def fsync_directory(self, directory: Path) -> None:
        """Make a rename in ``directory`` durable (where directories can be opened: POSIX)."""
        fd = self.os.open(directory, self.os.O_RDONLY | getattr(self.os, "O_DIRECTORY", 0))
        try:
            self.os.fsync(fd)
        finally:
            self.os.close(fd)


class Segment:
    """The writer's open segment: durable, aligned frame writes into blocks zeroed in advance.

    Why zeroed blocks and `O_DSYNC`: appending and then fdatasync-ing makes the filesystem commit a
    metadata change (the file size, a new extent) at every batch; overwriting blocks that were
    already written — with zeros, ahead of time — is a pure data write, and `O_DSYNC` makes the write
    itself durable. Measured on the project's VM, one 80 KB batch costs 45 µs of CPU and 160 µs of wall
    time this way with `O_DIRECT`, against 115 µs and 350 µs for append + fdatasync. `O_DIRECT` needs
    block-aligned offsets, lengths and buffers, hence the padding and the mmap'd buffers; where the
    platform or filesystem lacks it (macOS, tmpfs) the same writes go through the page cache.
    """

    def __init__(self, fd: int, path: Path, direct: bool, disk: Disk) -> None:
        self.fd = fd
        self.path = path
        self.direct = direct  # opened with O_DIRECT
        self.disk = disk
        self.offset = BLOCK  # the first block holds the header
        self.created = time.monotonic()
        self.zeroed = BLOCK
        self._buffer = mmap.mmap(-1, 64 * 1024)

    @classmethod
    def create(cls, directory: Path, disk: Disk) -> Segment:
        name = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}"
        temp = directory / f"{name}.new"
        fd, direct = disk.create(temp)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the segment is closed
            segment = cls(fd, directory / f"{name}.seg", direct, disk)
            header = mmap.mmap(-1, BLOCK)
            header.write(MAGIC)
            if disk.write(fd, header, 0) != BLOCK:
                raise OSError(errno.EIO, "short write")
            disk.rename(temp, segment.path)
            disk.fsync_directory(directory)  # the new name survives a power cut before the first ack
        except OSError:
            with contextlib.suppress(OSError):
                disk.close(fd)
            with contextlib.suppress(OSError):
                disk.unlink(temp)
            raise
        return segment

    def zero_to(self, end: int) -> None:
        """Make sure blocks up to ``end`` are durably zeroed, plus headroom when the disk has room:
        at most `ZERO_CHUNK`, at most a quarter of the free space."""
        free = self.disk.free_bytes(self.fd)
        if free is not None:
            end += min(ZERO_CHUNK, free // 4) // BLOCK * BLOCK
        while self.zeroed < end:
            piece = memoryview(_ZEROS)[: min(ZERO_CHUNK, end - self.zeroed)]
            written = self.disk.write(self.fd, piece, self.zeroed)
            if written < BLOCK:
                raise OSError(errno.ENOSPC, "short write while zeroing")
            self.zeroed += written - written % BLOCK

    def stage(self, frame: bytes, size: int) -> mmap.mmap:
        """The aligned buffer holding ``frame`` padded with zeros to ``size``."""
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
                raise ZeroFillError(exc.errno or errno.EIO, exc.strerror or str(exc)) from exc
        buffer = self.stage(frame, size)
        # Views released even when the write raises: a view still held by a traceback would stop the
        # buffer from being closed with the segment.
        with memoryview(buffer) as whole, whole[:size] as view:
            written = self.disk.write(self.fd, view, self.offset)
        if written != size:
            raise OSError(errno.EIO, "short write")
        self.offset += size

    def close(self) -> None:
        self._buffer.close()
        with contextlib.suppress(OSError):
            self.disk.close(self.fd)  # releases the flock: readers may now finish and delete the segment


def aligned(size: int) -> int:
    """``size`` rounded up to whole blocks."""
    return -(-size // BLOCK) * BLOCK


# Aligned and all zeros: an anonymous mmap starts zero-filled, and this one is never written to.
_ZEROS = mmap.mmap(-1, ZERO_CHUNK)
